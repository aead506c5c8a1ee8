"""Read records from JSONL / JSON / CSV / Parquet, each located by file and line (or row).

    for loc, record in read_records("train.jsonl"):
        ...

JSONL is streamed line by line (a 2 GB file is never loaded whole). Every problem becomes a `DataError`
naming file, line and field; with `on_error="skip"` the bad record is appended to `skipped` and reading
goes on, so nothing is dropped silently. A UTF-8 byte-order mark at the start of a file is accepted.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from json.encoder import c_make_encoder, encode_basestring
from pathlib import Path

from r1tune.errors import DataError

try:  # a faster parser for the common line; the json module stays the reference (see _read_jsonl)
    import orjson
except ImportError:  # pragma: no cover - orjson is a core dependency
    orjson = None

BOM = b"\xef\xbb\xbf"
# orjson.loads parses integers outside [-2**63, 2**64) as floats where json.loads keeps them exact, and its
# nesting limit (1024) differs from json's (the recursion limit): lines with a run of 19+ digits or many
# brackets are parsed by the json module alone. One translate marks both: digits → "0", "[" and "{" → "[".
_SCREEN = bytes(0x30 if 0x30 <= i <= 0x39 else 0x5B if i in (0x5B, 0x7B) else 0x20 for i in range(256))
_LONG_NUMBER = b"0" * 19
_MAX_BRACKETS = 200


@dataclass(frozen=True)
class Location:
    file: str
    line: int
    unit: str = "line"  # "line" for text formats, "row" for Parquet

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.unit == "line" else f"{self.file}#row{self.line}"

    def error(self, field: str | None, problem: str) -> DataError:
        return DataError(self.file, self.line, field, problem, unit=self.unit)


def read_records(
    path: str | Path, on_error: str = "stop", skipped: list[DataError] | None = None
) -> Iterator[tuple[Location, dict]]:
    """Yield (location, record) for every record in a data file; the format comes from the suffix."""
    path = Path(path)
    if not path.exists():
        raise file_not_found_error(path)
    suffix = path.suffix.lower()
    readers = {".jsonl": _read_jsonl, ".ndjson": _read_jsonl, ".json": _read_json, ".csv": _read_csv,
               ".tsv": _read_csv, ".parquet": _read_parquet}
    if suffix not in readers:
        raise DataError(str(path), None, None, f"unknown file type '{suffix}' (use .jsonl, .json, .csv or .parquet)")
    count = yield from located_records(readers[suffix](path), on_error, skipped)
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


def is_jsonl(path: str | Path) -> bool:
    return Path(path).suffix.lower() in (".jsonl", ".ndjson")


def jsonl_chunks(path: str | Path, lines_per_chunk: int = 2000) -> Iterator[tuple[int, list[bytes]]]:
    """(number of the chunk's first line, its raw lines): a JSONL file cut for parallel workers, which parse
    each chunk with `read_jsonl_lines` exactly as `read_records` parses the whole file."""
    with open(path, "rb") as f:
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


def _decode(raw: bytes, name: str, line: int) -> str | DataError:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = raw[e.start:e.start + 4]
        return DataError(name, line, None, f"invalid UTF-8 at byte {e.start} of the line ({bad!r})")


def _object_or_error(value, loc: Location) -> dict | DataError:
    if not isinstance(value, dict):
        return loc.error(None, f"a record must be a JSON object, got {type(value).__name__}")
    return value


def _read_jsonl(path: Path):
    with open(path, "rb") as f:
        first = f.readline()
        if first.startswith(BOM):
            first = first[len(BOM):]
        yield from read_jsonl_lines(str(path), 1, itertools.chain((first,), f) if first else ())


def read_jsonl_lines(name: str, first_line: int, lines):
    """(location, record) or DataError for each non-blank line; `first_line` numbers the first of `lines`."""
    fast = orjson.loads if orjson is not None else None
    fast_error = orjson.JSONDecodeError if orjson is not None else ValueError
    for line_no, raw in enumerate(lines, start=first_line):
        if fast is not None:
            # orjson accepts a subset of what json.loads accepts (strict UTF-8, no NaN/Infinity, no lone
            # surrogates, no blank line) and gives the same value for it, screened lines aside. Anything
            # it rejects goes the json-module way below, so every message stays the json module's.
            screened = raw.translate(_SCREEN)
            if _LONG_NUMBER not in screened and screened.count(b"[") < _MAX_BRACKETS:
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
        text = _decode(raw, name, line_no)
        if isinstance(text, DataError):
            yield text
            continue
        if not text.strip():
            continue
        loc = Location(name, line_no)
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            yield loc.error(None, f"invalid JSON at column {e.colno}: {e.msg}")
            continue
        record = _object_or_error(value, loc)
        yield record if isinstance(record, DataError) else (loc, record)


def _read_whole_text(path: Path) -> str | DataError:
    raw = path.read_bytes()
    if raw.startswith(BOM):
        raw = raw[len(BOM):]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        return DataError(str(path), line, None, f"invalid UTF-8 ({raw[e.start:e.start + 4]!r})")


def _read_json(path: Path):
    """A JSON array of objects. Elements are decoded one by one so each error names its own line."""
    text = _read_whole_text(path)
    if isinstance(text, DataError):
        yield text
        return
    decoder = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if i == len(text):
        return
    line_of = lambda pos: text.count("\n", 0, pos) + 1  # noqa: E731
    if text[i] != "[":
        try:
            value, _ = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            yield DataError(str(path), e.lineno, None, f"invalid JSON: {e.msg}")
            return
        if isinstance(value, dict):  # one record
            yield Location(str(path), line_of(i)), value
            return
        yield DataError(str(path), line_of(i), None, "expected a JSON array of records")
        return
    i = _skip_ws(text, i + 1)
    if i < len(text) and text[i] == "]":
        return
    while i < len(text):
        loc = Location(str(path), line_of(i))
        try:
            value, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            # The rest of the array cannot be located reliably after a syntax error: report and stop.
            yield DataError(str(path), e.lineno, None, f"invalid JSON at column {e.colno}: {e.msg}")
            return
        record = _object_or_error(value, loc)
        yield record if isinstance(record, DataError) else (loc, record)
        i = _skip_ws(text, i)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
        elif i < len(text) and text[i] == "]":
            return
        else:
            yield DataError(str(path), line_of(i), None, "invalid JSON: expected ',' or ']' after a record")
            return
    yield DataError(str(path), line_of(len(text)), None, "invalid JSON: the array is not closed")


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _read_csv(path: Path):
    text = _read_whole_text(path)
    if isinstance(text, DataError):
        yield text
        return
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
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
        yield loc, {k: _maybe_json(v) for k, v in row.items()}


def _maybe_json(cell):
    """CSV cells holding lists/objects (e.g. a `messages` column) are JSON; plain text stays text."""
    if cell is None:
        return None
    stripped = cell.strip()
    if stripped[:1] in "[{":
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return cell
    return cell


def _read_parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a broken file
        yield DataError(str(path), None, None, f"not a readable Parquet file: {e}")
        return
    row = 0
    for batch in pf.iter_batches(batch_size=4096):
        for record in batch.to_pylist():
            row += 1
            yield Location(str(path), row, unit="row"), record


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


def write_jsonl(path: str | Path, records) -> int:
    """Write dicts as UTF-8 JSONL (Chinese kept readable); returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encode = json_encoder()
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        write = f.write
        for r in records:
            write(encode(r) + "\n")
            n += 1
    return n
