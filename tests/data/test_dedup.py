"""Exact, near and semantic duplicates, and train/test leakage, on planted duplicates."""

import random

from r1tune.config import DedupeConfig
from r1tune.data.dedup import NearIndex, dedupe_file, exact_key, find_leakage, shingles

CLAUSES = [
    "公司2023年实现营业收入{n}亿元", "归母净利润同比增长{n}%", "经营活动现金流量净额大幅改善", "毛利率较上年提升{n}个百分点",
    "海外市场收入占比首次超过三成", "研发投入持续加大", "董事会拟每10股派发现金红利{n}元", "存货周转天数明显下降",
    "the bank's net interest margin narrowed to {n}%", "management expects double-digit growth next year",
    "shares rose {n}% after the earnings call", "the company repurchased stock worth {n} million dollars",
    "患者主诉反复头痛{n}天", "血压控制在{n}/80mmHg左右", "建议低盐低脂饮食并规律服药", "两周后门诊复查血常规",
    "资产负债率下降至{n}%", "应收账款周转率有所提高", "新产品线贡献了主要增量", "销售费用率同比上升",
    "EBITDA margin达到{n}%", "渠道库存处于健康水平", "原材料价格回落带来成本优势", "公司获得{n}项发明专利授权",
]


def base_texts(count, seed=0):
    rng = random.Random(seed)
    texts = []
    while len(texts) < count:
        parts = [c.format(n=rng.randint(10, 999)) for c in rng.sample(CLAUSES, 5)]
        text = "，".join(parts) + "。"
        if all(jaccard(text, t) < 0.4 for t in texts):  # distinct from every earlier base
            texts.append(text)
    return texts


def jaccard(a, b, n=5):
    sa, sb = shingles(a, n), shingles(b, n)
    return len(sa & sb) / len(sa | sb)


def near_copy(text, rng):
    """One small edit: a changed character, an added word, or dropped final punctuation."""
    kind = rng.choice(["char", "word", "punct"])
    if kind == "char":
        i = rng.randrange(len(text) - 1)
        return text[:i] + ("X" if text[i] != "X" else "Y") + text[i + 1:]
    if kind == "word":
        return text.replace("，", "，另外", 1)
    return text.rstrip("。") + "！"


def test_exact_key_normalises_width_case_and_whitespace_but_not_labels():
    a = {"instruction": "营收增长 12.3%", "output": "Positive", "label": "正面"}
    b = {"instruction": "营收增长  １２.３％", "output": "positive", "label": "正面", "provenance": {"file": "x", "line": 9}}
    assert exact_key(a) == exact_key(b)
    assert exact_key(a) != exact_key({**a, "label": "负面"})
    assert exact_key(a) != exact_key({**a, "instruction": "营收增长 123%"})  # a decimal point is content


