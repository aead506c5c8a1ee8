"""Split R1 output into reasoning and answer.

    split_reasoning("我先想想…\n</think>\n\n正面")  →  ParsedOutput(reasoning="我先想想…", answer="正面", closed=True)

Served with the current template the output starts *inside* the reasoning (the prompt ended with
`<think>\\n`), so there is no opening tag, only `</think>`. With the 2025-01 template, or when a model
writes it anyway, `<think>` opens the output. An output cut by the length cap before `</think>` is all
reasoning and no answer: `closed` is False then.
"""

from __future__ import annotations

from dataclasses import dataclass

from r1tune.model.template import EOS, THINK_CLOSE, THINK_OPEN


@dataclass(frozen=True)
class ParsedOutput:
    reasoning: str
    answer: str
    closed: bool  # a `</think>` ended the reasoning

    @property
    def well_formed(self) -> bool:
        """A finished think block followed by a non-empty answer."""
        return self.closed and bool(self.answer.strip())


def split_reasoning(text: str, started_in_think: bool = True) -> ParsedOutput:
    """`started_in_think`: the prompt ended with `<think>\\n`, so text before `</think>` is reasoning."""
    text = text.replace(EOS, "")
    body = text.lstrip()
    opened = body.startswith(THINK_OPEN)
    if opened:
        body = body[len(THINK_OPEN):]
    if THINK_CLOSE in body:
        reasoning, _, answer = body.partition(THINK_CLOSE)
        return ParsedOutput(reasoning.strip(), answer.strip(), True)
    if opened or started_in_think:
        return ParsedOutput(body.strip(), "", False)
    return ParsedOutput("", text.strip(), False)


class ReasoningStream:
    """`split_reasoning` for streamed output: feed text deltas, get (reasoning, answer) deltas back.

        stream = ReasoningStream()
        for delta in deltas:
            reasoning, answer = stream.feed(delta)   # either may be ""
        reasoning, answer = stream.finish()

    The output is assumed to start inside the reasoning (the prompt ended with `<think>\\n`, which
    `r1tune serve` always ensures); a leading `<think>` written by the model anyway is dropped. Text that could
    still turn into `</think>` (a `</thi` at the end of a delta) and whitespace that `split_reasoning` would
    strip are held back until the next delta decides, so the concatenated deltas equal `split_reasoning`'s
    reasoning and answer for any way the text is cut.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._phase = "start"  # start → reasoning → answer
        self._answer_started = False
        self.closed = False  # a `</think>` has been seen

    def feed(self, text: str) -> tuple[str, str]:
        self._buffer += text.replace(EOS, "")
        reasoning = answer = ""
        if self._phase == "start":
            self._buffer = self._buffer.lstrip()
            if THINK_OPEN.startswith(self._buffer):  # empty, or maybe the start of `<think>`: wait
                return "", ""
            if self._buffer.startswith(THINK_OPEN):
                self._buffer = self._buffer[len(THINK_OPEN):]
            self._phase = "reasoning"
        if self._phase == "reasoning":
            if not reasoning and not self._answer_started:
                pass
            head, marker, tail = self._buffer.partition(THINK_CLOSE)
            if marker:
                reasoning = self._emit_reasoning(head, final=True)
                self._phase, self.closed, self._buffer = "answer", True, tail
            else:
                keep = _partial_suffix(self._buffer, THINK_CLOSE)
                ready = self._buffer[:len(self._buffer) - keep]
                reasoning = self._emit_reasoning(ready, final=False)
                self._buffer = self._buffer[len(reasoning_ready := ready.rstrip()):] if False else self._buffer
                return reasoning, ""
        if self._phase == "answer":
            if not self._answer_started:
                self._buffer = self._buffer.lstrip()
                self._answer_started = bool(self._buffer)
            ready = self._buffer.rstrip()  # trailing whitespace waits: it is stripped if nothing follows
            answer, self._buffer = ready, self._buffer[len(ready):]
        return reasoning, answer
