"""Clean text records without damaging Chinese: a configurable list of rules, then filters and personal data.

    r1tune prepare clean raw.jsonl clean.jsonl [--rules rules.yaml]
    clean_text("营收3.5亿元，同比增长12.3%")                        # unchanged
    clean_text("营收3.5亿元，同比增长12.3%", rules=["numbers"])     # "营收3.5e8元，同比增长12.3%"

Rules (applied in the configured order to every prose field; defaults in `CleanConfig.rules`):
  html        remove tags and comments, decode entities; <br>/<p> become line breaks, <sup>9</sup> → ^9
  control     remove control, zero-width and bidi characters; CR LF → LF
  nfkc        Unicode NFKC (full-width letters and digits → ASCII, ligatures, NBSP), except where NFKC
              would change meaning: superscripts (10⁹/L), circled numbers (①), squared units (㎡),
              fractions, the ellipsis, and Chinese punctuation (，：；！？（）) in text that has Chinese
  fullwidth   only the full-width → half-width part of nfkc, for those who turn nfkc off
  symbols     remove symbol noise (emoji, pictographs, box drawing, private use, U+FFFD) and cut runs
              of a repeated punctuation mark to three; CJK characters and punctuation are never touched
  numbers     optional: 3.5亿 → 3.5e8, 120万 → 1.2e6, 3.5 billion → 3.5e9, 1,234.5 → 1234.5,
              百分之十二点三 / 12.3 percent / 12.3 % → 12.3%; decimals and percentages stay intact
  cjk_spaces  optional: remove a space between two Chinese characters (PDF extraction)
  user        the user's regex → replacement pairs, in order
  whitespace  collapse runs of spaces, none around Chinese punctuation, trim lines, at most one blank
              line, strip the ends

Unlike cleaners that keep only `[A-Za-z0-9 ]` or delete every punctuation mark (which turns
`营收3.5亿元，同比增长12.3%` into `营收35e8元同比增长123`: ten times too large, the percentage lost), no rule
here deletes a letter, digit, decimal point or meaningful punctuation mark of any script.

After the rules: personal data (mask / drop / report, see `pii.py`), then the filters: empty, length,
language and repetition. Every changed record is logged with the rules that changed each field; every
dropped record with its rule and reason.
"""

from __future__ import annotations

import html as html_lib
import io
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from pathlib import Path

import yaml

from r1tune.config import CleanConfig, load_section
from r1tune.data import scan
from r1tune.data.clean_scan import batch_hints
from r1tune.data.io import json_encoder, write_jsonl
from r1tune.data.lang import ZH_EN_MIXED, detect_language, is_zh_en_or_mixed
from r1tune.data.numbers import CN_SCALE, EN_SCALE, chinese_numeral, scientific
from r1tune.data.parallel import chunk_results, workers_for
from r1tune.data.pii import Masker, compile_patterns, find_pii
from r1tune.data.records import (
    META_KEYS,
    flat_text_slots,
    get_path,
    origin,
    path_str,
    set_path,
    text_slots,
    with_provenance,
)
from r1tune.data.steplog import StepLog, read_input_hinted, read_input_lines_hinted
from r1tune.errors import R1TuneError

HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")

# ---------------------------------------------------------------- html

_HTML_HINT = re.compile(r"<[A-Za-z!/]|&(?:#\d+|#[xX][0-9A-Fa-f]+|[A-Za-z]{2,8});")
_SCRIPT = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.S | re.I)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_SUP = re.compile(r"<sup>\s*([^<>]{1,12}?)\s*</sup>", re.I)
_BREAK = re.compile(r"<(?:br|hr)(?:\s+[^<>]*)?/?>|</(?:p|div|li|tr|h[1-6]|table|ul|ol|blockquote|pre)\s*>", re.I)
_CELL_END = re.compile(r"</(?:td|th)\s*>", re.I)
_TAG = re.compile(
    r"</?(?:a|abbr|article|b|big|blockquote|body|br|button|caption|center|cite|code|col|colgroup|dd|del|"
    r"div|dl|dt|em|figcaption|figure|font|footer|form|h[1-6]|head|header|hr|html|i|iframe|img|input|ins|"
    r"label|li|link|mark|meta|nav|nobr|ol|option|p|pre|q|s|section|select|small|span|strike|strong|sub|sup|"
    r"table|tbody|td|textarea|tfoot|th|thead|title|tr|tt|u|ul|wbr)(?:\s+[^<>]*)?/?>", re.I)


