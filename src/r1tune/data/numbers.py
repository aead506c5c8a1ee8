"""Numbers as finance and medicine write them: parsed to a value, or rescaled to exact scientific notation.

    parse_number("-3.5亿元")        # -350000000.0   (also 1,234.5 / (1,234) / 120万 / ¥3.5 billion / 12.3%)
    scientific("3.5", 8)           # "3.5e8", exact decimal arithmetic
    chinese_numeral("十二点三")     # Decimal("12.3")

Used by the quality check (is this a column of numbers?), by convert (numbers in structured records) and by
the optional `numbers` clean rule (3.5亿 → 3.5e8).
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation
from functools import lru_cache

CN_SCALE = {"万亿": 12, "千亿": 11, "百亿": 10, "十亿": 9, "亿": 8, "千万": 7, "百万": 6, "十万": 5, "万": 4}
EN_SCALE = {"trillion": 12, "billion": 9, "bn": 9, "million": 6, "mn": 6, "thousand": 3}
CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
CN_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10000}


def scientific(mantissa: str, exponent: int) -> str:
    """Exact decimal scaling: scientific("3.5", 8) → "3.5e8", scientific("120", 4) → "1.2e6"."""
    value = Decimal(mantissa).scaleb(exponent).normalize()
    if value == 0:
        return "0"
    sign, digits, exp = value.as_tuple()
    s = "".join(map(str, digits))
    mant = s[0] + ("." + s[1:] if len(s) > 1 else "")
    return f"{'-' if sign else ''}{mant}e{len(s) - 1 + exp}"


def chinese_numeral(text: str) -> Decimal | None:
    """十二点三 → 12.3, 一百零五 → 105, 两千 → 2000; None when it is not a plain numeral."""
    whole, _, frac = text.partition("点")
    if not whole and not frac:
        return None
    total, section, digit = 0, 0, None
    for ch in whole:
        if ch in CN_DIGITS:
            digit = CN_DIGITS[ch]
        elif ch in CN_UNITS:
            unit = CN_UNITS[ch]
            if unit == 10000:
                total += (section + (digit or 0)) * unit
                section, digit = 0, None
            else:
                section += (1 if digit is None else digit) * unit
                digit = None
        else:
            return None
    total += section + (digit or 0)
    if frac:
        if any(ch not in CN_DIGITS for ch in frac):
            return None
        return Decimal(f"{total}.{''.join(str(CN_DIGITS[ch]) for ch in frac)}")
    return Decimal(total)


_NUMBER_TEXT = re.compile(
    r"^(?P<neg>[-−–])?[\s¥$€£]*(?P<num>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*(?P<scale>" + "|".join(CN_SCALE) + "|"
    + "|".join(EN_SCALE) + r"|%|‰)?\s*(?:元|美元|港元|人民币|yuan|usd|rmb|cny)?$", re.I)


def parse_number(value) -> float | None:
    """A number as finance writes it: 1,234.5 / (1,234) / -3.5亿元 / 120万 / ¥3.5 billion / 12.3% (→ 0.123)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return None
    return _parse_number_text(value)


@lru_cache(maxsize=4096)  # the quality check parses every short field: labels and short answers repeat
def _parse_number_text(value: str) -> float | None:
    text = unicodedata.normalize("NFKC", value).strip().replace(",", "")
    negative = text.startswith("(") and text.endswith(")")
    if negative:
        text = text[1:-1].strip()
    m = _NUMBER_TEXT.match(text)
    if not m:
        return None
    try:
        number = Decimal(m.group("num"))
    except InvalidOperation:
        return None
    scale = (m.group("scale") or "").lower()
    if scale in CN_SCALE or scale in EN_SCALE:
        number = number.scaleb(CN_SCALE.get(scale, EN_SCALE.get(scale, 0)))
    elif scale == "%":
        number /= 100
    elif scale == "‰":
        number /= 1000
    if m.group("neg") or negative:
        number = -number
    return float(number)
