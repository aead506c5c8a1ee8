"""How a data file is read: its text encoding (BOM, UTF-8, GBK / GB18030 told apart from Big5, UTF-16 without a
byte-order mark) and the columns a recipe declared for it (`reading_as`), for every reader of that file.

    with reading_as("raw.csv", encoding="gb18030", columns={"instruction": "指令"}):
        clean_file("raw.csv", "clean.jsonl")   # the step and its parallel workers read raw.csv as declared

`data/io.py` reads records through these; the rules are in its docstring.
"""

from __future__ import annotations

import codecs
import os
import re
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from r1tune.data.json_values import SURROGATE
from r1tune.errors import DataError

BOM = b"\xef\xbb\xbf"

# File (absolute path) → (encoding, columns) declared by `reading_as`; seen by parallel workers (see parallel.py).
_declared: ContextVar[dict | None] = ContextVar("r1tune_declared_inputs", default=None)


@contextmanager
def reading_as(path: str | Path, encoding: str = "auto", columns: dict[str, str] | None = None):
    """Within the block, every read of `path` that does not say otherwise decodes it with `encoding` and
    renames `columns`, whoever reads it: a recipe declares how to read the user's file once, the steps
    (and their workers) read it as declared, and the files the steps write stay plain UTF-8 JSONL."""
    token = _declared.set({**(_declared.get() or {}), _file_key(path): (encoding, dict(columns or {}))})
    try:
        yield
    finally:
        _declared.reset(token)


def declared_inputs() -> dict | None:
    """What `reading_as` declared here, for a worker process to `adopt_declared_inputs`."""
    return _declared.get()


def adopt_declared_inputs(declared: dict | None) -> None:
    """In a worker process: read files as its parent declared (a spawned worker does not inherit it)."""
    _declared.set(declared)


def _file_key(path: str | Path) -> str:
    return os.path.abspath(os.fspath(path))


def declared_for(path: str | Path, encoding: str | None, columns: dict[str, str] | None) -> tuple[str, dict]:
    declared = _declared.get()
    default_encoding, default_columns = declared.get(_file_key(path), ("auto", {})) if declared else ("auto", {})
    return encoding or default_encoding, default_columns if columns is None else columns


def _is_utf8(codec: str) -> bool:
    return codecs.lookup(codec).name in ("utf-8", "utf-8-sig")


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (BOM, "utf-8"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def file_codec(path: str | Path, head: bytes, encoding: str = "auto") -> str:
    """The codec a text file is read with, from its first bytes: "utf-8" (read as bytes, the fast path), or
    a codec its lines are decoded with. Raises the file-level DataError of a file that looks like UTF-16
    without a byte-order mark (auto), or of a legacy encoding given for a file that is valid UTF-8."""
    if encoding == "auto":
        for mark, codec in _BOMS:  # UTF-32-LE's mark begins with UTF-16-LE's: it is tried first
            if head.startswith(mark):
                return codec
        utf16 = _utf16_without_bom(head)
        if utf16:
            raise not_utf8_error(path, 1, utf16)
        return "utf-8"
    if _is_utf8(encoding):
        return "utf-8"
    if not head.isascii() and _valid_utf8_start(head):
        raise DataError(str(path), None, None, f"--encoding {encoding} given, but the file is UTF-8: read as "
                                               f"{encoding} its text would be garbled; leave --encoding out")
    return encoding


def _valid_utf8_start(head: bytes) -> bool:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # a character cut at the end is fine
    except UnicodeDecodeError:
        return False
    return True


def _utf16_without_bom(head: bytes) -> str | None:
    """"utf-16-le" / "utf-16-be" when the first bytes read like UTF-16 without a byte-order mark: a NUL in
    many odd (little-endian) or even (big-endian) positions, as each ASCII character has, and (almost) none
    in the others."""
    sample = head[:4096]
    if b"\x00" not in sample or len(sample) < 8:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) >= len(odd) // 4 and even.count(0) <= len(even) // 100:
        return "utf-16-le"
    if even.count(0) >= len(even) // 4 and odd.count(0) <= len(odd) // 100:
        return "utf-16-be"
    return None


_CJK_CLASS = "[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]"  # ideographs, CJK punctuation
_CJK, _CJK_PAIR = re.compile(_CJK_CLASS), re.compile(_CJK_CLASS + "{2}")
_ESCAPED = re.compile("[\udc80-\udcff]")
_ASCII = bytes(range(0x80))


def legacy_chinese(raw: bytes) -> str | None:
    """"gb18030" (GBK's superset) or "big5" when bytes that are not UTF-8 read as Chinese in that encoding,
    else None. A UTF-8 line with a few damaged bytes is not taken for one: most of its non-ASCII bytes still
    form UTF-8 characters, where GBK or Big5 text forms them only by chance. Big5 bytes mostly decode as
    GB18030 too, but into rare characters: Simplified Chinese in GBK keeps to GB2312's 7,445 characters."""
    escaped = len(_ESCAPED.findall(raw.decode("utf-8", "surrogateescape")))
    non_ascii = len(raw.translate(None, _ASCII))  # the bytes left once the ASCII ones are deleted
    if escaped * 2 < non_ascii:
        return None
    gb = _chinese_text(raw, "gb18030")
    if gb is not None and 10 * sum(map(_in_gb2312, gb)) >= 9 * len(gb):
        return "gb18030"
    if _chinese_text(raw, "big5") is not None:
        return "big5"
    return "gb18030" if gb is not None else None


def _chinese_text(raw: bytes, codec: str) -> str | None:
    """The non-ASCII characters of `raw` decoded with `codec`, when it decodes, they are mostly Chinese and two
    of them stand together (an accented letter of Latin-1 text and the letter after it can pass for one
    Chinese character, but it stands between ASCII letters)."""
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError:
        return None
    wide = "".join(c for c in text if c > "\x7f")
    if not _CJK_PAIR.search(text) or 2 * len(_CJK.findall(wide)) < len(wide):
        return None
    return wide


def _in_gb2312(char: str) -> bool:
    code = char.encode("gb18030")
    return len(code) == 2 and 0xA1 <= code[0] <= 0xF7 and 0xA1 <= code[1] <= 0xFE


def not_utf8_error(path: str | Path, line: int, codec: str) -> DataError:
    """The file-level error of a file in another encoding than UTF-8, read as "auto"."""
    name = {"gb18030": "GBK/GB18030", "big5": "Big5", "utf-16-le": "UTF-16 (little-endian, without a byte-order "
            "mark)", "utf-16-be": "UTF-16 (big-endian, without a byte-order mark)"}.get(codec, codec)
    return DataError(str(path), None, None, f"file looks like {name} (line {line} is not UTF-8); convert it to "
                                            f"UTF-8 or pass --encoding {codec}")


def mark_undecodable(error: UnicodeDecodeError) -> tuple[str, int]:
    # each byte the codec cannot decode becomes U+DC00 + byte: a lone surrogate, which no decoded text
    # otherwise holds, found again (and reported with its line) where the line is re-encoded
    return "".join(chr(0xDC00 + b) for b in error.object[error.start:error.end]), error.end


UNDECODABLE = "r1tune.undecodable"
codecs.register_error(UNDECODABLE, mark_undecodable)


def undecodable_problem(text: str, codec: str) -> str:
    """The problem of a line decoded with UNDECODABLE marks in it."""
    at = SURROGATE.search(text).start()
    bad = re.match("[\udc00-\udcff]+", text[at:]).group()
    return f"not valid {codec} at column {at + 1} (bytes {bytes(ord(c) - 0xDC00 for c in bad[:4])!r})"
