"""Structured, semi-structured and dialogue records become samples with provenance; failures are logged."""

import json

import pytest

from r1tune.config import DialogueSpec, SemiSpec, StructuredSpec
from r1tune.data.convert import convert_file, exchanges_of, extract_metrics, is_question, load_spec, standardize
from r1tune.errors import R1TuneError

SCHEMA = {"type": "object", "required": ["company", "year", "revenue"],
          "properties": {"company": {"type": "string", "minLength": 1}, "year": {"type": "integer"},
                         "revenue": {"type": "number", "minimum": 0}, "growth": {"type": "number"}}}
SPEC = {"json_schema": SCHEMA, "aliases": {"company": ["公司"], "year": ["年度"], "revenue": ["营业收入"], "growth": ["同比"]},
        "templates": [{"name": "revenue_qa", "instruction": "{company}{year}年的营业收入是多少？",
                       "output": "{company}{year}年营业收入为{revenue:,.0f}元。"},
                      {"name": "json", "instruction": "整理{company}的指标", "output": "{_json}"},
                      {"name": "needs_profit", "instruction": "{company}的净利润？", "output": "{net_profit}元"}]}


def test_standardize_renames_parses_numbers_and_validates():
    import jsonschema

    spec = StructuredSpec(**SPEC)
    validator = jsonschema.Draft202012Validator(SCHEMA)
    std, reason = standardize({"公司": " 贵州茅台 ", "年度": "2023", "营业收入": "1,476.9亿", "同比": "18.0%"}, spec, validator)
    assert reason is None
    assert std == {"company": "贵州茅台", "year": 2023, "revenue": 147690000000, "growth": 0.18}
    _, reason = standardize({"公司": "某公司", "年度": "二〇二三", "营业收入": "3亿"}, spec, validator)
    assert reason == "year: '二〇二三' is not of type 'integer'"
    _, reason = standardize({"公司": "某公司", "年度": 2023, "营业收入": "—"}, spec, validator)
    assert reason == "'revenue' is a required property"


def test_structured_conversion_writes_samples_with_provenance_and_logs_failures(tmp_path, read):
    csv = tmp_path / "statements.csv"
    csv.write_text("公司,年度,营业收入,同比\n贵州茅台,2023,\"1,476.9亿\",18.0%\n宁德时代,2023,4009.2亿元,22%\n"
                   "某公司,2023,-5亿,1%\n", encoding="utf-8")
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps({"structured": SPEC}, ensure_ascii=False), encoding="utf-8")  # JSON is YAML
    summary = convert_file(csv, tmp_path / "out.jsonl", "structured", spec)
    samples = read(tmp_path / "out.jsonl")
    assert summary["written"] == 4 and len(samples) == 4
    assert samples[0] == {"instruction": "贵州茅台2023年的营业收入是多少？", "output": "贵州茅台2023年营业收入为147,690,000,000元。",
                          "provenance": {"file": str(csv), "line": 2, "rule": "revenue_qa"}}
    assert json.loads(samples[1]["output"]) == {"company": "贵州茅台", "year": 2023, "revenue": 147690000000, "growth": 0.18}
    assert all(set(s["provenance"]) == {"file", "line", "rule"} for s in samples)
    log = read(tmp_path / "out.log.jsonl")
    reasons = {(e["rule"], e["source"].split(":")[-1].split(" ")[0]) for e in log}
    assert ("schema", "4") in reasons  # negative revenue violates the schema
    missing = [e for e in log if e["rule"] == "template_field_missing"]
    assert len(missing) == 2 and "'net_profit'" in missing[0]["reason"]  # the template's reference does not exist
    assert summary["dropped_by_rule"] == {"template_field_missing": 2, "schema": 1}


def test_semi_structured_metrics_are_extracted_by_declared_patterns(tmp_path, jsonl, read):
    spec = SemiSpec(text_field="summary", keep=["company"], metrics={
        "revenue": {"pattern": r"营业收入(?:为|达到?)?(?P<value>[\d.,]+\s*[万亿]?)元", "required": True},
        "growth": {"pattern": r"同比增长(?P<value>-?[\d.]+%)", "type": "percent"},
        "rating": {"pattern": r"评级[为:：](\S{2})", "type": "text"}},
        templates=[{"name": "extract", "instruction": "从摘要中提取关键指标：{_text}", "output": "{_json}"}])
    assert extract_metrics("营业收入为3.5亿元，同比增长12.3%，评级为买入。", spec)[0] == {
        "revenue": 350000000, "growth": 12.3, "rating": "买入"}
    data = jsonl(tmp_path / "in.jsonl", [
        {"company": "A公司", "summary": "报告期内营业收入达到1,234.5万元，同比增长8%。"},
        {"company": "B公司", "summary": "本期净利润下降。"},  # required metric missing
        {"company": "C公司"},  # no text
    ])
    summary = convert_file(data, tmp_path / "out.jsonl", "semi", spec)
    [sample] = read(tmp_path / "out.jsonl")
    assert json.loads(sample["output"]) == {"company": "A公司", "revenue": 12345000, "growth": 8}
    assert sample["instruction"].startswith("从摘要中提取关键指标：报告期内") and sample["provenance"]["line"] == 1
    assert summary["dropped_by_rule"] == {"metric_missing": 1, "no_text": 1}
    assert summary["metrics_found"] == {"revenue": 1, "growth": 1}


