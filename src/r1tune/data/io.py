"""Read records from JSONL / JSON / CSV / Parquet, each located by file and line (or row).

    for loc, record in read_records("train.jsonl"):
        ...
    read_records("raw.csv", encoding="gb18030", columns={"instruction": "指令", "output": "输出"})
    with reading_as("raw.csv", encoding="gb18030"):   # how every read of raw.csv in the block decodes it
        clean_file("raw.csv", "clean.jsonl")          # (prepare steps, their parallel workers)

JSONL is streamed line by line (a 2 GB file is never loaded whole). Every problem becomes a `DataError`
naming file, line and field; with `on_error="skip"` the bad record is appended to `skipped` and reading
goes on, so nothing is dropped silently. Besides invalid JSON, a record is bad when it holds what no
later step could handle or write back as JSON:

  - arrays / objects nested deeper than MAX_DEPTH = 100 levels (the record itself is level 1): the depth
    is measured on the text before a parser sees it, so no step ever meets a RecursionError;
  - NaN, Infinity, -Infinity, or a number too large for a float (1e400), which json.loads accepts;
  - a lone surrogate (the escape "\\ud800" without its pair): not writable as UTF-8, not tokenizable;
  - (Parquet) a float that is NaN or infinite; dates, times and decimals are turned into JSON values.

Encodings. `encoding="auto"` (the default) reads UTF-8 (a UTF-8 byte-order mark is accepted) and UTF-16 /
UTF-32 with a byte-order mark. A file that looks like GB18030/GBK, or UTF-16 without a byte-order mark,
stops the read with a file-level error naming the first line that is not UTF-8 and the `--encoding` to
pass, whatever `on_error` says: skipping every Chinese line would train on the ASCII ones alone. Any
Python codec name (gb18030, gbk, big5, utf-16-le, …) reads the file in that encoding; given one for a file
that is valid UTF-8 (which it would garble), the read stops. Parquet text is UTF-8 by definition.

Columns. `columns={"instruction": "指令", "output": "输出"}` ({name the formats know: the file's
column}) renames the file's columns or keys before anything else looks at a record.
"""

from __future__ import annotations

import codecs
import csv
import datetime
import decimal
import io
import itertools
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from json.encoder import c_make_encoder, encode_basestring
from pathlib import Path

from r1tune.errors import DataError
from r1tune.files import OutputSet

try:  # a faster parser for the common line; the json module stays the reference (see _jsonl_items)
    import orjson
except ImportError:  # pragma: no cover - orjson is a core dependency
    orjson = None

BOM = b"\xef\xbb\xbf"
MAX_DEPTH = 100  # levels of arrays / objects a record may nest, the record itself counted
TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels of arrays / objects"
# orjson.loads parses integers outside [-2**63, 2**64) as floats where json.loads keeps them exact: lines with
# a run of 19+ digits are parsed by the json module alone. One translate marks those runs and the brackets
# (digits → "0", "[" and "{" → "["): a line with more brackets than MAX_DEPTH has its depth measured before
# either parser sees it, so neither meets a record deeper than MAX_DEPTH (where their limits differ).
_SCREEN = bytes(0x30 if 0x30 <= i <= 0x39 else 0x5B if i in (0x5B, 0x7B) else 0x20 for i in range(256))
_LONG_NUMBER = b"0" * 19
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # the JSON escape of a surrogate: the only way text gets one
_SURROGATE = re.compile("[\ud800-\udfff]")
_HEAD = 1 << 16  # bytes read to tell a file's encoding


@dataclass(frozen=True)
class Location:
    file: str
    line: int
    unit: str = "line"  # "line" for text formats, "row" for Parquet

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.unit == "line" else f"{self.file}#row{self.line}"

    def error(self, field: str | None, problem: str) -> DataError:
        return DataError(self.file, self.line, field, problem, unit=self.unit)


# ------------------------------------------------------------------ how a file is read: encoding, columns

# File (absolute path) → (encoding, columns) declared by `reading_as`; seen by parallel workers (see parallel.py).
_declared: ContextVar[dict | None] = ContextVar("r1tune_declared_inputs", default=None)


