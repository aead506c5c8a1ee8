"""The R1 chat template: inference rendering, training rendering, prompt ids and the label mask, in one place.

Inference text is the official template's own output (so it equals it byte for byte). A training sample is
that same prompt, then the final answer *with* its reasoning — the stock template would delete it — then
the end-of-sentence token:

    prompt  = template(history, add_generation_prompt=True)   # …<｜Assistant｜><think>\\n
    target  = reasoning + "\\n</think>\\n\\n" + answer + eos     # labelled

Every text is kept as structure / content pieces and encoded by `model/encode.py`: the template's and the
recipe's markers are markers, a marker quoted inside a message, a trace or an answer is plain text. Training
(`tokenize_training`), evaluation and serving (`encode_generation_prompt`) encode a prompt the same way, so
they feed the model the same ids; for content without markers these are exactly the ids of tokenizing the
rendered text (and the template's bos is the only bos). Prompt, untrained bridge and target are tokenized
apart. Labels are set by position, never by token id, because pad == eos in R1 tokenizers.

    r1tune render --model DIR --messages sample.json --train --ids

Qwen2-VL / Qwen2.5-VL checkpoints (the R1-style reasoning VLMs start from them) ship ChatML instead: turns are
`<|im_start|>role\n…<|im_end|>`, the generation prompt ends `<|im_start|>assistant\n`, eos is `<|im_end|>`, and
`<think>` is plain text in their vocabulary. The same code serves both dialects: the prompt is the model's own
template, `<think>\n` is forced after it, and the target ends with the tokenizer's eos — what R1-V / VLM-R1
train, without adding untrained marker rows to a checkpoint that never saw them.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from r1tune.errors import R1TuneError
from r1tune.model.encode import Piece, chars_per_token, encode_parts, encode_pieces

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
CHATML_ASSISTANT = IM_START + "assistant\n"
ASSISTANT_TURNS = (ASSISTANT, CHATML_ASSISTANT)  # R1's, ChatML's (Qwen2-VL / Qwen2.5-VL)
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
FORCED_PREFIX = THINK_OPEN + "\n"
IGNORE = -100
RESOURCES = Path(__file__).resolve().parent.parent / "resources"
TEMPLATE_FILES = {"r1": "chat_template.jinja", "r1-2025-01": "chat_template_2025-01.jinja",
                  "qwen2-vl": "chat_template_qwen2_vl.jinja"}  # Qwen2-VL / Qwen2.5-VL-Instruct's, byte for byte


@cache
def bundled_template(name: str) -> str:
    """A bundled chat template, byte for byte: R1-Distill's ('r1' = current, 'r1-2025-01' = first release) or
    Qwen2-VL-Instruct's ChatML ('qwen2-vl', also Qwen2.5-VL's)."""
    return (RESOURCES / TEMPLATE_FILES[name]).read_text(encoding="utf-8")


def template_hash(template: str) -> str:
    return hashlib.sha256(template.encode("utf-8")).hexdigest()[:16]


def template_name(template: str) -> str:
    """Which bundled template this is, or 'custom'."""
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


@cache
def generation_prefix(template: str) -> str:
    """What the template writes after the assistant turn's start in its generation prompt: '<think>\\n' or ''."""
    # the template's source holds the string literal, its newlines written as \\n
    literals = ("'" + (turn + THINK_OPEN + "\n").replace("\n", "\\n") + "'" for turn in ASSISTANT_TURNS)
    return THINK_OPEN + "\n" if any(literal in template for literal in literals) else ""


def template_visible_content(message: dict) -> str:
    """What the R1 template shows of a message: an assistant turn only after its last `</think>`."""
    content = message["content"]
    if message["role"] == "assistant" and THINK_CLOSE in content:
        content = content.split(THINK_CLOSE)[-1]
    return content


_SLOT = re.compile("\x00([0-9a-f]+):(\\d+)\x00")  # a placeholder for message content: nonce, index


def chat_pieces(tokenizer, messages: list[dict], template: str | None = None,
                add_generation_prompt: bool = True) -> list[Piece]:
    """The rendered conversation as structure and content pieces (joined: the template's own text).

    The template renders a random placeholder in place of each message's content, so what it writes is told
    apart from what the messages hold (a content that contains a marker must stay text, see model/encode.py)."""
    messages = normalise_messages(messages)
    nonce = secrets.token_hex(8)
    placeholders = [{"role": m["role"], "content": f"\x00{nonce}:{i}\x00"} for i, m in enumerate(messages)]
    rendered = render_chat(tokenizer, placeholders, add_generation_prompt, template)
    pieces: list[Piece] = []
    pos = 0
    for m in _SLOT.finditer(rendered):
        if m.group(1) != nonce:  # cannot come from the template, which never saw the nonce
            continue
        pieces += [(rendered[pos:m.start()], False), (template_visible_content(messages[int(m.group(2))]), True)]
        pos = m.end()
    pieces.append((rendered[pos:], False))
    return [p for p in pieces if p[0]]


