"""Split R1 output into reasoning and answer.

    split_reasoning("我先想想…\n</think>\n\n正面")  →  ParsedOutput(reasoning="我先想想…", answer="正面", closed=True)

Served with the current template the output starts *inside* the reasoning (the prompt ended with
`<think>\\n`), so there is no opening tag, only `</think>`. With the 2025-01 template, or when a model
writes it anyway, `<think>` opens the output. An output that ends before `</think>` — cut by the length
cap, or from a model that never learned to close the block (trained on trace-less data without the empty
block as target) — is all reasoning and no answer: `closed` is False and `unclosed` True then, so evaluation
counts such outputs apart instead of scoring them quietly as empty answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from r1tune.model.template import EOS, THINK_CLOSE, THINK_OPEN


@dataclass(frozen=True)
class ParsedOutput:
    reasoning: str
    answer: str
    closed: bool  # a `</think>` ended the reasoning
    unclosed: bool = False  # the output was inside a think block and ended before `</think>`

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
        return ParsedOutput(body.strip(), "", False, unclosed=True)
    return ParsedOutput("", text.strip(), False)


class ReasoningStream:
    """`split_reasoning` for streamed output: feed text deltas, get (reasoning, answer) deltas back.

        stream = ReasoningStream()
        for delta in deltas:
            reasoning, answer = stream.feed(delta)   # either may be ""
        reasoning, answer = stream.finish()

    The output is taken to start inside the reasoning (the prompt ended with `<think>\\n`, which `r1tune serve`
    always ensures); a leading `<think>` the model writes anyway is dropped. Text that may still become
    `</think>` (say `</thi` at the end of a delta) and whitespace that `split_reasoning` would strip are held
    back until later text decides, so the concatenated deltas equal `split_reasoning`'s reasoning and answer
    however the text is cut.
    """

    def __init__(self) -> None:
        self._buffer = ""  # text received but not yet handed out
        self._phase = "start"  # start → reasoning → answer
        self._started = False  # the current part has emitted text (its leading whitespace is behind us)
        self.closed = False  # a `</think>` ended the reasoning

    def feed(self, text: str) -> tuple[str, str]:
        self._buffer += text.replace(EOS, "")
        if self._phase == "start":
            self._buffer = self._buffer.lstrip()
            if self._buffer.startswith(THINK_OPEN):
                self._buffer = self._buffer[len(THINK_OPEN):]
            elif THINK_OPEN.startswith(self._buffer):  # empty, or perhaps the beginning of `<think>`
                return "", ""
            self._phase = "reasoning"
        reasoning = ""
        if self._phase == "reasoning":
            if not self._started:
                self._buffer = self._buffer.lstrip()
            head, marker, tail = self._buffer.partition(THINK_CLOSE)
            if not marker:
                undecided = _partial_suffix(self._buffer, THINK_CLOSE)
                return self._take(self._buffer[:len(self._buffer) - undecided].rstrip()), ""
            reasoning = head.rstrip()
            self._phase, self._started, self._buffer, self.closed = "answer", False, tail, True
        if not self._started:
            self._buffer = self._buffer.lstrip()
        return reasoning, self._take(self._buffer.rstrip())

    def finish(self) -> tuple[str, str]:
        """What is still held back: the end of an unclosed reasoning (a cut-off `</thi`, say)."""
        rest, self._buffer = self._buffer, ""
        if self._phase == "answer":
            return "", ""  # only trailing whitespace can be left
        return (rest.strip() if not self._started else rest.rstrip()), ""

    def _take(self, ready: str) -> str:
        """Hand out `ready`, a prefix of the buffer."""
        self._buffer = self._buffer[len(ready):]
        self._started = self._started or bool(ready)
        return ready


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of `text` that is a proper beginning of `marker`."""
    for n in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0