@contextmanager
def reading_as(path: str | Path, encoding: str = "auto", columns: dict[str, str] | None = None):
    """Within the block, every read of `path` that does not say otherwise decodes it with `encoding` and
    renames `columns`, whoever reads it: a recipe declares how to read the user's file once, the steps
    (and their workers) read it as declared, and the files the steps write stay plain UTF-8 JSONL."""
    token = _declared.set({**(_declared.get() or {}), _file_key(path): (encoding, dict(columns or {}))})
    try:
        yield
    finally:
        _declared.reset(token)


def declared_inputs() -> dict | None:
    """What `reading_as` declared here, for a worker process to `adopt_declared_inputs`."""
    return _declared.get()


def adopt_declared_inputs(declared: dict | None) -> None:
    """In a worker process: read files as its parent declared (a spawned worker does not inherit it)."""
    _declared.set(declared)


def _file_key(path: str | Path) -> str:
    return os.path.abspath(os.fspath(path))


def _declared_for(path: str | Path, encoding: str | None, columns: dict[str, str] | None) -> tuple[str, dict]:
    declared = _declared.get()
    default_encoding, default_columns = declared.get(_file_key(path), ("auto", {})) if declared else ("auto", {})
    return encoding or default_encoding, default_columns if columns is None else columns


def _is_utf8(codec: str) -> bool:
    return codecs.lookup(codec).name in ("utf-8", "utf-8-sig")


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (BOM, "utf-8"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def file_codec(path: str | Path, head: bytes, encoding: str = "auto") -> str:
    """The codec a text file is read with, from its first bytes: "utf-8" (read as bytes, the fast path), or
    a codec its lines are decoded with. Raises the file-level DataError of a file that looks like UTF-16
    without a byte-order mark (auto), or of a legacy encoding given for a file that is valid UTF-8."""
    if encoding == "auto":
        for mark, codec in _BOMS:  # UTF-32-LE's mark begins with UTF-16-LE's: it is tried first
            if head.startswith(mark):
                return codec
        utf16 = _utf16_without_bom(head)
        if utf16:
            raise not_utf8_error(path, 1, utf16)
        return "utf-8"
    if _is_utf8(encoding):
        return "utf-8"
    if not head.isascii() and _valid_utf8_start(head):
        raise DataError(str(path), None, None, f"--encoding {encoding} given, but the file is UTF-8: read as "
                                               f"{encoding} its text would be garbled; leave --encoding out")
    return encoding


def _valid_utf8_start(head: bytes) -> bool:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # a character cut at the end is fine
    except UnicodeDecodeError:
        return False
    return True


def _utf16_without_bom(head: bytes) -> str | None:
    """"utf-16-le" / "utf-16-be" when the first bytes read like UTF-16 without a byte-order mark: a NUL in
    many odd (little-endian) or even (big-endian) positions, as each ASCII character has, and (almost) none
    in the others."""
    sample = head[:4096]
    if b"\x00" not in sample or len(sample) < 8:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) >= len(odd) // 4 and even.count(0) <= len(even) // 100:
        return "utf-16-le"
    if even.count(0) >= len(even) // 4 and odd.count(0) <= len(odd) // 100:
        return "utf-16-be"
    return None


_CJK_CLASS = "[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]"  # ideographs, CJK punctuation
_CJK, _CJK_PAIR = re.compile(_CJK_CLASS), re.compile(_CJK_CLASS + "{2}")
_ESCAPED = re.compile("[\udc80-\udcff]")
_ASCII = bytes(range(0x80))


def legacy_chinese(raw: bytes) -> str | None:
    """"gb18030" (GBK's superset) or "big5" when bytes that are not UTF-8 read as Chinese in that encoding,
    else None. A UTF-8 line with a few damaged bytes is not taken for one: most of its non-ASCII bytes still
    form UTF-8 characters, where GBK or Big5 text forms them only by chance. Big5 bytes mostly decode as
    GB18030 too, but into rare characters: Simplified Chinese in GBK keeps to GB2312's 7,445 characters."""
    escaped = len(_ESCAPED.findall(raw.decode("utf-8", "surrogateescape")))
    non_ascii = len(raw.translate(None, _ASCII))  # the bytes left once the ASCII ones are deleted
    if escaped * 2 < non_ascii:
        return None
    gb = _chinese_text(raw, "gb18030")
    if gb is not None and 10 * sum(map(_in_gb2312, gb)) >= 9 * len(gb):
        return "gb18030"
    if _chinese_text(raw, "big5") is not None:
        return "big5"
    return "gb18030" if gb is not None else None


