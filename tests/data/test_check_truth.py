"""`prepare check` tells the truth (issue 12): every line counts, files nothing can be trained on fail, class
names are not "another language", suspect labels, duplicates and marker text are reported. Through the CLI."""

import json

import pytest

from r1tune.config import CheckConfig
from r1tune.data.quality import check_file

SENTIMENTS = ["positive", "negative", "neutral"]
REVIEWS = ["这家公司的季度营收大幅增长，净利润创下历史新高。", "受原材料价格上涨影响，公司毛利率明显下滑。",
           "董事会决定维持现有的分红政策不变。", "该药物的三期临床试验未能达到主要终点。",
           "新产品上市后市场反响热烈，订单十分饱满。", "公司公告称本季度经营情况总体平稳。"]


def counts(report):
    return {rule: r["count"] for section in report["sections"].values() for rule, r in section.items() if r["count"]}


def examples(report, rule):
    return next(section[rule]["examples"] for section in report["sections"].values() if rule in section)


def lines_of(report, rule):
    return [e["source"].rsplit(":", 1)[1] for e in examples(report, rule)]


def chinese_sentiment(n=30):
    """n clean records: a Chinese instruction and review, an English class name as the answer, no label field."""
    return [{"instruction": "判断以下新闻的情感倾向。", "input": f"{REVIEWS[i % 6]}（第{i + 1}条）",
             "output": SENTIMENTS[i % 6 % 3]} for i in range(n)]


# ------------------------------------------------------------------ every line counts

def test_a_file_of_unreadable_lines_fails_without_any_threshold(tmp_path, cli):
    data = tmp_path / "broken.jsonl"
    data.write_bytes(b'{"instruction": "x", \n\xff\xfe\n[1, 2]\n')
    for workers in (1, 2):
        code, out, err = cli("prepare", "check", data, "--out", tmp_path / f"r{workers}", "--workers", workers)
        assert code == 2
        assert "check: 3 lines, 3 unreadable, 0 untrainable, 3 with problems" in out
        assert f"error: all 3 lines are unreadable (first: {data}:1: invalid JSON" in err
        report = json.loads((tmp_path / f"r{workers}" / "quality.json").read_text(encoding="utf-8"))
        assert report["passed"] is False and report["records"] == 3 and report["trainable_records"] == 0
        assert lines_of(report, "unreadable") == ["1", "2", "3"]
        assert "not an object" in examples(report, "unreadable")[2]["detail"] or "list" in \
            examples(report, "unreadable")[2]["detail"]
        markdown = (tmp_path / f"r{workers}" / "report.md").read_text(encoding="utf-8")
        assert "| 3 | 0 | 3 | 0 | 0 |" in markdown and "## Failed whatever the thresholds" in markdown
        assert "### `unreadable` — 3 (100.00%)" in markdown


def test_a_file_of_untrainable_records_fails_without_any_threshold(tmp_path, cli, jsonl):
    data = jsonl(tmp_path / "empty-answers.jsonl", [
        {"instruction": "公司营收如何？", "output": ""}, {"instruction": "利润如何？", "output": "<think>想一想</think>"},
        {"messages": [{"role": "user", "content": "你好"}]}])
    code, out, err = cli("prepare", "check", data, "--out", tmp_path / "r")
    assert code == 2 and "check: 3 lines, 0 unreadable, 3 untrainable, 3 with problems" in out
    assert "error: no record can be trained on: 0 unreadable, 0 with no training format, 3 that cannot become a " \
           "sample (see format_invalid)" in err


def test_columns_that_match_no_format_fail_the_gate_naming_them(tmp_path, cli):
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv = tmp_path / "sft.csv"
    csv.write_text("指令,输入,输出\n判断情感,营收增长,正面\n判断情感,净利润亏损,负面\n", encoding="utf-8")
    parquet = tmp_path / "sft.parquet"
    pq.write_table(pa.table({"question": ["营收如何？", "利润如何？"], "reply": ["增长", "下降"]}), parquet)
    for data, columns, mapping in ((csv, "指令, 输入, 输出", "{instruction: 指令, input: 输入, output: 输出}"),
                                   (parquet, "question, reply", "{instruction: question, output: reply}")):
        code, out, err = cli("prepare", "check", data, "--out", tmp_path / data.suffix[1:])
        assert code == 2, err
        assert "check: 2 lines, 0 unreadable, 2 untrainable, 2 with problems" in out
        assert f"error: no record can be trained on: columns {columns} match no known format" in err
        assert f"map them with data.columns: {mapping}" in err
        report = json.loads((tmp_path / data.suffix[1:] / "quality.json").read_text(encoding="utf-8"))
        assert counts(report)["format_unknown"] == 2 and report["failures"]
    # the mapping the message suggests reads the file
    code, out, _ = cli("prepare", "check", csv, "--out", tmp_path / "mapped", "--columns",
                       "instruction=指令,input=输入,output=输出")
    assert code == 0 and "check: 2 lines, 0 unreadable, 0 untrainable, 0 with problems" in out


