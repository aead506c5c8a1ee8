"""Personal data in medical and financial text: find it, then mask it, drop the record, or only report it.

    find_pii("患者电话13812345678，身份证110101199003074578")   # [PiiMatch(kind="phone", ...), ...]
    masker = Masker(); masker.mask("call 138-1234-5678 or 13812345678")  # "call [PHONE_1] or [PHONE_1]"

Kinds: Chinese resident ID numbers (18 characters, birth date and ISO 7064 checksum verified), phone
numbers (Chinese mobile and landline, international `+CC`, North-American), bank card numbers (13–19
digits, Luhn verified), e-mail addresses, names given in a declared field of the record (a patient's
name), and user-declared regex patterns (account ids). A number that fails its checksum is not
personal data and is left alone (an amount, an order number), which keeps finance text intact.

Masking is consistent within a record: the same phone number written twice, even with different
separators, becomes the same `[PHONE_1]` in every field, so the text still reads.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import date

from r1tune.errors import R1TuneError

KINDS = ("id_card", "phone", "bank_card", "email")
PLACEHOLDER = {"id_card": "ID", "phone": "PHONE", "bank_card": "CARD", "email": "EMAIL", "name": "NAME"}

# The patterns start with the match's first character and check what precedes it with a look-behind that
# spans that character too ("[1-9](?<![0-9A-Za-z][1-9])" = "(?<![0-9A-Za-z])[1-9]"): a pattern that starts with
# a character class lets the regex engine skip straight to candidates instead of trying every position.
ID_CARD = re.compile(r"[1-9](?<![0-9A-Za-z][1-9])\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
                     r"\d{3}[0-9Xx](?![0-9A-Za-z])")
BANK_CARD = re.compile(r"\d(?<![\d.,]\d)(?:\d{3}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{1,3})?|\d{12,18})(?![\d]|[.,]\d)")
# Every phone alternative starts with a digit, "+" or "(": that first character is matched once, up front (fast
# scan, as above), and each alternative goes on from it; `(?<=x)` says which character it was and
# `(?<![...][\s\S])` looks at the one before it. Same matches as the plain form in the comments.
PHONE = re.compile(
    r"[\d+(](?:"
    # Chinese mobile: (?<![\d+])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)
    r"(?<![\d+][\s\S])(?:(?<=\+)86[ -]?1|(?<=0)086[ -]?1|(?<=1))[3-9]\d(?:[ -]?\d{4}){2}(?!\d)"
    # Chinese landline with area code: (?<![\d])(?:0\d{2,3}-|\(0\d{2,3}\)\s?)\d{7,8}(?!\d)
    r"|(?<!\d[\s\S])(?:(?<=0)\d{2,3}-|(?<=\()0\d{2,3}\)\s?)\d{7,8}(?!\d)"
    # international: (?<![\d\w])\+(?!86)[1-9]\d{0,2}[ -]?(?:\(\d{1,4}\)[ -]?)?\d{1,4}(?:[ -]\d{2,4}){1,4}(?!\d)
    r"|(?<![\d\w][\s\S])(?<=\+)(?!86)[1-9]\d{0,2}[ -]?(?:\(\d{1,4}\)[ -]?)?\d{1,4}(?:[ -]\d{2,4}){1,4}(?!\d)"
    # North-American: (?<![\d.])(?:\(\d{3}\) ?|\d{3}[-.])\d{3}[-.]\d{4}(?![\d])
    r"|(?<![\d.][\s\S])(?:(?<=\()\d{3}\) ?|(?<=\d)\d{2}[-.])\d{3}[-.]\d{4}(?![\d])"
    r")")
EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_HAS_LONG_NUMBER = re.compile(r"\d[\d ()-]{6,}\d")  # a text without one is not searched for IDs, cards, phones
_NON_DIGIT = re.compile(r"\D")
_NON_WORD = re.compile(r"\W")
_CN_COUNTRY_CODE = re.compile(r"^(?:00)?86(?=1[3-9]\d{9}$)")  # before a Chinese mobile number
PLACEHOLDER_RE = re.compile(r"\[[A-Z][A-Z0-9_]*_\d+\]")

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"


def id_card_valid(number: str) -> bool:
    """A Chinese resident ID: 18 characters, a real birth date, and the ISO 7064 MOD 11-2 check character."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    if not date(1880, 1, 1) <= born <= date.today():
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], ID_WEIGHTS))
    return ID_CHECK[total % 11] == number[17].upper()


def luhn_valid(digits: str) -> bool:
    if not digits.isdigit() or len(set(digits)) == 1:  # 0000… passes Luhn but is no card
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


