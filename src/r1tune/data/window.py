"""Sliding windows over long inputs, by the model's own tokens (default 512 tokens, stride 256).

    r1tune prepare window IN OUT --model deepseek-ai/DeepSeek-R1-Distill-Qwen-7B [--window 512] [--stride 256]
    sliding_windows(1000, 512, 256)   # [(0, 512), (256, 768), (512, 1000)]

A record whose input is longer than `window` tokens becomes one record per window. The window's text is
the exact character span of its tokens in the original (the tokenizer's offsets), so no character is
ever split or re-encoded; consecutive windows start exactly `stride` tokens apart, so every token is in
at least one window. The target (answer, label) is copied intact to every window, and each window
records `window: {index, count, tokens, chars, field, source}`; `aggregate_windows` folds per-window
evaluation results back into one result per source record.
"""

from __future__ import annotations

import copy
from collections import Counter, defaultdict
from pathlib import Path

from r1tune.config import ModelConfig
from r1tune.data.io import write_jsonl
from r1tune.data.records import get_path, origin, path_str, prompt_slots, set_path, turns_key, with_provenance
from r1tune.data.steplog import StepLog, read_input
from r1tune.errors import R1TuneError


def sliding_windows(n_tokens: int, window: int = 512, stride: int = 256) -> list[tuple[int, int]]:
    """Token spans [start, end) covering 0..n_tokens; starts are 0, stride, 2·stride, …"""
    if window <= 0 or stride <= 0:
        raise R1TuneError(f"window ({window}) and stride ({stride}) must be positive")
    if stride > window:
        raise R1TuneError(f"stride {stride} is larger than the window {window}: tokens between windows would be lost")
    if n_tokens <= window:
        return [(0, n_tokens)]
    spans, start = [], 0
    while True:
        end = min(start + window, n_tokens)
        spans.append((start, end))
        if end == n_tokens:
            return spans
        start += stride


def window_slot(record: dict, field: str | None = None):
    """The path of the long text to window: the named field, alpaca `input`, else the last user turn."""
    if field:
        return (field,) if isinstance(record.get(field), str) else None
    if isinstance(record.get("input"), str) and record["input"].strip():
        return ("input",)
    slots = prompt_slots(record)
    if not slots:
        return None
    return slots[-1] if turns_key(record) else slots[0]


def window_record(record: dict, tokenizer, window: int = 512, stride: int = 256, field: str | None = None,
                  source: str = "") -> list[dict]:
    """The record itself when it fits, else one copy per window with `window` metadata."""
    path = window_slot(record, field)
    if path is None:
        return [record]
    text = get_path(record, path)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    spans = sliding_windows(len(offsets), window, stride)
    if len(spans) == 1:
        return [record]
    out = []
    for i, (start, end) in enumerate(spans):
        chars = (0 if i == 0 else offsets[start][0], len(text) if end == len(offsets) else offsets[end - 1][1])
        piece = copy.deepcopy(record)
        set_path(piece, path, text[chars[0]:chars[1]])
        piece["window"] = {"index": i, "count": len(spans), "tokens": [start, end], "chars": list(chars),
                           "field": path_str(path), "source": source}
        out.append(piece)
    return out


def load_tokenizer_for(model: str):
    from r1tune.model.load import load_tokenizer

    tokenizer = load_tokenizer(ModelConfig(name_or_path=model))
    if not getattr(tokenizer, "is_fast", False):
        raise R1TuneError(f"'{model}': windowing needs a fast tokenizer (tokenizer.json) for character offsets")
    return tokenizer


def window_file(in_path: str | Path, out_path: str | Path, model: str | None = None, window: int = 512,
                stride: int = 256, field: str | None = None, tokenizer=None, on_error: str = "skip") -> dict:
    """Stream IN → OUT, splitting long inputs into windows; each split is logged as a change."""
    sliding_windows(0, window, stride)  # validate the sizes before reading anything
    if tokenizer is None and not model:
        raise R1TuneError("window: give --model (the tokenizer decides what a token is)")
    windows_made = 0
    with StepLog("window", out_path, inputs=[in_path]) as log:  # the files are checked before the slow load
        if tokenizer is None:
            tokenizer = load_tokenizer_for(model)

        def records():
            nonlocal windows_made
            for loc, record in read_input(in_path, log, on_error):
                source = origin(loc, record)
                with_provenance(record, loc)
                pieces = window_record(record, tokenizer, window, stride, field, source)
                if len(pieces) > 1:
                    windows_made += len(pieces)
                    w = pieces[0]["window"]
                    log.changed(source, {w["field"]: ["window"]}, windows=len(pieces),
                                tokens=pieces[-1]["window"]["tokens"][1])
                yield from pieces
        log.written = write_jsonl(out_path, records(), log.outputs)
        log.extra.update(windows=windows_made, window=window, stride=stride)
        return log.summary()


def aggregate_windows(rows: list[dict], value: str = "prediction", how: str = "vote") -> dict[str, object]:
    """Per-window results → one per source record. how: vote (most common), mean, max, min, first."""
    groups: dict[str, list] = defaultdict(list)
    for row in rows:
        w = row.get("window")
        key = w["source"] if w else origin_of_row(row)
        index = w["index"] if w else 0
        groups[key].append((index, row[value]))
    out = {}
    for key, items in groups.items():
        values = [v for _, v in sorted(items, key=lambda iv: iv[0])]
        if how == "vote":
            counts = Counter(values)
            top = max(counts.values())
            out[key] = next(v for v in values if counts[v] == top)  # ties: the earliest window wins
        elif how == "mean":
            out[key] = sum(values) / len(values)
        elif how == "max":
            out[key] = max(values)
        elif how == "min":
            out[key] = min(values)
        elif how == "first":
            out[key] = values[0]
        else:
            raise R1TuneError(f"unknown aggregation '{how}' (vote, mean, max, min, first)")
    return out


def origin_of_row(row: dict) -> str:
    prov = row.get("provenance")
    return f"{prov['file']}:{prov.get('line', '?')}" if isinstance(prov, dict) and "file" in prov else str(id(row))