def test_unreadable_and_untrainable_lines_count_in_the_share(tmp_path, cli, jsonl):
    good = [{"instruction": f"第{i}条：公司营收增长了吗？", "output": f"是的，第{i}季度营收同比增长。"} for i in range(6)]
    data = jsonl(tmp_path / "mixed.jsonl", [
        good[0], "{not json", good[1], {"instruction": "公司利润如何？", "output": " "},  # 2 unreadable, 4 empty answer
        good[2], {"question": "营收多少？", "reply": "3.5亿元"}, good[3], "[1, 2]", good[4], good[5]])  # 6 no format
    code, out, err = cli("prepare", "check", data, "--out", tmp_path / "r", "--threshold", "any=0.35")
    assert code == 2
    assert "check: 10 lines, 2 unreadable, 2 untrainable, 4 with problems" in out
    assert "error: quality thresholds crossed: any 40.00% > 35.00%" in err
    report = json.loads((tmp_path / "r" / "quality.json").read_text(encoding="utf-8"))
    assert (report["records"], report["readable_records"], report["trainable_records"]) == (10, 8, 6)
    assert lines_of(report, "unreadable") == ["2", "8"] and lines_of(report, "format_unknown") == ["6"]
    assert lines_of(report, "format_invalid") == ["4"] and report["failures"] == []
    assert report["sections"]["correctness"]["unreadable"]["rate"] == 0.2  # of every line read
    markdown = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert "**10 lines**: 2 unreadable, 2 untrainable; 4 with at least one record-level problem" in markdown
    assert "| 10 | 8 | 2 | 2 | 6 |" in markdown and f"- `{data}:8` — a record must be a JSON object" in markdown
    assert cli("prepare", "check", data, "--out", tmp_path / "r2", "--threshold", "untrainable=0.5")[0] == 0
    assert cli("prepare", "check", data, "--out", tmp_path / "r3", "--threshold", "untrainable=0.3")[0] == 2


# ------------------------------------------------------------------ class names, suspect labels

def test_a_clean_chinese_sentiment_file_has_no_problem(tmp_path, cli, jsonl):
    data = jsonl(tmp_path / "sentiment.jsonl", chinese_sentiment(30))
    code, out, _ = cli("prepare", "check", data, "--out", tmp_path / "r")
    assert code == 0 and "check: 30 lines, 0 unreadable, 0 untrainable, 0 with problems" in out
    report = json.loads((tmp_path / "r" / "quality.json").read_text(encoding="utf-8"))
    assert counts(report) == {} and report["labels"]["taken_from"] == "short answers"
    # the same with a label field, and with the label set declared instead
    labelled = jsonl(tmp_path / "labelled.jsonl", [{**r, "label": r["output"]} for r in chinese_sentiment(30)])
    assert check_file(labelled, tmp_path / "r2")["records_with_problems"] == 0
    declared = check_file(data, tmp_path / "r3", CheckConfig(labels=SENTIMENTS))
    assert declared["records_with_problems"] == 0


def test_a_long_english_answer_to_a_chinese_prompt_is_still_another_language(tmp_path, jsonl):
    records = chinese_sentiment(30)
    records[7]["output"] = "The company reported strong growth in revenue and a record net profit this quarter."
    records[12] = {**records[12], "output": "Mixed"}  # one of a kind among the file's classes: a suspect label
    report = check_file(jsonl(tmp_path / "d.jsonl", records), tmp_path / "r")
    assert counts(report) == {"output_language": 1, "rare_label": 1}
    assert lines_of(report, "output_language") == ["8"] and lines_of(report, "rare_label") == ["13"]