@dataclass(frozen=True)
class PiiMatch:
    kind: str
    start: int
    end: int
    value: str

    @property
    def key(self) -> str:
        """The value as compared for consistent masking: digits only for numbers, lower case for e-mail."""
        if self.kind == "id_card":
            return self.value.upper()
        if self.kind in ("phone", "bank_card"):
            digits = _NON_DIGIT.sub("", self.value)
            return _CN_COUNTRY_CODE.sub("", digits) if self.kind == "phone" else digits
        return self.value.lower() if self.kind == "email" else self.value


def find_pii(text: str, kinds: tuple[str, ...] | list[str] = KINDS, patterns: dict[str, re.Pattern] | None = None,
             names: list[str] | tuple[str, ...] = ()) -> list[PiiMatch]:
    """Non-overlapping personal-data spans, left to right. Names and user patterns win over built-ins."""
    has_long_number = _HAS_LONG_NUMBER.search(text) is not None
    if not has_long_number and "@" not in text and not names and not patterns:
        return []  # the usual text: no long number, no e-mail, no name or pattern to look for
    found: list[PiiMatch] = []
    for name in names:
        if name and not PLACEHOLDER_RE.fullmatch(name):  # an already masked name is no name
            for m in re.finditer(re.escape(name), text):
                found.append(PiiMatch("name", m.start(), m.end(), m.group()))
    for kind, pattern in (patterns or {}).items():
        for m in pattern.finditer(text):
            if m.end() > m.start():
                found.append(PiiMatch(kind, m.start(), m.end(), m.group()))
    if has_long_number:
        if "id_card" in kinds:
            found += [PiiMatch("id_card", m.start(), m.end(), m.group()) for m in ID_CARD.finditer(text)
                      if id_card_valid(m.group())]
        if "bank_card" in kinds:
            found += [PiiMatch("bank_card", m.start(), m.end(), m.group()) for m in BANK_CARD.finditer(text)
                      if luhn_valid(_NON_DIGIT.sub("", m.group()))]
        if "phone" in kinds:
            found += [PiiMatch("phone", m.start(), m.end(), m.group()) for m in PHONE.finditer(text)]
    if "email" in kinds and "@" in text:
        found += [PiiMatch("email", m.start(), m.end(), m.group()) for m in EMAIL.finditer(text)]
    if len(found) < 2:
        return found
    # Earlier entries have priority (names, user patterns, ID, card, phone, e-mail): keep those first.
    kept: list[PiiMatch] = []
    for match in found:
        if all(match.end <= k.start or match.start >= k.end for k in kept):
            kept.append(match)
    return sorted(kept, key=lambda m: m.start)


class Masker:
    """Replaces personal data with numbered placeholders, the same value always with the same one.

    One Masker per record: numbering restarts for the next record, so `[PHONE_1]` means "the first
    phone number of this record" and a reader can still follow who called whom.
    """

    def __init__(self, kinds=KINDS, patterns: dict[str, re.Pattern] | None = None, names=()):
        self.kinds, self.patterns, self.names = tuple(kinds), patterns or {}, tuple(names)
        self._placeholders: dict[tuple[str, str], str] = {}
        self._per_kind: dict[str, int] = {}  # placeholders made so far, per kind
        self.counts: Counter = Counter()  # matches per kind (every occurrence)

    def placeholder(self, match: PiiMatch) -> str:
        key = (match.kind, match.key)
        placeholder = self._placeholders.get(key)
        if placeholder is None:
            kind = match.kind
            number = self._per_kind.get(kind, 0) + 1
            self._per_kind[kind] = number
            # not PLACEHOLDER.get(kind, default): the default would be worked out on every call
            label = PLACEHOLDER[kind] if kind in PLACEHOLDER else _NON_WORD.sub("_", kind).upper()
            placeholder = f"[{label}_{number}]"
            self._placeholders[key] = placeholder
        return placeholder

    def find(self, text: str) -> list[PiiMatch]:
        matches = find_pii(text, self.kinds, self.patterns, self.names)
        self.counts.update(m.kind for m in matches)
        return matches

    def mask(self, text: str, matches: list[PiiMatch] | None = None) -> str:
        if matches is None:
            matches = self.find(text)
        else:
            self.counts.update(m.kind for m in matches)
        if not matches:
            return text
        parts, pos = [], 0
        for m in matches:
            parts += [text[pos:m.start], self.placeholder(m)]
            pos = m.end
        parts.append(text[pos:])
        return "".join(parts)


def compile_patterns(patterns: list[dict] | dict[str, str] | None) -> dict[str, re.Pattern]:
    """User-declared kinds: [{"name": "account_id", "pattern": "ACC\\d{8}"}] or {"account_id": "ACC\\d{8}"}."""
    if not patterns:
        return {}
    items = patterns.items() if isinstance(patterns, dict) else ((p["name"], p["pattern"]) for p in patterns)
    out = {}
    for name, pattern in items:
        try:
            out[name] = re.compile(pattern)
        except re.error as e:
            raise R1TuneError(f"personal-data pattern '{name}' is not a valid regex: {e}") from None
    return out
