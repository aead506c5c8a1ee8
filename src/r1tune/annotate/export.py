"""Read a Label Studio JSON export into checked annotations, with a reason for everything that is wrong.

    tasks = read_export("export.json", schema)
    for task in tasks:
        task.annotations   # the annotators' work that passed every check (cancelled ones left out)
        task.problems      # [{"task_id", "annotation_id", "reason"}]

Results are recognised by their `type` — `labels` (entity spans), `relation`, `choices` (the intent) — and
never by control names, so projects configured by hand import too; results of other types (ratings, text
areas, …) are ignored. Every annotation that was not cancelled is checked against the text and the schema:
a span must lie inside the text and read what the annotation says it reads, labels must be declared, a
relation must join two regions of the same annotation with a type the schema allows between their labels.

Offsets are Unicode code points (what current Label Studio writes). Older Label Studio versions counted
UTF-16 units, which differ after an emoji or a rare CJK character; such a span is converted when its text
then matches, and reported otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1tune.annotate.schema import AnnotationSchema
from r1tune.data.io import read_records
from r1tune.errors import DataError


@dataclass(frozen=True, order=True)
class Span:
    start: int
    end: int
    label: str
    text: str


@dataclass(frozen=True, order=True)
class Link:
    head: Span
    relation: str
    tail: Span


@dataclass
class Annotation:
    id: Any
    annotator: str
    entities: list[Span]
    relations: list[Link]
    intent: str | None
    ground_truth: bool = False
    updated: str = ""  # ISO time of the last edit, for "latest"

    def layer(self, name: str):
        """A comparable value of one layer: entities / relations / intents."""
        if name == "entities":
            return tuple(self.entities)
        if name == "relations":
            return tuple(self.relations)
        return self.intent


@dataclass
class ExportTask:
    id: Any
    text: str | None
    annotations: list[Annotation] = field(default_factory=list)  # checked, not cancelled
    cancelled: int = 0
    problems: list[dict] = field(default_factory=list)
    ignored_results: int = 0  # results of types r1tune does not use


LAYERS = ("entities", "relations", "intents")


def read_export(path: str | Path, schema: AnnotationSchema) -> list[ExportTask]:
    """Every task of a Label Studio JSON export (a JSON array of tasks), checked against the schema."""
    tasks = []
    for loc, record in read_records(path):
        if "annotations" not in record or "data" not in record:
            raise DataError(loc.file, loc.line, None,
                            "not a task of a Label Studio JSON export (it needs 'data' and 'annotations'): "
                            "export the project as 'JSON', not 'JSON-MIN' or CSV")
        tasks.append(read_task(record, schema, fallback_id=str(loc)))
    return tasks


def read_task(record: dict, schema: AnnotationSchema, fallback_id: str = "") -> ExportTask:
    task_id = record.get("id", fallback_id)
    task = ExportTask(id=task_id, text=None)
    data = record.get("data")
    text, text_problem = _task_text(data, schema)
    task.text = text
    if text_problem:
        task.problems.append({"task_id": task_id, "annotation_id": None, "reason": text_problem})
        return task
    annotations = record.get("annotations") or []
    if not isinstance(annotations, list):
        task.problems.append({"task_id": task_id, "annotation_id": None,
                              "reason": f"'annotations' is a {type(annotations).__name__}, not a list"})
        return task
    for raw in annotations:
        if not isinstance(raw, dict):
            task.problems.append({"task_id": task_id, "annotation_id": None,
                                  "reason": "an annotation is not an object"})
            continue
        if raw.get("was_cancelled"):  # the annotator skipped the task: no labels to learn from
            task.cancelled += 1
            continue
        annotation, problems, ignored = read_annotation(raw, text, schema)
        task.ignored_results += ignored
        task.problems += [{"task_id": task_id, "annotation_id": raw.get("id"), "reason": p} for p in problems]
        if not problems:
            task.annotations.append(annotation)
    return task


def _task_text(data, schema: AnnotationSchema) -> tuple[str | None, str | None]:
    if not isinstance(data, dict):
        return None, "task has no 'data' object"
    value = data.get(schema.text_field)
    if isinstance(value, str):
        return value, None
    texts = [k for k, v in data.items() if isinstance(v, str)]
    if value is None and len(texts) == 1:  # a hand-made project that calls its only text field differently
        return data[texts[0]], None
    fields = ", ".join(map(str, data)) or "none"
    return None, (f"task data has no text in field '{schema.text_field}' (fields: {fields}); "
                  "set text_field in the schema")


def annotator_of(raw: dict) -> str:
    """`completed_by` is a user id, or a user object when exported with annotator details."""
    who = raw.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("username") or who.get("id")
    return str(who) if who is not None else f"annotation {raw.get('id')}"


def read_annotation(raw: dict, text: str, schema: AnnotationSchema) -> tuple[Annotation, list[str], int]:
    """One annotation → (Annotation, problems, number of ignored results)."""
    results = raw.get("result")
    if results is None:
        results = []
    problems: list[str] = []
    if not isinstance(results, list):
        return _empty(raw), [f"'result' is a {type(results).__name__}, not a list"], 0
    regions: dict[str, list[Span]] = {}
    seen_region_ids: set[str] = set()
    relations_raw, choices, ignored = [], [], 0
    for i, result in enumerate(results):
        if not isinstance(result, dict):
            problems.append(f"result {i} is not an object")
            continue
        kind = str(result.get("type", "")).lower()
        if kind == "labels":
            rid = str(result.get("id", f"#{i}"))
            seen_region_ids.add(rid)
            spans, region_problems = _read_region(result, rid, text, schema)
            problems += region_problems
            if not region_problems:
                regions.setdefault(rid, []).extend(spans)
        elif kind == "relation":
            relations_raw.append(result)
        elif kind == "choices":
            value = result.get("value") if isinstance(result.get("value"), dict) else {}
            picked = value.get("choices")
            if not isinstance(picked, list) or not all(isinstance(c, str) for c in picked):
                problems.append(f"choices result {result.get('id', i)} has no value.choices list")
                continue
            choices += picked
        else:
            ignored += 1
    links = []
    for result in relations_raw:
        link_list, link_problems = _read_relation(result, regions, seen_region_ids, schema)
        problems += link_problems
        links += link_list
    intent = None
    for choice in dict.fromkeys(choices):
        if choice not in schema.intents:
            problems.append(f"intent '{choice}' is not in the schema (intents: {', '.join(schema.intents) or 'none'})")
    distinct = list(dict.fromkeys(choices))
    if len(distinct) > 1:
        problems.append(f"several intents chosen: {', '.join(distinct)} (an intent is one label per text)")
    elif distinct:
        intent = distinct[0]
    entities = sorted({s for spans in regions.values() for s in spans})
    annotation = Annotation(id=raw.get("id"), annotator=annotator_of(raw), entities=entities,
                            relations=sorted(set(links), key=_text_order), intent=intent,
                            ground_truth=bool(raw.get("ground_truth")),
                            updated=str(raw.get("updated_at") or raw.get("created_at") or ""))
    return annotation, problems, ignored


def _text_order(link: Link):
    return (link.head.start, link.head.end, link.tail.start, link.tail.end, link.relation)


def _empty(raw: dict) -> Annotation:
    return Annotation(id=raw.get("id"), annotator=annotator_of(raw), entities=[], relations=[], intent=None)


def _utf16_to_index(text: str, units: int) -> int | None:
    """Code-point index of a UTF-16 offset, or None when it is past the end or inside a surrogate pair."""
    count = 0
    for i, ch in enumerate(text):
        if count == units:
            return i
        count += 2 if ord(ch) > 0xFFFF else 1
        if count > units:
            return None
    return len(text) if count == units else None


def _read_region(result: dict, rid: str, text: str, schema: AnnotationSchema) -> tuple[list[Span], list[str]]:
    value = result.get("value")
    if not isinstance(value, dict):
        return [], [f"region {rid} has no value"]
    start, end = value.get("start"), value.get("end")
    if not (isinstance(start, int) and isinstance(end, int)) or isinstance(start, bool) or isinstance(end, bool):
        return [], [f"region {rid} is not a text span (value.start/value.end are not whole numbers)"]
    claimed = value.get("text")
    if start >= end:
        return [], [f"region {rid}: empty span {start}-{end}"]
    inside = 0 <= start and end <= len(text)
    if inside and (claimed is None or text[start:end] == claimed):
        span_start, span_end = start, end
    else:
        # an export that counted UTF-16 units: convert when the text then matches
        s16, e16 = _utf16_to_index(text, start), _utf16_to_index(text, end)
        if s16 is not None and e16 is not None and claimed is not None and text[s16:e16] == claimed:
            span_start, span_end = s16, e16
        elif not inside:
            return [], [f"region {rid}: span {start}-{end} is outside the text (length {len(text)})"]
        else:
            return [], [f"region {rid}: span {start}-{end} reads '{text[start:end]}' but the annotation says "
                        f"'{claimed}'"]
    labels = value.get("labels")
    if not isinstance(labels, list) or not labels:
        return [], [f"region {rid} ('{text[span_start:span_end]}') has no label"]
    declared = ", ".join(schema.entities) or "none"
    problems = [f"region {rid} ('{text[span_start:span_end]}'): entity label '{label}' is not in the schema "
                f"(entities: {declared})" for label in labels if label not in schema.entities]
    if problems:
        return [], problems
    return [Span(span_start, span_end, label, text[span_start:span_end]) for label in labels], []


def _read_relation(result: dict, regions: dict[str, list[Span]], seen: set[str],
                   schema: AnnotationSchema) -> tuple[list[Link], list[str]]:
    src, dst = result.get("from_id"), result.get("to_id")
    name = f"relation {src}→{dst}"
    missing = [str(r) for r in (src, dst) if r is None or str(r) not in seen]
    if missing:
        return [], [f"{name} joins regions that are not in this annotation: {', '.join(missing)}"]
    if str(src) not in regions or str(dst) not in regions:
        return [], []  # an end region had its own problem, already reported
    labels = result.get("labels")
    if not isinstance(labels, list) or not labels:
        return [], [f"{name} has no relation type"]
    direction = result.get("direction", "right")
    # "right": from → to; "left": the arrow points back at `from`; "bi": whichever way the schema allows
    orders = {"right": [(src, dst)], "left": [(dst, src)]}.get(direction, [(src, dst), (dst, src)])
    links, problems = [], []
    for relation in labels:
        if relation not in schema.relation_names:
            problems.append(f"{name}: relation type '{relation}' is not in the schema "
                            f"(relations: {', '.join(schema.relation_names) or 'none'})")
            continue
        link = next((Link(h, relation, t) for a, b in orders for h in regions[str(a)] for t in regions[str(b)]
                     if schema.allows(relation, h.label, t.label)), None)
        if link is None:
            h, t = regions[str(orders[0][0])][0], regions[str(orders[0][1])][0]
            allowed = ", ".join(f"{r.head} → {r.tail}" for r in schema.relations if r.name == relation)
            problems.append(f"{name}: '{relation}' links {h.label} '{h.text}' → {t.label} '{t.text}'; "
                            f"the schema allows {allowed}")
            continue
        links.append(link)
    return links, problems