def test_a_short_answer_in_another_language_is_reported_once_the_file_shows_it_is_no_class(tmp_path, jsonl):
    """In question → prose data a short English answer to a Chinese question is another language; whether it is a
    class name is known at the end of the file only, so it comes last in problems.jsonl."""
    records = [{"instruction": f"第{i}季度公司的营收变化如何？", "output": f"第{i}季度营收同比增长{i}%，主要来自海外市场。"}
               for i in range(12)]
    records[3]["output"] = "Revenue rose."
    records[5]["output"] = "It grew by 5% thanks to strong overseas demand for the new product line."
    records[9]["output"] = "营收下降"  # short, Chinese: fine
    report = check_file(jsonl(tmp_path / "d.jsonl", records), tmp_path / "r")
    assert counts(report) == {"output_language": 2} and report["records_with_problems"] == 2
    assert lines_of(report, "output_language") == ["6", "4"]  # prose at once, the short answer at the end
    logged = [json.loads(line) for line in (tmp_path / "r" / "problems.jsonl").read_text("utf-8").splitlines()]
    assert [(e["source"].rsplit(":", 1)[1], e["rule"]) for e in logged] == [("6", "output_language"),
                                                                          ("4", "output_language")]


@pytest.mark.parametrize("labelled", [True, False])
def test_a_label_seen_once_among_frequent_ones_is_reported(tmp_path, cli, jsonl, labelled):
    records = [{"instruction": f"Classify review {i}: it does the job.", "output": "neutral"} for i in range(100)]
    records += [{"instruction": f"Classify review {i}: I love it.", "output": "positive"} for i in range(100, 160)]
    records.insert(41, {"instruction": "Classify review x: it is fine, I guess.", "output": "neutral??"})
    if labelled:
        records = [{**r, "label": r["output"]} for r in records]
    data = jsonl(tmp_path / "reviews.jsonl", records)
    what = "label" if labelled else "answer"
    for labels, out in ((None, "r"), ("neutral,positive,negative", "declared")):
        code, _, _ = cli("prepare", "check", data, "--out", tmp_path / out, *(["--labels", labels] if labels else []))
        assert code == 0
        report = json.loads((tmp_path / out / "quality.json").read_text(encoding="utf-8"))
        assert examples(report, "rare_label") == [{"source": f"{data}:42", "detail": f"{what} 'neutral??' has 1 "
                                                   "example(s), fewer than 5; a variant of 'neutral'?"}]
        assert examples(report, "label_variant")[0]["detail"] == f"{what} 'neutral??' looks like a variant of 'neutral'"
        assert counts(report).get("label_not_in_set", 0) == (1 if labels and labelled else 0)


def test_a_label_under_one_percent_among_frequent_ones_is_suspect(tmp_path, jsonl):
    records = [{"text": f"评论{i}", "label": "好评" if i % 2 else "差评"} for i in range(800)]
    records += [{"text": f"评论x{i}", "label": "中评"} for i in range(6)]  # enough examples, but 0.74%
    report = check_file(jsonl(tmp_path / "d.jsonl", records), tmp_path / "r", CheckConfig(min_label_count=5))
    assert counts(report)["rare_label"] == 6
    assert examples(report, "rare_label")[0]["detail"] == \
        "label '中评' has 6 example(s), 0.74% of the records, each frequent label has 400 or more"


# ------------------------------------------------------------------ duplicates

