"""What `json.loads` accepts and JSON cannot hold: NaN / Infinity, floats out of range, lone surrogates, nesting
deeper than MAX_DEPTH. `strict_json` parses a line refusing them; the probes name the field that holds one
(`data/io.py` turns each into a `file:line: field: problem`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable

MAX_DEPTH = 100  # levels of arrays / objects a record may nest, the record itself counted
SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # the JSON escape of a surrogate: the only way text gets one


class UnwritableJSON(ValueError):
    """Parsed JSON holding what cannot be written back as JSON: NaN, ±Infinity, a lone surrogate. `end` is
    where the value ends in the text (from `strict_json(text, start)`)."""

    def __init__(self, field: str | None, problem: str, end: int | None = None):
        self.field, self.problem, self.end = field, problem, end
        super().__init__(f"{field}: {problem}" if field else problem)


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str):
    raise _NonFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if value - value:  # inf - inf is nan, which is true; any finite value gives 0.0
        raise _NonFinite(text)
    return value


class _Marked:
    """Stands in for NaN / ±Infinity in a second parse that finds where the first one met it."""

    def __init__(self, text: str):
        self.text = text


def _marked_float(text: str):
    value = float(text)
    return _Marked(text) if math.isinf(value) else value


# On the json-module path only: parse_float is a Python call per float (what refuses 1e400), on lines that
# orjson could not take (a long integer, or a problem).
_STRICT = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_MARKING = json.JSONDecoder(parse_constant=_Marked, parse_float=_marked_float)


def strict_json(text: str, start: int | None = None):
    """json.loads(text) (with `start`: json's raw_decode from there, giving (value, end)), refusing NaN,
    ±Infinity, numbers that overflow a float and lone surrogates with an `UnwritableJSON` naming the field.
    The caller keeps the nesting within MAX_DEPTH (see nesting_depth)."""
    try:
        result = _STRICT.decode(text) if start is None else _STRICT.raw_decode(text, start)
    except _NonFinite:
        marked, end = (_MARKING.decode(text), len(text)) if start is None else _MARKING.raw_decode(text, start)
        path, found = first_hit(marked, lambda v: v.text if isinstance(v, _Marked) else None)
        kind = "a number too large for JSON (it reads as infinity)" if found[-1].isdigit() else "not valid JSON"
        raise UnwritableJSON(field_name(path), f"{found} is {kind}: write null or a number", end) from None
    value, end = (result, len(text)) if start is None else result
    if _SURROGATE_ESCAPE.search(text, start or 0, end):
        hit = first_hit(value, _lone_surrogate)
        if hit is not None:
            raise UnwritableJSON(field_name(hit[0]), lone_surrogate_problem(hit[1]), end)
    return result


def _lone_surrogate(value) -> str | None:
    found = SURROGATE.search(value) if isinstance(value, str) else None
    return found.group() if found else None


def lone_surrogate_problem(char: str) -> str:
    return (f"lone surrogate \\u{ord(char):04x} (half of a UTF-16 pair, from a broken escape): the text cannot "
            "be written as UTF-8 nor tokenized")


def number_problem(error: ValueError) -> str:
    if "integer string conversion" in str(error):
        return f"a number longer than {4300:,} digits"
    return str(error)


def first_hit(value, probe: Callable[[object], object], path: tuple = ()) -> tuple[tuple, object] | None:
    """(path, hit) of the first value or key (keys and indexes from the top) for which `probe` gives a hit
    other than None; None if there is none."""
    if isinstance(value, dict):
        for key, item in value.items():
            hit = probe(key)
            if hit is not None:
                return (*path, key), hit
            inner = first_hit(item, probe, (*path, key))
            if inner is not None:
                return inner
    elif isinstance(value, list):
        for i, item in enumerate(value):
            inner = first_hit(item, probe, (*path, i))
            if inner is not None:
                return inner
    else:
        hit = probe(value)
        if hit is not None:
            return path, hit
    return None


def field_name(path: tuple) -> str | None:
    """("messages", 1, "content") → "messages[1].content"; () → None (the record itself)."""
    out = ""
    for part in path:
        if isinstance(part, str) and SURROGATE.search(part):  # a key that is itself the problem, printable
            part = part.encode("utf-8", "backslashreplace").decode("utf-8")
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def nesting_depth(raw: bytes | str) -> int:
    """The deepest nesting of arrays / objects in JSON text, strings skipped, without parsing it (which is
    what recurses)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    depth = deepest = 0
    for byte in _NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", raw)):
        if byte == 0x5B or byte == 0x7B:
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def value_end(text: str, start: int) -> int:
    """Where the array / object starting at `start` ends (strings skipped; len(text) if it does not)."""
    depth = 0
    for token in _JSON_TOKEN.finditer(text, start):
        kind = token.group()[0]
        if kind in "[{":
            depth += 1
        elif kind in "]}":
            depth -= 1
            if depth == 0:
                return token.end()
    return len(text)
