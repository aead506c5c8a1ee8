"""Readers: every bad input names file, line and field; BOM accepted; skip mode lists, never loses."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from r1tune.data.formats import load_samples
from r1tune.data.io import read_records
from r1tune.errors import DataError

GOOD = {"instruction": "判断情感", "input": "营收3.5亿元，同比增长12.3%", "output": "positive"}


def write_lines(path, lines):
    path.write_bytes(b"".join(line if isinstance(line, bytes) else line.encode("utf-8") for line in lines))
    return path


def jl(record):
    return json.dumps(record, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("bad_line, field, problem", [
    ('{"instruction": "x", "output": \n', None, "invalid JSON"),
    (jl({"instruction": "x"}), "output", "missing"),
    (jl({"instruction": "  ", "output": "y"}), "instruction", "empty"),
    (jl({"instruction": 3, "output": "y"}), "instruction", "wrong type: expected text, got int"),
    (jl({"messages": [{"role": "user", "content": "q"}, {"role": "robot", "content": "a"}]}),
     "messages[1].role", "unknown role 'robot'"),
    (jl({"conversations": [{"from": "human", "value": "q"}, {"from": "alien", "value": "a"}]}),
     "conversations[1].from", "unknown role 'alien'"),
    (jl({"messages": [{"role": "user", "content": "q"}]}), "messages", "last message must be the assistant"),
    (jl(["not", "an", "object"]), None, "must be a JSON object"),
    (jl({"text": "what format?"}), None, "cannot tell the record format"),
])
def test_bad_jsonl_line_is_named(tmp_path, bad_line, field, problem):
    path = write_lines(tmp_path / "train.jsonl", [jl(GOOD), jl(GOOD), bad_line, jl(GOOD)])
    with pytest.raises(DataError) as e:
        load_samples(path)
    assert (e.value.file, e.value.line, e.value.field) == (str(path), 3, field)
    assert problem in str(e.value) and str(e.value).startswith(f"{path}:3:")


def test_invalid_utf8_names_the_line(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [jl(GOOD), b'{"instruction": "\xff\xfe", "output": "a"}\n'])
    with pytest.raises(DataError, match=r"t\.jsonl:2: invalid UTF-8"):
        load_samples(path)


def test_empty_file(tmp_path):
    for content in (b"", b"\n\n"):
        path = write_lines(tmp_path / "empty.jsonl", [content])
        with pytest.raises(DataError, match="file is empty"):
            load_samples(path)


def test_byte_order_mark_is_accepted(tmp_path):
    path = write_lines(tmp_path / "bom.jsonl", [b"\xef\xbb\xbf" + jl(GOOD).encode(), jl(GOOD)])
    samples, skipped = load_samples(path)
    assert len(samples) == 2 and not skipped
    csv_path = tmp_path / "bom.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfinstruction,output\n" + "问,答\n".encode())
    samples, _ = load_samples(csv_path)
    assert samples[0].messages[0]["content"] == "问"


def test_skip_mode_counts_and_lists_every_bad_row(tmp_path):
    path = write_lines(tmp_path / "mixed.jsonl", [jl(GOOD), "{broken\n", jl({"instruction": "x"}), jl(GOOD),
                                                  b"\xff\n"])
    samples, skipped = load_samples(path, on_error="skip")
    assert len(samples) == 2
    assert sorted((e.line, e.field) for e in skipped) == [(2, None), (3, "output"), (5, None)]


def test_json_array_errors_name_the_record_line(tmp_path):
    path = tmp_path / "data.json"
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c"}\n]\n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_samples(path)
    assert (e.value.line, e.value.field) == (3, "output")
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c", \n]', encoding="utf-8")
    with pytest.raises(DataError, match="invalid JSON"):
        list(read_records(path))


def test_csv_line_numbers_and_json_cells(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('messages\n"[{""role"": ""user"", ""content"": ""q""}, {""role"": ""assistant"", ""content"": ""a""}]"\n'
                    '"[{""role"": ""user"", ""content"": ""q""}]"\n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_samples(path)
    assert e.value.line == 3
    samples, skipped = load_samples(path, on_error="skip")
    assert samples[0].answer == "a" and skipped[0].line == 3


def test_parquet_rows(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([GOOD, {"instruction": "x", "input": "", "output": ""}]), path)
    with pytest.raises(DataError) as e:
        load_samples(path)
    assert (e.value.line, e.value.unit, e.value.field) == (2, "row", "output")
    assert "row 2" in str(e.value)


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="unknown file type"):
        list(read_records(write_lines(tmp_path / "x.txt", ["hi"])))
    with pytest.raises(DataError, match="file not found"):
        list(read_records(tmp_path / "nope.jsonl"))


# ------------------------------------------------------------ fast JSONL path (orjson) = json module, exactly

EDGE_LINES = [
    '{"big": 123456789012345678901234567890, "neg": -9223372036854775809}\n',  # orjson would give floats
    '{"edge": 18446744073709551615, "small": -9223372036854775808, "f": 1.7976931348623157e308}\n',
    '{"pair": "\\ud83d\\ude00", "upper": "\\uD83D\\uDE00 pair"}\n',  # a surrogate pair is one character
    '{"a": 1, "a": 2}\n',  # duplicate key: the last wins
    '{"x": 0.1, "y": -0.0, "z": 2.5e-308, "w": 1E+2, "n": null, "b": [true, false, {}], "tiny": 1e-400}\n',
    '{"deep": ' + "[" * 99 + "]" * 99 + "}\n",  # 100 levels with the record: the deepest accepted
    '{"wide": [' + ", ".join(["{}"] * 300) + "]}\n",  # many brackets, shallow
    '{"text": "' + "[{" * 300 + '"}\n',  # brackets inside a string do not nest
    '{"中文": "营收3.5亿元", "esc": "a\\u0000b\\n\\"\\/"}\n',
]


def _reference_read(path):
    """What the reader gave before the fast path: the json module on every decoded line."""
    out = []
    for line_no, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        text = raw.decode("utf-8")
        if text.strip():
            out.append((line_no, json.loads(text)))
    return out


def test_fast_path_values_match_the_json_module(tmp_path):
    path = write_lines(tmp_path / "edge.jsonl", [jl(GOOD)] + EDGE_LINES + [jl(GOOD)])
    got = [(loc.line, record) for loc, record in read_records(path)]
    want = _reference_read(path)
    assert [line for line, _ in got] == [line for line, _ in want]
    for (_, a), (_, b) in zip(got, want):
        # repr tells int from float and keeps NaN comparable
        assert repr(a) == repr(b)
    assert type(got[1][1]["big"]) is int and got[1][1]["neg"] == -9223372036854775809
    assert got[3][1] == {"pair": "😀", "upper": "😀 pair"} and got[2][1]["f"] == 1.7976931348623157e308


@pytest.mark.parametrize("line, field, problem", [
    ('{"instruction": "q", "output": NaN}', "output", "NaN is not valid JSON"),
    ('{"instruction": "q", "output": "a", "meta": {"x": [1, Infinity]}}', "meta.x[1]", "Infinity is not valid JSON"),
    ('{"instruction": "q", "output": "a", "score": -Infinity}', "score", "-Infinity is not valid JSON"),
    ('{"instruction": "q", "output": "a", "score": 1e400}', "score", "1e400 is a number too large for JSON"),
    ('{"instruction": "q", "output": "bad \\ud800 text"}', "output", "lone surrogate \\ud800"),
    ('{"instruction": "q", "output": "low \\uDC00"}', "output", "lone surrogate \\udc00"),
    ('{"instruction": "q", "output": "a", "k\\udfff": 1}', "k\\udfff", "lone surrogate \\udfff"),
    ('{"messages": [{"role": "user", "content": "\\ud83d"}]}', "messages[0].content", "lone surrogate"),
    ('{"a": ' + "[" * 100 + "]" * 100 + "}", None, "nested deeper than 100 levels"),
    ('{"instruction": "q", "output": ' + "[" * 5000 + "]" * 5000 + "}", None, "nested deeper than 100 levels"),
    ('{"id": 12345678901234567890123, "a": ' + "[" * 150 + "]" * 150 + "}", None, "nested deeper"),
    ('{"instruction": "q", "output": "a", "n": ' + "1" * 5000 + "}", None, "a number longer than 4,300 digits"),
])
def test_what_json_loads_accepts_but_json_cannot_hold_is_a_bad_record(tmp_path, line, field, problem):
    """Each of these used to pass the reader and fail later: a RecursionError, invalid JSON (NaN) written out,
    a UnicodeEncodeError at writing or a tokenizer error; now the reader names the line and the field."""
    path = write_lines(tmp_path / "bad.jsonl", [jl(GOOD), line + "\n", jl(GOOD)])
    with pytest.raises(DataError) as e:
        list(read_records(path))
    assert (e.value.line, e.value.field) == (2, field) and problem in e.value.problem
    assert str(e.value).startswith(f"{path}:2:")
    str(e.value).encode("utf-8")  # the message itself prints (a surrogate in a key is escaped)
    skipped: list = []
    assert [loc.line for loc, _ in read_records(path, on_error="skip", skipped=skipped)] == [1, 3]
    assert [(err.line, err.field) for err in skipped] == [(2, field)]


def test_bad_values_in_json_arrays_and_csv_cells_are_bad_records(tmp_path):
    deep = "[" * 5000 + "]" * 5000
    path = tmp_path / "data.json"
    path.write_text("[\n" + jl(GOOD) + ",\n" + '{"instruction": "q", "output": ' + deep + "},\n"
                    + '{"instruction": "q", "output": NaN},\n' + "NaN,\n" + '{"s": "\\ud800"},\n'
                    + '{"deep": ' + "[" * 500 + "]" * 500 + "},\n" + jl(GOOD) + "]\n", encoding="utf-8")
    skipped: list = []
    assert [loc.line for loc, _ in read_records(path, on_error="skip", skipped=skipped)] == [2, 9]
    assert [(e.line, e.field, e.problem[:20]) for e in skipped] == [
        (4, None, "nested deeper than 1"), (5, "output", "NaN is not valid JSO"), (6, None, "NaN is not valid JSO"),
        (7, "s", "lone surrogate \\ud80"), (8, None, "nested deeper than 1")]
    csv_path = tmp_path / "d.csv"
    csv_path.write_text('instruction,output,messages\nq,a,"' + deep + '"\nq,a,"[1, NaN]"\n'
                        'q,a,"[{""content"": ""\\ud800""}]"\nq,a,[注意] plain text\n', encoding="utf-8")
    skipped = []
    records = [(loc.line, r["messages"]) for loc, r in read_records(csv_path, on_error="skip", skipped=skipped)]
    assert records == [(5, "[注意] plain text")]
    assert [(e.line, e.field, e.problem[:20]) for e in skipped] == [
        (2, "messages", "nested deeper than 1"), (3, "messages[1]", "NaN is not valid JSO"),
        (4, "messages[0].content", "lone surrogate \\ud80")]


def test_a_csv_cell_longer_than_the_csv_module_limit_is_text(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("instruction,output\nq," + "长" * 300_000 + "\n", encoding="utf-8")
    assert [len(r["output"]) for _, r in read_records(path)] == [300_000]


def test_parquet_values_json_cannot_hold(tmp_path):
    import datetime
    import decimal

    path = tmp_path / "d.parquet"
    rows = [{**GOOD, "score": 0.5, "at": datetime.datetime(2024, 1, 2, 3, 4), "amount": decimal.Decimal("3.50"),
             "raw": b"text"},
            {**GOOD, "score": float("nan"), "at": None, "amount": None, "raw": None},
            {**GOOD, "score": 1.0, "at": None, "amount": None, "raw": b"\xff\xfe"}]
    pq.write_table(pa.Table.from_pylist(rows), path)
    skipped: list = []
    records = list(read_records(path, on_error="skip", skipped=skipped))
    assert [loc.line for loc, _ in records] == [1]
    assert records[0][1] | {} == {**GOOD, "score": 0.5, "at": "2024-01-02T03:04:00", "amount": 3.5, "raw": "text"}
    assert [(e.line, e.unit, e.field, e.problem[:16]) for e in skipped] == [
        (2, "row", "score", "nan is not a JSO"), (3, "row", "raw", "binary data that")]
    from r1tune.data.io import json_encoder

    json.loads(json_encoder()(records[0][1]))  # written back as valid JSON


def test_a_parquet_file_nested_beyond_what_pyarrow_reads_is_one_error(tmp_path):
    path = tmp_path / "deep.parquet"
    value, kind = "x", pa.string()
    for _ in range(60):
        value, kind = [value], pa.list_(kind)
    pq.write_table(pa.Table.from_pylist([{"instruction": "q", "output": "a", "deep": value}],
                                        schema=pa.schema([("instruction", pa.string()), ("output", pa.string()),
                                                          ("deep", kind)])), path)
    with pytest.raises(DataError, match="not a readable Parquet file: .*too deeply nested") as e:
        list(read_records(path))
    assert e.value.line is None


def test_nesting_depth_skips_strings():
    from r1tune.data.json_values import nesting_depth

    assert nesting_depth(b'{"a": [1, {"b": "[[[["}]}') == 3
    assert nesting_depth('["\\"[", [[]]]') == 3
    assert nesting_depth(b"[" * 5000) == 5000 and nesting_depth(b'"[[["') == 0


@pytest.mark.parametrize("line, message", [
    (b'{"a": 1} x\n', "invalid JSON at column 10: Extra data"),
    (b'{"a": 01}\n', "invalid JSON at column 8: Expecting ',' delimiter"),
    (b'{"a": "\x01"}\n', "invalid JSON at column 8: Invalid control character at"),
    (b'\xef\xbb\xbf{"a": 1}\n', "invalid JSON at column 1: Unexpected UTF-8 BOM (decode using utf-8-sig)"),
    (b'{"a": "\xed\xa0\x80"}\n', "invalid UTF-8 at byte 7 of the line"),
])
def test_fast_path_errors_are_the_json_module_messages(tmp_path, line, message):
    path = write_lines(tmp_path / "bad.jsonl", [jl(GOOD), line])  # a BOM is only accepted on line 1
    with pytest.raises(DataError) as e:
        list(read_records(path))
    assert e.value.line == 2 and message in str(e.value)


def test_write_jsonl_text_is_json_dumps(tmp_path):
    from r1tune.data.io import json_encoder, write_jsonl

    class Odd:
        pass

    records = [GOOD, {"nan": float("nan"), "inf": float("-inf"), "big": 2**70, 1: "int key", None: 0.1, 2.5: True},
               {"nested": [{"b": 1, "a": [None, -0.0, 1e-7]}], "": ""}, {"中": "文\u2028"}]
    path = tmp_path / "out.jsonl"
    assert write_jsonl(path, records) == len(records)
    assert path.read_text(encoding="utf-8") == "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    for sort_keys in (False, True):
        encode = json_encoder(sort_keys=sort_keys)
        for r in records[:1] + records[2:] + [{"s": "\ud800"}, "top-level text", 3.5, None]:
            assert encode(r) == json.dumps(r, ensure_ascii=False, sort_keys=sort_keys)
    # errors are json.dumps's, and the encoder stays usable after one
    encode = json_encoder()
    circular: dict = {"a": 1}
    circular["self"] = circular
    with pytest.raises(ValueError, match="Circular reference detected"):
        encode(circular)
    with pytest.raises(TypeError, match="Object of type Odd is not JSON serializable"):
        encode({"x": [Odd()]})
    shared = {"k": 1}
    assert encode({"p": shared, "q": [shared]}) == json.dumps({"p": shared, "q": [shared]}, ensure_ascii=False)
