"""alpaca / ShareGPT / messages → one chat-sample shape, reasoning from a field or a <think> block."""

import pytest

from r1tune.data.formats import split_think, to_sample
from r1tune.data.io import Location
from r1tune.errors import DataError

LOC = Location("d.jsonl", 1)


def test_alpaca_with_input_history_system_and_reasoning():
    s = to_sample({"instruction": "判断情感", "input": "营收增长", "output": "positive", "system": "分析师",
                   "history": [["你好", "您好"]], "reasoning": "增长=利好", "label": "positive"}, LOC)
    assert [m["role"] for m in s.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert s.messages[3]["content"] == "判断情感\n营收增长"
    assert (s.answer, s.reasoning, s.meta) == ("positive", "增长=利好", {"label": "positive"})


def test_sharegpt_roles_and_turn_reasoning():
    s = to_sample({"conversations": [{"from": "human", "value": "q"},
                                     {"from": "gpt", "value": "a", "reasoning_content": "r"}]}, LOC)
    assert [m["role"] for m in s.messages] == ["user", "assistant"] and s.reasoning == "r"


def test_messages_with_inline_think_and_content_parts():
    s = to_sample({"messages": [{"role": "user", "content": [{"type": "text", "text": "q"}]},
                                {"role": "assistant", "content": "<think>\nstep\n</think>\n\nanswer"}]}, LOC)
    assert (s.messages[0]["content"], s.answer, s.reasoning) == ("q", "answer", "step")


def test_conflicting_reasoning_is_an_error():
    with pytest.raises(DataError, match="reasoning"):
        to_sample({"instruction": "q", "output": "<think>a</think>b", "reasoning": "other"}, LOC)


def test_forced_format_names_missing_field():
    with pytest.raises(DataError, match="field 'conversations'") as e:
        to_sample({"messages": []}, LOC, fmt="sharegpt")
    assert e.value.line == 1


def test_split_think():
    assert split_think("x</think>\n\ny") == ("x", "y")
    assert split_think("no think") == (None, "no think")
