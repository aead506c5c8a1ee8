"""Read records from JSONL / JSON / CSV / Parquet, each located by file and line (or row).

    for loc, record in read_records("train.jsonl"):
        ...
    read_records("raw.csv", encoding="gb18030", columns={"instruction": "指令", "output": "输出"})
    with reading_as("raw.csv", encoding="gb18030"):   # data/encodings.py: how every read of raw.csv in the
        clean_file("raw.csv", "clean.jsonl")          # block decodes it (prepare steps, their parallel workers)

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

import csv
import datetime
import decimal
import io
import itertools
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from json.encoder import c_make_encoder, encode_basestring
from pathlib import Path

from r1tune.data.encodings import (
    BOM,
    UNDECODABLE,
    declared_for,
    file_codec,
    legacy_chinese,
    not_utf8_error,
    undecodable_problem,
)
from r1tune.data.json_values import (
    MAX_DEPTH,
    SURROGATE,
    UnwritableJSON,
    field_name,
    first_hit,
    nesting_depth,
    number_problem,
    strict_json,
    value_end,
)
from r1tune.errors import DataError
from r1tune.files import OutputSet

try:  # a faster parser for the common line; the json module stays the reference (see _jsonl_items)
    import orjson
except ImportError:  # pragma: no cover - orjson is a core dependency
    orjson = None

TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels of arrays / objects"
# orjson.loads parses integers outside [-2**63, 2**64) as floats where json.loads keeps them exact: lines with
# a run of 19+ digits are parsed by the json module alone. One translate marks those runs and the brackets
# (digits → "0", "[" and "{" → "["): a line with more brackets than MAX_DEPTH has its depth measured before
# either parser sees it, so neither meets a record deeper than MAX_DEPTH (where their limits differ).
_SCREEN = bytes(0x30 if 0x30 <= i <= 0x39 else 0x5B if i in (0x5B, 0x7B) else 0x20 for i in range(256))
_LONG_NUMBER = b"0" * 19
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
    encoding, columns = declared_for(path, encoding, columns)
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
    encoding, _ = declared_for(path, None, None)
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
    encoding, _ = declared_for(path, None, None)
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
    (see mark_undecodable) for `_jsonl_items` to report on their line."""
    for number, line in enumerate(io.TextIOWrapper(binary, encoding=codec, errors=UNDECODABLE, newline="\n")):
        yield (line[1:] if number == 0 and line.startswith("\ufeff") else line).encode("utf-8", "surrogatepass")


def read_jsonl_lines(name: str, first_line: int, lines, encoding: str | None = None,
                     columns: dict[str, str] | None = None):
    """(location, record) or DataError for each non-blank line of JSONL, raw UTF-8 bytes (a parallel worker's
    chunk: see `jsonl_chunks`); `first_line` numbers the first of `lines`. `encoding` and `columns` as in
    `read_records`."""
    encoding, columns = declared_for(name, encoding, columns)
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
        return DataError(name, line_no, None, undecodable_problem(raw.decode("utf-8", "surrogatepass"), mode))
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


# ------------------------------------------------------------------ whole-file formats

def _read_whole_text(path: Path, encoding: str) -> str | DataError:
    raw = path.read_bytes()
    codec = file_codec(path, raw[:_HEAD], encoding)
    if codec != "utf-8":
        text = raw.decode(codec, UNDECODABLE).removeprefix("\ufeff")
        bad = SURROGATE.search(text)
        if bad is None:
            return text
        start, end = _line_around(text, bad.start(), "\n")
        return DataError(str(path), text.count("\n", 0, start) + 1, None, undecodable_problem(text[start:end], codec))
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
        return loc.error(None, TOO_DEEP), value_end(text, i)
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
