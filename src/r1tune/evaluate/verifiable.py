"""Scoring answers that can be checked: numbers and short facts, for the general (forgetting) set.

    verifiable_match("So the result is \\boxed{391}.", "391", "number")      # True
    verifiable_match("The capital is Paris.", "Paris", "text")              # True
    verifiable_match("yes or no", "yes", "text", distractors=["no"])        # False: the last candidate named wins

number: the boxed value if there is one (R1 writes \\boxed{…} for maths), else the last number in the
answer, must equal the reference (commas and full-width digits allowed, relative tolerance 1e-6).
text: the reference or an alias must appear in the answer (as a whole word for Latin text), after the last
distractor if the answer names one too ("小明比小红高，所以小刚最矮" names the right one last; "yes or no" does not).
"""

from __future__ import annotations

import math
import re
import unicodedata

from r1tune.evaluate.structured import normalise_text

BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def final_number(text: str) -> float | None:
    text = unicodedata.normalize("NFKC", text)
    boxed = BOXED.findall(text)
    numbers = NUMBER.findall(boxed[-1] if boxed else text) or NUMBER.findall(text)
    return float(numbers[-1].replace(",", "")) if numbers else None


def last_mention(answer: str, phrase: str) -> int:
    """End offset of the phrase's last occurrence (whole words for Latin text), -1 when absent."""
    phrase = normalise_text(phrase)
    if not phrase:
        return -1
    pattern = rf"(?<![a-z0-9]){re.escape(phrase)}(?![a-z0-9])" if phrase.isascii() else re.escape(phrase)
    ends = [m.end() for m in re.finditer(pattern, answer)]
    return ends[-1] if ends else -1


def verifiable_match(answer: str, reference: str, answer_type: str = "text", aliases: list[str] | None = None,
                     distractors: list[str] | None = None) -> bool:
    if answer_type == "number":
        value, target = final_number(answer), final_number(reference)
        return value is not None and target is not None and math.isclose(value, target, rel_tol=1e-6, abs_tol=1e-9)
    boxed = BOXED.findall(answer)
    text = normalise_text(boxed[-1] if boxed else answer)
    right = max(last_mention(text, c) for c in [reference, *(aliases or [])])
    wrong = max([last_mention(text, d) for d in distractors or []], default=-1)
    return right >= 0 and right > wrong