def test_question_detection_in_chinese_and_english():
    for q in ["净利润是多少？", "请解释一下EBITDA", "这个药饭前吃吗", "How do I read a balance sheet", "Can I refinance now",
              "帮我算一下利息", "What is 同比增长?"]:
        assert is_question(q), q
    for not_q in ["你好", "谢谢", "好的", "thanks a lot", "ok", "收到"]:
        assert not is_question(not_q), not_q


def test_dialogue_logs_are_split_into_valid_exchanges_with_reasons(tmp_path, jsonl, read):
    chat = [
        {"role": "客服", "content": "您好，很高兴为您服务，请问有什么可以帮您？"},  # bot greeting before any question
        {"role": "客户", "content": "你好"},
        {"role": "客服", "content": "您好，请问有什么可以帮您的？"},  # boilerplate answer → dropped
        {"role": "客户", "content": "我的信用卡年费怎么收？"},
        {"role": "客户", "content": "我的信用卡年费怎么收？"},  # the same message sent twice
        {"role": "客服", "content": "普卡首年免年费，刷卡满6次免次年年费。"},
        {"role": "客户", "content": "谢谢"},
        {"role": "客服", "content": "不客气。"},  # no question
        {"role": "客户", "content": "那金卡呢？"},
        {"role": "客服", "content": "金卡年费300元，可用积分抵扣。"},
        {"role": "客户", "content": "我的信用卡年费怎么收？"},
        {"role": "客服", "content": "普卡首年免年费，刷卡满6次免次年年费。"},  # duplicated exchange
        {"role": "客户", "content": "好"},
        {"role": "客服", "content": ""},  # empty answer
    ]
    data = jsonl(tmp_path / "in.jsonl", [
        {"messages": chat},
        {"question": "什么是市盈率？", "answer": "市盈率是股价除以每股收益。"},
        {"question": "?", "answer": "不知道"},  # too short
        {"question": "As an AI?", "answer": "As an AI language model, I cannot answer."},  # bot boilerplate
        {"foo": "bar"},  # not a dialogue
    ])
    summary = convert_file(data, tmp_path / "out.jsonl", "dialogue", DialogueSpec(history=2))
    samples = read(tmp_path / "out.jsonl")
    assert [s["messages"][-2]["content"] for s in samples] == ["我的信用卡年费怎么收？", "那金卡呢？", "什么是市盈率？"]
    assert samples[0]["messages"] == [{"role": "user", "content": "我的信用卡年费怎么收？"},
                                      {"role": "assistant", "content": "普卡首年免年费，刷卡满6次免次年年费。"}]
    assert [m["role"] for m in samples[1]["messages"]] == ["user", "assistant", "user", "assistant"]  # history kept
    assert samples[1]["provenance"] == {"file": str(data), "line": 1, "rule": "dialogue", "exchange": 5}
    assert samples[2]["provenance"] == {"file": str(data), "line": 2, "rule": "qa"}
    assert summary["dropped_by_rule"] == {"empty": 2, "bot_boilerplate": 2, "no_question": 1, "duplicated": 1,
                                          "too_short": 1, "not_a_dialogue": 1}
    log = read(tmp_path / "out.log.jsonl")
    assert any(e["source"].endswith("in.jsonl:1#exchange2") and e["rule"] == "bot_boilerplate" for e in log)
    assert summary["exchanges"] == 10 and summary["valid_exchanges"] == 3


def test_exchanges_merge_consecutive_turns_and_reject_unknown_speakers():
    spec = DialogueSpec()
    pairs, error = exchanges_of({"messages": [{"from": "human", "value": "第一问"}, {"from": "human", "value": "补充说明？"},
                                              {"from": "gpt", "value": "回答"}]}, spec)
    assert error is None and pairs == [("第一问\n补充说明？", "回答")]
    _, error = exchanges_of({"messages": [{"role": "narrator", "content": "x"}]}, spec)
    assert "unknown speaker 'narrator'" in error


def test_spec_errors_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("templates: [{name: t, instruction: x}]\n", encoding="utf-8")
    with pytest.raises(R1TuneError, match="output"):
        load_spec("structured", bad)
    with pytest.raises(R1TuneError, match="unknown convert kind"):
        load_spec("tabular", None)
    with pytest.raises(R1TuneError, match="spec file not found"):
        load_spec("semi", tmp_path / "missing.yaml")
