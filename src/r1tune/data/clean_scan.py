"""Which clean rules can change each text of a batch, and which texts may hold personal data, found by vectorised
RE2 scans (`scan.py`): `clean_record` then runs a rule, or the personal-data finder, only where it can find work.

    scans = step_scans(["html", "control", "nfkc", "symbols", "whitespace"], rule_characters)
    hints = text_hints(texts, scans, pii=True)   # (first step that may change each text, may each hold personal data)

Each scan is a superset test: a text it clears is one its rule returns as it is, and the outputs stay byte for
byte those of the plain path. The rules run in order, each on what the one before left, so a scan made on the text
as read tells only where to *start*: `apply_rules` begins at the first rule whose scan matches and runs every rule
after it. A rule with no scan here (numbers, cjk_spaces, the user's regexes) matches every text. The personal-data
hint is `find_pii`'s own first test (a long number or an '@'), and holds only for a text no rule changed.

The rules' character sets come from the rules' own Python patterns (`scan.characters_of`), so the two cannot
drift apart; tests/data/test_prep_differential.py compares this path with the plain one on hostile data.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache

from r1tune.data import scan
from r1tune.data.scan import characters_of, re2_class, scan_texts, unicode_classes

# A scan: alternatives, each a conjunction of (RE2 pattern, whether it must match). One that matches: maybe work.
Scan = tuple[tuple[tuple[str, bool], ...], ...]


def _class(pattern: re.Pattern, extra: str = "") -> str:
    return re2_class(characters_of(pattern) | set(map(ord, extra)))


@cache
def _scans(chars: tuple[tuple[str, re.Pattern], ...]) -> dict[str, Scan]:
    c = dict(chars)
    runs = "|".join(re.escape(ch) * 4 for ch in sorted(map(chr, characters_of(c["repeated"]))))
    space = _class(re.compile(r"\s"))  # what str.strip() removes
    # nfkc changes a text that holds a character NFKC may change, besides the ones it keeps; or one with the
    # Chinese punctuation it keeps only in text that has Chinese, and no Chinese character
    unstable = re2_class(set(unicode_classes()["unstable"]) - characters_of(c["protected"]))
    return {
        "html": ((("<[A-Za-z!/]|&#|&[A-Za-z]{2,8};", True),),),
        "control": (((_class(c["control"]), True),),),
        "nfkc": (((unstable, True),), ((_class(c["cjk_punct"]), True), (_class(c["han"]), False))),
        "fullwidth": (((_class(c["fullwidth"]), True),),),
        "symbols": (((f"{_class(c['noise'])}|{runs}", True),),),
        "whitespace": (((f"  |[\\t\\n\\x{{3000}}\\x{{a0}}]|^{space}|{space}$| {_class(c['closing'])}|"
                         f"{_class(c['opening'])} ", True),),),
    }


@lru_cache(maxsize=1)
def pii_scan() -> str:
    """`find_pii`'s first test: an '@', or pii._HAS_LONG_NUMBER (`\\d[\\d ()-]{6,}\\d`, Unicode digits)."""
    digit = re.compile(r"\d")
    return f"@|{_class(digit)}{_class(digit, ' ()-')}{{6,}}{_class(digit)}"


def step_scans(steps: list[str], rule_characters: dict[str, re.Pattern]) -> list[Scan | None]:
    """The scan of each step of a plan (None: a step that may change any text)."""
    scans = _scans(tuple(sorted(rule_characters.items(), key=lambda kv: kv[0])))
    return [scans.get(name) for name in steps]


def text_hints(texts: list[str], scans: list[Scan | None], pii: bool) -> tuple[list[int], list[bool]] | None:
    """For each text, the first step that may change it, and whether it may hold personal data (always True when
    `pii` is False); None where the texts cannot go into Arrow (see scan_texts).

    The steps before the first one without a scan are run as few RE2 scans as they allow: their one-pattern
    alternatives in one alternation (one pass over the batch), then each conjunction. A text one of them matches
    starts at the first step; one none matches, at the first step without a scan (len(scans) if none)."""
    import numpy as np  # heavy: see scan.TextScan._run

    scan = scan_texts(texts)
    if scan is None:
        return None
    n = len(texts)
    first_open = scans.index(None) if None in scans else len(scans)
    single, conjunctions = [], []
    for step in scans[:first_open]:
        for alternative in step:
            (single if len(alternative) == 1 else conjunctions).append(alternative)
    matched = np.ones(n, dtype=bool) if first_open == 0 else np.zeros(n, dtype=bool)
    if single and first_open:
        matched |= scan.mask("|".join(f"(?:{pattern})" for (pattern, _), in single))
    for alternative in conjunctions:
        both = np.ones(n, dtype=bool)
        for pattern, wanted in alternative:
            hit = scan.mask(pattern)
            both &= hit if wanted else ~hit
        matched |= both
    starts = np.where(matched, 0, first_open)
    may_hold_pii = scan.mask(pii_scan()) if pii else np.ones(n, dtype=bool)
    return starts.tolist(), may_hold_pii.tolist()


def batch_hints(slots: list[tuple[list, list[str]]], steps: list[str], rule_characters: dict[str, re.Pattern],
                pii: bool) -> list[tuple | None]:
    """`clean_record`'s hint for each record of a batch, from its (paths, texts): (paths, texts, first step that
    may change each text, whether each may hold personal data). None for each record on the plain path
    (`scan.VECTORISED` off, or texts Arrow cannot hold)."""
    found = text_hints([text for _, texts in slots for text in texts], step_scans(steps, rule_characters), pii) \
        if scan.VECTORISED else None
    if found is None:
        return [None] * len(slots)
    starts, may_hold_pii = found
    hints, at = [], 0
    for paths, texts in slots:
        end = at + len(texts)
        hints.append((paths, texts, starts[at:end], may_hold_pii[at:end]))
        at = end
    return hints
