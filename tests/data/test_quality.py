"""Every section of the quality report on crafted bad data: counts, examples, thresholds, the readable report."""

import json

import pytest

from r1tune.config import CheckConfig, UserCheck
from r1tune.data.quality import QualityChecker, check_file
from r1tune.data.quality_rules import truncation_reason
from r1tune.errors import R1TuneError

LABELS = ["正面", "负面", "中性"]


def good(i, label="正面"):
    return {"instruction": f"判断第{i}条新闻的情绪：公司{i}季度营收增长。", "output": label, "label": label}


def rule_counts(report):
    return {rule: r["count"] for section in report["sections"].values() for rule, r in section.items() if r["count"]}


def examples(report, rule):
    for section in report["sections"].values():
        if rule in section:
            return section[rule]["examples"]
    raise KeyError(rule)


@pytest.fixture
def bad_report(tmp_path, jsonl):
    records = [good(i, LABELS[i % 3]) for i in range(30)]
    records += [
        {**good(100), "label": "positive", "output": "positive"},  # 31 label_not_in_set
        {**good(101), "label": "正面 "},  # 32 label_variant of 正面 (+ label_not_in_set)
        {**good(0), "label": "负面", "output": "负面"},  # 33 same input as line 1 (中性? no: 正面) → conflicting label
        {"instruction": good(102)["instruction"], "label": "正面"},  # 34 missing output; schema mismatch
        {**good(103), "output": ""},  # 35 empty output
        {**good(104), "label": None},  # 36 label invalid (null)
        {**good(105), "extra": 1},  # 37 schema mismatch (extra field)
        {**good(106), "output": 5},  # 38 type mismatch (number), format invalid
        {"instruction": "请把以下财报要点整理为JSON：营收3.5亿元", "output": '{"营收": 3.5e8, "净利润": 1.2e7, "同比": ',
         "label": "中性"},  # 39 json invalid + truncated
        {"instruction": "Summarise the report in one paragraph please.", "label": "中性",
         "output": "公司2023年营收增长，主要得益于海外市场的扩张和新产品的推出，毛利率也有所提升，"
                   "但销售费用率上升较快，管理层表示将在下半年加强成本控制并且继续"},  # 40 truncated + language
        {**good(107), "label": "稀有类"},  # 41 rare label (+ not in set)
        {**good(108), "ref": "nonexistent"},  # 42 reference missing, schema mismatch
        {**good(109), "revenue": "三点五亿"},  # 43 number invalid, schema mismatch
        {**good(110), "instruction": "客户电话13812345678，判断情绪"},  # 44 pii
    ]
    data = jsonl(tmp_path / "bad.jsonl", records)
    config = CheckConfig(labels=LABELS, min_label_count=3, number_fields=["revenue"], reference_fields=["ref"],
                         checks=[UserCheck(name="answer_is_a_label", regex="^(正面|负面|中性)$")],
                         thresholds={"label_not_in_set": 0.01, "any": 0.9})
    return check_file(data, tmp_path / "report", config), tmp_path / "report"


def test_consistency_section(bad_report):
    report, _ = bad_report
    counts = rule_counts(report)
    assert counts["label_not_in_set"] == 3  # positive, "正面 ", 稀有类
    assert counts["label_variant"] == 1 and "'正面 ' looks like a variant of '正面'" in examples(report, "label_variant")[0]["detail"]
    assert counts["conflicting_labels"] == 1
    conflict = examples(report, "conflicting_labels")[0]
    assert conflict["source"].endswith(":33") and conflict["detail"].endswith("bad.jsonl:1")
    assert counts["schema_mismatch"] == 4  # lines 34, 37, 42, 43
    assert {e["source"].rsplit(":", 1)[1] for e in examples(report, "schema_mismatch")} == {"34", "37", "42", "43"}
    assert counts["type_mismatch"] == 1 and "'output' is number, usually text" in examples(report, "type_mismatch")[0]["detail"]
    assert counts["output_language"] == 1 and examples(report, "output_language")[0]["source"].endswith(":40")


def test_completeness_section(bad_report):
    report, _ = bad_report
    counts = rule_counts(report)
    assert counts["missing_field"] == 1 and "'output' is absent" in examples(report, "missing_field")[0]["detail"]
    assert counts["empty_field"] == 2  # the empty answer and the null label
    assert {e["source"].rsplit(":", 1)[1] for e in examples(report, "empty_field")} == {"35", "36"}
    truncated = {e["source"].rsplit(":", 1)[1]: e["detail"] for e in examples(report, "truncated_text")}
    assert set(truncated) == {"39", "40"}
    assert "mid-sentence" in truncated["40"] and "not closed" in truncated["39"]
    assert counts["rare_label"] == 3  # positive, "正面 " and 稀有类 have one record each (< 3)
    assert report["labels"]["counts"]["正面"] >= 10