def _chinese_text(raw: bytes, codec: str) -> str | None:
    """The non-ASCII characters of `raw` decoded with `codec`, when it decodes, they are mostly Chinese and two
    of them stand together (an accented letter of Latin-1 text and the letter after it can pass for one
    Chinese character, but it stands between ASCII letters)."""
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError:
        return None
    wide = "".join(c for c in text if c > "\x7f")
    if not _CJK_PAIR.search(text) or 2 * len(_CJK.findall(wide)) < len(wide):
        return None
    return wide


def _in_gb2312(char: str) -> bool:
    code = char.encode("gb18030")
    return len(code) == 2 and 0xA1 <= code[0] <= 0xF7 and 0xA1 <= code[1] <= 0xFE


def not_utf8_error(path: str | Path, line: int, codec: str) -> DataError:
    """The file-level error of a file in another encoding than UTF-8, read as "auto"."""
    name = {"gb18030": "GBK/GB18030", "big5": "Big5", "utf-16-le": "UTF-16 (little-endian, without a byte-order "
            "mark)", "utf-16-be": "UTF-16 (big-endian, without a byte-order mark)"}.get(codec, codec)
    return DataError(str(path), None, None, f"file looks like {name} (line {line} is not UTF-8); convert it to "
                                            f"UTF-8 or pass --encoding {codec}")


def _mark_undecodable(error: UnicodeDecodeError) -> tuple[str, int]:
    # each byte the codec cannot decode becomes U+DC00 + byte: a lone surrogate, which no decoded text
    # otherwise holds, found again (and reported with its line) where the line is re-encoded
    return "".join(chr(0xDC00 + b) for b in error.object[error.start:error.end]), error.end


_UNDECODABLE = "r1tune.undecodable"
codecs.register_error(_UNDECODABLE, _mark_undecodable)


def _undecodable_problem(text: str, codec: str) -> str:
    """The problem of a line decoded with _UNDECODABLE marks in it."""
    at = _SURROGATE.search(text).start()
    bad = re.match("[\udc00-\udcff]+", text[at:]).group()
    return f"not valid {codec} at column {at + 1} (bytes {bytes(ord(c) - 0xDC00 for c in bad[:4])!r})"


# ------------------------------------------------------------------ reading

def read_records(
    path: str | Path, on_error: str = "stop", skipped: list[DataError] | None = None,
    encoding: str | None = None, columns: dict[str, str] | None = None,
) -> Iterator[tuple[Location, dict]]:
    """Yield (location, record) for every record in a data file; the format comes from the suffix.

    `encoding` ("auto" or a codec name) and `columns` ({known name: the file's column}) default to what
    `reading_as` declared for this file, else "auto" and no renaming."""
    path = Path(path)
    if not path.exists():
        raise file_not_found_error(path)
    suffix = path.suffix.lower()
    readers = {".jsonl": _read_jsonl, ".ndjson": _read_jsonl, ".json": _read_json, ".csv": _read_csv,
               ".tsv": _read_csv, ".parquet": _read_parquet}
    if suffix not in readers:
        raise DataError(str(path), None, None, f"unknown file type '{suffix}' (use .jsonl, .json, .csv or .parquet)")
    encoding, columns = _declared_for(path, encoding, columns)
    items = readers[suffix](path, encoding)
    if columns:
        items = renamed_columns(items, columns, str(path), tabular=suffix not in (".jsonl", ".ndjson", ".json"))
    count = yield from located_records(items, on_error, skipped)
    if count == 0 and not (skipped and any(e.file == str(path) for e in skipped)):
        raise empty_file_error(path)


def file_not_found_error(path: str | Path) -> DataError:
    return DataError(str(path), None, None, "file not found")


def empty_file_error(path: str | Path) -> DataError:
    return DataError(str(path), None, None, "file is empty: no records found")


def located_records(items, on_error: str, skipped: list[DataError] | None):
    """The records of a reader's items; a DataError item stops (on_error="stop") or goes to `skipped`.
    Returns (as the generator's value) how many records it yielded."""
    count = 0
    for item in items:
        if isinstance(item, DataError):
            if on_error == "stop":
                raise item
            if skipped is not None:
                skipped.append(item)
            continue
        count += 1
        yield item
    return count


