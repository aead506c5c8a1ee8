"""`r1tune chat`: the loop with injected input and a recording console (reasoning dimmed, answer plain,
history kept as answers, /reset, /exit), the real engine behind it, and the command itself with stdin."""

import io
import sys

from rich.console import Console

from r1tune.serve.chat import chat_loop
from r1tune.serve.engine import Sampling

DIM = "\x1b[2"  # rich writes dim as SGR 2 (possibly combined: \x1b[2;3m for dim italic)


def recording_console():
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=True, color_system="standard", width=200), buffer


def lines(*items):
    it = iter(items)
    return lambda: next(it, None)


def test_reasoning_is_dimmed_and_the_answer_plain_and_history_keeps_answers():
    seen = []

    def fake_stream(history):
        seen.append([dict(m) for m in history])
        yield "reasoning", "净利润增长，"
        yield "reasoning", "是利好。"
        yield "answer", "positive"
        yield "finish", "stop"

    console, out = recording_console()
    turns = chat_loop(fake_stream, lines("药明康德净利润增长43%", "", "and now?", "/reset", "again", "/exit", "never"),
                      console)
    text = out.getvalue()
    assert turns == 3
    dim_at = text.index(DIM)
    assert dim_at < text.index("净利润增长") < text.index("positive")
    answer_line = text[text.index("answer: "):].split("\n")[0]
    assert DIM not in answer_line and "positive" in answer_line
    assert seen[1] == [{"role": "user", "content": "药明康德净利润增长43%"},
                       {"role": "assistant", "content": "positive"}, {"role": "user", "content": "and now?"}]
    assert seen[2] == [{"role": "user", "content": "again"}]  # /reset forgot the conversation
    assert "(conversation cleared)" in text


def test_hidden_reasoning_and_cut_off_replies():
    def fake_stream(history):
        yield "reasoning", "secret thoughts"
        yield "finish", "length"

    console, out = recording_console()
    assert chat_loop(fake_stream, lines("q"), console, show_reasoning=False) == 1
    assert "secret thoughts" not in out.getvalue() and "cut off" in out.getvalue()


def test_ctrl_c_stops_the_reply_not_the_chat():
    closed = []

    def interrupted(history):
        try:
            yield "reasoning", "long thoughts"
            raise KeyboardInterrupt
        finally:
            closed.append(True)

    console, out = recording_console()
    assert chat_loop(interrupted, lines("q1", "q2"), console) == 2
    assert closed == [True, True] and out.getvalue().count("(stopped)") == 2


def test_chat_loop_with_the_real_engine(engine):
    console, out = recording_console()
    sampling = Sampling(max_tokens=12, temperature=0)
    turns = chat_loop(lambda h: engine.stream_chat(h, sampling), lines("公司净利润同比增长43%", "and?"), console)
    assert turns == 2
    assert "answer: " in out.getvalue() or "thinking: " in out.getvalue()


def test_the_chat_command_reads_stdin(lora_run, monkeypatch, cli):
    monkeypatch.setattr(sys, "stdin", io.StringIO("公司净利润同比增长43%\n/exit\n"))
    code, out, err = cli("chat", lora_run, "--max-tokens", 10, "--temperature", 0)
    assert code == 0, err
    assert "r1tune chat with tuned" in out and "you>" in out
    assert "thinking: " in out or "answer: " in out
    code, _, err = cli("chat", lora_run, "--model", "nope")
    assert code == 2 and "unknown model 'nope'" in err
