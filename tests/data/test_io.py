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
    '{"a": NaN, "b": Infinity, "c": -Infinity}\n',  # json accepts these; orjson does not
    '{"big": 123456789012345678901234567890, "neg": -9223372036854775809}\n',  # orjson would give floats
    '{"edge": 18446744073709551615, "small": -9223372036854775808, "f": 1e400}\n',
    '{"s": "\\ud800 lone surrogate", "t": "\\ud83d\\ude00"}\n',
    '{"a": 1, "a": 2}\n',  # duplicate key: the last wins
    '{"x": 0.1, "y": -0.0, "z": 2.5e-308, "w": 1E+2, "n": null, "b": [true, false, {}]}\n',
    '{"deep": ' + "[" * 250 + "]" * 250 + "}\n",
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
    assert type(got[2][1]["big"]) is int and got[2][1]["neg"] == -9223372036854775809
    assert repr(got[1][1]["a"]) == "nan" and got[3][1]["f"] == float("inf")


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
