"""Numbers as finance writes them: parsed exactly, rescaled with decimal arithmetic."""

from decimal import Decimal

import pytest

from r1tune.data.numbers import chinese_numeral, parse_number, scientific


def test_scientific_is_exact_decimal_arithmetic():
    assert scientific("3.5", 8) == "3.5e8"
    assert scientific("120", 4) == "1.2e6"
    assert scientific("0.35", 8) == "3.5e7"
    assert scientific("1", 4) == "1e4"
    assert scientific("1.23456789", 8) == "1.23456789e8"


@pytest.mark.parametrize("text, value", [
    ("1,234.5", 1234.5), ("(1,234)", -1234.0), ("-3.5亿元", -3.5e8), ("120万", 1.2e6), ("¥3.5 billion", 3.5e9),
    ("12.3%", 0.123), ("５００", 500.0), (42, 42.0), ("abc", None), ("", None), ("12.3.4", None), (True, None),
])
def test_parse_number(text, value):
    assert parse_number(text) == pytest.approx(value) if value is not None else parse_number(text) is None


@pytest.mark.parametrize("text, value", [("十二点三", "12.3"), ("一百零五", "105"), ("两千", "2000"), ("十", "10"),
                                         ("三万五千", "35000"), ("点", None), ("十二点x", None), ("abc", None)])
def test_chinese_numeral(text, value):
    assert chinese_numeral(text) == (None if value is None else Decimal(value))
