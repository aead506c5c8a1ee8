"""Vectorised scans over a batch of texts: which texts a rule can touch at all, answered in compiled code.

    scan = TextScan(texts)                      # the batch's texts in one Arrow array (None: not scannable)
    scan.search(r"<[A-Za-z!/]|&[#A-Za-z]")      # per text: does the RE2 pattern match anywhere?
    scan.count(HAN_CHAR)                        # per text: how many non-overlapping matches

clean and check read records in batches (`steplog.read_input_hinted`), scan the texts of a batch with RE2 through
`pyarrow.compute` (`clean_scan.py`: the clean rules and the personal-data finder), and run their Python rules only
on the texts a scan cannot clear: many texts of real data need no change and hold no personal data. A scan is a
*superset* test: where it says "nothing here", the Python rule would have found nothing either, so the outputs,
logs and reports are byte for byte those of the plain per-record path. That path stays the reference:
`R1TUNE_PREP_REFERENCE=1` in the environment (or `scan.VECTORISED = False`) runs every record through it
(tests/data/test_prep_differential.py compares the two).

RE2's character classes differ from Python's `re` (`\\d`, `\\s` and `\\w` are ASCII in RE2, Unicode in Python), and
its Unicode tables may be of another version than Python's. So the patterns here never use RE2's classes for
anything Python reads as Unicode: the classes that matter (`\\d`, whitespace, characters NFKC may change, the rules'
own character sets) are written out as code-point ranges from Python's own `unicodedata`, str methods and regex
engine (`unicode_classes`, `characters_of`).
"""

from __future__ import annotations

import os
import re
import sys
import unicodedata
from array import array
from functools import cache, lru_cache
from itertools import chain, compress, repeat
from operator import not_

# The plain per-record path, for the differential tests and for anyone who doubts a scan.
VECTORISED = os.environ.get("R1TUNE_PREP_REFERENCE", "") in ("", "0")

# Code points Python has assigned: planes 0-3 and the tags / variation selectors of plane 14 (the rest is
# unassigned or private use, which no class below contains).
_ASSIGNED_RANGES = ((0, 0x323B0), (0xE0000, 0xE01F0))


def re2_class(codepoints) -> str:
    """An RE2 character class ("[...]") of these code points, as \\x{...} ranges."""
    points = sorted(set(codepoints))
    parts, i = [], 0
    while i < len(points):
        j = i
        while j + 1 < len(points) and points[j + 1] == points[j] + 1:
            j += 1
        parts.append(f"\\x{{{points[i]:x}}}" if i == j else f"\\x{{{points[i]:x}}}-\\x{{{points[j]:x}}}")
        i = j + 1
    return "[" + "".join(parts) + "]" if parts else "[^\\x{0}-\\x{10ffff}]"  # empty: matches nothing


def re2_escapes(python_class_body: str) -> str:
    """A Python regex class body written with \\uXXXX / \\UXXXXXXXX escapes, in RE2's \\x{...} spelling."""
    return re.sub(r"\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})",
                  lambda m: f"\\x{{{int(m.group(1) or m.group(2), 16):x}}}", python_class_body)


@lru_cache(maxsize=1)
def unicode_classes() -> dict[str, list[int]]:
    """Code points by what Python says of them (worked out once per process, in a few hundredths of a second:
    each test is mapped over every character in C, no Python loop over 200,000 code points):

    decimal   str.isdecimal: what `\\d` matches in a Python str pattern
    space     str.isspace: what `\\s` matches, and what str.split() and str.strip() remove
    unstable  characters in whose presence NFKC may change a text: those NFKC changes alone, those with a
              combining class, and those that compose with the character before them (the second of a
              canonical pair, and the Hangul vowel and trailing-consonant jamo). A text with none of them is
              NFKC-normalised (the quick check answers YES for it).
    """
    every = _every_character()
    unstable = set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))
    # NFKC changes a character alone only inside a block of characters that it does not leave as it is
    for block in (every[i:i + 64] for i in range(0, len(every), 64)):
        if not unicodedata.is_normalized("NFKC", block):
            unstable.update(map(ord, compress(block, map(not_, map(unicodedata.is_normalized, repeat("NFKC"),
                                                                   block)))))
    unstable.update(map(ord, compress(every, map(unicodedata.combining, every))))
    for decomposition in filter(None, map(unicodedata.decomposition, every)):
        parts = decomposition.split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            unstable.add(int(parts[1], 16))
    return {"decimal": [ord(ch) for ch in re.findall(r"\d", every)],
            "space": [ord(ch) for ch in re.findall(r"\s", every)],
            "unstable": sorted(unstable)}


@lru_cache(maxsize=1)
def _every_character() -> str:
    """Every code point Python has assigned (surrogates aside), in one string."""
    return _code_points(_ASSIGNED_RANGES)


@lru_cache(maxsize=1)
def _every_code_point() -> str:
    """Every code point but the surrogates, in one string (private-use planes included)."""
    return _code_points(((0, 0x110000),))


def _code_points(ranges) -> str:
    """The code points of these ranges, surrogates aside, in one string (built in C: about 0.02 s for them all)."""
    parts = [range(max(start, low), min(end, high)) for start, end in ranges
             for low, high in ((0, 0xD800), (0xE000, 0x110000))]
    return array("I", chain.from_iterable(parts)).tobytes().decode("utf-32-le" if sys.byteorder == "little"
                                                                      else "utf-32-be")


@cache
def characters_of(pattern: re.Pattern) -> frozenset[int]:
    """The characters a one-character Python pattern (a class, or a class in one group) matches: read from
    Python's own engine in one scan of every code point, so the RE2 class made of them means what the Python
    pattern means."""
    return frozenset(map(ord, pattern.findall(_every_code_point())))


@cache
def python_class(name: str, exclude: str = "") -> str:
    """`unicode_classes()[name]` less the characters of `exclude`, as an RE2 class."""
    skip = set(map(ord, exclude))
    return re2_class(cp for cp in unicode_classes()[name] if cp not in skip)


class TextScan:
    """The texts of one batch in an Arrow array, searched by RE2 patterns (results as Python lists)."""

    def __init__(self, array):
        self.array = array
        self._memo: dict[tuple[str, str], list] = {}

    def search(self, pattern: str) -> list[bool]:
        """Per text: whether `pattern` matches anywhere in it."""
        return self._run("match_substring_regex", pattern)

    def mask(self, pattern: str):
        """`search` as a numpy array of booleans (for combining scans)."""
        import pyarrow.compute as pc  # heavy: see _run

        return pc.match_substring_regex(self.array, pattern).to_numpy(zero_copy_only=False)

    def count(self, pattern: str) -> list[int]:
        """Per text: the number of non-overlapping matches of `pattern` (leftmost-first, as Python's finditer)."""
        return self._run("count_substring_regex", pattern)

    def _run(self, function: str, pattern: str) -> list:
        key = (function, pattern)
        result = self._memo.get(key)
        if result is None:
            import pyarrow.compute as pc  # heavy: loaded with the first batch, not with the module

            result = self._memo[key] = getattr(pc, function)(self.array, pattern).to_pylist()
        return result


def scan_texts(texts: list[str]) -> TextScan | None:
    """A TextScan of `texts`, or None where they cannot go into Arrow (a lone surrogate is not UTF-8): the
    caller then takes the plain per-record path for the batch."""
    import pyarrow as pa  # heavy: see TextScan._run

    try:
        return TextScan(pa.array(texts, type=pa.large_string()))
    except (pa.ArrowException, UnicodeError):
        return None
