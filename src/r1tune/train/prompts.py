"""The prompts a GRPO run samples from: read in any finetune format, encoded as serving encodes them, each with
the reference its rewards check against.

    prompts = load_prompts(cfg.data, tokenizer, template)    # PromptSet: samples, skipped, counts
    prompts.samples[0].prompt_ids                            # …<｜Assistant｜><think>\\n: the `r1tune serve` prompt
    stream = PromptStream(len(prompts.samples), batch=8, seed=42)
    stream.batch(step)                                       # sample indices of a step, the same after a resume

A prompt record is a finetune record whose answer is optional: an alpaca record without `output`, a
ShareGPT / messages conversation whose last turn is the user's. Such a record is completed with a placeholder
answer before the finetune reader (`data/formats.py`) reads it, so every field is checked exactly as finetune
checks it, and the placeholder is dropped again. An answer that is there is not trained on; it may be the
reference.

The reference is `data.reference_field` when set, else the first of the record's `label`, `answer` and
`reference` fields, else its answer. A prompt longer than `data.max_prompt_length` stops the run naming it
(`truncate: error`), is left out and listed (`skip`), or loses its oldest tokens, bos and the generation prompt
kept (`left`).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

from r1tune.data.formats import SHAREGPT_ROLES, ChatSample, detect_format, to_sample
from r1tune.data.io import read_records
from r1tune.errors import DataError, R1TuneError
from r1tune.model.encode import encode_parts
from r1tune.model.template import FORCED_PREFIX, chat_pieces, encode_generation_prompt, generation_prefix

REFERENCE_FIELDS = ("label", "answer", "reference")
PLACEHOLDER = "(answer to be sampled)"


@dataclass
class PromptSample:
    messages: list[dict]  # the conversation up to and including the user's turn
    prompt_ids: list[int]  # ending with the generation prompt `<｜Assistant｜><think>\n`
    reference: str | None  # what accuracy / field_f1 compare against
    reference_field: str | None  # where it came from: label, answer, reference, the answer ("output") …
    source: str  # file:line
    meta: dict = field(default_factory=dict)  # the record's other fields (id, label …)
    cut: bool = False  # cut from the left to max_prompt_length

    @property
    def prompt_text(self) -> str:
        """The user's last message: what the language reward compares the answer's language with."""
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")


@dataclass
class PromptSet:
    samples: list[PromptSample]
    skipped: list[dict]
    too_long: int = 0  # skipped (truncate: skip) or cut (truncate: left): longer than max_prompt_length
    with_answer: int = 0  # records that carried an answer (not trained on)


def completed(record: dict, fmt: str) -> tuple[dict, bool]:
    """The record with a placeholder answer when it has none (and whether one was added)."""
    fmt = detect_format(record) if fmt == "auto" else fmt
    if fmt == "alpaca" and record.get("output") in (None, "") and "instruction" in record:
        return {**record, "output": PLACEHOLDER}, True
    for key, role_key, assistant in (("conversations", "from", {"from": "gpt", "value": PLACEHOLDER}),
                                     ("messages", "role", {"role": "assistant", "content": PLACEHOLDER})):
        turns = record.get(key)
        if fmt in ("sharegpt", "messages") and isinstance(turns, list) and turns and isinstance(turns[-1], dict):
            role = turns[-1].get(role_key, turns[-1].get("role"))
            if SHAREGPT_ROLES.get(role, role) == "user":
                return {**record, key: [*turns, assistant]}, True
    return record, False


def reference_of(sample: ChatSample, had_answer: bool, reference_field: str | None) -> tuple[str | None, str | None]:
    """(reference text, the field it came from)."""
    for name in [reference_field] if reference_field else REFERENCE_FIELDS:
        value = sample.meta.get(name)
        if value not in (None, "", [], {}):
            return (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)), name
    if had_answer and not reference_field:
        return sample.answer, "answer"
    return None, None


def cut_from_left(tokenizer, messages: list[dict], template: str, max_length: int) -> list[int] | None:
    """The prompt's ids with its oldest content tokens dropped to fit `max_length`, bos and the generation
    prompt kept; None when even those do not fit."""
    pieces = chat_pieces(tokenizer, messages, template, add_generation_prompt=True)
    if not generation_prefix(template):
        pieces.append((FORCED_PREFIX, False))
    encoded = encode_parts(tokenizer, [pieces])[0]
    keep = max_length - encoded.head - encoded.tail
    if keep < 1:
        return None
    ids, end = encoded.ids, len(encoded.ids) - encoded.tail
    return ids[:encoded.head] + ids[end - keep:end] + ids[end:]


def load_prompts(cfg, tokenizer, template: str) -> PromptSet:
    """`cfg` is a GrpoDataConfig. Bad records stop the run or are listed (`on_error`); see the module docstring."""
    read_errors: list[DataError] = []
    samples: list[PromptSample] = []
    skipped: list[dict] = []
    too_long = with_answer = 0
    for loc, record in read_records(cfg.train, cfg.on_error, read_errors, cfg.encoding, cfg.columns):
        try:
            full, added = completed(record, cfg.format) if isinstance(record, dict) else (record, False)
            chat = to_sample(full, loc, cfg.format)
        except DataError as e:
            if cfg.on_error == "stop":
                raise
            skipped.append(e.as_dict())
            continue
        messages = chat.messages[:-1]
        with_answer += not added
        reference, source_field = reference_of(chat, not added, cfg.reference_field)
        ids = encode_generation_prompt(tokenizer, messages, template)
        cut = False
        if len(ids) > cfg.max_prompt_length:
            too_long += 1
            shorter = cut_from_left(tokenizer, messages, template, cfg.max_prompt_length) \
                if cfg.truncate == "left" else None
            if cfg.truncate == "error" or (cfg.truncate == "left" and shorter is None):
                fix = ("raise data.max_prompt_length: even cut from the left, the template's start and generation "
                       "prompt do not fit" if cfg.truncate == "left" else
                       "raise data.max_prompt_length, or set data.truncate=skip (leave such prompts out) or left "
                       "(cut them from the left)")
                raise R1TuneError(f"{loc}: the prompt is {len(ids)} tokens, longer than data.max_prompt_length "
                                  f"({cfg.max_prompt_length}); nothing was generated: {fix}")
            if cfg.truncate == "skip":
                skipped.append({"source": str(loc), "reason": "prompt longer than max_prompt_length",
                                "prompt_tokens": len(ids), "max_prompt_length": cfg.max_prompt_length})
                continue
            ids, cut = shorter, True
        samples.append(PromptSample(messages, ids, reference, source_field, str(loc), chat.meta, cut))
    skipped = [e.as_dict() for e in read_errors] + skipped
    if not samples:
        raise R1TuneError(f"{cfg.train}: no usable prompts ({len(skipped)} skipped, see skipped.jsonl)")
    return PromptSet(samples, skipped, too_long, with_answer)


class PromptStream:
    """Global batches of prompt indices in a fixed order: batch k is the k-th slice of a per-epoch shuffle, a pure
    function of (seed, k), so a resumed run takes the same prompts; every rank builds the same global batch."""

    def __init__(self, n: int, global_batch: int, seed: int):
        self.n, self.global_batch, self.seed = n, global_batch, seed
        self._epoch, self._order = -1, []

    def batch(self, k: int) -> list[int]:
        out = []
        position = k * self.global_batch
        while len(out) < self.global_batch:
            epoch, offset = divmod(position, self.n)
            if epoch != self._epoch:
                self._epoch, self._order = epoch, list(range(self.n))
                random.Random(self.seed * 1_000_003 + epoch).shuffle(self._order)
            take = min(self.global_batch - len(out), self.n - offset)
            out += self._order[offset:offset + take]
            position += take
        return out
