"""Language of a text (zh / en / mixed, with the Chinese share) and the `[ZH]` / `[EN]` prompt tags.

    detect_language("营收3.5亿元，同比增长12.3%")   # {"lang": "zh", "zh_ratio": 1.0}
    tag_prompt("What is 净利润?", TAGS)             # "[MIXED] What is 净利润?"
    r1tune prepare tag IN OUT [--add-tags]

The share counts one unit per Chinese character and one per Latin word (a Chinese character carries
about as much as an English word), so `GDP增长了5%` is Chinese and `What is 净利润?` is mixed. The tag
is decided from the prompt alone, by the same `tag_prompt` function at training and at inference, so the
two can never disagree; tagging is idempotent (an existing tag is replaced, never doubled).
"""

from __future__ import annotations

import re
from pathlib import Path

from r1tune.data.io import write_jsonl
from r1tune.data.records import get_path, origin, path_str, prompt_slots, set_path, text_slots, with_provenance
from r1tune.data.steplog import StepLog, read_input

# The patterns start with a character class (X X* rather than X+, the look-behind after the first letter)
# because only then can the regex engine skip straight to candidate characters: two to three times faster.
_HAN = r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]"
HAN_RUN = re.compile(f"{_HAN}{_HAN}*")
_LATIN = r"[A-Za-z\u00c0-\u024f]"
LATIN_WORD = re.compile(f"{_LATIN}(?<![0-9]{_LATIN}){_LATIN}*")  # a letter run not after a digit: not the e of 3.5e8
# Letters of other scripts (kana, hangul counted per character; alphabetic scripts per word).
_OTHER_SYLLABIC = r"\u3040-\u30ff\u31f0-\u31ff\uac00-\ud7af\u1100-\u11ff"
_OTHER_ALPHABETIC = r"\u0370-\u03ff\u0400-\u052f\u0590-\u05ff\u0600-\u06ff\u0900-\u097f\u0e00-\u0e7f"
OTHER_UNIT = re.compile(f"[{_OTHER_SYLLABIC}]|[{_OTHER_ALPHABETIC}]+")
_ANY_OTHER = re.compile(f"[{_OTHER_SYLLABIC}{_OTHER_ALPHABETIC}]")  # one fast scan: is there any at all?

ZH_MIN = 0.75  # zh_ratio at or above: Chinese (GDP增长了5%，CPI同比上涨0.2%)
EN_MAX = 0.25  # zh_ratio at or below: English (The patient (患者) presented with fever)
OTHER_MIN = 0.3  # share of other-script units at or above: another language

TAGS = {"zh": "[ZH]", "en": "[EN]", "mixed": "[MIXED]"}
TAG_RE = re.compile(r"^\[(?:ZH|EN|MIXED|ZH-EN)\]\s*")


def detect_language(text: str) -> dict:
    """{"lang": "zh"|"en"|"mixed"|"other"|"unknown", "zh_ratio": float}."""
    if text.isascii():  # fast path: no Chinese possible, and one Latin word is enough to say English
        return {"lang": "en" if LATIN_WORD.search(text) else "unknown", "zh_ratio": 0.0}
    han = sum(map(len, HAN_RUN.findall(text)))
    words = len(LATIN_WORD.findall(text))
    other = len(OTHER_UNIT.findall(text)) if _ANY_OTHER.search(text) else 0
    units = han + words + other
    if units == 0:
        return {"lang": "unknown", "zh_ratio": 0.0}
    if other / units >= OTHER_MIN:
        return {"lang": "other", "zh_ratio": round(han / units, 3)}
    ratio = han / (han + words)
    lang = "zh" if ratio >= ZH_MIN else "en" if ratio <= EN_MAX else "mixed"
    return {"lang": lang, "zh_ratio": round(ratio, 3)}


ZH_EN_MIXED = frozenset({"zh", "en", "mixed"})


def is_zh_en_or_mixed(text: str) -> bool:
    """`detect_language(text)["lang"] in ZH_EN_MIXED`, mostly without counting anything.

    In a text with no letter of another script the language is "unknown" when it has no Chinese character
    and no Latin word, and otherwise zh, en or mixed, whatever the counts: one search for each answers it.
    """
    if text.isascii():
        return LATIN_WORD.search(text) is not None
    if _ANY_OTHER.search(text) is not None:
        return detect_language(text)["lang"] in ZH_EN_MIXED
    return HAN_RUN.search(text) is not None or LATIN_WORD.search(text) is not None


def strip_tag(text: str) -> str:
    if text[:1] != "[":  # every tag starts with "[": most texts need no regex
        return text
    return TAG_RE.sub("", text, count=1)


def tag_prompt(text: str, tags: dict[str, str] | None = None, lang: str | None = None) -> str:
    """Prefix the prompt with its language tag; the one function training data and inference both use."""
    tags = TAGS if tags is None else tags
    bare = strip_tag(text)
    lang = lang or detect_language(bare)["lang"]
    tag = tags.get(lang)
    return f"{tag} {bare}" if tag else bare


def record_language(record: dict) -> dict:
    """Language of what the model reads (the prompt); records without a prompt side use all their text."""
    slots = prompt_slots(record)
    text = "\n".join(strip_tag(str(get_path(record, p))) for p in slots) if slots else \
        "\n".join(t for _, t in text_slots(record))
    return detect_language(text)


def tag_file(in_path: str | Path, out_path: str | Path, add_tags: bool = False,
             tags: dict[str, str] | None = None, on_error: str = "skip") -> dict:
    """Write each record with a `lang` field; with add_tags, also prefix its first prompt slot."""
    tags = TAGS if tags is None else tags
    counts: dict[str, int] = {}
    with StepLog("tag", out_path, inputs=[in_path]) as log:
        def records():
            for loc, record in read_input(in_path, log, on_error):
                info = record_language(record)
                counts[info["lang"]] = counts.get(info["lang"], 0) + 1
                record["lang"] = info
                slots = prompt_slots(record)
                if add_tags and slots:
                    before = get_path(record, slots[0])
                    after = tag_prompt(before, tags, info["lang"])
                    if after != before:
                        set_path(record, slots[0], after)
                        log.changed(origin(loc, record), {path_str(slots[0]): ["language_tag"]})
                yield with_provenance(record, loc)
        log.written = write_jsonl(out_path, records(), log.outputs)
        log.extra["languages"] = counts
        return log.summary()