def renamed_columns(items, columns: dict[str, str], name: str, tabular: bool = False):
    """The items with each record's columns renamed ({known name: the file's column}), keys in place. In a
    table (CSV, Parquet: one header) a column the mapping names must exist; a record holding both a column
    and the name it maps to is a bad record (one value would be lost)."""
    to_known = {column: known for known, column in columns.items() if known != column}
    first = tabular
    for item in items:
        if isinstance(item, DataError):
            yield item
            continue
        loc, record = item
        if first:
            first = False
            missing = [column for column in to_known if column not in record]
            if missing:
                raise DataError(name, None, None, f"columns: no column {', '.join(map(repr, missing))} in the "
                                                  f"file (its columns: {', '.join(map(str, record))})")
        present = [column for column in to_known if column in record]
        if present:
            clash = next((c for c in present if to_known[c] in record), None)
            if clash is not None:
                yield loc.error(clash, f"mapped to '{to_known[clash]}' by the columns setting, but the record "
                                       f"has a '{to_known[clash]}' field too")
                continue
            record = {to_known.get(k, k): v for k, v in record.items()}
        yield loc, record


def is_jsonl(path: str | Path) -> bool:
    return Path(path).suffix.lower() in (".jsonl", ".ndjson")


def splits_as_utf8(path: str | Path) -> bool:
    """Whether a JSONL file can be cut into raw UTF-8 lines for parallel workers (`jsonl_chunks`): it is read
    as UTF-8 (or is missing: the workers' caller says so). A file in another encoding, or one whose encoding
    is an error, is read by one process, which reports that error."""
    encoding, _ = _declared_for(path, None, None)
    try:
        with open(path, "rb") as f:
            return file_codec(path, f.read(_HEAD), encoding) == "utf-8"
    except FileNotFoundError:
        return True
    except (OSError, DataError):
        return False


def jsonl_chunks(path: str | Path, lines_per_chunk: int = 2000) -> Iterator[tuple[int, list[bytes]]]:
    """(number of the chunk's first line, its raw lines): a UTF-8 JSONL file (see `splits_as_utf8`) cut for
    parallel workers, which parse each chunk with `read_jsonl_lines` exactly as `read_records` parses the file."""
    encoding, _ = _declared_for(path, None, None)
    with open(path, "rb") as f:
        if file_codec(path, f.read(_HEAD), encoding) != "utf-8":
            raise ValueError(f"{path}: not a UTF-8 file; read it with read_records")
        f.seek(0)
        first, lines = 1, []
        for raw in f:
            if first == 1 and not lines and raw.startswith(BOM):
                raw = raw[len(BOM):]
            lines.append(raw)
            if len(lines) == lines_per_chunk:
                yield first, lines
                first, lines = first + len(lines), []
        if lines:
            yield first, lines


def _object_or_error(value, loc: Location) -> dict | DataError:
    if not isinstance(value, dict):
        return loc.error(None, f"a record must be a JSON object, got {type(value).__name__}")
    return value


def _read_jsonl(path: Path, encoding: str):
    with open(path, "rb") as f:
        codec = file_codec(path, f.read(_HEAD), encoding)
        f.seek(0)
        if codec != "utf-8":
            yield from _jsonl_items(str(path), 1, _utf8_lines(f, codec), codec)
            return
        first = f.readline()
        if first.startswith(BOM):
            first = first[len(BOM):]
        mode = "auto" if encoding == "auto" else "utf-8"
        yield from _jsonl_items(str(path), 1, itertools.chain((first,), f) if first else (), mode)


def _utf8_lines(binary, codec: str) -> Iterator[bytes]:
    """The lines of a file in `codec`, streamed, as UTF-8 bytes; bytes the codec cannot decode stay marked
    (see _mark_undecodable) for `_jsonl_items` to report on their line."""
    for number, line in enumerate(io.TextIOWrapper(binary, encoding=codec, errors=_UNDECODABLE, newline="\n")):
        yield (line[1:] if number == 0 and line.startswith("\ufeff") else line).encode("utf-8", "surrogatepass")


def read_jsonl_lines(name: str, first_line: int, lines, encoding: str | None = None,
                     columns: dict[str, str] | None = None):
    """(location, record) or DataError for each non-blank line of JSONL, raw UTF-8 bytes (a parallel worker's
    chunk: see `jsonl_chunks`); `first_line` numbers the first of `lines`. `encoding` and `columns` as in
    `read_records`."""
    encoding, columns = _declared_for(name, encoding, columns)
    items = _jsonl_items(name, first_line, lines, "auto" if encoding == "auto" else "utf-8")
    return renamed_columns(items, columns, name) if columns else items