def test_exact_dedupe_keeps_the_first_and_logs_the_rest(tmp_path, jsonl, read):
    rows = [{"text": "营收增长12.3%", "label": "正面"}, {"text": "营收增长１２.３％ ", "label": "正面"},
            {"text": "净利润下降", "label": "负面"}, {"text": "营收增长12.3%", "label": "负面"}]
    summary = dedupe_file(jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl")
    assert summary["written"] == 3 and summary["dropped_by_rule"] == {"exact_duplicate": 1}
    assert [r["text"] for r in read(tmp_path / "out.jsonl")] == ["营收增长12.3%", "净利润下降", "营收增长12.3%"]
    [entry] = read(tmp_path / "out.log.jsonl")
    assert entry["source"].endswith(":2") and entry["duplicate_of"].endswith(":1") and entry["rule"] == "exact_duplicate"


def test_near_dedupe_recall_on_planted_duplicates(tmp_path, jsonl, read):
    rng = random.Random(1)
    bases = base_texts(60)
    copies = [near_copy(t, rng) for t in bases[:30]]
    assert all(jaccard(c, b) >= 0.8 for c, b in zip(copies, bases))  # planted: truly near
    assert max(jaccard(a, b) for i, a in enumerate(bases) for b in bases[i + 1:]) < 0.4  # bases: truly distinct
    records = [{"text": t} for t in bases] + [{"text": c} for c in copies]
    rng.shuffle(records[60:])
    summary = dedupe_file(jsonl(tmp_path / "in.jsonl", records), tmp_path / "out.jsonl",
                          DedupeConfig(near=True, near_threshold=0.7))
    kept = {r["text"] for r in read(tmp_path / "out.jsonl")}
    found = sum(1 for c in copies if c not in kept)
    assert found / len(copies) >= 0.95  # recall
    assert set(bases) <= kept  # no distinct text lost
    assert summary["dropped_by_rule"]["near_duplicate"] == found
    logged = [e for e in read(tmp_path / "out.log.jsonl") if e["rule"] == "near_duplicate"]
    assert all(0.7 <= e["similarity"] <= 1 and "Jaccard" in e["reason"] for e in logged)
    assert all(e["duplicate_of"] != e["source"] for e in logged)


def test_near_duplicates_with_another_label_are_a_conflict_not_a_duplicate(tmp_path, jsonl, read):
    text = base_texts(1)[0]
    rows = [{"text": text, "label": "正面"}, {"text": text + "！", "label": "负面"}, {"text": text + "！", "label": "正面"}]
    summary = dedupe_file(jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl", DedupeConfig(near=True))
    assert summary["written"] == 2 and summary["dropped_by_rule"] == {"near_duplicate": 1}
    assert [r["label"] for r in read(tmp_path / "out.jsonl")] == ["正面", "负面"]


def test_near_index_works_on_chinese_without_word_boundaries():
    index = NearIndex(threshold=0.7, ngram=3)
    index.add("a", "患者主诉反复头痛三天伴恶心呕吐，血压一百六十比一百")
    assert index.match("患者主诉反复头痛三天伴恶心呕吐，血压一百六十比九十")[0] == "a"
    assert index.match("公司第三季度营业收入同比增长百分之十二") is None


def test_semantic_dedupe_with_the_packaged_sentence_encoder(tmp_path, jsonl, read):
    rows = [{"text": "The company's revenue increased by 12 percent this year."},
            {"text": "This year the company's revenue grew by 12 percent."},
            {"text": "The patient has a fever and a headache."},
            {"text": "公司今年营收增长了12%。"},
            {"text": "今年公司的营业收入增长了12%。"},
            {"text": "Net profit fell sharply in the third quarter."}]
    summary = dedupe_file(jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl",
                          DedupeConfig(semantic=True, semantic_threshold=0.9))
    kept = [r["text"] for r in read(tmp_path / "out.jsonl")]
    assert kept == [rows[0]["text"], rows[2]["text"], rows[3]["text"], rows[5]["text"]]
    assert summary["dropped_by_rule"] == {"semantic_duplicate": 2}
    log = read(tmp_path / "out.log.jsonl")
    assert log[0]["duplicate_of"].endswith(":1") and log[0]["similarity"] >= 0.9


def test_leakage_between_splits_is_flagged(tmp_path, jsonl, read):
    bases = base_texts(6, seed=3)
    train = jsonl(tmp_path / "train.jsonl", [{"instruction": t, "output": "x"} for t in bases[:4]])
    test = jsonl(tmp_path / "test.jsonl", [
        {"instruction": bases[0], "output": "other answer"},  # exact prompt leak
        {"instruction": bases[1].rstrip("。") + "！", "output": "x"},  # near leak
        {"instruction": bases[5], "output": "x"},  # clean
    ])
    result = find_leakage(train, [test], tmp_path / "leakage.jsonl")
    assert result == {"exact": 1, "near": 1, "checked": 3, "log": str(tmp_path / "leakage.jsonl")}
    flagged = read(tmp_path / "leakage.jsonl")
    assert [(e["rule"], e["source"].rsplit(":", 1)[1]) for e in flagged] == [("exact_leak", "1"), ("near_leak", "2")]
    assert flagged[0]["train"].endswith("train.jsonl:1")
