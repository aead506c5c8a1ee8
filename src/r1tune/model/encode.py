"""Token ids for text made of template structure and message content, with R1's markers in content kept as text.

    ids = encode_pieces(tokenizer, [("<｜User｜>", False), (question, True), ("<｜Assistant｜><think>\\n", False)])
    ids = encode_plain(tokenizer, "a user who types </think>")   # content alone

R1's role and think markers (`<｜User｜>`, `<｜Assistant｜>`, `<think>`, `</think>`, the tool markers, even bos/eos)
are added tokens that are *not* special: the tokenizer turns them into their marker ids wherever they appear,
so a user who types `<｜Assistant｜>` would forge a turn, and a training sample whose answer quotes `</think>`
would teach the model to close its reasoning there. Text is therefore given as pieces: structure (what the
template or the recipe writes — its markers are markers) and content (what a message holds — every marker in
it is broken into plain-text pieces, `<` + `｜Assistant｜>` …, so the model reads the same characters, never the
marker ids).

The text between two structural markers is one *segment*, tokenized as one string (structure and content
together), because that is what the tokenizer does with the whole text: added tokens split it there and
nowhere else. So text whose content holds no marker gets exactly the ids of tokenizing it whole, and training,
evaluation and serving, which all encode through here, agree to the id.

`chars_per_token` bounds how many characters one token can cover; the trainer uses it to cut a huge content
to what `max_length` tokens can hold *before* tokenizing it (see `model/template.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from r1tune.errors import R1TuneError

Piece = tuple[str, bool]  # (text, is_content)


@dataclass(frozen=True)
class Markers:
    ids: frozenset[int]  # every added token: role, think and tool markers, bos, eos …
    by_text: dict[str, int]
    pattern: re.Pattern | None  # longest first: `</think>` before `<think>`
    first_chars: frozenset[str]  # text without any of these holds no marker: no regex search needed
    plain: dict[str, list[int]] = field(default_factory=dict)  # marker text → its ids as plain text

    def search(self, text: str) -> bool:
        """Does the text hold a marker?"""
        return self.pattern is not None and any(c in text for c in self.first_chars) and bool(self.pattern.search(text))


@lru_cache(maxsize=8)
def markers(tokenizer) -> Markers:
    added = dict(tokenizer.get_added_vocab())
    for token, token_id in zip(tokenizer.all_special_tokens, tokenizer.all_special_ids):
        added.setdefault(token, token_id)
    added = {t: i for t, i in added.items() if t}
    texts = sorted(added, key=len, reverse=True)
    pattern = re.compile("|".join(map(re.escape, texts))) if texts else None
    return Markers(frozenset(added.values()), added, pattern, frozenset(t[0] for t in texts))


def marker_ids(tokenizer) -> frozenset[int]:
    """Ids of every added token (role, think and tool markers, bos, eos …)."""
    return markers(tokenizer).ids


@lru_cache(maxsize=8)
def chars_per_token(tokenizer) -> int:
    """The most characters one regular token can cover: its longest vocabulary entry.

    A byte-level BPE token is written one character per byte, so a token of n characters covers n bytes, and
    n bytes hold at most n characters; a sentencepiece entry covers at most its own length (`▁the`), a
    byte-fallback one (`<0xE4>`) less. Markers are left out: content never holds one (they are broken).
    So `max_length × chars_per_token` characters of content always make at least `max_length` tokens, up to
    normalizers that merge characters (NFC composition), which the trainer checks by counting (see
    `model/template.py`)."""
    added = markers(tokenizer).by_text
    return max((len(t) for t in tokenizer.get_vocab() if t not in added), default=1) or 1


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def encode_plain(tokenizer, text: str) -> list[int]:
    """Token ids of text in which no marker acts as a marker: each marker is split into plain pieces."""
    found = markers(tokenizer)
    if not found.search(text):
        return _ids(tokenizer, text)
    gaps, marks, pos = [], [], 0
    for m in found.pattern.finditer(text):
        gaps.append(text[pos:m.start()])
        marks.append(m.group())
        pos = m.end()
    gaps.append(text[pos:])
    gap_ids = tokenizer(gaps, add_special_tokens=False)["input_ids"]  # one call, however many markers
    out = list(gap_ids[0])
    for mark, ids in zip(marks, gap_ids[1:]):
        if mark not in found.plain:  # each marker's plain pieces are worked out once per tokenizer
            found.plain[mark] = _split_until_plain(tokenizer, mark, found.ids)
        out += found.plain[mark] + ids
    if found.ids.intersection(out):  # cannot happen with the split above; never let one through
        return _split_until_plain(tokenizer, text, found.ids)
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


@dataclass
class Encoded:
    ids: list[int]
    head: int  # leading ids that are structure only (bos …): before the first segment holding content
    tail: int  # trailing ids that are structure only (the generation prompt): after the last content


@dataclass
class _Segment:
    text: str  # between two structural markers: tokenized as one string
    content: bool  # holds message content
    careful: bool = False  # holds a marker (in content, or formed across a content edge): break it


def _segments(pieces: list[Piece], found: Markers) -> list[_Segment | int]:
    """Pieces → text segments and structural marker ids, in order."""
    out: list[_Segment | int] = []
    text, content = "", False
    for piece, is_content in pieces:
        if is_content or found.pattern is None:
            text, content = text + piece, content or (is_content and bool(piece))
            continue
        pos = 0
        for m in found.pattern.finditer(piece):
            text += piece[pos:m.start()]
            if text:
                out.append(_Segment(text, content))
            out.append(found.by_text[m.group()])
            text, content, pos = "", False, m.end()
        text += piece[pos:]
    if text:
        out.append(_Segment(text, content))
    for s in out:
        if isinstance(s, _Segment) and s.content:  # structure alone holds no marker: it was split out above
            s.careful = found.search(s.text)
    return out


def encode_parts(tokenizer, parts: list[list[Piece]]) -> list[Encoded]:
    """`encode_pieces` for several texts at once (one tokenizer call for all their plain segments)."""
    found = markers(tokenizer)
    all_segments = [_segments(pieces, found) for pieces in parts]
    plain = [s.text for segments in all_segments for s in segments if isinstance(s, _Segment) and not s.careful]
    batch = iter(tokenizer(plain, add_special_tokens=False)["input_ids"] if plain else [])
    out = []
    for segments in all_segments:
        chunks: list[tuple[list[int], bool]] = []
        for s in segments:
            if isinstance(s, int):
                chunks.append(([s], False))
            elif s.careful:
                chunks.append((encode_plain(tokenizer, s.text), True))
            else:
                chunks.append((next(batch), s.content))
        ids = [i for chunk, _ in chunks for i in chunk]
        flags = [c for _, c in chunks]
        first = flags.index(True) if True in flags else len(chunks)
        last = len(flags) - flags[::-1].index(True) if True in flags else len(chunks)
        out.append(Encoded(ids, sum(len(c) for c, _ in chunks[:first]), sum(len(c) for c, _ in chunks[last:])))
    return out


def encode_pieces(tokenizer, pieces: list[Piece]) -> list[int]:
    """Ids of the joined pieces: markers in structure are markers, markers in content are plain text."""
    return encode_parts(tokenizer, [pieces])[0].ids