def _jsonl_items(name: str, first_line: int, lines, mode: str):
    """`read_jsonl_lines` without columns. `mode` is "auto" (raw lines; one that is not UTF-8 but reads as
    GB18030 stops the file), "utf-8" (raw lines; one that is not UTF-8 is a bad record), or the codec the
    lines were decoded from (see _utf8_lines)."""
    fast = orjson.loads if orjson is not None else None
    fast_error = orjson.JSONDecodeError if orjson is not None else ValueError
    screen, long_number, max_depth = _SCREEN, _LONG_NUMBER, MAX_DEPTH  # locals: this loop runs per line
    for line_no, raw in enumerate(lines, start=first_line):
        screened = raw.translate(screen)
        if screened.count(b"[") > max_depth and nesting_depth(raw) > max_depth:
            yield DataError(name, line_no, None, TOO_DEEP)
            continue
        if fast is not None and long_number not in screened:
            # orjson accepts a subset of what json.loads accepts (strict UTF-8, no NaN/Infinity, no lone
            # surrogates, no number that overflows, no blank line) and gives the same value for it, long
            # numbers aside. Anything it rejects goes the json-module way below, where the json module's
            # message is the one reported and what json alone accepts is refused.
            try:
                value = fast(raw)
            except fast_error:
                pass
            else:
                loc = Location(name, line_no)
                if type(value) is dict:
                    yield loc, value
                else:
                    yield _object_or_error(value, loc)
                continue
        item = _slow_line(raw, name, line_no, mode)
        if item is not None:
            yield item


