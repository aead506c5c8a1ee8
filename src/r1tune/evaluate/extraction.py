"""Entity- and relation-level precision / recall / F1 for extraction answers.

    parse_structure("主诉：头痛；伴随症状：恶心、失眠")
        → entities {("主诉", "头痛"), ("伴随症状", "恶心"), ("伴随症状", "失眠")}, relations set()
    parse_structure('{"entities": [{"type": "drug", "text": "阿司匹林"}],
                      "relations": [{"head": "阿司匹林", "relation": "treats", "tail": "头痛"}]}')

An answer may be JSON — `{"entities": […], "relations": […]}`, a list of entities, or an object mapping an
entity type to its value(s) — or record text of `key：value；key：value` fields (values separated by 、 or a
comma count as separate entities), as the medical-records example writes it. An entity is (type, text), a
relation (head, relation, tail), compared after normalisation (case, width, spaces, end punctuation).
Scores are micro-averaged: true/false positives and misses are summed over the test set, then P/R/F1.
"""

from __future__ import annotations

import re
from collections import Counter

from r1tune.evaluate.structured import extract_json, normalise_text

TYPE_KEYS = ("type", "label", "category", "entity_type")
TEXT_KEYS = ("text", "name", "span", "value", "mention", "entity")
HEAD_KEYS = ("head", "subject", "source", "h", "from")
RELATION_KEYS = ("relation", "predicate", "type", "label", "r", "rel")
TAIL_KEYS = ("tail", "object", "target", "t", "to")
FIELD_SEPARATOR = re.compile(r"[；;\n]")
KEY_VALUE = re.compile(r"^\s*([^:：]{1,40}?)\s*[:：]\s*(.*)$", re.S)
VALUE_SEPARATOR = re.compile(r"[、，,]|\s/\s")

Entity = tuple[str, str]
Relation = tuple[str, str, str]


def _first(item: dict, keys: tuple[str, ...]) -> str:
    for key in keys:
        if key in item and item[key] is not None:
            return str(item[key])
    return ""


def _entity(item) -> Entity | None:
    if isinstance(item, dict):
        text = _first(item, TEXT_KEYS)
        return (normalise_text(_first(item, TYPE_KEYS)), normalise_text(text)) if text else None
    if isinstance(item, (list, tuple)) and len(item) == 2:
        return normalise_text(str(item[0])), normalise_text(str(item[1]))
    if isinstance(item, (str, int, float)) and str(item).strip():
        return "", normalise_text(str(item))
    return None


def _relation(item) -> Relation | None:
    if isinstance(item, dict):
        parts = (_first(item, HEAD_KEYS), _first(item, RELATION_KEYS), _first(item, TAIL_KEYS))
    elif isinstance(item, (list, tuple)) and len(item) == 3:
        parts = tuple(str(p) for p in item)
    else:
        return None
    return tuple(normalise_text(p) for p in parts) if all(parts) else None  # type: ignore[return-value]


def _values(value) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value if str(v).strip()]
    if isinstance(value, dict):
        return []
    return [str(value)] if value is not None and str(value).strip() else []


def parse_structure(text: str) -> tuple[set[Entity], set[Relation]]:
    """(entities, relations) an answer states; empty sets when it states none."""
    data = extract_json(text) if text.lstrip()[:1] in "{[`" else None
    entities: set[Entity] = set()
    relations: set[Relation] = set()
    if isinstance(data, dict) and ("entities" in data or "relations" in data):
        entities = {e for e in map(_entity, data.get("entities") or []) if e}
        relations = {r for r in map(_relation, data.get("relations") or []) if r}
    elif isinstance(data, dict):
        entities = {(normalise_text(k), normalise_text(v)) for k, value in data.items() for v in _values(value)}
    elif isinstance(data, list):
        entities = {e for e in map(_entity, data) if e}
    else:
        for part in FIELD_SEPARATOR.split(text):
            match = KEY_VALUE.match(part)
            if not match:
                continue
            key = normalise_text(match.group(1))
            entities |= {(key, normalise_text(v)) for v in VALUE_SEPARATOR.split(match.group(2)) if normalise_text(v)}
    return entities, relations


def match_counts(predicted: set, gold: set) -> tuple[int, int, int]:
    """(true positives, false positives, misses)."""
    tp = len(predicted & gold)
    return tp, len(predicted) - tp, len(gold) - tp


def prf(tp: float, fp: float, fn: float) -> dict:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def extraction_report(predictions: list[str], references: list[str]) -> dict:
    """Micro P/R/F1 for entities and relations, a per-type breakdown, and per-sample counts.

    `entity_counts` / `relation_counts`: one (tp, fp, fn) row per sample, for the bootstrap.
    """
    entity_counts, relation_counts = [], []
    by_type: dict[str, Counter] = {}
    for prediction, reference in zip(predictions, references):
        pred_e, pred_r = parse_structure(prediction)
        gold_e, gold_r = parse_structure(reference)
        entity_counts.append(match_counts(pred_e, gold_e))
        relation_counts.append(match_counts(pred_r, gold_r))
        for kind in {t for t, _ in pred_e | gold_e}:
            tp, fp, fn = match_counts({e for e in pred_e if e[0] == kind}, {e for e in gold_e if e[0] == kind})
            by_type.setdefault(kind, Counter()).update(tp=tp, fp=fp, fn=fn)
    e_tot = [sum(c[i] for c in entity_counts) for i in range(3)]
    r_tot = [sum(c[i] for c in relation_counts) for i in range(3)]
    per_type = {kind or "(untyped)": {**prf(c["tp"], c["fp"], c["fn"]), "support": c["tp"] + c["fn"]}
                for kind, c in sorted(by_type.items())}
    return {"entity": prf(*e_tot), "relation": prf(*r_tot), "per_type": per_type,
            "has_relations": any(c[0] + c[2] for c in relation_counts),
            "entity_counts": entity_counts, "relation_counts": relation_counts}
