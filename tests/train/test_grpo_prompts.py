"""GRPO prompts (src/r1tune/train/prompts.py): any finetune format with or without its answer, the reference each
reward checks against, the exact serve prompt, prompts over the budget, and the per-step prompt stream."""

import pytest

from r1tune.config import GrpoDataConfig
from r1tune.errors import DataError, R1TuneError
from r1tune.model.template import encode_generation_prompt, resolve_template
from r1tune.train.prompts import PromptStream, load_prompts


def load(tokenizer, path, **data):
    return load_prompts(GrpoDataConfig(train=str(path), **data), tokenizer, resolve_template(tokenizer))


def test_every_format_with_or_without_an_answer(tiny_tokenizer, jsonl, tmp_path):
    path = jsonl(tmp_path / "p.jsonl", [
        {"instruction": "判断情感", "input": "营收增长", "label": "positive"},  # alpaca, no output
        {"instruction": "判断情感", "input": "营收下滑", "output": "negative"},  # alpaca with its answer
        {"messages": [{"role": "user", "content": "3.5亿是多少？"}], "answer": "350000000"},
        {"conversations": [{"from": "human", "value": "Capital of France?"}], "reference": "Paris"},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "R</think>A"}]},
    ])
    got = load(tiny_tokenizer, path)
    assert [(s.reference, s.reference_field) for s in got.samples] == [
        ("positive", "label"), ("negative", "answer"), ("350000000", "answer"), ("Paris", "reference"),
        ("A", "answer")]  # the last: the record's own answer, its reasoning split off
    assert got.with_answer == 2 and not got.skipped
    assert got.samples[0].messages == [{"role": "user", "content": "判断情感\n营收增长"}]
    for s in got.samples:  # the exact prompt evaluation and serving build, ending in the pre-filled <think>\n
        assert s.prompt_ids == encode_generation_prompt(tiny_tokenizer, s.messages)
        assert tiny_tokenizer.decode(s.prompt_ids).endswith("<｜Assistant｜><think>\n")


def test_reference_field_and_records_without_one(tiny_tokenizer, jsonl, tmp_path):
    path = jsonl(tmp_path / "p.jsonl", [{"instruction": "q1", "gold": 42}, {"instruction": "q2"}])
    got = load(tiny_tokenizer, path, reference_field="gold")
    assert [s.reference for s in got.samples] == ["42", None]


def test_bad_records_stop_or_are_listed(tiny_tokenizer, jsonl, tmp_path):
    path = jsonl(tmp_path / "p.jsonl", [{"instruction": "ok"}, {"messages": [{"role": "robot", "content": "x"}]},
                                        "{broken"])
    with pytest.raises(DataError, match=r"p.jsonl:2: field 'messages\[0\].role': unknown role 'robot'"):
        load(tiny_tokenizer, path)
    got = load(tiny_tokenizer, path, on_error="skip")
    assert len(got.samples) == 1 and len(got.skipped) == 2


def test_a_prompt_over_the_budget_is_an_error_skipped_or_cut(tiny_tokenizer, jsonl, tmp_path):
    long = "营收增长" * 200
    path = jsonl(tmp_path / "p.jsonl", [{"instruction": "short"}, {"instruction": long, "label": "x"}])
    with pytest.raises(R1TuneError, match=r"p.jsonl:2: the prompt is \d+ tokens, longer than data.max_prompt_length "
                                          r"\(64\); nothing was generated: .*data.truncate=skip"):
        load(tiny_tokenizer, path, max_prompt_length=64)
    skipped = load(tiny_tokenizer, path, max_prompt_length=64, truncate="skip")
    assert len(skipped.samples) == 1 and skipped.too_long == 1 and skipped.skipped[0]["prompt_tokens"] > 64
    cut = load(tiny_tokenizer, path, max_prompt_length=64, truncate="left")
    ids = cut.samples[1].prompt_ids
    full = encode_generation_prompt(tiny_tokenizer, cut.samples[1].messages)
    assert len(ids) == 64 and cut.samples[1].cut and ids[0] == full[0]  # bos kept
    tail = tiny_tokenizer.encode("<｜Assistant｜><think>\n", add_special_tokens=False)
    assert ids[-len(tail):] == tail and ids[-len(tail) - 10:] == full[-len(tail) - 10:]  # question end kept


def test_nothing_usable_is_an_error(tiny_tokenizer, jsonl, tmp_path):
    path = jsonl(tmp_path / "p.jsonl", [{"instruction": "x" * 2000}])
    with pytest.raises(R1TuneError, match="no usable prompts"):
        load(tiny_tokenizer, path, max_prompt_length=16, truncate="skip")


def test_prompt_stream_is_a_pure_function_of_seed_and_step():
    stream = PromptStream(10, 4, seed=3)
    batches = [stream.batch(k) for k in range(5)]
    assert all(len(b) == 4 for b in batches)
    assert sorted(batches[0] + batches[1] + batches[2][:2]) == list(range(10))  # epoch 0: each prompt once
    again = PromptStream(10, 4, seed=3)
    assert [again.batch(k) for k in (4, 0, 2)] == [batches[4], batches[0], batches[2]]  # a resume jumps in anywhere
    assert PromptStream(10, 4, seed=4).batch(0) != batches[0]
