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
