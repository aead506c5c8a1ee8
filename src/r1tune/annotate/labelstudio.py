"""What r1tune hands to Label Studio: the labeling config of a schema, and import tasks with pre-annotations.

    r1tune annotate config configs/annotate/finance-schema.yaml --out config.xml
    r1tune annotate tasks texts.jsonl --schema configs/annotate/finance-schema.yaml --out tasks.json [--model RUN]

The config has one `Labels` control for the entities, `Relations` for the relation types and a single-choice
`Choices` control for the intent, all on one `Text` object that reads the schema's `text_field`. A task is
`{"data": {text_field: …, other fields of the record}}`; with a predictor, each task also gets a
`predictions` entry in Label Studio's result format, so annotators correct instead of starting blank.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from xml.sax.saxutils import quoteattr

from r1tune.annotate.schema import AnnotationSchema
from r1tune.data.io import read_records
from r1tune.files import write_text

TEXT_NAME, ENTITY_CONTROL, INTENT_CONTROL = "text", "entity", "intent"
# distinct, readable label colours; cycled when a schema has more labels
PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
           "#469990", "#9a6324", "#800000", "#808000", "#000075", "#a9a9a9"]

# A predictor maps a batch of texts to one prediction each:
#   {"entities": [{"start", "end", "label", "text"}], "relations": [{"head": i, "tail": j, "relation": name}],
#    "intent": label or None, "failures": ["entities: answer is not a JSON list", …]}
# where head / tail index into that prediction's entities.
Predictor = Callable[[list[str]], list[dict]]


def label_config(schema: AnnotationSchema) -> str:
    """Label Studio labeling config (XML) for the schema."""
    lines = ["<View>"]
    if schema.relations:
        lines.append("  <Relations>")
        lines += [f"    <Relation value={quoteattr(name)}/>" for name in schema.relation_names]
        lines.append("  </Relations>")
    if schema.entities:
        lines.append(f'  <Labels name="{ENTITY_CONTROL}" toName="{TEXT_NAME}">')
        lines += [f"    <Label value={quoteattr(label)} background={quoteattr(PALETTE[i % len(PALETTE)])}/>"
                  for i, label in enumerate(schema.entities)]
        lines.append("  </Labels>")
    lines.append(f'  <Text name="{TEXT_NAME}" value={quoteattr("$" + schema.text_field)}/>')
    if schema.intents:
        lines.append(f'  <Choices name="{INTENT_CONTROL}" toName="{TEXT_NAME}" choice="single-radio" '
                     f'showInline="true">')
        lines += [f"    <Choice value={quoteattr(label)}/>" for label in schema.intents]
        lines.append("  </Choices>")
    lines.append("</View>")
    return "\n".join(lines) + "\n"


def read_texts(path: str | Path, field: str) -> Iterator[tuple[str, dict]]:
    """(text, record) for every record of a data file; a record without text in `field` is an error."""
    for loc, record in read_records(path):
        text = record.get(field)
        if not isinstance(text, str):
            raise loc.error(field, "missing" if text is None
                            else f"wrong type: expected text, got {type(text).__name__}")
        if not text.strip():
            raise loc.error(field, "empty")
        yield text, record


def prediction_result(prediction: dict) -> list[dict]:
    """A predictor's output for one text → Label Studio result items (regions, relations, choice)."""
    result = []
    for i, entity in enumerate(prediction.get("entities", [])):
        result.append({"id": f"e{i}", "from_name": ENTITY_CONTROL, "to_name": TEXT_NAME, "type": "labels",
                       "value": {"start": entity["start"], "end": entity["end"], "text": entity["text"],
                                 "labels": [entity["label"]]}})
    for rel in prediction.get("relations", []):
        result.append({"from_id": f"e{rel['head']}", "to_id": f"e{rel['tail']}", "type": "relation",
                       "direction": "right", "labels": [rel["relation"]]})
    if prediction.get("intent"):
        result.append({"id": "intent", "from_name": INTENT_CONTROL, "to_name": TEXT_NAME, "type": "choices",
                       "value": {"choices": [prediction["intent"]]}})
    return result


def make_tasks(path: str | Path, schema: AnnotationSchema, field: str | None = None,
               predictor: Predictor | None = None, model_version: str = "r1tune",
               batch_size: int = 8) -> tuple[list[dict], dict]:
    """Label Studio import tasks for every record of a data file; returns (tasks, stats)."""
    field = field or schema.text_field
    tasks, failures = [], Counter()
    stats = {"tasks": 0, "with_predictions": 0, "prediction_failures": 0}
    batch: list[tuple[str, dict]] = []

    def flush():
        predictions = predictor([text for text, _ in batch]) if predictor else [None] * len(batch)
        for (text, record), prediction in zip(batch, predictions):
            data = {k: v for k, v in record.items() if k != field}
            data[schema.text_field] = text
            task = {"data": data}
            if prediction is not None:
                for failure in prediction.get("failures", []):
                    failures[failure.split(":", 1)[0]] += 1
                result = prediction_result(prediction)
                if result:
                    task["predictions"] = [{"model_version": model_version, "result": result}]
                    stats["with_predictions"] += 1
            tasks.append(task)
        batch.clear()

    for text, record in read_texts(path, field):
        batch.append((text, record))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    stats["tasks"] = len(tasks)
    stats["prediction_failures"] = sum(failures.values())
    stats["failures_by_layer"] = dict(failures)
    return tasks, stats


def write_json(path: str | Path, value) -> None:
    # default=str: Parquet dates and decimals become text rather than failing the whole file
    write_text(path, json.dumps(value, ensure_ascii=False, indent=1, default=str) + "\n")
