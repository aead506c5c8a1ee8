"""The cleaner on real Chinese, English and mixed text: intended normalisations only, nothing lost silently."""

import pytest

from r1tune.config import CleanConfig, PiiConfig
from r1tune.data.clean import (
    build_plan,
    clean_file,
    clean_record,
    clean_text,
    load_rules_file,
    nfkc,
    normalize_numbers,
    remove_control,
    remove_symbol_noise,
    repetition_ratio,
    strip_html,
)
from r1tune.errors import R1TuneError

FINANCE_ZH = "营收3.5亿元，同比增长12.3%"


def test_the_guides_sentence_survives_the_default_cleaner_unchanged():
    assert clean_text(FINANCE_ZH) == FINANCE_ZH
    # the guide's cleaning regex turned it into this: ten times too large, percentage and comma lost
    assert clean_text(FINANCE_ZH) != "营收35e8元同比增长123"


def test_number_normalisation_keeps_decimals_percentages_and_chinese_punctuation():
    assert clean_text(FINANCE_ZH, rules=["numbers"]) == "营收3.5e8元，同比增长12.3%"


@pytest.mark.parametrize("text", [
    "患者（男，45岁）主诉：反复头痛、头晕3天！血压160/100mmHg？建议“低盐饮食”，复查《血常规》【急】……",
    "2023年第三季度，公司实现净利润-1,234.5万元；毛利率为23.45%，较上年同期下降0.8个百分点。",
    "Revenue rose 12.3% to $3.5 billion (up from $3.1 billion); EPS was $1.05.",
    "公司Q3的EBITDA margin为45.2%，同比提升1.3个百分点，ROE达到18.7%。",
    "白细胞计数5.2×10⁹/L，血红蛋白135g/L，住院面积120㎡，①②③为检查项目。",
    "a < b and c > d, but x<y>z is not HTML; neither is <思考>。",
])
def test_real_sentences_survive_the_default_cleaner_unchanged(text):
    assert clean_text(text) == text


def test_nfkc_turns_fullwidth_ascii_to_halfwidth_but_keeps_chinese_punctuation():
    assert nfkc("营收３.５亿元，同比增长１２.３％") == FINANCE_ZH
    assert nfkc("ＡＢＣ公司（中国）：营收Ｑ３") == "ABC公司（中国）：营收Q3"
    # no Chinese in the text: the stray full-width punctuation becomes ASCII too
    assert nfkc("Revenue：１２３，up！") == "Revenue:123,up!"
    assert nfkc("体温38.5℃") == "体温38.5°C"  # the same unit written in two ways
    assert nfkc("ﬁnance\u00a0report") == "finance report"


def test_nfkc_never_flattens_what_would_change_meaning():
    for text in ["10⁹/L", "H₂O", "①营收", "100㎡", "½", "等等……", "x²+y²"]:
        assert nfkc(text) == text, text


def test_optional_fullwidth_and_cjk_space_rules():
    assert clean_text("营收 增长 １２％ ， Apple Inc 营收", rules=["cjk_spaces"]) == "营收增长 12%，Apple Inc 营收"
    from r1tune.data.clean import fullwidth_to_halfwidth

    assert fullwidth_to_halfwidth("ＡＢＣ１２３，（注）") == "ABC123，（注）"  # Chinese punctuation kept
    assert fullwidth_to_halfwidth("ＡＢＣ，ｘ") == "ABC,x"  # no Chinese: all ASCII
    assert fullwidth_to_halfwidth("10⁹") == "10⁹"  # only the full-width block


def test_html_remnants_are_removed_and_entities_decoded():
    assert strip_html("<p>营收&amp;利润</p><br/>增长12.3%") == "营收&利润\n\n增长12.3%"
    assert strip_html("<div class='x'>A&nbsp;B</div>") == "A\u00a0B\n"
    assert strip_html("<script>alert(1)</script><!-- ad -->正文") == "正文"
    assert strip_html("10<sup>9</sup>/L") == "10^9/L"
    assert strip_html("<table><tr><td>营收</td><td>3.5亿</td></tr></table>") == "营收 3.5亿 \n\n"
    assert clean_text("<p>营收&amp;利润&nbsp;</p>") == "营收&利润"