def _slow_line(raw: bytes, name: str, line_no: int, mode: str):
    """One line the fast path did not take: (location, record), a DataError, or None for a blank line.
    Raises the file-level error of a file that is not UTF-8 (mode "auto")."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if mode == "auto":
            legacy = legacy_chinese(raw)
            if legacy:
                raise not_utf8_error(name, line_no, legacy) from None
        if mode in ("auto", "utf-8"):
            return DataError(name, line_no, None, f"invalid UTF-8 at byte {e.start} of the line "
                                                  f"({raw[e.start:e.start + 4]!r})")
        return DataError(name, line_no, None, _undecodable_problem(raw.decode("utf-8", "surrogatepass"), mode))
    if not text.strip():
        return None
    loc = Location(name, line_no)
    if text.startswith("\ufeff"):  # as json.loads says it (a byte-order mark is only accepted on line 1)
        return loc.error(None, "invalid JSON at column 1: Unexpected UTF-8 BOM (decode using utf-8-sig)")
    try:
        value = strict_json(text)
    except json.JSONDecodeError as e:
        return loc.error(None, f"invalid JSON at column {e.colno}: {e.msg}")
    except UnwritableJSON as e:
        return loc.error(e.field, e.problem)
    except ValueError as e:  # an integer of more than 4,300 digits
        return loc.error(None, f"invalid JSON: {number_problem(e)}")
    record = _object_or_error(value, loc)
    return record if isinstance(record, DataError) else (loc, record)


# ------------------------------------------------------------------ what json.loads accepts and JSON cannot hold

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
    found = _SURROGATE.search(value) if isinstance(value, str) else None
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
        if isinstance(part, str) and _SURROGATE.search(part):  # a key that is itself the problem, printable
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


def _value_end(text: str, start: int) -> int:
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


# ------------------------------------------------------------------ whole-file formats

def _read_whole_text(path: Path, encoding: str) -> str | DataError:
    raw = path.read_bytes()
    codec = file_codec(path, raw[:_HEAD], encoding)
    if codec != "utf-8":
        text = raw.decode(codec, _UNDECODABLE).removeprefix("\ufeff")
        bad = _SURROGATE.search(text)
        if bad is None:
            return text
        start, end = _line_around(text, bad.start(), "\n")
        return DataError(str(path), text.count("\n", 0, start) + 1, None, _undecodable_problem(text[start:end], codec))
    if raw.startswith(BOM):
        raw = raw[len(BOM):]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        if encoding == "auto":
            start, end = _line_around(raw, e.start, b"\n")
            legacy = legacy_chinese(raw[start:end])
            if legacy:
                raise not_utf8_error(path, line, legacy) from None
        return DataError(str(path), line, None, f"invalid UTF-8 ({raw[e.start:e.start + 4]!r})")


def _line_around(text, at: int, newline) -> tuple[int, int]:
    """(start, end) of the line holding position `at`."""
    end = text.find(newline, at)
    return text.rfind(newline, 0, at) + 1, end if end >= 0 else len(text)


def _read_json(path: Path, encoding: str):
    """A JSON array of objects. Elements are decoded one by one so each error names its own line."""
    text = _read_whole_text(path, encoding)
    if isinstance(text, DataError):
        yield text
        return
    i = _skip_ws(text, 0)
    if i == len(text):
        return
    line_of = lambda pos: text.count("\n", 0, pos) + 1  # noqa: E731
    if text[i] != "[":
        loc = Location(str(path), line_of(i))
        value, _ = _json_element(text, i, loc)
        if isinstance(value, DataError):
            yield value
        elif isinstance(value, dict):  # one record
            yield loc, value
        else:
            yield loc.error(None, "expected a JSON array of records")
        return
    i = _skip_ws(text, i + 1)
    if i < len(text) and text[i] == "]":
        return
    while i < len(text):
        loc = Location(str(path), line_of(i))
        value, end = _json_element(text, i, loc)
        if end is None:  # a syntax error: the rest of the array cannot be located reliably
            yield value
            return
        record = value if isinstance(value, DataError) else _object_or_error(value, loc)
        yield record if isinstance(record, DataError) else (loc, record)
        i = _skip_ws(text, end)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
        elif i < len(text) and text[i] == "]":
            return
        else:
            yield DataError(str(path), line_of(i), None, "invalid JSON: expected ',' or ']' after a record")
            return
    yield DataError(str(path), line_of(len(text)), None, "invalid JSON: the array is not closed")


def _json_element(text: str, i: int, loc: Location) -> tuple[object, int | None]:
    """(the JSON value at text[i], where it ends), or (the DataError of a bad value: too deep, NaN / ±Infinity,
    a lone surrogate, with where it ends; invalid JSON, with None)."""
    try:
        value, end = strict_json(text, i)
    except RecursionError:
        return loc.error(None, TOO_DEEP), _value_end(text, i)
    except json.JSONDecodeError as e:
        return DataError(loc.file, e.lineno, None, f"invalid JSON at column {e.colno}: {e.msg}"), None
    except UnwritableJSON as e:
        return loc.error(e.field, e.problem), e.end
    except ValueError as e:
        return DataError(loc.file, loc.line, None, f"invalid JSON: {number_problem(e)}"), None
    if text.count("[", i, end) + text.count("{", i, end) > MAX_DEPTH and nesting_depth(text[i:end]) > MAX_DEPTH:
        return loc.error(None, TOO_DEEP), end
    return value, end


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _read_csv(path: Path, encoding: str):
    text = _read_whole_text(path, encoding)
    if isinstance(text, DataError):
        yield text
        return
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # a long document in a cell is text, not an error
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    try:
        if not reader.fieldnames:
            return
        start = 2
        for row in reader:
            loc = Location(str(path), start)
            start = reader.line_num + 1
            if None in row:  # more cells than header columns
                cells, header = len(reader.fieldnames) + len(row[None]), len(reader.fieldnames)
                yield loc.error(None, f"row has {cells} cells, header has {header}")
                continue
            if all(v in (None, "") for v in row.values()):
                continue
            try:
                yield loc, {k: _maybe_json(v, k) for k, v in row.items()}
            except _CellError as e:
                yield loc.error(e.column, e.problem)
    except csv.Error as e:  # a NUL byte, a broken quote: the rows after it cannot be located
        yield DataError(str(path), reader.line_num or 1, None, f"unreadable CSV: {e}")


class _CellError(ValueError):
    def __init__(self, column: str, problem: str):
        self.column, self.problem = column, problem
        super().__init__(problem)


def _maybe_json(cell, column: str = ""):
    """CSV cells holding lists/objects (e.g. a `messages` column) are JSON; plain text stays text. A cell
    that is JSON but for what JSON cannot hold (too deep, NaN, a lone surrogate) is an error."""
    if cell is None:
        return None
    stripped = cell.strip()
    if stripped[:1] in "[{":
        if stripped.count("[") + stripped.count("{") > MAX_DEPTH and nesting_depth(stripped) > MAX_DEPTH:
            raise _CellError(column, TOO_DEEP)
        try:
            return strict_json(stripped)
        except json.JSONDecodeError:
            return cell
        except UnwritableJSON as e:
            raise _CellError(field_name((column,)) + ("" if not e.field or e.field[0] == "[" else ".")
                             + (e.field or ""), e.problem) from None
        except ValueError:
            return cell
    return cell


def _read_parquet(path: Path, encoding: str):
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a broken file (a schema over 100 levels deep too)
        yield DataError(str(path), None, None, f"not a readable Parquet file: {e}")
        return
    # Only columns whose type can hold a float or a non-JSON value (date, decimal, bytes …) are looked at.
    looked_at = _parquet_non_json(pf.schema_arrow)
    row = 0
    for batch in pf.iter_batches(batch_size=4096):
        for record in batch.to_pylist():
            row += 1
            loc = Location(str(path), row, unit="row")
            problem = _as_json_values(record, looked_at, loc) if looked_at else None
            yield problem or (loc, record)


def _as_json_values(record: dict, columns: set[str], loc: Location) -> DataError | None:
    """Turn the record's values in `columns` into JSON values in place (see _json_value); the error of a value
    JSON cannot hold (NaN, infinity, bytes that are not text)."""
    for column in columns:
        try:
            record[column] = _json_value(record[column])
        except UnwritableJSON as e:
            return loc.error(column, e.problem)
        hit = first_hit(record[column], _non_finite)
        if hit is not None:
            return loc.error(field_name((column, *hit[0])), f"{hit[1]} is not a JSON number (NaN and infinity "
                                                            "cannot be written as JSON)")
    return None


def _parquet_non_json(schema) -> set[str]:
    """The top-level columns whose Arrow type holds, at any depth, a float or a value JSON has no type for."""
    import pyarrow as pa

    def holds(t) -> bool:
        if pa.types.is_floating(t) or pa.types.is_temporal(t) or pa.types.is_decimal(t):
            return True
        if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
            return True
        if pa.types.is_dictionary(t):
            return holds(t.value_type)
        return any(holds(t.field(i).type) for i in range(t.num_fields))

    return {field.name for field in schema if holds(field.type)}


def _json_value(value):
    """A Parquet value as JSON has it: dates and times as ISO text, decimals as numbers, bytes as UTF-8 text."""
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise UnwritableJSON(None, "binary data that is not UTF-8 text") from None
    return value


def _non_finite(value) -> str | None:
    return repr(value) if type(value) is float and not math.isfinite(value) else None


def json_encoder(sort_keys: bool = False) -> Callable[[object], str]:
    """A function giving exactly `json.dumps(value, ensure_ascii=False, sort_keys=sort_keys)`, faster.

    json.dumps builds a JSONEncoder and then a C encoder on every call; this builds the C encoder once,
    with the arguments json.dumps gives it. Not for use from several threads at once (one circular-reference
    table is shared): make one per file or loop.
    """
    reference = json.JSONEncoder(ensure_ascii=False, sort_keys=sort_keys)
    if c_make_encoder is None:  # pragma: no cover - CPython without the _json accelerator
        return reference.encode
    markers: dict = {}
    encode_chunks = c_make_encoder(markers, reference.default, encode_basestring, None, ": ", ", ", sort_keys,
                                   False, True)

    def encode(value) -> str:
        try:
            return "".join(encode_chunks(value, 0))
        except BaseException:
            markers.clear()  # an error leaves the containers it was inside marked as "being encoded"
            raise

    return encode


# The text of json.dumps(value, ensure_ascii=False, sort_keys=True) (content hashes, label keys), without
# building an encoder per call; safe from any thread. A hot loop can take its own `json_encoder(sort_keys=True)`.
encode_sorted_json = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode


def write_jsonl(path: str | Path, records, outputs: OutputSet | None = None) -> int:
    """Write dicts as UTF-8 JSONL (Chinese kept readable); returns the count.

    The file replaces `path` only once complete (see r1tune.files); with `outputs` (a step's `log.outputs`)
    it is renamed into place together with the other files of that set, when the set commits.
    """
    if outputs is None:
        with OutputSet() as own:
            return write_jsonl(path, records, own)
    encode = json_encoder()
    n = 0
    write = outputs.open(path).write
    for r in records:
        write(encode(r) + "\n")
        n += 1
    return n