def strip_html(text: str) -> str:
    """Known HTML tags and entities only: `a < b`, `x<y>` and `<思考>` are not HTML and stay."""
    if ("<" not in text and "&" not in text) or not _HTML_HINT.search(text):  # `in` is far cheaper than the regex
        return text
    text = _COMMENT.sub("", _SCRIPT.sub("", text))
    text = _SUP.sub(r"^\1", text)
    text = _BREAK.sub("\n", text)
    text = _CELL_END.sub(" ", text)
    text = _TAG.sub("", text)
    if "&" in text:
        text = html_lib.unescape(text)
    return text


# ---------------------------------------------------------------- control characters

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_LINE_SEP = re.compile("\r\n?|[\u2028\u2029\x85]")
# One scan for "anything to do": a control character or a line break other than LF (\x85 is in both).
_CONTROL_OR_LINE_SEP = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff"
                                  "\u2028\u2029]")


def remove_control(text: str) -> str:
    # The usual case: nothing to do. Every character of _CONTROL_OR_LINE_SEP is unprintable (categories Cc, Cf,
    # Zl, Zp), so a printable text has none; isprintable is a cheaper scan than the regex (but fails on "\n").
    if text.isprintable() or _CONTROL_OR_LINE_SEP.search(text) is None:
        return text
    if "\r" in text or not text.isascii():
        text = _LINE_SEP.sub("\n", text)
    return _CONTROL.sub("", text)


# ---------------------------------------------------------------- NFKC that keeps meaning

CJK_PUNCT = "，！？：；（）"  # full-width forms that are the normal punctuation of Chinese text
_MEANINGFUL_DECOMPOSITIONS = ("<super>", "<sub>", "<circle>", "<square>", "<fraction>")


@lru_cache(maxsize=1)
def _protected_pattern() -> re.Pattern:
    """Characters NFKC would flatten into something that reads differently: 10⁹ → 109, ① → 1, ㎡ → m2,
    … → ..., plus the full-width punctuation of Chinese text (，→ ,). One capturing group, for re.split.
    BMP only, so the regex engine can use a bitmap (the astral enclosed forms are emoji-like and go with
    the symbol noise anyway)."""
    keep = set("…‥")
    for start, end in ((0x00A0, 0x0100), (0x02B0, 0x0370), (0x1D2C, 0x1DC0), (0x2070, 0x2190), (0x2460, 0x2500),
                       (0x2C7C, 0x2C7E), (0x3192, 0x31A0), (0x3200, 0x3400)):
        for cp in range(start, end):
            if unicodedata.decomposition(chr(cp)).startswith(_MEANINGFUL_DECOMPOSITIONS):
                keep.add(chr(cp))
    return re.compile("([" + re.escape("".join(sorted(keep)) + CJK_PUNCT) + "])")


_CJK_PUNCT_RE = re.compile(f"[{CJK_PUNCT}]")


def nfkc(text: str) -> str:
    """NFKC, keeping superscripts, circled numbers, squared units, fractions, the ellipsis, and the
    Chinese punctuation (，：；！？（）) of text that has Chinese in it."""
    if text.isascii():
        return text
    protected = _protected_pattern()
    if protected.search(text) is None:  # nothing to keep: plain NFKC (is_normalized is a quick check)
        return text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)
    has_han = HAN.search(text) is not None
    # Fast path: most Chinese text differs from its NFKC form only in the punctuation we keep.
    if (has_han or not _CJK_PUNCT_RE.search(text)) and unicodedata.is_normalized("NFKC", protected.sub("", text)):
        return text
    pieces = protected.split(text)  # [free, kept, free, kept, …, free]
    for i in range(0, len(pieces), 2):
        pieces[i] = unicodedata.normalize("NFKC", pieces[i])
    if not has_han:  # an English text's stray full-width comma becomes ASCII like its neighbours
        for i in range(1, len(pieces), 2):
            if pieces[i] in CJK_PUNCT:
                pieces[i] = unicodedata.normalize("NFKC", pieces[i])
    return "".join(pieces)


