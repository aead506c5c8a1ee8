"""The vectorised prepare path (records read in batches, RE2 scans choosing where the Python rules run) against the
plain per-record path (`scan.VECTORISED = False`): the same output, log, report and errors, byte for byte, on
hostile data — every rule's characters, personal data in Unicode digits, surrogate pairs, NaN, deep JSON, CRLF,
blank lines, bad records, GBK and UTF-16 input, several processes, and batches cut anywhere."""

import json
import random
import unicodedata

import pytest

from r1tune.config import CheckConfig, CleanConfig, PiiConfig
from r1tune.data import parallel, scan, steplog
from r1tune.data.clean import build_plan, clean_file, clean_record
from r1tune.data.encodings import reading_as
from r1tune.data.quality import check_file
from r1tune.errors import DataError

# Each text touches one rule's edge: what a scan must not miss, and what it may wrongly suspect.
TRICKY = [
    "<p>营收3.5亿元&nbsp;</p>", "a < b and x<y>", "&#１２;", "&amp;", "AT&T;", "<思考>", "bell\x07ring", "zero\u200bwidth",
    "line\u2028sep", "next\x85line", "crlf\r\nline", "cr\ronly", "soft\u00adhyphen", "bidi\u202eflip", "\ufeffbom",
    "ＡＢＣ１２３", "ﬁne ligature", "10⁹/L", "①②", "㎡", "½", "…", "e\u0301", "\u1100\u1161\u11a8", "한국어",
    "豈 compatibility", "Hello，world！", "你好，世界！", "（注）", "★★★重磅", "emoji 😀 here", "✓ done", "\ue000private",
    "\ufffd", "up★down", "!!!!", "？？？？", "。。。。。", "----", "____", "……………", "~~~~", "a  b", "tab\there",
    "ideo\u3000space", "nb\xa0sp", "8.3% ，增长", "（ 注 ）", " lead", "trail ", "\u2003em", "end\u2003", "\x1cfs",
    "a\n\n\n\nb", " \n x", "营 收", "3.5亿", "1,234.5", "百分之十二点三", "12.3 percent", "3.5 billion", "",
    "电话13812345678", "电话１３８１２３４５６７８", "tel ١٣٨١٢٣٤٥٦٧٨", "call (010) 1234-5678", "+44 20 7946 0958",
    "li@example.com", "a@b", "身份证110101199003074578", "卡号6222 0212 3456 7890 128", "ACC20240001", "王小明来电",
    "\U000f0001 plane 15", "\U00100000", "\U000e0041tag", "\U0001f600\ufe0f", "好" * 40, "abc" * 20, "Резкое падение выручки", "ひらがなカタカナ", "x" * 300, "𠀀𠀁 astral han", "🀄🀄",
]


def hostile_records(rng: random.Random, n: int) -> list:
    def text() -> str:
        return "".join(rng.choice(TRICKY) for _ in range(rng.randint(0, 4)))

    out = []
    for i in range(n):
        kind = rng.random()
        if kind < 0.55:
            out.append({"instruction": text(), "input": text(), "output": text(), "label": rng.choice(["正面", "负面"]),
                        "id": i, "score": rng.choice([1.5, None, True, 3])})
        elif kind < 0.7:
            out.append({"messages": [{"role": "user", "content": text()}, {"role": "assistant", "content": text()}],
                        "client": rng.choice(["王小明", "李四", ""])})
        elif kind < 0.8:
            out.append({"instruction": text(), "output": text(), "history": [[text(), text()]],
                        "meta": {"note": text()}})
        elif kind < 0.87:
            out.append({"text": text(), "provenance": {"file": "raw.csv", "line": i}})
        else:  # lines the reader rejects or skips, wherever a batch is cut
            out.append(rng.choice(["{not json", "[1, 2]", "", "   ", '{"a": NaN}', '{"a": "\\ud800"}',
                                   '{"a": 1e400}', "[" * 150 + "]" * 150, '{"a": "\\ud83d\\ude00 pair"}', "\r"]))
    return out


