"""Data without reasoning traces (issue 12): plain question → answer data must still give a model that closes its
think block. Fine-tuned on a trace-less Chinese sentiment set with the default `data.reasoning: auto`, the tiny
model answers `\\n</think>\\n\\n正面` and evaluates well-formed; fine-tuned with `drop` it writes the label straight
after the prompt's `<think>\\n` and never closes the block (the failure the issue reports), which the evaluation
counts as `unclosed_think` instead of scoring quietly as empty answers."""

import json

import pytest

from helpers import FINSENT, write_jsonl
from r1tune.recipes.finetune import data_counts, reasoning_line
from r1tune.train.data import TrainingData

LABELS_ZH = {"positive": "正面", "negative": "负面"}


def traceless_sentiment(folder, split: str):
    """finsent's positive / negative news with the labels in Chinese and every reasoning trace removed."""
    rows = []
    for line in (FINSENT / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["label"] in LABELS_ZH:
            label = LABELS_ZH[record["label"]]
            rows.append({"id": record["id"], "instruction": "判断这条财经新闻的情感倾向，只回答 正面 或 负面。",
                         "input": record["input"], "output": label, "label": label})
    return write_jsonl(folder / f"{split}.jsonl", rows)


@pytest.mark.slow
def test_trace_less_data_trains_a_model_that_closes_its_think_block(tiny_model_dir, cli, tmp_path):
    train, test = traceless_sentiment(tmp_path, "train"), traceless_sentiment(tmp_path, "test")
    common = ["--model", tiny_model_dir, "--data", train, "--method", "full", "--max-steps", 200, "--batch-size", 16,
              "--lr", 1e-3, "--max-length", 96, "--eval-every", 1000, "--save-every", 1000, "--seed", 1,
              "--set", "train.warmup_steps=10", "--set", "train.threads=1", "--set", "data.val_split=0.0"]
    code, out, err = cli("finetune", *common, "--out", tmp_path / "auto")
    assert code == 0, err[-2000:]
    assert "0 of 600 training samples have a trace; the 600 without one train the empty think block" in out
    assert "data.reasoning=auto" in out and "set data.reasoning=drop" in out  # said at start, with the way out
    provenance = json.loads((tmp_path / "auto" / "final" / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["reasoning"] == "auto"
    assert provenance["reasoning_plan"] == {"setting": "auto", "with_trace": 0, "without_trace": 600,
                                            "traced": "keep", "traceless": "empty"}
    code, out, err = cli("finetune", *common, "--out", tmp_path / "drop", "--reasoning", "drop")
    assert code == 0, err[-2000:]
    assert "most samples lack a trace, so the model may never learn to write </think>" in out

    code, out, err = cli("evaluate", "--model", tiny_model_dir, "--adapter", tmp_path / "auto", "--compare",
                         tmp_path / "drop", "--data", test, "--out", tmp_path / "eval", "--max-samples", 60,
                         "--set", "generation.sampling=greedy", "--set", "generation.max_new_tokens=8",
                         "--set", "general.enabled=false", "--set", "generation.latency_requests=0",
                         "--set", "bootstrap.resamples=200", "--set", "generation.threads=1")
    assert code == 0, err[-2000:]
    results = json.loads((tmp_path / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert results["systems"] == ["base", "tuned", "drop"]
    tuned, dropped = results["by_system"]["tuned"], results["by_system"]["drop"]
    assert tuned["metrics"]["well_formed"]["value"] >= 0.95 and tuned["metrics"]["think_closed"]["value"] >= 0.95
    assert tuned["metrics"]["accuracy"]["value"] >= 0.9
    assert tuned["unclosed_think"]["count"] == 0
    # `drop`: the right label, straight after <think>\n and never closed: all reasoning, no answer — counted
    predictions = [json.loads(line) for line in (tmp_path / "eval" / "predictions" / "drop.jsonl")
                   .read_text(encoding="utf-8").splitlines()]
    assert sum(p["reasoning"] == p["label"] and p["answer"] == "" for p in predictions) >= 45
    assert dropped["unclosed_think"]["count"] >= 55 and dropped["metrics"]["unclosed_think"]["value"] >= 55 / 60
    assert dropped["metrics"]["well_formed"]["value"] <= 0.05
    assert "think block never closed" in out and "drop " in out.split("think block never closed")[1]
    html = (tmp_path / "eval" / "report.html").read_text(encoding="utf-8")
    assert f"<b>drop</b> {dropped['unclosed_think']['count']} of 60" in html


def plan(setting, traced, traceless, with_trace, without_trace):
    return {"setting": setting, "traced": traced, "traceless": traceless, "with_trace": with_trace,
            "without_trace": without_trace}


def test_the_start_line_says_what_trace_less_samples_train_and_how_to_choose():
    line = reasoning_line(plan("auto", "keep", "empty", 40, 60))
    assert line.startswith("reasoning (data.reasoning=auto): 40 of 100 training samples have a trace (trained); "
                           "the 60 without one train the empty think block")
    assert line.endswith("set data.reasoning=drop to train only their answers")
    line = reasoning_line(plan("auto", "keep", "drop", 90, 10))
    assert "train only their answer" in line and "set data.reasoning=empty" in line
    line = reasoning_line(plan("keep", "keep", "drop", 10, 90))  # a choice that leaves the block unclosed: loud
    assert "may never learn to write </think>" in line and "data.reasoning=auto" in line
    assert reasoning_line(plan("keep", "keep", "drop", 5, 0)).endswith("5 of 5 training samples have a trace (trained)")
    assert "(not trained: empty)" in reasoning_line(plan("empty", "empty", "empty", 5, 5))


def test_the_start_line_counts_skipped_long_prompts_and_names_the_fix():
    data = TrainingData([], [], skipped=[{"reason": "prompt longer than max_length (900 tokens…)"}] * 3,
                        truncated=2, without_reasoning=7, prompt_too_long=3)
    assert data_counts(data) == ("3 skipped (prompt longer than max_length: set data.truncate=left to keep them cut "
                                 "from the left, or raise data.max_length), 2 truncated, 7 without a trace")
    data.skipped.append({"reason": "empty answer"})
    assert data_counts(data).startswith("4 skipped (3 with a prompt longer than max_length: set data.truncate=left")
    data = TrainingData([], [], prompt_cut=5)
    assert data_counts(data) == "0 skipped, 0 truncated, 5 prompts cut from the left, 0 without a trace"