_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


_FULLWIDTH_RE = re.compile("[\uff01-\uff5e\u3000]")


def fullwidth_to_halfwidth(text: str) -> str:
    """Only the ASCII range of the full-width block; Chinese punctuation kept where the text has Chinese."""
    if text.isascii() or not _FULLWIDTH_RE.search(text):
        return text
    table = {k: v for k, v in _FULLWIDTH.items() if chr(k) not in CJK_PUNCT} if HAN.search(text) else _FULLWIDTH
    return text.translate(table)


# ---------------------------------------------------------------- symbol noise

_NOISE_CHAR = ("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2500-\u25FF\uE000-\uF8FF\U000F0000-\U0010FFFD"
               "\uFFFD\uFE00-\uFE0F\u20E3\U000E0000-\U000E007F]")
# A run of noise; written X X* rather than X+ because only a pattern that starts with a character class
# lets the regex engine skip ahead to candidate characters (X+ makes it try a match at every position).
_NOISE = re.compile(f"{_NOISE_CHAR}{_NOISE_CHAR}*")
_REPEATED_PUNCT_CHAR = re.compile(r"[!?！？。，,~～=*#·\-_.…]")
_REPEATED_PUNCT = re.compile(f"({_REPEATED_PUNCT_CHAR.pattern})\\1{{3,}}")


def _drop_noise(m: re.Match) -> str:
    text, s, e = m.string, m.start(), m.end()
    # "up★down" → "up down" (two words must not fuse); "营收★增长" → "营收增长"
    if 0 < s and e < len(text) and text[s - 1].isascii() and text[s - 1].isalnum() \
            and text[e].isascii() and text[e].isalnum():
        return " "
    return ""


def _three_of_them(m: re.Match) -> str:
    return m.group(1) * 3


def remove_symbol_noise(text: str) -> str:
    if not text.isascii():
        text = _NOISE.sub(_drop_noise, text)
    # A function, not the template r"\1\1\1": re.sub parses a template in Python on every call, match or not.
    return _REPEATED_PUNCT.sub(_three_of_them, text)


# ---------------------------------------------------------------- numbers

_THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d]|,\d)")
_CN_SCALED = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s?(" + "|".join(CN_SCALE) + ")")
_EN_SCALED = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s?(" + "|".join(EN_SCALE) + r")\b", re.I)
_PERCENT_SPACE = re.compile(r"(\d)\s+(?:%|percent\b|per cent\b)|(\d)(?:percent\b)", re.I)
_PERCENT_CN = re.compile(r"百分之([\d.]+|[零〇一二两三四五六七八九十百千点]+)")
_NUMBER_HINT = re.compile(r"\d[,\s]?[\d万亿千百十]|百分之|\d\s?[A-Za-z]")


def _cn_percent(m: re.Match) -> str:
    raw = m.group(1)
    if raw[0].isdigit():
        return f"{raw}%"
    value = chinese_numeral(raw)
    return m.group() if value is None else f"{value.normalize():f}%"


def normalize_numbers(text: str) -> str:
    if not _NUMBER_HINT.search(text):
        return text
    text = _THOUSANDS.sub(lambda m: m.group().replace(",", ""), text)
    text = _CN_SCALED.sub(lambda m: scientific(m.group(1), CN_SCALE[m.group(2)]), text)
    text = _EN_SCALED.sub(lambda m: scientific(m.group(1), EN_SCALE[m.group(2).lower()]), text)
    text = _PERCENT_CN.sub(_cn_percent, text)
    return _PERCENT_SPACE.sub(lambda m: (m.group(1) or m.group(2)) + "%", text)


# ---------------------------------------------------------------- whitespace

# Runs of two or more blanks, or a single tab / ideographic space / NBSP. Written as one character class
# followed by the rest (not as an alternation) so the regex engine can skip to candidate characters.
_SPACES = re.compile(r"[ \t\u3000\xa0](?:[ \t\u3000\xa0]+|(?<=[\t\u3000\xa0]))")
_AROUND_NEWLINE = re.compile(r" *\n *")
_BLANK_LINES = re.compile(r"\n{3,}")
_CJK_SPACE = re.compile(r"(?<=[\u4e00-\u9fff，。、；：！？）」』】》]) +(?=[\u4e00-\u9fff，。、；：！？（「『【《])")