def _generation_prompt_pieces(tokenizer, messages: list[dict], template: str) -> list[Piece]:
    pieces = chat_pieces(tokenizer, messages, template, add_generation_prompt=True)
    prefix = generation_prefix(template)
    if not pieces or pieces[-1][1] or not any(pieces[-1][0].endswith(turn + prefix) for turn in ASSISTANT_TURNS):
        raise R1TuneError("the chat template's generation prompt ends with neither <｜Assistant｜> (R1) nor "
                          "<|im_start|>assistant (ChatML): set data.chat_template to r1 or qwen2-vl")
    return pieces


def encode_generation_prompt(tokenizer, messages: list[dict], template: str | None = None) -> list[int]:
    """Prompt ids for a conversation ending with the user's turn, ending `<｜Assistant｜><think>\\n`: what serving
    and evaluation feed the model, and the prompt part of a training sample, id for id.

    Markers inside message contents are plain text (model/encode.py). With the 2025-01 template, which stops at
    `<｜Assistant｜>`, `<think>\\n` is added (DeepSeek's advice: force the reasoning to start)."""
    return encode_pieces(tokenizer, generation_pieces(tokenizer, messages, template))


def generation_pieces(tokenizer, messages: list[dict], template: str | None = None) -> list[Piece]:
    """The pieces `encode_generation_prompt` encodes (vision models swap image slots in them: model/vision.py)."""
    template = template or resolve_template(tokenizer)
    pieces = _generation_prompt_pieces(tokenizer, messages, template)
    if not generation_prefix(template):
        pieces.append((FORCED_PREFIX, False))
    return pieces


def encode_chat_text(tokenizer, messages: list[dict], add_generation_prompt: bool,
                     template: str | None = None) -> list[int]:
    """Ids of `render_chat`'s text, with markers inside message contents kept as plain text."""
    return encode_pieces(tokenizer, chat_pieces(tokenizer, messages, template, add_generation_prompt))


REASONING_MODES = ("auto", "keep", "drop", "empty")


def _joined(pieces: list[Piece]) -> str:
    return "".join(text for text, _ in pieces)


@dataclass
class TrainingText:
    """A training sample as structure / content pieces (model/encode.py), in three parts."""

    prompt_pieces: list[Piece]  # joined: byte-identical to the inference prompt
    bridge_pieces: list[Piece]  # context after the prompt that is not trained (reasoning: drop)
    target_pieces: list[Piece]  # trained, followed by the eos token

    @property
    def prompt(self) -> str:
        return _joined(self.prompt_pieces)

    @property
    def bridge(self) -> str:
        return _joined(self.bridge_pieces)

    @property
    def target(self) -> str:
        return _joined(self.target_pieces)


def render_training(tokenizer, messages: list[dict], reasoning: str | None, mode: str = "keep",
                    template: str | None = None) -> TrainingText:
    """Split a training conversation (last message = assistant answer) into prompt / bridge / target.

    keep  — train the trace: `{reasoning}\\n</think>\\n\\n{answer}`; a sample without a trace is rendered as
            in `drop`, so data without traces never teaches the model to skip thinking.
    drop  — the trace is discarded; the empty think block is context, only the answer is trained.
    empty — train the model to emit the empty think block itself (it learns to answer without reasoning).
    auto  — `keep` for one sample; what a trace-less sample trains is decided over the whole data set
            (train/data.py: `empty` when most samples lack a trace, else `drop`).

    The trace and the answer are content: a `</think>` or a role marker quoted in them is text, never a marker.
    """
    if mode not in REASONING_MODES:
        raise R1TuneError(f"reasoning mode must be auto, keep, drop or empty, not {mode!r}")
    template = template or resolve_template(tokenizer)
    history, answer = messages[:-1], messages[-1]["content"]
    prompt = _generation_prompt_pieces(tokenizer, history, template)
    if mode in ("keep", "auto") and reasoning:
        bridge: list[Piece] = []
        target = [(THINK_OPEN + "\n", False), (reasoning.strip(), True), (f"\n{THINK_CLOSE}\n\n", False),
                  (answer, True)]
    else:
        block = (f"{THINK_OPEN}\n\n{THINK_CLOSE}\n\n", False)
        bridge, target = ([], [block, (answer, True)]) if mode == "empty" else ([block], [(answer, True)])
    # the generation prompt already wrote the template's prefix (e.g. '<think>\\n'); the sample continues after it
    first = bridge or target
    first[0] = (first[0][0][len(generation_prefix(template)):], False)
    return TrainingText(prompt, [p for p in bridge if p[0]], [p for p in target if p[0]])


