"""Turn a Label Studio JSON export into training samples, one file per layer, plus a list of problems.

    r1tune annotate import export.json --schema configs/annotate/finance-schema.yaml --out data/annotated

writes, for the layers the schema declares,

    entities.jsonl   {"messages": [user: entity question + text, assistant: [{"text", "label"}, …]], "task_id": …}
    relations.jsonl  {"messages": [user: relation question + text, assistant: [{"head", "relation", "tail"}, …]], …}
    intents.jsonl    {"messages": [user: intent question + text, assistant: 买入建议], "label": "买入建议", …}
    problems.jsonl   {"task_id": 7, "annotation_id": 12, "reason": "region r3: span 40-45 is outside the text …"}

(questions and answers are the ones in `prompts.py`, which pre-annotation parses). A task with any problem
is left out of every file; the other tasks still import. Cancelled (skipped) annotations are ignored. When
several annotators labelled a task, the one marked ground truth is used; otherwise they must agree, or the
task is reported as a disagreement (with `on_disagreement="latest"` the latest annotation is used instead).
"""

from __future__ import annotations

from pathlib import Path

from r1tune.annotate import prompts
from r1tune.annotate.export import LAYERS, Annotation, ExportTask, read_export
from r1tune.annotate.schema import AnnotationSchema
from r1tune.data.io import write_jsonl
from r1tune.errors import R1TuneError
from r1tune.files import OutputSet, check_outputs

DISAGREEMENT_POLICIES = ("problem", "latest")


def choose_annotation(task: ExportTask, schema: AnnotationSchema,
                      on_disagreement: str = "problem") -> tuple[Annotation | None, str | None]:
    """The annotation that stands for the task, or (None, reason) when annotators disagree."""
    if not task.annotations:
        return None, None
    latest_first = sorted(task.annotations, key=lambda a: a.updated, reverse=True)
    truths = [a for a in latest_first if a.ground_truth]
    if truths:
        return truths[0], None
    differing = [layer for layer in declared_layers(schema)
                 if len({a.layer(layer) for a in latest_first}) > 1]
    if not differing or on_disagreement == "latest":
        return latest_first[0], None
    who = ", ".join(f"{a.id} by {a.annotator}" for a in latest_first)
    return None, (f"annotators disagree on {', '.join(differing)} (annotations {who}); mark one as ground truth "
                  f"in Label Studio, see `r1tune annotate agreement`, or import with --on-disagreement latest")


def declared_layers(schema: AnnotationSchema) -> list[str]:
    return [layer for layer in LAYERS if getattr(schema, layer)]


def samples_for(annotation: Annotation, task: ExportTask, schema: AnnotationSchema) -> dict[str, dict]:
    """One training sample per declared layer (no intent sample when the annotator chose none)."""
    text = task.text or ""
    meta = {"task_id": task.id, "annotation_id": annotation.id}
    out = {}
    if schema.entities:
        answer = prompts.entity_answer([(s.text, s.label) for s in annotation.entities])
        out["entities"] = {"messages": prompts.chat(prompts.entity_prompt(schema, text), answer), **meta}
    if schema.relations:
        answer = prompts.relation_answer([(r.head.text, r.relation, r.tail.text) for r in annotation.relations])
        out["relations"] = {"messages": prompts.chat(prompts.relation_prompt(schema, text), answer), **meta}
    if schema.intents and annotation.intent is not None:
        out["intents"] = {"messages": prompts.chat(prompts.intent_prompt(schema, text), annotation.intent),
                          "label": annotation.intent, **meta}
    return out


def import_export(export: str | Path, schema: AnnotationSchema, out_dir: str | Path,
                  on_disagreement: str = "problem") -> dict:
    """Write DIR/{entities,relations,intents,problems}.jsonl; returns counts for the summary line."""
    if on_disagreement not in DISAGREEMENT_POLICIES:
        raise R1TuneError(f"--on-disagreement must be one of {', '.join(DISAGREEMENT_POLICIES)}, "
                          f"not '{on_disagreement}'")
    out_dir = Path(out_dir)
    layer_files = {layer: out_dir / f"{layer}.jsonl" for layer in declared_layers(schema)}
    check_outputs([*layer_files.values(), out_dir / "problems.jsonl"], inputs=[export])
    tasks = read_export(export, schema)
    samples: dict[str, list[dict]] = {layer: [] for layer in declared_layers(schema)}
    problems: list[dict] = []
    counts = {"tasks": len(tasks), "imported": 0, "with_problems": 0, "cancelled_only": 0, "unlabelled": 0,
              "cancelled_annotations": 0, "ignored_results": 0}
    for task in tasks:
        counts["cancelled_annotations"] += task.cancelled
        counts["ignored_results"] += task.ignored_results
        if task.problems:
            problems += task.problems
            counts["with_problems"] += 1
            continue
        chosen, disagreement = choose_annotation(task, schema, on_disagreement)
        if disagreement:
            problems.append({"task_id": task.id, "annotation_id": None, "reason": disagreement})
            counts["with_problems"] += 1
            continue
        if chosen is None:
            counts["cancelled_only" if task.cancelled else "unlabelled"] += 1
            continue
        counts["imported"] += 1
        for layer, sample in samples_for(chosen, task, schema).items():
            samples[layer].append(sample)
    with OutputSet() as outputs:  # the layers and the problem list of one import land together
        for layer, rows in samples.items():
            counts[layer] = write_jsonl(layer_files[layer], rows, outputs)
        counts["problems"] = write_jsonl(out_dir / "problems.jsonl", problems, outputs)
    return counts
