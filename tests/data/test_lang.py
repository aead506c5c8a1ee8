"""Language per sample (zh / en / mixed with the Chinese share) and tags applied the same way everywhere."""

import pytest

from r1tune.data.lang import TAGS, detect_language, record_language, strip_tag, tag_file, tag_prompt


@pytest.mark.parametrize("text, lang", [
    ("营收3.5亿元，同比增长12.3%", "zh"),
    ("GDP增长了5%，CPI同比上涨0.2%。", "zh"),
    ("Revenue rose 12.3% to RMB 3.5 billion.", "en"),
    ("The patient (患者) presented with fever and headache.", "en"),
    ("What does 同比增长 mean in an annual report?", "mixed"),
    ("公司Q3的EBITDA margin为45.2%，gross margin为30%。", "mixed"),
    ("株式会社トヨタ自動車は、通期の業績予想を上方修正しました。", "other"),
    ("Выручка компании выросла на 12%.", "other"),
    ("12.3% 3.5e8 —— ！", "unknown"),
])
def test_detect_language(text, lang):
    assert detect_language(text)["lang"] == lang


def test_the_chinese_share_is_reported():
    assert detect_language("营收增长")["zh_ratio"] == 1.0
    assert detect_language("revenue growth")["zh_ratio"] == 0.0
    mixed = detect_language("What is 净利润?")  # 3 characters, 2 words
    assert mixed == {"lang": "mixed", "zh_ratio": 0.6}


def test_tags_are_idempotent_and_identical_for_training_and_inference():
    assert tag_prompt("营收增长了吗？") == "[ZH] 营收增长了吗？"
    assert tag_prompt("Did revenue grow?") == "[EN] Did revenue grow?"
    assert tag_prompt("What is 净利润?") == "[MIXED] What is 净利润?"
    once = tag_prompt("营收增长了吗？")
    assert tag_prompt(once) == once  # never doubled
    assert tag_prompt("[EN] 营收增长了吗？") == "[ZH] 营收增长了吗？"  # a wrong tag is replaced
    assert strip_tag(once) == "营收增长了吗？"
    assert tag_prompt("12345") == "12345"  # no language, no tag
    assert tag_prompt("营收", {"zh": "<zh>"}) == "<zh> 营收"


def test_tag_file_records_language_and_tags_the_prompt(tmp_path, jsonl, read):
    data = jsonl(tmp_path / "in.jsonl", [
        {"instruction": "营收增长了吗？", "output": "是的"},
        {"messages": [{"role": "user", "content": "Did revenue grow?"}, {"role": "assistant", "content": "Yes."}]},
        {"instruction": "[ZH] 净利润是多少？", "output": "8亿元"},
    ])
    summary = tag_file(data, tmp_path / "out.jsonl", add_tags=True)
    out = read(tmp_path / "out.jsonl")
    assert out[0]["instruction"] == "[ZH] 营收增长了吗？" and out[0]["lang"] == {"lang": "zh", "zh_ratio": 1.0}
    assert out[1]["messages"][0]["content"] == "[EN] Did revenue grow?" and out[1]["messages"][1]["content"] == "Yes."
    assert out[2]["instruction"] == "[ZH] 净利润是多少？"  # already tagged: unchanged, not logged
    assert summary["languages"] == {"zh": 2, "en": 1} and summary["changed"] == 2
    # the tag a served prompt gets is the one training used
    assert tag_prompt("营收增长了吗？", TAGS) == out[0]["instruction"]
    assert record_language(out[0]) == {"lang": "zh", "zh_ratio": 1.0}  # a tag does not change the detection


def test_tag_file_without_tags_only_detects(tmp_path, jsonl, read):
    data = jsonl(tmp_path / "in.jsonl", [{"text": "Revenue rose.", "label": "正面"}])
    summary = tag_file(data, tmp_path / "out.jsonl")
    [record] = read(tmp_path / "out.jsonl")
    assert record["text"] == "Revenue rose." and record["lang"]["lang"] == "en" and summary["changed"] == 0