def test_whitespace_is_collapsed_and_none_is_left_around_chinese_punctuation():
    assert clean_text("  营收  增长 ， 利润 下降 。 \n\n\n\n Next  line ") == "营收 增长，利润 下降。\n\nNext line"
    assert clean_text("增长8.3%&nbsp;，毛利率（ 22.4% ）") == "增长8.3%，毛利率（22.4%）"
    assert clean_text("It rose 8% , then fell .") == "It rose 8% , then fell ."  # English spacing is not ours to fix


def test_control_and_zero_width_characters_are_removed():
    assert remove_control("营\u200b收\x07增长\ufeff\r\n下一行\u2028") == "营收增长\n下一行\n"


def test_symbol_noise_is_removed_while_cjk_and_meaningful_symbols_stay():
    assert remove_symbol_noise("★★★重磅★★★公司中标！！！！！！😀") == "重磅公司中标！！！"
    assert remove_symbol_noise("up★down") == "up down"
    kept = "温度38°C，增幅3‰，※注：A→B，¥100，§3，±2%，《报告》“引号”、顿号"
    assert remove_symbol_noise(kept) == kept
    assert clean_text("■■ 净利润 ●●●\ue000下降") == "净利润 下降"


@pytest.mark.parametrize("before, after", [
    ("营收3.5亿元", "营收3.5e8元"),
    ("订单120万件", "订单1.2e6件"),
    ("总额1,234.5元", "总额1234.5元"),
    ("净利润1,200万元", "净利润1.2e7元"),
    ("规模1.2万亿元", "规模1.2e12元"),
    ("revenue of 3.5 billion yuan", "revenue of 3.5e9 yuan"),
    ("120 million users", "1.2e8 users"),
    ("增长百分之十二点三", "增长12.3%"),
    ("占比百分之五十", "占比50%"),
    ("up 12.3 % and 4 percent", "up 12.3% and 4%"),
    ("增长12.3%", "增长12.3%"),
    ("items 1,2,3 in 2019,2020", "items 1,2,3 in 2019,2020"),  # not thousands groups
    ("千万不要万一", "千万不要万一"),  # 万 without a number is a word
])
def test_number_normalisation(before, after):
    assert normalize_numbers(before) == after


