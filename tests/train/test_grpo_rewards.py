"""GRPO rewards (src/r1tune/train/rewards.py): each built-in on the cases that bite — R1's pre-filled `<think>\\n`,
doubled or stray markers, cut-off completions, label aliases, numbers as finance writes them — and the checks
made before any generation."""

import math

import pytest
import torch

from r1tune.config import GrpoSettings, RewardsConfig
from r1tune.errors import R1TuneError
from r1tune.model.reasoning import split_reasoning
from r1tune.train.prompts import PromptSample
from r1tune.train.rewards import (
    answer_number,
    build_rewards,
    field_f1,
    format_ok,
    named_label,
    score,
    weighted_total,
)
from r1tune.train.rollout import Completion


def completion(text: str, truncated: bool = False, n_tokens: int = 10) -> Completion:
    return Completion(text, split_reasoning(text, started_in_think=True), n_tokens, truncated)


def sample(reference: str | None = "positive", field: str | None = "label", prompt: str = "判断情感：营收增长") -> PromptSample:
    return PromptSample([{"role": "user", "content": prompt}], [1, 2, 3], reference, field, "data.jsonl:1")


def rewards(*use, samples=None, **settings):
    cfg = RewardsConfig(use=list(use), **settings)
    return build_rewards(cfg, GrpoSettings(max_completion_length=100), samples or [sample()])


def values(use: str, completions, samples=None, **settings) -> list[float | None]:
    samples = samples or [sample()] * len(completions)
    reward = rewards(use, samples=samples, **settings)[0]
    return reward.fn(completions, samples)


@pytest.mark.parametrize("text, ok", [
    ("营收增长，利好\n</think>\n\npositive", True),
    ("\n</think>\n\npositive", True),  # an empty think block, closed: still the format
    ("<think>\nreasoning\n</think>\n\npositive", False),  # the prompt already opened the block: a second <think>
    ("reasoning\n</think>\n\n</think>positive", False),  # closed twice
    ("reasoning without an end", False),  # never closed: everything is reasoning, no answer
    ("reasoning\n</think>\n\n   ", False),  # no answer after the block
    ("reasoning\n</think>\n\npositive<｜User｜>and more", False),  # a forged turn
])
def test_format_judges_prompt_plus_completion(text, ok):
    assert format_ok(completion(text)) is ok


def test_format_refuses_a_completion_cut_by_the_length_cap():
    assert format_ok(completion("reasoning\n</think>\n\nposi", truncated=True)) is False


def test_accuracy_labels_with_aliases_and_unparseable_answers():
    names = {"positive": ["positive", "正面", "利好"], "negative": ["negative", "负面"], "neutral": ["neutral"]}
    assert named_label("Positive。", names) == "positive"
    assert named_label("这条新闻是利好", names) == "positive"
    assert named_label("\\boxed{负面}", names) == "negative"
    assert named_label("positive or negative", names) is None  # names two: not an answer
    got = values("accuracy", [completion("x\n</think>\n\n正面"), completion("x\n</think>\n\nnegative"),
                              completion("no close positive")], aliases={"positive": ["正面"]})
    assert got == [1.0, 0.0, 0.0]  # an unclosed block has no answer, even if the label is inside


@pytest.mark.parametrize("answer, value", [("营收为3.5亿元", 3.5e8), ("净利润 -1,234.5 万", -12345000.0),
                                           ("So \\boxed{391}.", 391.0), ("增长12.3%", 0.123),
                                           ("没有数字", None), ("1 then 2", 2.0)])
def test_answer_number_reads_numbers_as_finance_writes_them(answer, value):
    assert answer_number(answer) == (pytest.approx(value) if value is not None else None)


def test_accuracy_numbers_with_tolerance():
    samples = [sample("350000000", "answer")] * 3
    got = values("accuracy", [completion("x\n</think>\n\n3.5亿"), completion("x\n</think>\n\n350001000"),
                              completion("x\n</think>\n\n3.6亿")], samples)
    assert got == [1.0, 0.0, 0.0]
    assert values("accuracy", [completion("x\n</think>\n\n350001000")], samples[:1], number_tolerance=1e-6) == [0.0]
    assert values("accuracy", [completion("x\n</think>\n\n350001000")], samples[:1], number_tolerance=1e-3) == [1.0]


def test_accuracy_exact_when_references_are_text_or_json():
    samples = [sample("北京", "answer"), sample('{"a": 1, "b": [2]}', "answer")]
    got = values("accuracy", [completion("x\n</think>\n\n北京。"), completion('x\n</think>\n\n{"b": [2], "a": 1}')],
                 samples)
    assert got == [1.0, 1.0]