@dataclass
class TokenizedSample:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False  # the target was cut at max_length
    prompt_cut: bool = False  # the prompt was cut from the left (data.truncate: left)

    @property
    def n_targets(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


class PromptTooLong(R1TuneError):
    """The prompt alone fills max_length: nothing of the answer would be trained."""

    def __init__(self, source: str, tokens: int, at_least: bool, max_length: int, cut_left: bool = False):
        self.tokens, self.max_length = tokens, max_length
        self.reason = (f"prompt longer than max_length ({'at least ' if at_least else ''}{tokens} tokens before "
                       f"the answer, max_length {max_length})")
        fix = ("raise data.max_length: even cut from the left, the template's start and generation prompt leave "
               "the answer no room") if cut_left else ("set data.truncate=left to cut the prompt from the left, or "
                                                       "raise data.max_length")
        super().__init__(f"sample {source or '?'}: empty label mask — {self.reason}: nothing of the answer would be "
                         f"trained; {fix}")


# Tokens of slack on top of max_length when content is cut before tokenizing: the last few tokens before a
# cut can differ from the uncut text's (the cut splits a word), and those must lie beyond what is kept.
CUT_SLACK_TOKENS = 16
# The first cut assumes at most this many characters per token (ordinary text has 1–5); when counting shows a
# cut content made fewer than max_length tokens, the cut widens to the vocabulary's own bound, and beyond.
FIRST_CUT_CHARS_PER_TOKEN = 8


def cap_content(pieces: list[Piece], chars: int, keep_end: bool) -> tuple[list[Piece], bool]:
    """Content cut to `chars` characters in all: its start is kept (a target), or its end (a prompt, whose
    question is last). Structure is never cut. Returns the pieces and whether anything was cut."""
    out: list[Piece] = []
    cut = False
    for text, is_content in (reversed(pieces) if keep_end else pieces):
        if is_content:
            if len(text) > chars:
                text, cut = (text[len(text) - chars:] if keep_end else text[:chars]), True
            chars -= len(text)
        out.append((text, is_content))
    return (out[::-1] if keep_end else out), cut


def tokenize_training(tokenizer, text: TrainingText, max_length: int, source: str = "",
                      truncate: str = "skip") -> TokenizedSample:
    """Token ids and labels; labels cover the target and its eos, by position.

    A target longer than what is left of max_length is cut at its end. A prompt that leaves no room for the
    answer raises `PromptTooLong` (truncate='skip'), or (truncate='left') loses its oldest tokens — bos and
    the generation prompt stay — so that the answer keeps min(its length, max_length // 2) tokens.

    Content is cut *before* tokenizing to what max_length tokens can hold: a record of tens of MB costs a few
    thousand tokens of work, not its size. The first cut allows 8 characters per token; the cut is then checked
    by counting — a cut content must still make max_length + 16 tokens, so that what is kept, skipped or cut
    from the left is what the whole text would give — and widened when it did not, first to the vocabulary's bound
    (`chars_per_token`: (max_length + 16) × the longest token's characters always make enough tokens), then
    fourfold (a normalizer that merges characters).
    """
    if truncate not in ("skip", "left"):
        raise R1TuneError(f"truncate must be skip or left, not {truncate!r}")
    tokens = max_length + CUT_SLACK_TOKENS
    chars = tokens * min(FIRST_CUT_CHARS_PER_TOKEN, chars_per_token(tokenizer))
    while True:
        prompt_pieces, prompt_capped = cap_content(text.prompt_pieces, chars, keep_end=True)
        target_pieces, target_capped = cap_content(text.target_pieces, chars, keep_end=False)
        prompt, bridge, target = encode_parts(tokenizer, [prompt_pieces, text.bridge_pieces, target_pieces])
        if not ((prompt_capped and len(prompt.ids) < tokens) or (target_capped and len(target.ids) < tokens)):
            break
        chars = max(4 * chars, tokens * chars_per_token(tokenizer))
    context = prompt.ids + bridge.ids
    answer = target.ids + [tokenizer.eos_token_id]
    prompt_cut = False
    if len(context) >= max_length:
        keep = max_length - min(len(answer), max_length // 2) - len(bridge.ids) - prompt.head - prompt.tail
        if truncate != "left" or keep < 1:
            raise PromptTooLong(source, len(context), prompt_capped, max_length, cut_left=truncate == "left")
        end = len(prompt.ids) - prompt.tail
        context = prompt.ids[:prompt.head] + prompt.ids[end - keep:end] + prompt.ids[end:] + bridge.ids
        prompt_cut = True
    ids = context + answer
    labels = [IGNORE] * len(context) + answer
    truncated = len(ids) > max_length
    return TokenizedSample(ids[:max_length], labels[:max_length], truncated, prompt_cut)
