"""The clean step on several processes: the same output, log, counts and errors as on one."""

import pickle

import pytest

from r1tune.config import CleanConfig, PiiConfig
from r1tune.data import parallel
from r1tune.data.clean import clean_file
from r1tune.data.io import BOM, jsonl_chunks
from r1tune.errors import DataError

RECORDS = [
    {"instruction": "判断情绪。", "input": "<p>营收3.5亿元，同比增长12.3%&nbsp;</p>", "output": "正面"},
    "{not json",
    {"instruction": "Classify.", "input": "Revenue rose ５% ★★★ to RMB 3 billion.", "output": "positive"},
    "",
    {"instruction": "总结。", "input": "客户电话13812345678，邮箱 li@example.com，身份证110101199003074578。",
     "output": "客户 13812345678 需要回访。", "client": "李四"},
    "[1, 2]",
    {"instruction": "", "input": "", "output": ""},  # dropped: empty
    {"instruction": "总结。", "input": "好" * 40, "output": "重复"},  # dropped: repetition
    {"instruction": "判断情绪。", "input": "Резкое падение выручки компании в третьем квартале", "output": "负面"},
    {"instruction": "判断情绪。", "input": "患者HbA1c为7.9%，建议调整metformin剂量。\r\n\r\n\r\n复查。", "output": "中性"},
]


def write(path, lines, bom=False):
    import json

    text = "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in lines) + "\n"
    path.write_bytes((BOM if bom else b"") + text.encode("utf-8") + b'{"input": "\xff\xfe"}\n')
    return path


def without_log_path(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "log"}


@pytest.fixture
def small_chunks(monkeypatch):
    """Three lines per chunk, so the test file spans several chunks and every worker gets some."""
    monkeypatch.setattr(parallel, "LINES_PER_CHUNK", 3)


@pytest.mark.parametrize("action", ["mask", "report", "drop"])
def test_two_workers_write_what_one_process_writes(tmp_path, small_chunks, action):
    raw = write(tmp_path / "raw.jsonl", RECORDS * 3, bom=True)
    config = CleanConfig(languages=["zh", "en", "mixed"], pii=PiiConfig(action=action, name_fields=["client"]))
    one = clean_file(raw, tmp_path / "one" / "out.jsonl", config)
    two = clean_file(raw, tmp_path / "two" / "out.jsonl", config, workers=2)

    assert (tmp_path / "two" / "out.jsonl").read_bytes() == (tmp_path / "one" / "out.jsonl").read_bytes()
    assert (tmp_path / "two" / "out.log.jsonl").read_bytes() == (tmp_path / "one" / "out.log.jsonl").read_bytes()
    assert without_log_path(two) == without_log_path(one)
    # the file really exercised every path: drops of each kind, changes, unreadable lines, personal data
    assert one["read"] == 3 * 9 + 1 and one["dropped_by_rule"]["unreadable"] == 3 * 2 + 1
    assert {"empty", "repetition", "language"} <= set(one["dropped_by_rule"])
    assert one["pii"]["found"]["phone"] == 3 * 2


def test_a_stop_on_error_names_the_same_line(tmp_path, small_chunks):
    raw = write(tmp_path / "raw.jsonl", RECORDS)
    with pytest.raises(DataError) as serial:
        clean_file(raw, tmp_path / "a.jsonl", on_error="stop")
    with pytest.raises(DataError) as parallel_run:
        clean_file(raw, tmp_path / "b.jsonl", on_error="stop", workers=2)
    assert str(parallel_run.value) == str(serial.value)
    assert str(serial.value).startswith(f"{raw}:2: invalid JSON")


def test_an_empty_or_missing_file_is_the_same_error(tmp_path):
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n\n")
    for path in (blank, tmp_path / "missing.jsonl"):
        with pytest.raises(DataError) as serial:
            clean_file(path, tmp_path / "a.jsonl")
        with pytest.raises(DataError) as parallel_run:
            clean_file(path, tmp_path / "b.jsonl", workers=2)
        assert str(parallel_run.value) == str(serial.value)


def test_chunks_number_their_lines_and_drop_the_byte_order_mark(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(BOM + b"a\nb\nc\nd\ne\n")
    assert list(jsonl_chunks(path, 2)) == [(1, [b"a\n", b"b\n"]), (3, [b"c\n", b"d\n"]), (5, [b"e\n"])]


def test_a_data_error_crosses_a_process_boundary_whole():
    err = DataError("raw.jsonl", 7, "input", "must be text, got list")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.file, copy.line, copy.field, copy.problem, str(copy)) == (err.file, 7, "input", err.problem, str(err))


def test_zero_workers_means_every_available_core():
    assert parallel.resolve_workers(0) == parallel.available_cores() >= 1
    assert parallel.resolve_workers(3) == 3