def write_jsonl(path, records, newline="\n", encoding="utf-8", bom=False):
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=rng_ascii(r)) for r in records]
    text = newline.join(lines) + newline
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding, "surrogatepass"))
    return path


def rng_ascii(record) -> bool:  # some lines with \\u escapes (surrogate pairs among them), most as UTF-8
    return hash(json.dumps(record, sort_keys=True)) % 4 == 0


def both_ways(run, tmp_path, monkeypatch, *args, **kwargs):
    """(plain, vectorised): what `run` returns and the bytes of every file it wrote, for each path."""
    results = []
    for vectorised in (False, True):
        monkeypatch.setattr(scan, "VECTORISED", vectorised)
        folder = tmp_path / f"v{int(vectorised)}"
        folder.mkdir(parents=True, exist_ok=True)
        try:
            value = run(folder, *args, **kwargs)
        except DataError as e:
            value = ("error", str(e))
        files = {p.relative_to(folder).as_posix(): p.read_bytes().replace(str(folder).encode(), b"OUT")
                 for p in sorted(folder.rglob("*")) if p.is_file()}
        results.append((json.loads(json.dumps(value, default=str).replace(str(folder), "OUT")), files))
    return results


def clean_and_check(folder, raw, config=None, on_error="skip", workers=1, check=True):
    summary = clean_file(raw, folder / "clean.jsonl", config, on_error=on_error, workers=workers)
    if check:
        report = check_file(folder / "clean.jsonl", folder / "report", CheckConfig(), config.pii if config else None,
                            workers=workers)
        return summary, report
    return summary


CONFIGS = {
    "default": CleanConfig(),
    "every rule": CleanConfig(rules=["html", "control", "nfkc", "fullwidth", "symbols", "numbers", "cjk_spaces",
                                     "user", "whitespace"],
                              user_rules=[{"name": "acc", "pattern": r"ACC\d+", "replace": "ACC"}]),
    "rules reordered, pii names and patterns": CleanConfig(
        rules=["whitespace", "symbols", "control", "nfkc", "html"], languages=None,
        pii=PiiConfig(action="mask", name_fields=["client"], patterns=[{"name": "account", "pattern": r"ACC\d{8}"}])),
    "pii dropped, some fields": CleanConfig(fields=["input", "messages", "text"], pii=PiiConfig(action="drop")),
    "pii reported, filters on input": CleanConfig(filter_fields=["input"], pii=PiiConfig(action="report"),
                                                  max_repetition=0.3, min_chars=5),
    "pii off, no rules": CleanConfig(rules=[], pii=PiiConfig(enabled=False), languages=["zh"]),
}


@pytest.fixture
def small_batches(monkeypatch):
    """Batches and parallel chunks of a few records: cut next to unreadable lines, blank lines and file ends."""
    monkeypatch.setattr(steplog, "BATCH_RECORDS", 7)
    monkeypatch.setattr(steplog, "HINTED_BATCH_MIN", 1)
    monkeypatch.setattr(parallel, "LINES_PER_CHUNK", 11)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_vectorised_clean_and_check_write_what_the_plain_path_writes(tmp_path, monkeypatch, small_batches, name):
    records = hostile_records(random.Random(name), 400)
    raw = write_jsonl(tmp_path / "raw.jsonl", records, newline="\r\n" if "pii" in name else "\n", bom=name == "default")
    plain, fast = both_ways(clean_and_check, tmp_path, monkeypatch, raw, CONFIGS[name])
    assert fast == plain
    summary = plain[0][0]
    assert summary["dropped_by_rule"].get("unreadable", 0) > 10 and summary["written"] > 20  # the data was hostile
    if name != "pii off, no rules":
        assert summary["changed"] > 50


