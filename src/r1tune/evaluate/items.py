"""Test items and predictions made elsewhere, read for evaluation (and for anything that scores answers).

    items = load_items("test.jsonl")                                 # any training format → EvalItem list
    items, outputs, rows = predictions_outputs("vllm.jsonl", items)  # a predictions JSONL aligned with them
"""

from __future__ import annotations

from pathlib import Path

from r1tune.data.formats import load_samples
from r1tune.data.images import file_has_images, load_image_samples
from r1tune.data.io import read_records
from r1tune.errors import DataError, R1TuneError
from r1tune.evaluate.scoring import EvalItem, Output
from r1tune.model.reasoning import ParsedOutput, split_reasoning


def last_user_text(messages: list[dict]) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")


def load_items(path: str | Path, fmt: str = "auto", limit: int | None = None, encoding: str = "auto",
               columns: dict[str, str] | None = None) -> list[EvalItem]:
    read = load_image_samples if file_has_images(path, encoding, columns) else load_samples  # issue 19
    samples, _ = read(path, fmt, encoding=encoding, columns=columns)
    return items_from_samples(samples, limit)


def items_from_samples(samples: list, limit: int | None = None) -> list[EvalItem]:
    items = []
    for number, sample in enumerate(samples[:limit] if limit else samples):
        label = sample.meta.get("label")
        items.append(EvalItem(id=str(sample.meta.get("id", number)), messages=sample.prompt_messages,
                              prompt=last_user_text(sample.prompt_messages), reference=sample.answer,
                              label=str(label) if label is not None else None, meta=sample.meta))
    return items


def read_predictions(path: str | Path) -> list[dict]:
    """The rows of a predictions JSONL, read by the shared reader (a bad line stops with `file:line: problem`)."""
    path = Path(path)
    if not path.exists():
        raise R1TuneError(f"predictions file not found: {path}")
    try:
        return [row for _, row in read_records(path)]
    except DataError as e:
        if e.line is None and "empty" in e.problem:
            raise R1TuneError(f"{path}: no predictions") from None
        raise


def parse_prediction(text: str, reasoning: str | None) -> ParsedOutput:
    """A prediction from elsewhere: R1 text with `</think>`, or an answer with its reasoning in its own field
    (vLLM's reasoning parser), or a bare answer (no reasoning block: the format checks will say so)."""
    if "</think>" in text or text.lstrip().startswith("<think>"):  # an opened block may end unclosed
        return split_reasoning(text, started_in_think=False)
    if reasoning is not None:
        return ParsedOutput(reasoning.strip(), text.strip(), True)
    return ParsedOutput("", text.strip(), False)


def predictions_outputs(path: str | Path,
                        items: list[EvalItem] | None) -> tuple[list[EvalItem], list[list[Output]], list[dict]]:
    """(items, draws per item, raw records) from a predictions JSONL, aligned with `items` by id (or order)."""
    rows = read_predictions(path)
    for number, row in enumerate(rows, 1):
        if "prediction" not in row:
            raise R1TuneError(f"{path}:{number}: field 'prediction': missing")
        if items is None and "reference" not in row:
            raise R1TuneError(f"{path}:{number}: field 'reference': missing (or give --data with the references)")
    if items is None:
        items = [EvalItem(id=str(r.get("id", n)), messages=None, prompt=str(r.get("prompt", "")),
                          reference=str(r["reference"]), label=str(r["label"]) if r.get("label") is not None else None,
                          meta={k: v for k, v in r.items() if k not in ("prediction", "reasoning")})
                 for n, r in enumerate(rows)]
    elif all("id" in r for r in rows) and {str(r["id"]) for r in rows} >= {i.id for i in items}:
        by_id = {str(r["id"]): r for r in rows}
        rows = [by_id[i.id] for i in items]
    elif len(rows) != len(items):
        raise R1TuneError(f"{path}: {len(rows)} predictions for {len(items)} test samples, and their ids do not "
                          "cover the test set: give an `id` per prediction, or one prediction per sample in order")
    outputs = []
    for row in rows:
        texts = row["prediction"] if isinstance(row["prediction"], list) else [row["prediction"]]
        outputs.append([Output(str(t), parse_prediction(str(t), row.get("reasoning")),
                               row.get("new_tokens") or row.get("completion_tokens")) for t in texts])
    draws = {len(o) for o in outputs}
    if len(draws) != 1:
        raise R1TuneError(f"{path}: every sample needs the same number of predictions (found {sorted(draws)})")
    return items, outputs, rows
