"""The R1 chat template: inference rendering, training rendering and the label mask, in one place.

Inference text is the official template's own output (so it equals it byte for byte). A training sample is
that same prompt, then the final answer *with* its reasoning — the stock template would delete it — then
the end-of-sentence token:

    prompt  = template(history, add_generation_prompt=True)   # …<｜Assistant｜><think>\\n
    target  = reasoning + "\\n</think>\\n\\n" + answer + eos     # labelled

Prompt and target are tokenized separately with add_special_tokens=False: the prompt ids are then exactly
what inference feeds the model (and the template's bos is the only bos). Labels are set by position, never
by token id, because pad == eos in R1 tokenizers.

    r1tune render --model DIR --messages sample.json --train --ids
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from r1tune.errors import R1TuneError

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
IGNORE = -100
RESOURCES = Path(__file__).resolve().parent.parent / "resources"
TEMPLATE_FILES = {"r1": "chat_template.jinja", "r1-2025-01": "chat_template_2025-01.jinja"}


@cache
def bundled_template(name: str) -> str:
    """The R1-Distill chat template, byte for byte ('r1' = current, 'r1-2025-01' = first release)."""
    return (RESOURCES / TEMPLATE_FILES[name]).read_text(encoding="utf-8")


def template_hash(template: str) -> str:
    return hashlib.sha256(template.encode("utf-8")).hexdigest()[:16]


def template_name(template: str) -> str:
    """Which bundled R1 template this is, or 'custom'."""
    for name in TEMPLATE_FILES:
        if template == bundled_template(name):
            return name
    return "custom"


def resolve_template(tokenizer, choice: str = "model") -> str:
    if choice != "model":
        return bundled_template(choice)
    if not tokenizer.chat_template:
        raise R1TuneError("the tokenizer has no chat_template; set data.chat_template: r1")
    return tokenizer.chat_template


def normalise_messages(messages: list[dict]) -> list[dict]:
    """Content given as OpenAI parts makes the stock template fail: flatten to text."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = "".join(p if isinstance(p, str) else p.get("text", "") for p in content)
        out.append({"role": m["role"], "content": "" if content is None else content})
    return out


def render_chat(tokenizer, messages: list[dict], add_generation_prompt: bool, template: str | None = None) -> str:
    return tokenizer.apply_chat_template(normalise_messages(messages), tokenize=False,
                                         add_generation_prompt=add_generation_prompt,
                                         chat_template=template or resolve_template(tokenizer))


def render_prompt(tokenizer, messages: list[dict], template: str | None = None) -> str:
    """Inference text for a conversation that ends with the user's turn (generation prompt added)."""
    return render_chat(tokenizer, messages, add_generation_prompt=True, template=template)


def generation_prefix(template: str) -> str:
    """What the template writes after `<｜Assistant｜>` in its generation prompt: '<think>\\n' or ''."""
    return THINK_OPEN + "\n" if "'<｜Assistant｜><think>\\n'" in template else ""


@dataclass
class TrainingText:
    prompt: str  # byte-identical to the inference prompt
    bridge: str  # context after the prompt that is not trained (reasoning: drop)
    target: str  # trained, followed by the eos token


def render_training(tokenizer, messages: list[dict], reasoning: str | None, mode: str = "keep",
                    template: str | None = None) -> TrainingText:
    """Split a training conversation (last message = assistant answer) into prompt / bridge / target.

    keep  — train the trace: `{reasoning}\\n</think>\\n\\n{answer}`; a sample without a trace is rendered as
            in `drop`, so data without traces never teaches the model to skip thinking.
    drop  — the trace is discarded; the empty think block is context, only the answer is trained.
    empty — train the model to emit the empty think block itself (it learns to answer without reasoning).
    """
    if mode not in ("keep", "drop", "empty"):
        raise R1TuneError(f"reasoning mode must be keep, drop or empty, not {mode!r}")
    template = template or resolve_template(tokenizer)
    history, answer = messages[:-1], messages[-1]
    prompt = render_prompt(tokenizer, history, template)
    if mode == "keep" and reasoning:
        assistant = f"{THINK_OPEN}\n{reasoning.strip()}\n{THINK_CLOSE}\n\n{answer['content']}"
        split_at = 0
    else:
        assistant = f"{THINK_OPEN}\n\n{THINK_CLOSE}\n\n{answer['content']}"
        split_at = 0 if mode == "empty" else len(assistant) - len(answer["content"])
    prefix = generation_prefix(template)
    if not prompt.endswith(ASSISTANT + prefix):
        raise R1TuneError("the chat template's generation prompt does not end with <｜Assistant｜>: not an R1 template")
    # the generation prompt already wrote `prefix` (e.g. '<think>\n'); the sample continues after it
    assistant = assistant[len(prefix):]
    split_at = max(0, split_at - len(prefix))
    return TrainingText(prompt=prompt, bridge=assistant[:split_at], target=assistant[split_at:])


@dataclass
class TokenizedSample:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    @property
    def n_targets(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def tokenize_training(tokenizer, text: TrainingText, max_length: int, source: str = "") -> TokenizedSample:
    """Token ids and labels; labels cover the target and its eos, by position. Raises on an empty mask."""
    encode = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"] if s else []  # noqa: E731
    context = encode(text.prompt) + encode(text.bridge)
    target = encode(text.target) + [tokenizer.eos_token_id]
    ids = context + target
    labels = [IGNORE] * len(context) + target
    truncated = len(ids) > max_length
    ids, labels = ids[:max_length], labels[:max_length]
    if not any(x != IGNORE for x in labels):
        raise R1TuneError(f"sample {source or '?'}: empty label mask — the prompt alone is {len(context)} tokens, "
                          f"max_length is {max_length}; nothing of the answer would be trained")
    return TokenizedSample(ids, labels, truncated)