def test_auto_accuracy_mode_and_label_checks():
    with pytest.raises(R1TuneError, match="not in rewards.labels"):
        rewards("accuracy", samples=[sample("bullish")], labels=["positive", "negative"])
    with pytest.raises(R1TuneError, match="aliases names up, not a label"):
        rewards("accuracy", samples=[sample("positive")], aliases={"up": ["涨"]})


def test_a_reward_needing_a_reference_the_data_lacks_is_an_error_before_generation():
    with pytest.raises(R1TuneError, match=r"reward 'accuracy' needs a reference .* 1 of 2 prompts have none"):
        rewards("accuracy", "format", samples=[sample(), sample(None, None)])
    assert [r.name for r in rewards("format", "length", samples=[sample(None, None)])] == ["format", "length"]


def test_length_is_the_soft_overlong_penalty():
    got = values("length", [completion("a", n_tokens=50), completion("a", n_tokens=75), completion("a", n_tokens=90),
                            completion("a", n_tokens=100, truncated=True)], overlong_buffer=20)
    assert got == [0.0, 0.0, pytest.approx(-0.5), -1.0]


def test_language_expects_the_references_language_else_the_prompts():
    zh = sample(None, None, prompt="请用中文回答：营收如何？")
    en_label = sample("positive", "label", prompt="判断情感：营收增长")
    got = values("language", [completion("x\n</think>\n\n营收增长了百分之十"), completion("x\n</think>\n\nrevenue grew")],
                 [zh, zh])
    assert got == [1.0, 0.0]
    assert values("language", [completion("x\n</think>\n\npositive")], [en_label]) == [1.0]


def test_json_schema_and_field_f1():
    schema = {"type": "object", "required": ["amount"], "properties": {"amount": {"type": "number"}}}
    got = values("json_schema", [completion('x\n</think>\n\n{"amount": 3}'), completion('x\n</think>\n\n{"amount": "3"}'),
                                 completion("x\n</think>\n\nnot json")], json_schema=schema)
    assert got == [1.0, 0.0, 0.0]
    assert values("json_schema", [completion('x\n</think>\n\n[1, 2]')]) == [1.0]
    assert field_f1("主诉：头痛；伴随症状：恶心", "主诉：头痛；伴随症状：恶心、失眠") == pytest.approx(0.8)
    assert field_f1("", "") == 1.0


def test_user_rewards_need_allow_code_and_are_checked(tmp_path):
    module = tmp_path / "my_rewards.py"
    module.write_text("def short(answers, samples):\n    return [1.0 if len(a) < 10 else None for a in answers]\n"
                      "def wrong_count(answers, samples):\n    return [1.0]\n"
                      "def not_a_number(answers, samples):\n    return ['yes' for a in answers]\n"
                      "def raises(answers, samples):\n    raise KeyError('label')\n")
    with pytest.raises(R1TuneError, match=r"runs the file .*my_rewards.py and calls short\(answers, samples\).*--allow-code"):
        rewards(f"{module}:short")
    done = [completion("x\n</think>\n\nok"), completion("x\n</think>\n\n" + "long " * 5)]
    assert values(f"{module}:short", done, allow_code=True) == [1.0, None]
    for name, problem in (("wrong_count", "returned 1 values for 2 answers"), ("not_a_number", "returned 'yes'"),
                          ("raises", "raised KeyError")):
        with pytest.raises(R1TuneError, match=problem):
            values(f"{module}:{name}", done, allow_code=True)


def test_weights_must_name_rewards_in_use():
    with pytest.raises(R1TuneError, match="weights names lenght"):
        rewards("format", weights={"lenght": 2.0})


def test_score_and_total_leave_unscored_out(tmp_path):
    module = tmp_path / "partial.py"
    module.write_text("def half(answers, samples):\n    return [None if i % 2 else 2.0 for i in range(len(answers))]\n")
    built = rewards("format", f"{module}:half", allow_code=True, weights={"half": 0.5})
    table = score(built, [completion("x\n</think>\n\nok"), completion("no answer")], [sample(), sample()])
    assert table[0].tolist() == [1.0, 2.0] and table[1, 0] == 0.0 and math.isnan(table[1, 1])
    assert weighted_total(table, built).tolist() == [2.0, 0.0]
    nothing = torch.tensor([[float("nan"), float("nan")]])
    assert math.isnan(weighted_total(nothing, built)[0])