def test_several_processes_and_small_batches_give_the_same_files(tmp_path, monkeypatch, small_batches):
    raw = write_jsonl(tmp_path / "raw.jsonl", hostile_records(random.Random(7), 300))
    plain, fast = both_ways(clean_and_check, tmp_path, monkeypatch, raw, CleanConfig(), workers=2)
    one, _ = both_ways(clean_and_check, tmp_path / "one", monkeypatch, raw, CleanConfig())
    assert fast == plain
    assert fast[1] == one[1]  # two vectorised workers wrote what one plain process wrote


@pytest.mark.parametrize("stop_at", [3, 8, 15])
def test_on_error_stop_raises_the_same_error_after_the_same_records(tmp_path, monkeypatch, small_batches, stop_at):
    records = [{"input": f"营收{i}亿元★"} for i in range(20)]
    records[stop_at - 1] = '{"input": "bad'
    raw = write_jsonl(tmp_path / "raw.jsonl", records)
    plain, fast = both_ways(clean_and_check, tmp_path, monkeypatch, raw, CleanConfig(), on_error="stop", check=False)
    assert fast == plain
    assert plain[0][0] == "error" and plain[0][1].startswith(f"{raw}:{stop_at}: invalid JSON at column ")


@pytest.mark.parametrize("codec", ["gbk", "utf-16"])
def test_a_declared_encoding_is_read_the_same_way(tmp_path, monkeypatch, small_batches, codec):
    records = [r for r in hostile_records(random.Random(codec), 200) if not isinstance(r, str)]
    records = [json.loads(json.dumps(r, ensure_ascii=False).encode(codec, "ignore").decode(codec)) for r in records]
    raw = write_jsonl(tmp_path / "raw.jsonl", records, encoding=codec)

    def run(folder):
        with reading_as(raw, codec):
            return clean_and_check(folder, raw, CleanConfig())

    plain, fast = both_ways(run, tmp_path, monkeypatch)
    assert fast == plain and plain[0][0]["written"] > 100


def test_scans_never_clear_a_text_a_rule_would_change():
    """clean_record on fuzzed texts, with and without the scan's hint, over every rule."""
    from r1tune.data.clean import RULE_CHARACTERS, record_texts
    from r1tune.data.clean_scan import batch_hints

    rng = random.Random(1)
    pool = TRICKY + [chr(cp) for cp in scan.unicode_classes()["unstable"][::97]] + list("，。！？ \t\n\u3000")
    plan = build_plan(CONFIGS["every rule"])
    steps = [name for name, _ in plan.steps]
    cleared = skipped_pii = 0
    for _ in range(20):
        records = [{"a": "".join(rng.choice(pool) for _ in range(rng.randint(0, 6))),
                    "b": "".join(rng.choice(pool) for _ in range(rng.randint(0, 3)))} for _ in range(500)]
        copies = json.loads(json.dumps(records))
        hints = batch_hints([record_texts(r, plan) for r in copies], steps, RULE_CHARACTERS, True)
        cleared += sum(start > 0 for hint in hints for start in hint[2])  # rules skipped
        skipped_pii += sum(not may for hint in hints for may in hint[3])
        for record, copy, hint in zip(records, copies, hints):
            plain, fast = clean_record(record, plan), clean_record(copy, plan, hint)
            assert (fast.record, fast.changes, fast.drop_reason, fast.pii) == \
                   (plain.record, plain.changes, plain.drop_reason, plain.pii)
    assert cleared > 1000 and skipped_pii > 5000  # the scans did clear texts


def test_unicode_classes_are_python_s_own_per_character_answers():
    decimal, space, unstable = [], [], set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))
    for cp in [*range(0, 0xD800), *range(0xE000, 0x323B0), *range(0xE0000, 0xE01F0)]:
        ch = chr(cp)
        if not unicodedata.is_normalized("NFKC", ch) or unicodedata.combining(ch):
            unstable.add(cp)
        parts = unicodedata.decomposition(ch).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            unstable.add(int(parts[1], 16))
        if ch.isdecimal():
            decimal.append(cp)
        if ch.isspace():
            space.append(cp)
    classes = scan.unicode_classes()
    assert classes["decimal"] == decimal and classes["space"] == space and classes["unstable"] == sorted(unstable)
