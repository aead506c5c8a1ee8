"""Pre-annotations from a model: ask the questions of `prompts.py`, parse the answers into spans at offsets.

    predictor, version = model_predictor("runs/ner-lora", schema)      # r1tune annotate tasks … --model RUN
    predictor(["腾讯控股（00700）获买入评级"])
    → [{"entities": [{"start": 0, "end": 4, "label": "公司", "text": "腾讯控股"}, …],
        "relations": [...], "intent": "买入建议", "failures": []}]

The model answers in the format `r1tune annotate import` writes for training, so a model fine-tuned on the
imported samples produces exactly what is parsed here. Parsing is forgiving about wrapping (reasoning,
code fences, prose around the JSON) and strict about content: an answer that is not JSON, a label the
schema lacks or an entity text that is not in the task text yields no prediction for that item and a
counted failure — pre-annotation never invents a span.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from r1tune.annotate import prompts
from r1tune.annotate.schema import AnnotationSchema
from r1tune.model.reasoning import ParsedOutput

# Takes conversations, returns the model's parsed output for each (reasoning split from the answer).
Complete = Callable[[list[list[dict]]], list[ParsedOutput]]
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def json_list(answer: str) -> list | None:
    """The JSON list in an answer: the answer itself, a fenced block, or the outermost [...]; else None."""
    candidates = [answer.strip()]
    candidates += [m.strip() for m in _FENCE.findall(answer)]
    if "[" in answer and "]" in answer:
        candidates.append(answer[answer.index("["):answer.rindex("]") + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(value, list):
            return value
    return None


def locate(text: str, needle: str, taken: set[tuple[int, int]], after: int = 0) -> tuple[int, int] | None:
    """Offsets of `needle` in `text`: the first free occurrence at or after `after`, else the first free one.

    Answers list entities in text order, so searching on from the previous hit maps the second mention of
    the same name to its second occurrence.
    """
    if not needle:
        return None
    starts = [m.start() for m in re.finditer(re.escape(needle), text)]
    free = [s for s in starts if (s, s + len(needle)) not in taken]
    pick = next((s for s in free if s >= after), free[0] if free else None)
    return None if pick is None else (pick, pick + len(needle))


def entities_from_answer(answer: str, text: str, schema: AnnotationSchema) -> tuple[list[dict], list[str]]:
    items = json_list(answer)
    if items is None:
        return [], ["entities: answer is not a JSON list"]
    entities, failures, taken, after = [], [], set(), 0
    for item in items:
        if not (isinstance(item, dict) and isinstance(item.get("text"), str) and isinstance(item.get("label"), str)):
            failures.append("entities: item is not a {text, label} object")
            continue
        if item["label"] not in schema.entities:
            failures.append(f"entities: label '{item['label']}' is not in the schema")
            continue
        where = locate(text, item["text"], taken, after) or locate(text, item["text"].strip(), taken, after)
        if where is None:
            failures.append(f"entities: '{item['text']}' is not in the text")
            continue
        taken.add(where)
        after = where[1]
        entities.append({"start": where[0], "end": where[1], "label": item["label"], "text": text[where[0]:where[1]]})
    return entities, failures


def relations_from_answer(answer: str, text: str, schema: AnnotationSchema,
                          entities: list[dict]) -> tuple[list[dict], list[str]]:
    """Relations between entities; an end not already predicted as an entity is added (with its schema type)."""
    items = json_list(answer)
    if items is None:
        return [], ["relations: answer is not a JSON list"]
    relations, failures = [], []
    for item in items:
        if not (isinstance(item, dict) and all(isinstance(item.get(k), str) for k in ("head", "relation", "tail"))):
            failures.append("relations: item is not a {head, relation, tail} object")
            continue
        kinds = [r for r in schema.relations if r.name == item["relation"]]
        if not kinds:
            failures.append(f"relations: type '{item['relation']}' is not in the schema")
            continue
        ends = None
        for kind in kinds:  # prefer the type pair whose ends were already predicted with those labels
            head, tail = _find(entities, item["head"], kind.head), _find(entities, item["tail"], kind.tail)
            if head is not None and tail is not None:
                ends = (head, tail)
                break
        if ends is None:
            kind = kinds[0]
            head, tail = _find(entities, item["head"], kind.head), _find(entities, item["tail"], kind.tail)
            head = head if head is not None else _place(text, item["head"], kind.head, entities)
            tail = tail if tail is not None else _place(text, item["tail"], kind.tail, entities)
            if head is None or tail is None:
                missing = item["head"] if head is None else item["tail"]
                failures.append(f"relations: '{missing}' is not in the text")
                continue
            ends = tuple(_add(entities, e) if isinstance(e, dict) else e for e in (head, tail))
        relation = {"head": ends[0], "tail": ends[1], "relation": item["relation"]}
        if relation not in relations:
            relations.append(relation)
    return relations, failures


def _find(entities: list[dict], mention: str, label: str) -> int | None:
    """Index of the predicted entity with this text and label."""
    return next((i for i, e in enumerate(entities) if e["text"] == mention and e["label"] == label), None)


def _place(text: str, mention: str, label: str, entities: list[dict]) -> dict | None:
    """A new entity for a relation end that was not predicted as an entity, if the text contains it."""
    where = locate(text, mention, {(e["start"], e["end"]) for e in entities if e["label"] == label})
    return None if where is None else {"start": where[0], "end": where[1], "label": label, "text": mention}


def _add(entities: list[dict], entity: dict) -> int:
    entities.append(entity)
    return len(entities) - 1


def intent_from_answer(answer: str, schema: AnnotationSchema) -> tuple[str | None, list[str]]:
    cleaned = answer.strip().strip("\"'“”‘’「」『』`*.。!！ \n")
    if cleaned in schema.intents:
        return cleaned, []
    folded = [label for label in schema.intents if label.casefold() == cleaned.casefold()]
    if len(folded) == 1:  # "Buy" for "buy"
        return folded[0], []
    mentioned = [label for label in schema.intents if label in answer]
    if len(mentioned) == 1:  # "意图：买入建议" and the like
        return mentioned[0], []
    shown = cleaned if len(cleaned) <= 40 else cleaned[:40] + "…"
    return None, [f"intent: answer '{shown}' is not one of the schema's intents"]


def llm_predictor(complete: Complete, schema: AnnotationSchema) -> Callable[[list[str]], list[dict]]:
    """A predictor that asks `complete` one question per declared layer and parses the answers."""
    layers = [name for name in ("entities", "relations", "intents") if getattr(schema, name)]
    ask = {"entities": prompts.entity_prompt, "relations": prompts.relation_prompt, "intents": prompts.intent_prompt}

    def predict(texts: list[str]) -> list[dict]:
        conversations = [prompts.chat(ask[layer](schema, text)) for text in texts for layer in layers]
        outputs = iter(complete(conversations)) if conversations else iter(())
        predictions = []
        for text in texts:
            answers = {layer: next(outputs) for layer in layers}
            prediction = {"entities": [], "relations": [], "intent": None, "failures": []}
            for layer in layers:
                out = answers[layer]
                if not out.closed or not out.answer.strip():
                    why = "output ended before </think>" if not out.closed else "empty answer"
                    prediction["failures"].append(f"{layer}: no answer ({why})")
                    continue
                if layer == "entities":
                    found, failed = entities_from_answer(out.answer, text, schema)
                    prediction["entities"] += found
                elif layer == "relations":
                    found, failed = relations_from_answer(out.answer, text, schema, prediction["entities"])
                    prediction["relations"] = found
                else:
                    prediction["intent"], failed = intent_from_answer(out.answer, schema)
                prediction["failures"] += failed
            predictions.append(prediction)
        return predictions

    return predict


def model_predictor(run: str | Path, schema: AnnotationSchema, max_new_tokens: int = 1024,
                    batch_size: int = 8) -> tuple[Callable[[list[str]], list[dict]], str]:
    """A predictor backed by a model folder or finetune run (greedy decoding); returns (predictor, model_version)."""
    from r1tune.evaluate.generate import generate
    from r1tune.model.runs import load_for_inference, resolve_run

    resolved = resolve_run(run)
    model, tokenizer = load_for_inference(resolved)

    def complete(conversations: list[list[dict]]) -> list[ParsedOutput]:
        outputs = generate(model, tokenizer, conversations, max_new_tokens=max_new_tokens, batch_size=batch_size)
        return [g.parsed for g in outputs]

    provenance = resolved.provenance
    version = f"r1tune:{Path(run).resolve().name}"
    if provenance.get("base_model"):
        version += f" ({provenance['base_model']})"
    return llm_predictor(complete, schema), version