# Spaces before a closing or after an opening Chinese punctuation mark: a run of spaces, removed whole,
# when the mark after it closes or the mark before it opens. Starts with a literal space (fast scan).
_CLOSING, _OPENING = re.compile("[，。、；：！？）」』】》]"), re.compile("[（「『【《，。、；：！？]")
_SPACE_AT_CJK_PUNCT = re.compile(f" (?: *(?={_CLOSING.pattern})|(?<={_OPENING.pattern} ) *)")


def normalize_whitespace(text: str) -> str:
    # _SPACES finds two blanks in a row or one tab / ideographic space / NBSP; when there is no tab, ideographic
    # space or NBSP, two blanks in a row are two spaces. Four `in` tests cost less than the regex's scan.
    if "  " in text or "\t" in text or "\u3000" in text or "\xa0" in text:
        text = _SPACES.sub(" ", text)
    if " " in text and not text.isascii():  # Chinese punctuation carries its own spacing: "8.3% ，" → "8.3%，"
        text = _SPACE_AT_CJK_PUNCT.sub("", text)
    if "\n" in text:
        text = _BLANK_LINES.sub("\n\n", _AROUND_NEWLINE.sub("\n", text))
    return text.strip()


def remove_cjk_spaces(text: str) -> str:
    return text if text.isascii() else _CJK_SPACE.sub("", text)


# The character sets the rules look for, from which clean_scan.py makes their superset scans.
RULE_CHARACTERS = {"control": _CONTROL_OR_LINE_SEP, "protected": _protected_pattern(), "cjk_punct": _CJK_PUNCT_RE,
                   "han": HAN, "fullwidth": _FULLWIDTH_RE, "noise": re.compile(_NOISE_CHAR),
                   "repeated": _REPEATED_PUNCT_CHAR, "closing": _CLOSING, "opening": _OPENING}

TRANSFORMS = {"html": strip_html, "control": remove_control, "nfkc": nfkc, "fullwidth": fullwidth_to_halfwidth,
              "symbols": remove_symbol_noise, "numbers": normalize_numbers, "cjk_spaces": remove_cjk_spaces,
              "whitespace": normalize_whitespace}


# ---------------------------------------------------------------- filters

def repetition_ratio(text: str, n: int = 5) -> float:
    """Share of the text's character n-grams that repeat an earlier one (0 = none, →1 = one phrase looped).

    Natural Chinese and English prose stays below about 0.3; spam, stuck OCR and looping generations
    go well above 0.5.
    """
    if len(text) < 4 * n:  # too short even with its whitespace (most labels and short answers)
        return 0.0
    text = "".join(text.split())
    if len(text) < 4 * n:
        return 0.0
    count, take_ngrams = _sampled_ngrams(len(text), n)
    return 1 - len(set(take_ngrams(text))) / count


