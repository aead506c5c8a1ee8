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
