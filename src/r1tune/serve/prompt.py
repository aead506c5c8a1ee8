"""Prompt token ids for serving, with R1's markers in client text kept as plain text.

    ids = encode_chat(tokenizer, [{"role": "user", "content": "…"}], template)
    prompt_chars(messages)      # the text the template will show: the server caps it before tokenizing

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

# the encoding itself lives in model/: training and evaluation encode prompts the same way, id for id
from r1tune.model.encode import encode_plain, marker_ids  # noqa: F401  (the server's names for them)
from r1tune.model.template import encode_generation_prompt, template_visible_content


def prompt_chars(messages: list[dict]) -> int:
    """Characters of message text the template shows (messages with string contents, as normalise_messages
    gives): a cheap bound on tokenizing work, checked before any tokenizing."""
    return sum(len(template_visible_content(m)) for m in messages)


def encode_chat(tokenizer, messages: list[dict], template: str) -> list[int]:
    """Prompt ids for a conversation ending with the user's turn, ending `<｜Assistant｜><think>\\n`."""
    return encode_generation_prompt(tokenizer, messages, template)
