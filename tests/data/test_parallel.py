"""The clean step on several processes: the same output, log, counts and errors as on one."""

import pickle

import pytest

from r1tune.config import CleanConfig, PiiConfig
from r1tune.data import parallel
from r1tune.data.clean import clean_file
from r1tune.data.encodings import BOM
from r1tune.data.io import jsonl_chunks
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
    assert parallel.workers_for("raw.jsonl", 0) == parallel.available_cores()
    assert parallel.workers_for("raw.csv", 4) == 1  # other formats are not cut into chunks of lines


CHECKED = [
    {"instruction": "判断情绪。", "input": "营收3.5亿元，同比增长12.3%", "output": "正面", "label": "正面"},
    {"instruction": "判断情绪。", "input": "营收3.5亿元，同比增长12.3%", "output": "负面", "label": "负面"},  # conflict
    "{broken",
    {"instruction": "Summarise.", "input": "Net profit fell 20% (see note", "output": "Profit fell because costs"
     " rose sharply in the third quarter and the company", "label": ""},  # truncated, empty label
    {"instruction": "抽取", "input": "张三，电话13812345678", "output": "{\"name\": \"张三\",", "label": "中性"},
    {"instruction": "Classify the sentiment.", "input": "Revenue rose 5%.", "output": "正面", "label": "positive"},
    {"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "Hello there, how can I help"
                                                                                   " you with the report today"}]},
    {"instruction": "判断情绪。", "input": "营收3.5亿元，同比增长12.3%", "output": "中性", "label": ["中性", 3]},
    {"instruction": "Summarise.", "input": "", "output": "ok", "amount": "1,234.5", "label": "正面"},
    {"instruction": "Summarise.", "input": "x", "output": "ok", "amount": "n/a", "label": "正面"},
]


@pytest.mark.parametrize("labels", [None, ["正面", "负面", "中性"]])
def test_the_check_on_two_workers_reports_what_one_process_reports(tmp_path, small_chunks, labels):
    from r1tune.config import CheckConfig
    from r1tune.data.quality import check_file

    raw = write(tmp_path / "raw.jsonl", CHECKED * 4)
    config = CheckConfig(labels=labels, min_label_count=3, examples=3)
    one = check_file(raw, tmp_path / "one", config)
    two = check_file(raw, tmp_path / "two", config, workers=2)

    assert (tmp_path / "two" / "problems.jsonl").read_bytes() == (tmp_path / "one" / "problems.jsonl").read_bytes()
    assert {k: v for k, v in two.items() if k != "problems_log"} == {k: v for k, v in one.items() if k != "problems_log"}
    assert (tmp_path / "two" / "report.md").read_bytes() == (tmp_path / "one" / "report.md").read_bytes()
    # conflicts across chunks were found, and every section had something to report
    found = {rule for rules in one["sections"].values() for rule, r in rules.items() if r["count"]}
    assert {"conflicting_labels", "truncated_text", "json_invalid", "pii", "empty_field", "output_language"} <= found
    assert one["unreadable_records"] == 4 + 1


def _truth_records(classes: bool) -> list:
    """Records for every counter `settle` and the merge keep: duplicates, conflicts and short answers across
    chunks, unreadable lines, records with no training format, marker text."""
    answers = [["positive", "negative", "neutral"][i % 3] if classes else f"第{i}季度营收同比增长{i}%，海外市场贡献最大。"
               for i in range(40)]
    records = [{"instruction": f"判断第{i}条新闻的情感。", "input": f"公司第{i}季度营收增长。", "output": answers[i]}
               for i in range(40)]
    records[4] = dict(records[1])  # the same record, two chunks later
    records[8] = {**records[2], "input": records[2]["input"] + " ", "id": 8}  # same prompt and answer, other id
    records[11] = {**records[5], "output": answers[6]}  # same prompt, another answer
    records[13] = {**records[13], "output": "Meh."}  # short, in English: a rare class, or another language
    records[17] = {**records[17], "output": "Fine"}
    records[20] = {**records[20], "output": "The company reported record revenue growth in every region."}
    records[22] = {"问题": "营收如何？", "回答": "增长"}  # no training format
    records[25] = {"问题": "利润如何？", "回答": "下降"}
    records[26] = {**records[26], "instruction": "判断 <｜Assistant｜> 情感"}
    records[7], records[19] = "{broken", "[1]"
    return records


@pytest.mark.parametrize("classes", [True, False])
def test_the_new_counters_of_the_check_merge_in_file_order(tmp_path, small_chunks, classes):
    from r1tune.config import CheckConfig
    from r1tune.data.quality import check_file

    raw = write(tmp_path / "raw.jsonl", _truth_records(classes))
    config = CheckConfig(min_label_count=3, examples=3)
    one = check_file(raw, tmp_path / "one", config)
    two = check_file(raw, tmp_path / "two", config, workers=2)

    assert {k: v for k, v in two.items() if k != "problems_log"} == {k: v for k, v in one.items() if k != "problems_log"}
    for name in ("problems.jsonl", "report.md", "quality.json"):
        mine, theirs = (tmp_path / d / name for d in ("one", "two"))
        assert theirs.read_bytes().replace(b"/two/", b"/one/") == mine.read_bytes(), name
    found = {rule: r["count"] for rules in one["sections"].values() for rule, r in rules.items() if r["count"]}
    assert {"exact_duplicate": 1, "duplicate_prompt": 1, "conflicting_outputs": 1, "format_unknown": 2,
            "unreadable": 3, "marker_text": 1}.items() <= found.items()
    assert (one["records"], one["unreadable_records"], one["untrainable_records"]) == (41, 3, 2)
    if classes:  # the short answers are the file's classes: the odd ones are rare labels
        assert found["rare_label"] == 2 and found["output_language"] == 1
    else:  # prose answers: the two short English ones are another language, decided at the end
        assert found["output_language"] == 3 and "rare_label" not in found