def test_user_rules_from_a_rules_file(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("- {name: rmb, pattern: '人民币\\s*', replace: 'RMB '}\n- {pattern: '【广告】'}\n", encoding="utf-8")
    plan = build_plan(load_rules_file(rules))
    assert clean_text("【广告】营收人民币 3.5亿元", plan=plan) == "营收RMB 3.5亿元"
    section = tmp_path / "section.yaml"
    section.write_text("clean:\n  rules: [numbers, whitespace]\n  min_chars: 5\n", encoding="utf-8")
    cfg = load_rules_file(section)
    assert cfg.rules == ["numbers", "whitespace"] and cfg.min_chars == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {name: broken, pattern: '(unclosed'}\n", encoding="utf-8")
    with pytest.raises(R1TuneError, match="broken"):
        build_plan(load_rules_file(bad))
    typo = tmp_path / "typo.yaml"
    typo.write_text("clean:\n  rule: [numbers]\n", encoding="utf-8")
    with pytest.raises(R1TuneError, match="rule"):
        load_rules_file(typo)


def test_repetition_ratio_separates_loops_from_prose():
    prose_zh = ("贵州茅台2023年实现营业收入1476.9亿元，同比增长18.0%；归母净利润747.3亿元，同比增长19.2%。"
                "公司直销渠道收入占比提升，i茅台数字营销平台贡献显著，经营活动现金流量净额665.9亿元。")
    prose_en = ("The company reported revenue of 3.5 billion yuan, up 12.3 percent year on year, while net profit "
                "rose 8 percent and the gross margin improved to 45.2 percent on a better product mix.")
    assert repetition_ratio(prose_zh) < 0.1 and repetition_ratio(prose_en) < 0.1
    assert repetition_ratio("好" * 40) > 0.9
    assert repetition_ratio("点击关注，" * 20) > 0.8
    assert repetition_ratio("short") == 0.0


def _clean(record, **cfg):
    return clean_record(record, build_plan(CleanConfig(**cfg)))


def test_filters_drop_with_the_rule_and_reason():
    assert _clean({"text": "涨"}, min_chars=5).drop_rule == "too_short"
    assert _clean({"text": "营收" * 30}, max_chars=20, max_repetition=None).drop_rule == "too_long"
    dropped = _clean({"text": "株式会社トヨタ自動車は、通期の業績予想を上方修正しました。"})
    assert dropped.drop_rule == "language" and "other" in dropped.drop_reason
    assert _clean({"text": "<p></p>★★"}).drop_rule == "empty"
    looped = _clean({"text": "哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈哈"})
    assert looped.drop_rule == "repetition" and "5-grams" in looped.drop_reason
    kept = _clean({"text": "Revenue rose 12.3% year on year."})
    assert kept.record is not None and kept.drop_rule is None


def test_filter_fields_judge_only_the_named_fields():
    record = {"instruction": "判断以下财经新闻的情绪，给出正面、负面或中性。", "input": "涨"}
    assert _clean(dict(record), min_chars=5).record is not None
    assert _clean(dict(record), min_chars=5, filter_fields=["input"]).drop_rule == "too_short"


def test_labels_and_ids_are_not_cleaned_but_messages_are():
    result = _clean({"id": "ＩＤ－１", "label": "Ｐｏｓｉｔｉｖｅ",
                     "messages": [{"role": "user", "content": "营收３.５亿元"}, {"role": "assistant", "content": "正面"}]})
    assert result.record["id"] == "ＩＤ－１" and result.record["label"] == "Ｐｏｓｉｔｉｖｅ"
    assert result.record["messages"][0]["content"] == "营收3.5亿元"
    assert result.changes == {"messages[0].content": ["nfkc"]}


def test_personal_data_actions_mask_drop_report():
    record = {"text": "客户电话13812345678，回拨138-1234-5678，邮箱 zhang.wei@example.com"}
    masked = _clean(dict(record))
    assert masked.record["text"] == "客户电话[PHONE_1]，回拨[PHONE_1]，邮箱 [EMAIL_1]"
    assert masked.pii == {"phone": 2, "email": 1}
    dropped = _clean(dict(record), pii=PiiConfig(action="drop"))
    assert dropped.record is None and dropped.drop_rule == "pii" and "phone 2" in dropped.drop_reason
    reported = _clean(dict(record), pii=PiiConfig(action="report"))
    assert reported.record["text"] == record["text"] and reported.pii["phone"] == 2


def test_clean_file_counts_and_logs_every_dropped_and_changed_record(tmp_path, jsonl, read):
    raw = jsonl(tmp_path / "raw.jsonl", [
        {"instruction": "判断情绪", "input": FINANCE_ZH, "output": "正面"},  # unchanged
        {"instruction": "判断情绪", "input": "<b>净利润</b>下降５％★", "output": "负面"},  # changed
        '{"instruction": "broken',  # unreadable
        {"instruction": "", "input": "", "output": ""},  # empty
        {"instruction": "Call me", "input": "13812345678", "output": "ok"},  # personal data masked
    ])
    summary = clean_file(raw, tmp_path / "clean.jsonl")
    out = read(tmp_path / "clean.jsonl")
    log = read(tmp_path / "clean.log.jsonl")
    assert summary["read"] == 5 and summary["written"] == 3 and summary["dropped"] == 2
    assert summary["read"] == summary["written"] + summary["dropped"]  # nothing lost silently
    assert summary["dropped_by_rule"] == {"unreadable": 1, "empty": 1}
    assert summary["pii"] == {"action": "mask", "found": {"phone": 1}}
    assert out[0]["input"] == FINANCE_ZH
    assert out[1]["input"] == "净利润下降5%"
    assert out[2]["input"] == "[PHONE_1]"
    assert all(r["provenance"]["file"] == str(raw) for r in out)
    assert [r["provenance"]["line"] for r in out] == [1, 2, 5]
    by_line = {entry["source"].rsplit(":", 1)[1]: entry for entry in log}
    assert by_line["2"]["action"] == "changed" and by_line["2"]["reason"] == "input: html, nfkc, symbols"
    assert by_line["3"]["action"] == "dropped" and by_line["3"]["rule"] == "unreadable"
    assert by_line["4"]["rule"] == "empty"
    assert by_line["5"]["rule"] == "pii"
    assert "1" not in by_line  # an unchanged record is not logged
