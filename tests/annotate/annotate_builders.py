"""Builders of Label Studio JSON export records, for tests.

They write exactly the shape Label Studio's JSON export has (checked against a real 1.23 server in
test_annotate_labelstudio_server.py): tasks with `id`, `data`, `annotations[]` (`id`, `completed_by`,
`was_cancelled`, `ground_truth`, `result[]`), region results of type `labels` with `from_name`/`to_name`/
`value.start/end/text/labels`, relation results with `from_id`/`to_id`/`direction`/`labels` (no id, no
control names), and `choices` results.
"""

from __future__ import annotations

import json


def region(rid: str, text: str, sub: str, label: str, occurrence: int = 0, control: str = "entity",
           start: int | None = None, end: int | None = None, claimed: str | None = None) -> dict:
    """A `labels` result for the `occurrence`-th appearance of `sub` in `text` (or explicit offsets)."""
    if start is None:
        start = -1
        for _ in range(occurrence + 1):
            start = text.index(sub, start + 1)
        end = start + len(sub)
    return {"id": rid, "from_name": control, "to_name": "text", "type": "labels", "origin": "manual",
            "value": {"start": start, "end": end, "text": sub if claimed is None else claimed, "labels": [label]}}


def relation(src: str, dst: str, label: str | None, direction: str = "right") -> dict:
    return {"from_id": src, "to_id": dst, "type": "relation", "direction": direction,
            "labels": [] if label is None else [label]}


def choice(label: str | list[str], control: str = "intent") -> dict:
    return {"id": "choice-" + control, "from_name": control, "to_name": "text",
            "type": "choices", "value": {"choices": [label] if isinstance(label, str) else label}}


def annotation(aid: int, result: list[dict], by: int = 1, cancelled: bool = False, ground_truth: bool = False,
               updated: str = "2026-01-01T10:00:00Z") -> dict:
    return {"id": aid, "completed_by": by, "result": result, "was_cancelled": cancelled,
            "ground_truth": ground_truth, "created_at": updated, "updated_at": updated, "lead_time": 4.2,
            "prediction": {}, "result_count": len(result), "task": None, "project": 1}


def task(tid: int, text: str, annotations: list[dict], predictions: list | None = None, field: str = "text") -> dict:
    for a in annotations:
        a["task"] = tid
    return {"id": tid, "data": {field: text}, "annotations": annotations, "drafts": [],
            "predictions": predictions or [], "meta": {}, "inner_id": tid, "project": 1,
            "total_annotations": sum(not a["was_cancelled"] for a in annotations),
            "cancelled_annotations": sum(a["was_cancelled"] for a in annotations)}


def write_export(path, tasks: list[dict]):
    path.write_text(json.dumps(tasks, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


from helpers import read_jsonl  # noqa: E402,F401  (re-exported for the annotate tests)
from helpers import run_main as cli  # noqa: E402,F401
