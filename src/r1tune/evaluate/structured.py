"""Structured output: exact match, JSON validity and JSON-schema validity of answers.

    exact_match("  Positive。", "positive")             # True: whitespace, case, width and end punctuation aside
    extract_json('Here it is:\n```json\n{"a": 1}\n```')  # {"a": 1}
    schema_valid('{"a": 1}', {"type": "object", "required": ["a"]})   # True

Two JSON answers match exactly when they parse to equal values (key order and spacing do not matter).
"""

from __future__ import annotations

import json
import re
import unicodedata

FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)
END_PUNCTUATION = "。．.!！?？;；,，、 \n\t"


def normalise_text(text: str) -> str:
    """NFKC (full-width → half-width), lowercase, single spaces, no trailing punctuation."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"\s+", " ", text).strip()
    return text.strip(END_PUNCTUATION)


def extract_json(text: str):
    """The JSON value an answer holds: the whole text, a ```json fence, or the first {…}/[…] that parses.

    Returns None when there is none (a JSON `null` answer is also None: it carries no structure)."""
    candidates = [m.group(1) for m in FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        candidate = candidate.strip()
        try:
            return json.loads(candidate)
        except ValueError:
            pass
        for start, ch in enumerate(candidate):
            if ch in "{[":
                try:
                    return decoder.raw_decode(candidate[start:])[0]
                except ValueError:
                    continue
    return None


def json_valid(text: str) -> bool:
    """The answer is JSON (an object or array, possibly in a code fence), nothing else around it but prose."""
    return isinstance(extract_json(text), (dict, list))


def exact_match(prediction: str, reference: str) -> bool:
    ref_json = extract_json(reference) if reference.lstrip()[:1] in "{[`" else None
    if isinstance(ref_json, (dict, list)):
        return extract_json(prediction) == ref_json
    return normalise_text(prediction) == normalise_text(reference)


def schema_valid(text: str, schema: dict) -> bool:
    import jsonschema

    value = extract_json(text)
    if value is None:
        return False
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError:
        return False
    return True