@lru_cache(maxsize=1024)
def _sampled_ngrams(length: int, n: int) -> tuple[int, itemgetter]:
    """How many n-grams `repetition_ratio` compares for a text of this length, and a getter that cuts
    them all in one C call. Sampled every `step` positions, at most ~64 n-grams (the cost stays bounded):
    a looped phrase still repeats at the sampled positions, natural prose still does not."""
    starts = range(0, length - n + 1, 1 + length // 64)
    if len(starts) == 1:  # itemgetter with one item returns the item, not a tuple
        return 1, lambda text, s=slice(0, n): (text[s],)
    return len(starts), itemgetter(*(slice(i, i + n) for i in starts))


# ---------------------------------------------------------------- plan and records

# Short texts repeat across a dataset (instructions, system prompts, short answers): the rules' result for
# them is remembered. Bounded, so memory stays constant: the cache is emptied when full.
CACHED_TEXT_CHARS = 256
CACHED_TEXTS = 4096


@dataclass
class CleanPlan:
    """A `CleanConfig` compiled once: rule functions, user regexes, personal-data settings."""

    config: CleanConfig
    steps: list[tuple[str, object]] = field(default_factory=list)
    pii_patterns: dict = field(default_factory=dict)
    # text → (cleaned text, names of the rules that changed it), for short texts; see `apply_rules`
    cache: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    # What `clean_record` reads from `config` for every record, worked out once (see __post_init__).
    fields: frozenset[str] | None = field(init=False)  # the only top-level fields cleaned; None: all
    skip: frozenset[str] = field(init=False)  # fields not cleaned when `fields` is None
    not_cleaned: frozenset[str] = field(init=False)  # `skip` and r1tune's metadata (META_KEYS)
    keeps_zh_en_mixed: bool = field(init=False)  # the language filter keeps zh, en and mixed (the default)

    def __post_init__(self) -> None:
        cfg = self.config
        self.fields = frozenset(cfg.fields) if cfg.fields else None
        self.skip = frozenset(cfg.skip_fields)
        self.not_cleaned = self.skip | META_KEYS
        self.keeps_zh_en_mixed = bool(cfg.languages) and ZH_EN_MIXED <= set(cfg.languages)


def compile_user_rules(rules: list) -> list[tuple[str, re.Pattern, str]]:
    compiled = []
    for i, rule in enumerate(rules):
        rule = rule if isinstance(rule, dict) else rule.model_dump()
        name = rule.get("name") or f"user_{i + 1}"
        try:
            compiled.append((name, re.compile(rule["pattern"]), rule.get("replace", "")))
        except re.error as e:
            raise R1TuneError(f"clean rule '{name}': invalid regex {rule['pattern']!r}: {e}") from None
    return compiled


def build_plan(config: CleanConfig | None = None) -> CleanPlan:
    config = config or CleanConfig()
    steps: list[tuple[str, object]] = []
    for name in config.rules:
        if name == "user":
            steps += [(f"user:{rname}", (lambda t, p=pattern, r=repl: p.sub(r, t)))
                      for rname, pattern, repl in compile_user_rules(config.user_rules)]
        else:
            steps.append((name, TRANSFORMS[name]))
    if "user" not in config.rules and config.user_rules:  # user rules given but not placed: run them last
        steps[-1:-1] = [(f"user:{rname}", (lambda t, p=pattern, r=repl: p.sub(r, t)))
                        for rname, pattern, repl in compile_user_rules(config.user_rules)]
    return CleanPlan(config=config, steps=steps, pii_patterns=compile_patterns(
        [p.model_dump() for p in config.pii.patterns]))


def clean_text(text: str, rules: list[str] | None = None, plan: CleanPlan | None = None) -> str:
    """Apply the default rules, or the default rules plus those named (e.g. ["numbers"]), to one text."""
    if plan is None:
        cfg = CleanConfig()
        if rules:
            extra = [r for r in rules if r not in cfg.rules]
            cfg = CleanConfig(rules=[*cfg.rules[:-1], *extra, cfg.rules[-1]])  # whitespace stays last
        plan = build_plan(cfg)
    return apply_rules(text, plan)[0]


@dataclass
class Cleaned:
    record: dict | None  # None when dropped
    changes: dict[str, list[str]]  # field path → rules that changed it
    drop_rule: str | None = None
    drop_reason: str | None = None
    pii: Counter = field(default_factory=Counter)


def fields_of(slots) -> set[str]:
    return {path[0] for path, _ in slots}


def record_texts(record: dict, plan: CleanPlan) -> tuple[list[tuple], list[str]]:
    """The paths and texts of `text_slots(record, plan.fields, plan.skip)`, as two lists (most records are
    flat: `flat_text_slots` reads them in one loop)."""
    slots = flat_text_slots(record, plan.not_cleaned) if plan.fields is None else None
    if slots is None:
        slots = list(text_slots(record, plan.fields, plan.skip))
    return [path for path, _ in slots], [text for _, text in slots]


def apply_rules(text: str, plan: CleanPlan, start: int = 0) -> tuple[str, tuple[str, ...]]:
    """The text after every rule of the plan, and the names of the rules that changed it, in order. `start`: the
    first rule that may change the text (see clean_scan.py); the ones before it would leave it as it is."""
    short = len(text) <= CACHED_TEXT_CHARS
    if short:
        cached = plan.cache.get(text)
        if cached is not None:
            return cached
    new, applied = text, []
    for name, fn in (plan.steps[start:] if start else plan.steps):
        result = fn(new)
        if result is not new and result != new:
            applied.append(name)
            new = result
    answer = (new, tuple(applied))
    if short:  # rules are pure functions of the text: safe to remember
        if len(plan.cache) >= CACHED_TEXTS:
            plan.cache.clear()
        plan.cache[text] = answer
    return answer


def clean_record(record: dict, plan: CleanPlan, hint: tuple | None = None) -> Cleaned:
    """`hint`: (paths, texts, first rule that may change each text, whether each may hold personal data) from the
    batch's scans (`record_hints`); without it every rule runs on every text."""
    cfg = plan.config
    changes: dict[str, list[str]] = {}
    # texts: the current text of each slot, kept here so it need not be looked up in the record again
    if hint is None:
        paths, texts = record_texts(record, plan)
        starts = may_hold_pii = None
    else:
        paths, texts, starts, may_hold_pii = hint
    last = len(plan.steps)
    for i, text in enumerate(texts):
        if starts is not None and starts[i] == last:
            continue
        new, applied = apply_rules(text, plan, starts[i] if starts is not None else 0)
        if applied:
            set_path(record, paths[i], new)
            changes[path_str(paths[i])] = list(applied)
            texts[i] = new
            if may_hold_pii is not None:
                may_hold_pii[i] = True  # the scan saw the text before the rules

    pii_counts: Counter = Counter()
    if cfg.pii.enabled:
        pii = cfg.pii
        names, name_paths = [], []
        if pii.name_fields:
            names = [str(record[f]).strip() for f in pii.name_fields
                     if isinstance(record.get(f), str) and record[f].strip()]
            name_paths = [(f,) for f in pii.name_fields
                          if isinstance(record.get(f), str) and f not in fields_of(zip(paths, texts))]
        masker = None  # made on the first find: most records have no personal data
        scanned = may_hold_pii is not None and not names and not plan.pii_patterns
        for i, path in enumerate(paths + name_paths):
            if scanned and i < len(texts) and not may_hold_pii[i]:
                continue  # find_pii would return [] at its first test
            text = texts[i] if i < len(texts) else get_path(record, path)
            matches = find_pii(text, pii.kinds, plan.pii_patterns, names)
            if not matches:
                continue
            masker = masker or Masker(pii.kinds, plan.pii_patterns, names)
            if pii.action == "mask":
                masked = masker.mask(text, matches)
                set_path(record, path, masked)
                if i < len(texts):
                    texts[i] = masked
                changes.setdefault(path_str(path), []).append("pii")
            else:
                masker.counts.update(m.kind for m in matches)
        if masker is not None:
            pii_counts = masker.counts
        if pii_counts and pii.action == "drop":
            found = ", ".join(f"{k} {v}" for k, v in sorted(pii_counts.items()))
            return Cleaned(None, changes, "pii", f"personal data found: {found}", pii_counts)

    if cfg.filter_fields is not None:
        judged = [(path, text) for path, text in zip(paths, texts) if path[0] in cfg.filter_fields]
        paths, texts = [path for path, _ in judged], [text for _, text in judged]
    total = sum(map(len, texts))
    joined = "\n".join(texts)
    if total == 0 or joined.isspace():  # every text blank ("\n" is blank too)
        return Cleaned(None, changes, "empty", "no text left after cleaning", pii_counts)
    if total < cfg.min_chars:
        return Cleaned(None, changes, "too_short", f"{total} characters, minimum is {cfg.min_chars}", pii_counts)
    if cfg.max_chars is not None and total > cfg.max_chars:
        return Cleaned(None, changes, "too_long", f"{total} characters, maximum is {cfg.max_chars}", pii_counts)
    # With zh, en and mixed kept, most records need no counting: see `is_zh_en_or_mixed`.
    if cfg.languages and not (plan.keeps_zh_en_mixed and is_zh_en_or_mixed(joined)):
        lang = detect_language(joined)
        if lang["lang"] not in cfg.languages:
            return Cleaned(None, changes, "language",
                           f"language {lang['lang']} (zh share {lang['zh_ratio']}) not in {cfg.languages}", pii_counts)
    if cfg.max_repetition is not None and cfg.max_repetition < 1:
        for path, text in zip(paths, texts):
            ratio = repetition_ratio(text)
            if ratio > cfg.max_repetition:
                return Cleaned(None, changes, "repetition",
                               f"{path_str(path)}: {ratio:.2f} of its 5-grams repeat (maximum {cfg.max_repetition})",
                               pii_counts)
    return Cleaned(record, changes, pii=pii_counts)


def load_rules_file(path: str | Path) -> CleanConfig:
    """`--rules FILE`: a YAML/JSON `clean:` section (rules, user_rules, pii, filters) or a bare list of
    user rules ({name, pattern, replace})."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise R1TuneError(f"rules file not found: {path}") from None
    except yaml.YAMLError as e:
        raise R1TuneError(f"{path}: invalid YAML: {e}") from None
    if isinstance(raw, list):
        raw = {"user_rules": raw}
    if isinstance(raw, dict) and "clean" in raw:
        raw = raw["clean"]
    return load_section(CleanConfig, raw or {}, str(path))


def record_hints(plan: CleanPlan):
    """The hints of a batch of records for `clean_record`, for `read_input_hinted` (see clean_scan.batch_hints);
    None on the plain path (`scan.VECTORISED` off)."""
    if not scan.VECTORISED:
        return None
    steps = [name for name, _ in plan.steps]
    return lambda records: batch_hints([record_texts(record, plan) for record in records], steps, RULE_CHARACTERS,
                                       plan.config.pii.enabled)


def clean_records(records, plan: CleanPlan, log: StepLog, pii_total: Counter) -> Iterator[dict]:
    """The kept records of a stream of (location, record, hint), each with provenance; drops and changes logged."""
    for loc, record, hint in records:
        result = clean_record(record, plan, hint)
        if result.pii:
            pii_total.update(result.pii)
        # `origin` only for a record that is logged: an unchanged kept record is not
        if result.record is None:
            log.dropped(origin(loc, record), result.drop_rule, result.drop_reason)
            continue
        if result.changes:
            log.changed(origin(loc, record), result.changes)
        elif result.pii:  # report-only mode: kept unchanged, but listed
            log.flagged(origin(loc, record), "pii", "personal data: " + ", ".join(
                f"{k} {v}" for k, v in sorted(result.pii.items())))
        yield with_provenance(result.record, loc)


def clean_file(in_path: str | Path, out_path: str | Path, config: CleanConfig | None = None,
               on_error: str = "skip", workers: int = 1) -> dict:
    """Stream IN → OUT through the cleaner; returns the step summary (counts per rule, personal data).

    `workers` > 1 (0 = every core) cleans a JSONL input on that many processes, with the same output and log.
    """
    plan = build_plan(config)
    pii_total: Counter = Counter()
    workers = workers_for(in_path, workers)
    with StepLog("clean", out_path, inputs=[in_path]) as log:
        hints = record_hints(plan)
        if workers > 1:
            if hints is not None:  # the scans and pyarrow made once, here: forked workers inherit them
                hints([])
            out = log.outputs.open(out_path)
            for text, entries, pii in chunk_results(in_path, _clean_chunk, workers, _start_worker,
                                                    (plan.config, on_error), log):
                out.write(text)
                log.append(entries)
                pii_total.update(pii)
        else:
            records = clean_records(read_input_hinted(in_path, log, hints, on_error), plan, log, pii_total)
            log.written = write_jsonl(out_path, records, log.outputs)
        log.extra["pii"] = {"action": plan.config.pii.action if plan.config.pii.enabled else "off",
                            "found": dict(pii_total)}
        return log.summary()


# A parallel worker's plan, built once per process by `_start_worker` (see `data/parallel.py`).
_worker: dict = {}


def _start_worker(config: CleanConfig, on_error: str) -> None:
    _worker.update(plan=build_plan(config), on_error=on_error)


def _clean_chunk(name: str, first_line: int, lines: list[bytes]) -> tuple[dict, tuple[str, str, Counter]]:
    """One chunk of a JSONL file: (log counts, (output lines, log lines, personal data found))."""
    log, pii = StepLog("clean", stream=io.StringIO()), Counter()
    plan = _worker["plan"]
    records = read_input_lines_hinted(name, first_line, lines, log, record_hints(plan), _worker["on_error"])
    encode = json_encoder()
    out = [encode(record) for record in clean_records(records, plan, log, pii)]
    log.written = len(out)
    return log.counts(), ("".join(f"{line}\n" for line in out), log.entries(), pii)
