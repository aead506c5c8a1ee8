"""How far annotators agree, per layer, and which tasks need a reviewer.

    r1tune annotate agreement export.json --schema configs/annotate/finance-schema.yaml [--out report.json]

- intents: Cohen's kappa for every pair of annotators (on the tasks both labelled) and Fleiss' kappa over
  all tasks with two or more ratings. Fleiss' is the form that allows a different number of raters per task
  (it equals the textbook formula when the number is constant).
- entities and relations: span-level F1 between every pair of annotators — exact start, end and label for an
  entity; exact head span, type and tail span for a relation — micro-averaged over their shared tasks, and
  over all pairs.
- review: every task whose annotators differ on a declared layer, with what each of them said.

Only annotations that pass the import checks take part (the others are counted; `r1tune annotate import`
lists their problems). When one annotator labelled a task twice, the later annotation counts.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations
from pathlib import Path

from r1tune.annotate.export import Annotation, ExportTask, read_export
from r1tune.annotate.importer import declared_layers
from r1tune.annotate.schema import AnnotationSchema


def cohen_kappa(a: list, b: list) -> float | None:
    """Cohen's kappa of two raters' labels for the same items; None when undefined (one label throughout)."""
    if len(a) != len(b):
        raise ValueError("both raters must rate the same items")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[label] * count_b[label] for label in count_a.keys() | count_b.keys()) / (n * n)
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)


def fleiss_kappa(items: list[Counter | dict]) -> float | None:
    """Fleiss' kappa; `items[i][label]` = how many raters gave item i that label. Items with < 2 ratings drop out."""
    items = [Counter(c) for c in items if sum(c.values()) >= 2]
    if not items:
        return None
    per_item = []
    totals: Counter = Counter()
    ratings = 0
    for counts in items:
        n = sum(counts.values())
        per_item.append((sum(c * c for c in counts.values()) - n) / (n * (n - 1)))
        totals.update(counts)
        ratings += n
    observed = sum(per_item) / len(per_item)
    expected = sum((c / ratings) ** 2 for c in totals.values())
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)


def span_f1(pairs: list[tuple[set, set]]) -> dict:
    """Micro F1 of two annotators' item sets over tasks: 2·|A∩B| / (|A| + |B|) (symmetric, so no gold side)."""
    shared = sum(len(a & b) for a, b in pairs)
    total = sum(len(a) + len(b) for a, b in pairs)
    return {"f1": (2 * shared / total) if total else None, "matched": shared, "items": total, "tasks": len(pairs)}


def per_annotator(task: ExportTask) -> dict[str, Annotation]:
    """The latest checked annotation of each annotator on a task."""
    latest: dict[str, Annotation] = {}
    for a in sorted(task.annotations, key=lambda a: a.updated):
        latest[a.annotator] = a
    return latest


def _items(annotation: Annotation, layer: str) -> set:
    if layer == "entities":
        return {(s.start, s.end, s.label) for s in annotation.entities}
    return {(r.head.start, r.head.end, r.relation, r.tail.start, r.tail.end) for r in annotation.relations}


def _show(annotation: Annotation, layer: str):
    if layer == "entities":
        return [f"{s.text}/{s.label}@{s.start}-{s.end}" for s in annotation.entities]
    if layer == "relations":
        return [f"{r.head.text} -{r.relation}-> {r.tail.text}" for r in annotation.relations]
    return annotation.intent


