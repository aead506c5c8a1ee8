"""The base of every config section (unknown keys rejected) and the validators the sections share."""

from __future__ import annotations

import io
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _text_encoding(value: str) -> str:
    if value != "auto":
        try:
            io.TextIOWrapper(io.BytesIO(), encoding=value)  # fails for a codec that is not a text encoding too
        except LookupError:
            raise ValueError(f"unknown text encoding '{value}' (auto, utf-8, gb18030, gbk, big5, utf-16 …)") from None
    return value


def _column_pairs(value):
    """`--columns 'instruction=指令,input=输入'` as well as a mapping."""
    if not isinstance(value, str):
        return value
    pairs = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        known, sep, column = (x.strip() for x in part.partition("="))
        if not (sep and known and column):
            raise ValueError(f"expected name=column pairs separated by commas, got '{part}'")
        pairs[known] = column
    return pairs


def _distinct_columns(value: dict[str, str]) -> dict[str, str]:
    columns = list(value.values())
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise ValueError(f"column {', '.join(twice)} is mapped to two names")
    return value


# How to read the user's data file (see r1tune.data.io): its encoding, and its columns renamed to known names.
Encoding = Annotated[str, AfterValidator(_text_encoding)]
ColumnMap = Annotated[dict[str, str], BeforeValidator(_column_pairs), AfterValidator(_distinct_columns)]
ENCODING_HELP = ("Text encoding of the data file: auto (UTF-8, or UTF-16/32 with a byte-order mark; a GBK or "
                 "BOM-less UTF-16 file stops with the --encoding to pass) or a codec: gb18030, gbk, big5, utf-16 …")
COLUMNS_HELP = ("The data file's columns (or keys) renamed to the names the formats know, before anything reads "
                "them: {instruction: 指令, input: 输入, output: 输出}.")
