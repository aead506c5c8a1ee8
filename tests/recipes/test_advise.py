"""The advisor: the choice matrix on small / medium / large data, memory-bound batch sizes, one exact setting."""

import json
import random

import pytest

from r1tune.recipes.advise import advise
from r1tune.train.advice import candidates
from r1tune.train.memory import GIB


def write_data(path, n):
    rng = random.Random(n)
    words = "营收 增长 利润 风险 revenue margin guidance 股东 报告 quarter".split()
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            f.write(json.dumps({"instruction": " ".join(rng.choices(words, k=12)), "output": rng.choice(words)},
                               ensure_ascii=False) + "\n")
    return path


@pytest.mark.parametrize("n, first, ranks", [(800, "lora", {"lora": 8}), (20_000, "lora", {"lora": 16}),
                                              (120_000, "full", {})])
def test_choice_matrix_by_data_size(n, first, ranks):
    ranked = sorted(candidates(n, "moderate", keep_general=False), key=lambda c: -c[2])
    assert ranked[0][0] == first
    for method, rank in ranks.items():
        assert dict((m, r) for m, r, _, _ in ranked)[method] == rank


def test_goals_and_distance_move_the_ranking():
    keep = sorted(candidates(800, "moderate", keep_general=True), key=lambda c: -c[2])
    assert keep[0][0] == "prefix"  # the guide: prefix tuning when the original ability must be kept
    far = dict((m, r) for m, r, _, _ in candidates(20_000, "far", keep_general=False))
    assert far["lora"] == 32  # a far domain needs more capacity
    large_keep = sorted(candidates(200_000, "moderate", keep_general=True), key=lambda c: -c[2])
    assert large_keep[0][0] != "full"


@pytest.mark.parametrize("n", [600, 20_000, 120_000])
def test_advise_end_to_end_json(tiny_model_dir, tmp_path, n):
    data = write_data(tmp_path / "d.jsonl", n)
    report = json.loads(advise(str(tiny_model_dir), str(data), memory="8GiB", measure=False, as_json=True))
    recs = report["recommendations"]
    assert report["data_profile"]["samples"] == n and report["domain_distance"] in ("close", "moderate", "far")
    assert all(isinstance(r["memory_bytes"], int) and r["memory_bytes"] > 0 and r["fits"] for r in recs)
    assert all(r["batch_size"] * r["grad_accum"] >= 32 for r in recs) and recs[0]["reasons"]
    top = {600: ("lora", "prompt", "dora", "prefix"), 20_000: ("lora", "dora"), 120_000: ("full", "freeze")}[n]
    assert recs[0]["method"] in top


def test_tight_memory_shrinks_the_micro_batch_and_falls_back(tiny_model_dir, tmp_path):
    data = write_data(tmp_path / "d.jsonl", 300)
    roomy = json.loads(advise(str(tiny_model_dir), str(data), memory="8GiB", measure=False, as_json=True,
                              max_length=512))
    lora = next(r for r in roomy["recommendations"] if r["method"] == "lora")
    budget = int(lora["memory_bytes"] * 0.5)  # half of what 16 samples need
    tight = json.loads(advise(str(tiny_model_dir), str(data), memory=str(budget), measure=False, as_json=True,
                              max_length=512))
    lora_tight = next(r for r in tight["recommendations"] if r["method"] == "lora")
    assert lora_tight["batch_size"] < lora["batch_size"] and lora_tight["memory_bytes"] <= budget
    assert lora_tight["batch_size"] * lora_tight["grad_accum"] >= 32  # global batch kept by accumulation
    hopeless = json.loads(advise(str(tiny_model_dir), str(data), memory="1MiB", measure=False, as_json=True))
    assert not any(r["fits"] for r in hopeless["recommendations"])
    assert any("more than" in " ".join(r["reasons"]) for r in hopeless["recommendations"])


def test_exact_setting_and_measured_time(tiny_model_dir, tmp_path, capsys):
    data = write_data(tmp_path / "d.jsonl", 200)
    report = json.loads(advise(str(tiny_model_dir), str(data), method="dora", batch_size=4, max_length=128,
                               as_json=True))
    (only,) = report["recommendations"]
    assert (only["method"], only["batch_size"], only["max_length"]) == ("dora", 4, 128)
    assert set(only["memory_breakdown"]) >= {"weights", "gradients", "optimizer", "activations", "total"}
    assert only["hours_per_epoch"] > 0 and "measured" in only["time_basis"]
    # the measured steps are not silent: stderr names the setting and each step as it finishes
    err = capsys.readouterr().err
    assert "advise: measuring dora (micro-batch 4, max_length 128): loading the model, then 3 steps" in err
    assert all(f"  step {k}/3 done (" in err for k in (1, 2, 3))
    text = advise(str(tiny_model_dir), str(data), memory="4GiB", measure=False)
    assert "recommendations for" in text and "GiB" in text and str(round(4.0, 1)) in text
    assert GIB == 1024**3