def agreement(tasks: list[ExportTask], schema: AnnotationSchema) -> dict:
    """The agreement report of already-read export tasks."""
    layers = declared_layers(schema)
    by_task = {t.id: per_annotator(t) for t in tasks}
    annotators = sorted({who for rated in by_task.values() for who in rated})
    report: dict = {"tasks": len(tasks), "annotators": annotators,
                    "tasks_with_two_or_more": sum(len(r) >= 2 for r in by_task.values()),
                    "annotations_with_problems": len({(p["task_id"], p["annotation_id"]) for t in tasks
                                                      for p in t.problems if p["annotation_id"] is not None})}
    if "intents" in layers:
        pairs = []
        for x, y in combinations(annotators, 2):
            both = [(r[x].intent, r[y].intent) for r in by_task.values()
                    if x in r and y in r and r[x].intent is not None and r[y].intent is not None]
            if both:
                pairs.append({"annotators": [x, y], "tasks": len(both),
                              "kappa": cohen_kappa([p[0] for p in both], [p[1] for p in both])})
        items = [Counter(a.intent for a in r.values() if a.intent is not None) for r in by_task.values()]
        defined = [p["kappa"] for p in pairs if p["kappa"] is not None]
        report["intents"] = {"cohen": pairs, "cohen_mean": sum(defined) / len(defined) if defined else None,
                             "fleiss": fleiss_kappa(items),
                             "fleiss_tasks": sum(sum(c.values()) >= 2 for c in items)}
    for layer in ("entities", "relations"):
        if layer not in layers:
            continue
        pairs, everything = [], []
        for x, y in combinations(annotators, 2):
            shared = [(_items(r[x], layer), _items(r[y], layer)) for r in by_task.values() if x in r and y in r]
            if shared:
                pairs.append({"annotators": [x, y], **span_f1(shared)})
                everything += shared
        report[layer] = {"pairs": pairs, "overall": span_f1(everything)}
    review = []
    for task in tasks:
        rated = by_task[task.id]
        if len(rated) < 2:
            continue
        differing = [layer for layer in layers if len({a.layer(layer) for a in rated.values()}) > 1]
        if differing:
            review.append({"task_id": task.id, "text": task.text, "layers": differing,
                           "annotations": [{"annotator": who, "annotation_id": a.id,
                                            **{layer: _show(a, layer) for layer in differing}}
                                           for who, a in sorted(rated.items())]})
    report["review"] = review
    return report


def agreement_report(export: str | Path, schema: AnnotationSchema) -> dict:
    return agreement(read_export(export, schema), schema)


def format_report(report: dict) -> str:
    """The report as a few readable lines (the full report is JSON)."""
    def num(x):
        return "n/a" if x is None else f"{x:.3f}"

    lines = [f"{report['tasks']} tasks, {len(report['annotators'])} annotators, "
             f"{report['tasks_with_two_or_more']} tasks labelled by two or more"]
    if report["annotations_with_problems"]:
        lines.append(f"{report['annotations_with_problems']} annotations with problems left out "
                     f"(see `r1tune annotate import`)")
    if "intents" in report:
        it = report["intents"]
        lines.append(f"intents: Fleiss' kappa {num(it['fleiss'])} over {it['fleiss_tasks']} tasks; "
                     f"mean Cohen's kappa {num(it['cohen_mean'])}")
        lines += [f"  Cohen's kappa {p['annotators'][0]} vs {p['annotators'][1]}: {num(p['kappa'])} "
                  f"({p['tasks']} tasks)" for p in it["cohen"]]
    for layer in ("entities", "relations"):
        if layer in report:
            o = report[layer]["overall"]
            pairs = len(report[layer]["pairs"])
            lines.append(f"{layer}: span F1 {num(o['f1'])} ({pairs} annotator pair{'s' * (pairs != 1)} on "
                         f"{o['tasks']} shared tasks; {o['matched']} matches among {o['items']} marked items)")
    lines.append(f"review: {len(report['review'])} tasks where annotators disagree")
    for item in report["review"]:
        lines.append(f"  task {item['task_id']}: {', '.join(item['layers'])}")
        for a in item["annotations"]:
            said = "; ".join(f"{layer}={a[layer]}" for layer in item["layers"])
            lines.append(f"    {a['annotator']} (annotation {a['annotation_id']}): {said}")
    return "\n".join(lines)