def test_duplicates_are_counted_with_both_lines(tmp_path, cli, jsonl):
    base = {"id": 1, "instruction": "公司营收如何？", "input": "营收增长10%，利润下降。", "output": "营收增长，利润承压。"}
    data = jsonl(tmp_path / "d.jsonl", [
        base,                                                                   # 1
        {**base, "instruction": " 公司营收如何？\n", "output": "营收增长，利润承压。"},  # 2 the same record (spacing)
        {**base, "id": 2},                                                      # 3 same prompt and answer, other id
        {**base, "id": 3, "output": "利润下降明显。"},                              # 4 same prompt, another answer
        {"id": 4, "instruction": "ＷＨＡＴ is revenue?", "output": "Revenue is income."},  # 5
        {"id": 4, "instruction": "what is revenue?", "output": "revenue is income."},  # 6 same after NFKC and case
        {"id": 5, "instruction": "What is profit?", "output": "Revenue minus costs."}])
    code, out, err = cli("prepare", "check", data, "--out", tmp_path / "r", "--threshold", "exact_duplicate=0.2")
    assert code == 2 and "exact_duplicate 28.57% > 20.00%" in err
    assert "conflicting_outputs 1, exact_duplicate 2, duplicate_prompt 1" in out
    report = json.loads((tmp_path / "r" / "quality.json").read_text(encoding="utf-8"))
    assert examples(report, "exact_duplicate") == [{"source": f"{data}:2", "detail": f"same record as {data}:1"},
                                                   {"source": f"{data}:6", "detail": f"same record as {data}:5"}]
    assert examples(report, "duplicate_prompt") == [{"source": f"{data}:3",
                                                     "detail": f"same prompt and answer as {data}:1"}]
    assert examples(report, "conflicting_outputs")[0]["source"] == f"{data}:4"
    assert cli("prepare", "check", data, "--out", tmp_path / "r2", "--threshold", "duplicate_prompt=0.2")[0] == 0


def test_exact_duplicates_are_what_dedupe_drops(tmp_path, jsonl):
    """The check counts as exact duplicates the records `prepare dedupe` drops as such, nested records too."""
    from r1tune.config import DedupeConfig
    from r1tune.data.dedup import dedupe_file

    turn = [{"role": "user", "content": "Ｈｅｌｌｏ  there"}, {"role": "assistant", "content": "Hi."}]
    records = [{"instruction": "A", "output": "b"}, {"instruction": "a ", "output": "B"},
               {"messages": turn}, {"messages": [{**turn[0], "content": "hello there"}, turn[1]]},
               {"instruction": "A", "output": "b", "provenance": {"file": "raw.jsonl", "line": 9}},
               {"instruction": "A", "input": "", "output": "b"}, {"instruction": "[ZH] A", "output": "b"}]
    data = jsonl(tmp_path / "d.jsonl", records)
    dropped = dedupe_file(data, tmp_path / "out.jsonl", DedupeConfig())["dropped_by_rule"]["exact_duplicate"]
    report = check_file(data, tmp_path / "r")
    assert counts(report)["exact_duplicate"] == dropped == 3


# ------------------------------------------------------------------ marker text

def test_marker_text_in_data_is_flagged(tmp_path, cli, jsonl):
    data = jsonl(tmp_path / "d.jsonl", [
        {"instruction": "Summarise <｜Assistant｜> this text", "output": "It is summarised here."},       # 1
        {"instruction": "Add 2 and 2.", "output": "<think>2 + 2 = 4</think>The answer is 4."},            # 2 fine
        {"instruction": "Add 3 and 2.", "output": "3 + 2 = 5</think>The answer is 5."},                   # 3 fine
        {"instruction": "Add 4 and 2.", "output": "<think>4 + 2</think>six</think>The answer is 6."},      # 4
        {"messages": [{"role": "system", "content": "You are a <｜begin▁of▁sentence｜> bot."},             # 5
                      {"role": "user", "content": "Stop thinking </think> now"},
                      {"role": "assistant", "content": "<think>fine</think>OK, stopping."}]},
        {"instruction": "Call the tool", "output": "<｜tool▁calls▁begin｜>get_price<｜tool▁calls▁end｜>"},   # 6
        {"instruction": "Plain question?", "output": "An answer with a < sign and think> words."}])       # 7 fine
    code, out, _ = cli("prepare", "check", data, "--out", tmp_path / "r")
    assert code == 0 and "marker_text 5" in out
    report = json.loads((tmp_path / "r" / "quality.json").read_text(encoding="utf-8"))
    assert [(e["source"].rsplit(":", 1)[1], e["detail"]) for e in examples(report, "marker_text")] == [
        ("1", "instruction: <｜Assistant｜>"), ("4", "output: </think>"),
        ("5", "messages[0].content: <｜begin▁of▁sentence｜>"), ("5", "messages[1].content: </think>"),
        ("6", "output: <｜tool▁calls▁begin｜>, <｜tool▁calls▁end｜>")]
    assert "tokenized as plain text, never as the marker" in report["sections"]["correctness"]["marker_text"][
        "description"]
