"""Does an output follow R1's reasoning format? Think block, answer, and language, checked per output.

    check_format(split_reasoning(text), prompt="判断…", reference="positive")
        → {"think_closed": True, "answer_present": True, "well_formed": True, "language_consistent": True, …}

- think_closed: the reasoning ended with `</think>` (an output cut by the length cap did not);
- unclosed_think: the output stayed inside its think block to the end — whatever it wrote, a right label
  included, is reasoning, and its answer is empty. Counted apart (lower is better) because a model trained
  on trace-less data without learning to close the block writes every answer there, and every task metric
  reads 0 for a reason no other number shows;
- answer_present: something non-empty follows it;
- well_formed: both, and no stray `<think>` / `</think>` left in the answer (a doubled close tag is a
  format error a user would see);
- language_consistent: the answer is in the language expected — the reference's when there is one (a
  Chinese prompt may ask for an English label), else the prompt's — and the reasoning is in the prompt's
  language (R1 is known to drift into English or mix languages while thinking). Mixed or letter-free text
  (numbers) never counts against it.
"""

from __future__ import annotations

from r1tune.evaluate.text_metrics import cjk_share, language_of
from r1tune.model.reasoning import ParsedOutput
from r1tune.model.template import THINK_CLOSE, THINK_OPEN

FORMAT_METRICS = ("well_formed", "think_closed", "answer_present", "language_consistent", "unclosed_think")


def language_matches(text: str, expected: str) -> bool:
    """Mostly in the expected language: over half Chinese for zh, under half for en."""
    if expected not in ("zh", "en") or language_of(text) == "unknown":
        return True
    share = cjk_share(text)
    return share > 0.5 if expected == "zh" else share < 0.5


def check_format(parsed: ParsedOutput, prompt: str, reference: str | None = None) -> dict[str, bool]:
    stray = THINK_OPEN in parsed.answer or THINK_CLOSE in parsed.answer
    answer_present = bool(parsed.answer.strip())
    expected_answer = language_of(reference) if reference and reference.strip() else language_of(prompt)
    answer_ok = language_matches(parsed.answer, expected_answer) if answer_present else True
    reasoning_ok = language_matches(parsed.reasoning, language_of(prompt)) if parsed.reasoning.strip() else True
    return {
        "think_closed": parsed.closed,
        "unclosed_think": parsed.unclosed,
        "answer_present": answer_present,
        "well_formed": parsed.closed and answer_present and not stray,
        "language_consistent": answer_ok and reasoning_ok,
        "answer_language_consistent": answer_ok,
        "reasoning_language_consistent": reasoning_ok,
    }
