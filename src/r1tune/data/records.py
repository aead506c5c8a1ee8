"""Where the text lives in a record, and where a record came from.

Every prepare step works on the same record shapes the trainer reads (alpaca, ShareGPT, OpenAI
`messages`) plus plain records such as `{"text": ..., "label": ...}`. These helpers name the text slots
of a record as paths (`"output"`, `("messages", 2, "content")`), tell the prompt side from the answer side,
and carry provenance from the raw file through every step:

    for path, text in text_slots(record):
        ...
    record["provenance"] = {"file": "raw.csv", "line": 12, "rule": "revenue_qa"}

Fields r1tune adds (`provenance`, `window`, `lang`, `augmented`) are metadata: they are never cleaned,
hashed for duplicates or counted in the dataset's schema.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

from r1tune.data.io import Location

# Fields the prepare steps add; not part of the user's data.
META_KEYS = frozenset({"provenance", "window", "lang", "augmented"})
# Fields that are identifiers or classes, not prose: not cleaned by default.
NON_TEXT_KEYS = frozenset({"id", "label", "labels", "uid", "idx"})

PROMPT_KEYS = ("instruction", "input", "question", "query", "prompt", "text", "content", "document")
OUTPUT_KEYS = ("output", "answer", "response", "target", "completion", "summary")
LABEL_KEYS = ("label", "labels", "category", "class")
USER_ROLES = ("user", "human")
ASSISTANT_ROLES = ("assistant", "gpt", "model", "bot")

Path_ = tuple  # ("output",) or ("messages", 2, "content")


def path_str(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def get_path(record: dict, path: Path_):
    node = record
    for part in path:
        node = node[part]
    return node


def set_path(record: dict, path: Path_, value) -> None:
    node = record
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def turns_key(record: dict) -> str | None:
    for key in ("messages", "conversations"):
        if isinstance(record.get(key), list):
            return key
    return None


def _turn_text_key(turn: dict) -> str | None:
    for key in ("content", "value"):
        if isinstance(turn.get(key), str):
            return key
    return None


def _turn_role(turn: dict) -> str:
    return str(turn.get("role", turn.get("from", "")))


def text_slots(record: dict, fields: list[str] | None = None,
               skip: frozenset[str] = NON_TEXT_KEYS) -> Iterator[tuple[Path_, str]]:
    """Yield (path, text) for every prose string in the record (or only the named top-level fields)."""
    for key, value in record.items():
        if key in META_KEYS or (fields is not None and key not in fields) or (fields is None and key in skip):
            continue
        if isinstance(value, str):
            yield (key,), value
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    text_key = _turn_text_key(item)
                    if text_key:
                        yield (key, i, text_key), item[text_key]
                elif isinstance(item, list):  # alpaca history: [[question, answer], ...]
                    for j, cell in enumerate(item):
                        if isinstance(cell, str):
                            yield (key, i, j), cell


_NOT_TEXT = NON_TEXT_KEYS | META_KEYS


def flat_text_slots(record: dict, excluded: frozenset[str] = _NOT_TEXT) -> list[tuple[Path_, str]] | None:
    """`list(text_slots(record, None, skip))` for a record with no list value (no turns, no history), read in
    one loop over its top-level fields: the common case, on the clean and check hot paths. `excluded` is
    `skip | META_KEYS` (one set lookup per field). None for a record with a list, which `text_slots` walks."""
    slots = []
    for key, value in record.items():
        if isinstance(value, str):
            if key not in excluded:
                slots.append(((key,), value))
        elif isinstance(value, list):
            return None
    return slots


def prompt_slots(record: dict) -> list[Path_]:
    """Paths of the text the model reads (user side), in reading order."""
    turns = turns_key(record)
    if turns:
        slots = []
        for i, turn in enumerate(record[turns]):
            if isinstance(turn, dict) and _turn_role(turn) in USER_ROLES and _turn_text_key(turn):
                slots.append((turns, i, _turn_text_key(turn)))
        return slots
    return [(k,) for k in PROMPT_KEYS if isinstance(record.get(k), str)]


def output_slot(record: dict) -> Path_ | None:
    """Path of the answer the model is trained to write, or None (e.g. a classification record)."""
    turns = turns_key(record)
    if turns:
        for i in range(len(record[turns]) - 1, -1, -1):
            turn = record[turns][i]
            if isinstance(turn, dict) and _turn_role(turn) in ASSISTANT_ROLES and _turn_text_key(turn):
                return (turns, i, _turn_text_key(turn))
        return None
    for k in OUTPUT_KEYS:
        if k in record and not isinstance(record[k], (dict, list)):
            return (k,)
    return None


def label_key(record: dict, configured: str | None = None) -> str | None:
    if configured:
        return configured
    return next((k for k in LABEL_KEYS if k in record), None)


def prompt_text(record: dict) -> str:
    return "\n".join(str(get_path(record, p)) for p in prompt_slots(record))


def content_of(record: dict) -> dict:
    """The record without r1tune's metadata: what duplicates and schemas are judged on."""
    return {k: v for k, v in record.items() if k not in META_KEYS}


def content_hash(value) -> int:
    """A stable 64-bit hash of a JSON-able value (the same on every machine and run)."""
    data = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return int.from_bytes(hashlib.blake2b(data.encode("utf-8"), digest_size=8).digest(), "big")


def origin(loc: Location, record: dict) -> str:
    """Where a record came from: its provenance (raw file and line) when it has one, else its location."""
    prov = record.get("provenance")
    if isinstance(prov, dict) and "file" in prov:
        return f"{prov['file']}:{prov.get('line', '?')}"
    return str(loc)


def with_provenance(record: dict, loc: Location, rule: str | None = None) -> dict:
    """Give the record provenance (file, line[, rule]) unless an earlier step already did."""
    if not isinstance(record.get("provenance"), dict):
        prov = {"file": loc.file, "line": loc.line}
        if rule:
            prov["rule"] = rule
        record["provenance"] = prov
    return record
