"""Prompt token ids for serving, with R1's markers in client text kept as plain text.

    ids = encode_chat(tokenizer, [{"role": "user", "content": "…"}], template)

R1's role and think markers (`<｜User｜>`, `<｜Assistant｜>`, `<think>`, `</think>`, the tool markers, even bos/eos)
are added tokens that are *not* special: the tokenizer turns them into their marker ids wherever they appear,
so a user who types `<｜Assistant｜>` in a question would forge a turn (prompt injection). Here the template
renders the conversation with a random placeholder in place of each message's content; the template's own
text is tokenized normally (its markers are structure), and each content is tokenized on its own with every
marker it contains broken into plain-text pieces (`<` + `｜Assistant｜>` …). The model then reads the same
characters, never the marker ids. Content is always flanked by markers in the R1 template, and added tokens
already split the text there, so a benign conversation gets exactly the ids of the rendered prompt.

The generation prompt always ends `<｜Assistant｜><think>\\n` (DeepSeek's advice: force the reasoning to start);
with the 2025-01 template, which stops at `<｜Assistant｜>`, `<think>\\n` is added here.
"""

from __future__ import annotations

import re
import secrets
from functools import lru_cache

from r1tune.errors import R1TuneError
from r1tune.model.template import (
    ASSISTANT,
    THINK_CLOSE,
    THINK_OPEN,
    generation_prefix,
    normalise_messages,
    render_prompt,
)

FORCED_PREFIX = THINK_OPEN + "\n"


def marker_ids(tokenizer) -> frozenset[int]:
    """Ids of every added token (role, think and tool markers, bos, eos …)."""
    return _markers(tokenizer)[0]


@lru_cache(maxsize=8)
def _markers(tokenizer) -> tuple[frozenset[int], re.Pattern | None]:
    added = dict(tokenizer.get_added_vocab())
    for token, token_id in zip(tokenizer.all_special_tokens, tokenizer.all_special_ids):
        added.setdefault(token, token_id)
    texts = sorted((t for t in added if t), key=len, reverse=True)  # longest first: `</think>` before `<think>`
    pattern = re.compile("|".join(map(re.escape, texts))) if texts else None
    return frozenset(added.values()), pattern


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def encode_plain(tokenizer, text: str) -> list[int]:
    """Token ids of client text in which no marker acts as a marker: each marker is split into pieces."""
    ids_of_markers, pattern = _markers(tokenizer)
    if pattern is None:
        return _ids(tokenizer, text)
    out: list[int] = []
    pos = 0
    for m in pattern.finditer(text):
        out += _ids(tokenizer, text[pos:m.start()])
        out += _split_until_plain(tokenizer, m.group(), ids_of_markers)
        pos = m.end()
    out += _ids(tokenizer, text[pos:])
    if ids_of_markers.intersection(out):  # cannot happen with the split above; never let one through
        return _split_until_plain(tokenizer, text, ids_of_markers)
    return out


def _split_until_plain(tokenizer, text: str, forbidden: frozenset[int]) -> list[int]:
    """Tokenize halves (recursively) until no piece produces a marker id."""
    ids = _ids(tokenizer, text)
    if not forbidden.intersection(ids):
        return ids
    if len(text) == 1:
        raise R1TuneError(f"cannot encode {text!r} without a marker token")
    half = len(text) // 2
    return _split_until_plain(tokenizer, text[:half], forbidden) + _split_until_plain(tokenizer, text[half:], forbidden)


def template_visible_content(message: dict) -> str:
    """What the R1 template shows of a message: an assistant turn only after its last `</think>`."""
    content = message["content"]
    if message["role"] == "assistant" and THINK_CLOSE in content:
        content = content.split(THINK_CLOSE)[-1]
    return content


def encode_chat(tokenizer, messages: list[dict], template: str) -> list[int]:
    """Prompt ids for a conversation ending with the user's turn, ending `<｜Assistant｜><think>\\n`."""
    messages = normalise_messages(messages)
    nonce = secrets.token_hex(8)
    slot = re.compile(f"\x00{nonce}:(\\d+)\x00")
    contents = [template_visible_content(m) for m in messages]
    placeholders = [{"role": m["role"], "content": f"\x00{nonce}:{i}\x00"} for i, m in enumerate(messages)]
    rendered = render_prompt(tokenizer, placeholders, template)
    ids: list[int] = []
    pos = 0
    for m in slot.finditer(rendered):
        ids += _ids(tokenizer, rendered[pos:m.start()])
        ids += encode_plain(tokenizer, contents[int(m.group(1))])
        pos = m.end()
    tail = rendered[pos:]
    prefix = generation_prefix(template)
    if not tail.endswith(ASSISTANT + prefix):
        raise R1TuneError("the chat template's generation prompt does not end with <｜Assistant｜>: not an R1 template")
    ids += _ids(tokenizer, tail)
    if not prefix:  # the 2025-01 template: force the reasoning to start, as DeepSeek advises
        ids += _ids(tokenizer, FORCED_PREFIX)
    return ids
