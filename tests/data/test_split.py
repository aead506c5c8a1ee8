"""Stratified, seeded, group-aware splits; augmented samples never reach validation or test; leakage flagged."""

from collections import Counter

import pytest

from r1tune.config import AugmentConfig, SplitConfig
from r1tune.data.augment import augment_file
from r1tune.data.split import split_file, split_sizes
from r1tune.errors import R1TuneError


def labelled(n_per_label):
    rows = []
    for label, n in n_per_label.items():
        rows += [{"instruction": f"判断第{i}条{label}类新闻：公司第{i}季度营业收入同比增长{i}%，净利润明显提高。",
                  "output": label, "label": label} for i in range(n)]
    return rows


def test_split_sizes_round_half_up_and_keep_train():
    assert split_sizes(100, 0.1, 0.1) == (80, 10, 10)
    assert split_sizes(5, 0.1, 0.1) == (3, 1, 1)
    assert split_sizes(2, 0.1, 0.1) == (2, 0, 0)
    assert split_sizes(1, 0.5, 0.5) == (1, 0, 0)
    assert split_sizes(0, 0.1, 0.1) == (0, 0, 0)


def test_stratified_split_with_a_fixed_seed(tmp_path, jsonl, read):
    data = jsonl(tmp_path / "all.jsonl", labelled({"正面": 50, "负面": 30, "中性": 20}))
    summary = split_file(data, tmp_path / "a", SplitConfig(seed=7))
    assert summary["splits"] == {"train": 80, "validation": 10, "test": 10}
    assert summary["labels"]["validation"] == {'"正面"': 5, '"负面"': 3, '"中性"': 2}  # proportional per label
    assert summary["labels"]["test"] == {'"正面"': 5, '"负面"': 3, '"中性"': 2}
    first = {s: read(tmp_path / "a" / f"{s}.jsonl") for s in ("train", "validation", "test")}
    split_file(data, tmp_path / "b", SplitConfig(seed=7))
    assert {s: read(tmp_path / "b" / f"{s}.jsonl") for s in first} == first  # same seed, same split
    split_file(data, tmp_path / "c", SplitConfig(seed=8))
    assert read(tmp_path / "c" / "test.jsonl") != first["test"]  # another seed, another split
    ids = [r["instruction"] for part in first.values() for r in part]
    assert len(ids) == len(set(ids)) == 100  # every record exactly once


def test_groups_never_straddle_splits(tmp_path, jsonl, read):
    rows = []
    for doc in range(30):  # three windows of each long document
        for w in range(3):
            rows.append({"input": f"文档{doc}第{w}段", "output": "摘要", "window": {"index": w, "count": 3, "source": f"raw:{doc}"},
                         "provenance": {"file": "raw.jsonl", "line": doc}})
    summary = split_file(jsonl(tmp_path / "w.jsonl", rows), tmp_path / "out")
    where = {}
    for split in ("train", "validation", "test"):
        for r in read(tmp_path / "out" / f"{split}.jsonl"):
            where.setdefault(r["provenance"]["line"], set()).add(split)
    assert all(len(s) == 1 for s in where.values()) and len(where) == 30
    assert summary["splits"] == {"train": 72, "validation": 9, "test": 9}
    by_field = [{"text": f"t{i}", "case_id": i // 4} for i in range(40)]
    split_file(jsonl(tmp_path / "g.jsonl", by_field), tmp_path / "g", SplitConfig(group_field="case_id"))
    cases = Counter()
    for split in ("train", "validation", "test"):
        for case in {r["case_id"] for r in read(tmp_path / "g" / f"{split}.jsonl")}:
            cases[case] += 1
    assert set(cases.values()) == {1}


def test_no_augmented_sample_in_validation_or_test_even_when_augmented_before_the_split(tmp_path, jsonl, read):
    data = jsonl(tmp_path / "all.jsonl", labelled({"正面": 20, "负面": 20}))
    augment_file(data, tmp_path / "augmented.jsonl", AugmentConfig(ratio=1.0, thesauri=["cilin", "finance"]))
    summary = split_file(tmp_path / "augmented.jsonl", tmp_path / "out")
    train = read(tmp_path / "out" / "train.jsonl")
    evaluation = read(tmp_path / "out" / "validation.jsonl") + read(tmp_path / "out" / "test.jsonl")
    assert evaluation and not any("augmented" in r for r in evaluation)
    eval_sources = {f"{r['provenance']['file']}:{r['provenance']['line']}" for r in evaluation}
    assert any("augmented" in r for r in train)
    assert not any(r["augmented"]["from"] in eval_sources for r in train if "augmented" in r)  # no paraphrase leak
    dropped = read(tmp_path / "out" / "split.log.jsonl")
    assert len(dropped) == summary["dropped_by_rule"]["augmented_in_eval"] > 0
    assert all(e["rule"] == "augmented_in_eval" for e in dropped)


def test_leakage_is_flagged_after_the_split(tmp_path, jsonl, read):
    rows = labelled({"正面": 20})
    rows += [{**r, "id": "copy"} for r in rows]  # every prompt twice, as separate records
    summary = split_file(jsonl(tmp_path / "dup.jsonl", rows), tmp_path / "out", SplitConfig(seed=1))
    leak = summary["leakage"]
    n_eval = summary["splits"]["validation"] + summary["splits"]["test"]
    assert leak["checked"] == n_eval and leak["exact"] > 0
    assert len(read(tmp_path / "out" / "leakage.jsonl")) == leak["exact"] + leak["near"]


def test_shares_must_add_up():
    with pytest.raises(R1TuneError, match="add up to 1"):
        split_file("unused.jsonl", "unused", SplitConfig(train=0.8, validation=0.2, test=0.2))