def test_correctness_section(bad_report):
    report, _ = bad_report
    counts = rule_counts(report)
    assert counts["label_invalid"] == 1
    assert counts["json_invalid"] == 1 and examples(report, "json_invalid")[0]["source"].endswith(":39")
    assert counts["number_invalid"] == 1 and "三点五亿" in examples(report, "number_invalid")[0]["detail"]
    assert counts["reference_missing"] == 1 and "'nonexistent'" in examples(report, "reference_missing")[0]["detail"]
    assert counts["format_invalid"] >= 2  # missing output, empty output, numeric output
    assert counts["user:answer_is_a_label"] >= 4  # positive, JSON, prose, the number 5, the empty answer
    assert counts["pii"] == 1 and report["personal_data"] == {"phone": 1}


def test_thresholds_and_both_report_files(bad_report):
    report, folder = bad_report
    assert report["records"] == 44
    assert report["passed"] is False
    crossed = {t["rule"]: t["crossed"] for t in report["thresholds"]}
    assert crossed == {"label_not_in_set": True, "any": False}
    saved = json.loads((folder / "quality.json").read_text(encoding="utf-8"))
    assert saved["records_with_problems"] == report["records_with_problems"]
    assert set(saved["sections"]) == {"consistency", "completeness", "correctness", "personal data"}
    markdown = (folder / "report.md").read_text(encoding="utf-8")
    assert "Quality gate: **FAILED**" in markdown
    assert "| label_not_in_set | 6.82% | 1.00% | **crossed** |" in markdown
    assert "| consistency | `conflicting_labels` |" in markdown  # the per-rule table lists every rule
    assert "| correctness | `reference_missing` |" in markdown
    assert "### `json_invalid` — 1 (2.27%)" in markdown  # examples of each problem
    assert "## Labels" in markdown and "## Personal data" in markdown
    problems = [json.loads(line) for line in (folder / "problems.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {p["rule"] for p in problems} >= {"label_not_in_set", "pii", "json_invalid", "conflicting_labels"}


def test_clean_data_passes(tmp_path, jsonl):
    data = jsonl(tmp_path / "ok.jsonl", [good(i, LABELS[i % 3]) for i in range(30)])
    report = check_file(data, tmp_path / "r", CheckConfig(labels=LABELS, thresholds={"any": 0.0}))
    assert report["passed"] and report["records_with_problems"] == 0 and rule_counts(report) == {}


def test_class_imbalance_and_json_schema_user_check(tmp_path, jsonl):
    schema = {"type": "object", "required": ["revenue"], "properties": {"revenue": {"type": "number"}}}
    records = [{"instruction": f"提取第{i}份财报的营收", "output": json.dumps({"revenue": i}), "label": "a"} for i in range(40)]
    records += [{"instruction": "提取营收", "output": '{"revenue": "很多"}', "label": "b"},
                {"instruction": "提取营收。", "output": "```json\n{\"profit\": 1}\n```", "label": "b"}]
    data = jsonl(tmp_path / "d.jsonl", records)
    report = check_file(data, tmp_path / "r", CheckConfig(max_imbalance=10, min_label_count=1,
                                                          checks=[UserCheck(name="schema", json_schema=schema)]))
    counts = rule_counts(report)
    assert counts["class_imbalance"] == 1 and "20.0×" in examples(report, "class_imbalance")[0]["detail"]
    assert counts["user:schema"] == 2
    details = [e["detail"] for e in examples(report, "user:schema")]
    assert "revenue: '很多' is not of type 'number'" in details and "(root): 'revenue' is a required property" in details
    assert counts.get("json_invalid", 0) == 0  # a fenced ```json block is JSON


def test_numbers_in_structured_records_must_parse_without_declaring_the_columns(tmp_path, jsonl):
    rows = [{"company": f"公司{i}", "revenue": f"{i + 1}.5亿", "growth": f"{i}%", "year": 2020 + i % 4,
             "note": f"第{i}季度说明"} for i in range(12)]
    rows[3]["revenue"] = "三点五亿"  # not a number a parser can read
    rows[7]["growth"] = "N/A?"
    report = check_file(jsonl(tmp_path / "s.jsonl", rows), tmp_path / "r")
    # statement rows are not training samples yet (`prepare convert` makes samples of them): each is untrainable
    assert rule_counts(report) == {"number_invalid": 2, "format_unknown": 12}
    details = [e["detail"] for e in examples(report, "number_invalid")]
    assert "'revenue' = '三点五亿' in a column of numbers" in details and "'growth' = 'N/A?' in a column of numbers" in details


def test_output_format_consistency(tmp_path, jsonl):
    records = [{"instruction": f"第{i}题：提取指标", "output": json.dumps({"v": i})} for i in range(9)]
    records.append({"instruction": "第9题：提取指标", "output": "营收是3.5亿元。"})
    report = check_file(jsonl(tmp_path / "d.jsonl", records), tmp_path / "r")
    assert rule_counts(report) == {"output_format": 1}
    assert "answer is text, most answers are json" in examples(report, "output_format")[0]["detail"]


def test_truncation_heuristics():
    assert truncation_reason("```python\nprint('hello world, this is long')", is_answer=True)
    assert truncation_reason("根据公司公告，今年营收增长的主要原因是……", is_answer=True) == "ends with an ellipsis"
    assert "not closed" in truncation_reason("公司（包括其子公司、分公司以及联营企业在内的全部", is_answer=False)
    assert "512 characters" in truncation_reason("营" * 512, is_answer=False)
    assert truncation_reason("公司营收增长12.3%，净利润增长8%，经营稳健，前景良好。", is_answer=True) is None
    assert truncation_reason("请总结以下内容并给出你的判断理由和相关数据依据以及其他你认为重要的信息" * 3, is_answer=False) is None


def test_unknown_threshold_and_bad_user_checks_are_named():
    with pytest.raises(R1TuneError, match="unknown rule"):
        QualityChecker(CheckConfig(thresholds={"duplicates": 0.1}))
    with pytest.raises(R1TuneError, match="exactly one of regex or json_schema"):
        QualityChecker(CheckConfig(checks=[UserCheck(name="x")]))
    with pytest.raises(R1TuneError, match="invalid regex"):
        QualityChecker(CheckConfig(checks=[UserCheck(name="x", regex="(")]))
    with pytest.raises(R1TuneError, match="invalid JSON schema"):
        QualityChecker(CheckConfig(checks=[UserCheck(name="x", json_schema={"type": "nonsense"})]))


def test_plain_alpaca_shortcut_agrees_with_to_sample():
    """The check step skips building the sample only where to_sample surely succeeds."""
    from r1tune.data.formats import to_sample
    from r1tune.data.quality_rules import RecordLoc, plain_alpaca
    from r1tune.errors import DataError

    base = {"instruction": "判断情感", "input": "营收增长", "output": "正面"}
    variants = [{}, {"input": None}, {"input": ""}, {"input": 3}, {"input": ["a"]}, {"instruction": "  "},
                {"instruction": ["part"]}, {"instruction": None}, {"output": ""}, {"output": 1}, {"output": " \n"},
                {"output": "<think>r</think>正面"}, {"output": "r</think>"}, {"system": "s"}, {"system": ""},
                {"system": 5}, {"history": [["q", "a"]]}, {"history": []}, {"history": "x"}, {"history": [["q"]]},
                {"reasoning": "because"}, {"reasoning": ""}, {"reasoning": 0}, {"reasoning_content": False},
                {"reasoning_content": None}, {"label": "正面"}]
    records = [{**base, **v} for v in variants] + [{"output": "a"}, {"instruction": "q"}]
    for record in records:
        try:
            to_sample(record, RecordLoc("x"), "alpaca")
            ok = True
        except DataError:
            ok = False
        assert not plain_alpaca(record) or ok, record  # never says "valid" where to_sample fails
    assert plain_alpaca(base) and plain_alpaca({**base, "input": None, "label": "正面", "history": []})


def test_record_keys_are_dedups_exact_key_and_a_normalised_prompt():
    """The check's record key is `dedup.exact_key` (flat records are hashed from texts normalised once, shared with
    the prompt key); prompts compare after NFKC, case, spacing and language tags."""
    from r1tune.data.dedup import exact_key
    from r1tune.data.quality_rules import record_keys

    checker = QualityChecker()
    records = [{"instruction": "Ａ  question", "input": "", "output": "Yes.", "label": "正面", "n": 3, "ok": None},
               {"instruction": "[ZH] 问题", "output": "答", "provenance": {"file": "x", "line": 1}, "lang": {"x": 1}},
               {"text": "only text", "score": 1.5}, {"output": "no prompt"}, {"meta": {"Ａ": "Ｂ"}, "output": "x"},
               {"messages": [{"role": "user", "content": "[EN] Hi  there"}, {"role": "assistant", "content": "Hi"}]},
               {"conversations": [{"from": "human", "value": "Ｈｉ"}, {"from": "gpt", "value": "ok"}]}]
    for record in records:
        assert record_keys(checker, record)[0] == exact_key(record), record
    prompt_key = {i: record_keys(checker, r)[1] for i, r in enumerate(records)}
    assert prompt_key[3] == 0 and prompt_key[4] == 0  # no prompt: nothing to compare
    assert record_keys(checker, {"instruction": "a question", "output": "no"})[1] == prompt_key[0]
    assert record_keys(checker, {"instruction": "问题", "output": "不"})[1] == prompt_key[1]
    assert record_keys(checker, {"messages": [{"role": "user", "content": "hi there"}]})[1] == prompt_key[5]


def test_label_variants_ignore_surrounding_punctuation_but_not_signs():
    from r1tune.data.quality_rules import label_norm

    assert label_norm("neutral??") == label_norm(" Neutral ") == label_norm("“neutral”。") == "neutral"
    assert label_norm("-1") != label_norm("1") and label_norm("A+") != label_norm("A")
    assert label_norm("???") == "???"  # nothing but punctuation stays itself
