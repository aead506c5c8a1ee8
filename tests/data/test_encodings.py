"""Encodings and column names in the shared reader: GBK and BOM-less UTF-16 files stop with the --encoding to
pass (never train on their ASCII rows alone), any codec reads them to the records of their UTF-8 twin, and
columns that match no format are named with the mapping that reads them."""

import csv
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from r1tune.config import FinetuneConfig, PrepareConfig, load_config
from r1tune.data.encodings import reading_as
from r1tune.data.formats import columns_problem, detect_format, load_samples, untrainable_reason
from r1tune.data.io import read_records
from r1tune.data.parallel import workers_for
from r1tune.errors import DataError, R1TuneError

RECORDS = [
    {"instruction": "classify the sentiment", "input": "plain ASCII first", "output": "neutral"},
    {"instruction": "判断以下评论的情感", "input": "这家餐厅的菜很好吃，服务也周到。", "output": "正面"},
    {"instruction": "判断以下评论的情感", "input": "价格太贵了，不会再来。", "output": "负面"},
    {"instruction": "总结要点", "input": "公司2023年实现营业收入3.5亿元，同比增长12.3%。", "output": "营收3.5亿元，增长12.3%"},
]


def as_text(suffix: str, records=RECORDS) -> str:
    if suffix == ".jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if suffix == ".json":
        return json.dumps(records, ensure_ascii=False, indent=1)
    out = io.StringIO()
    writer = csv.DictWriter(out, list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()


def write(path, codec: str, records=RECORDS):
    path.write_bytes(as_text(path.suffix, records).encode(codec))
    return path


def records_of(path, **kwargs):
    return [record for _, record in read_records(path, **kwargs)]


@pytest.mark.parametrize("suffix, line", [(".jsonl", 2), (".csv", 3), (".json", 8)])
@pytest.mark.parametrize("codec", ["gbk", "gb18030"])
def test_a_gbk_file_stops_whatever_on_error_says(tmp_path, suffix, line, codec):
    path = write(tmp_path / f"gbk{suffix}", codec)
    for on_error in ("stop", "skip"):
        skipped: list = []
        with pytest.raises(DataError) as e:
            records_of(path, on_error=on_error, skipped=skipped)
        assert str(e.value) == (f"{path}: file looks like GBK/GB18030 (line {line} is not UTF-8); convert it to "
                                "UTF-8 or pass --encoding gb18030")
        assert not skipped


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".json"])
def test_encoding_gb18030_reads_a_gbk_file_to_the_records_of_its_utf8_twin(tmp_path, suffix):
    twin = records_of(write(tmp_path / f"utf8{suffix}", "utf-8"))
    gbk = write(tmp_path / f"gbk{suffix}", "gbk")
    assert records_of(gbk, encoding="gb18030") == twin == records_of(gbk, encoding="gbk")
    assert [s.messages for s in load_samples(gbk, encoding="gb18030")[0]] == \
        [s.messages for s in load_samples(tmp_path / f"utf8{suffix}")[0]]
    with reading_as(gbk, "gb18030"):  # declared once for the file, as a recipe does
        assert records_of(gbk) == twin
    with pytest.raises(DataError, match="looks like GBK"):
        records_of(gbk)  # the declaration ends with its block


def test_a_big5_file_is_told_from_gbk(tmp_path):
    traditional = [{"instruction": "判斷以下評論的情感", "input": "這家餐廳的菜很好吃，服務也周到。", "output": "正面"}]
    path = write(tmp_path / "big5.jsonl", "big5", traditional)
    with pytest.raises(DataError, match=r"looks like Big5 \(line 1 is not UTF-8\); .* --encoding big5"):
        records_of(path)
    assert records_of(path, encoding="big5") == traditional


@pytest.mark.parametrize("codec", ["utf-16", "utf-32", "utf-8-sig"])
@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".json"])
def test_files_with_a_byte_order_mark_are_read_as_it_says(tmp_path, codec, suffix):
    twin = records_of(write(tmp_path / f"utf8{suffix}", "utf-8"))
    path = write(tmp_path / f"bom{suffix}", codec)
    assert records_of(path) == twin and records_of(path, encoding=codec) == twin
    assert [loc.line for loc, _ in read_records(path)] == [loc.line for loc, _ in read_records(tmp_path / f"utf8{suffix}")]


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_utf16_without_a_byte_order_mark_stops_with_the_encoding_to_pass(tmp_path, codec, suffix):
    path = write(tmp_path / f"u16{suffix}", codec)
    with pytest.raises(DataError, match=rf"{path}: file looks like UTF-16 .* pass --encoding {codec}$"):
        records_of(path, on_error="skip", skipped=[])
    assert records_of(path, encoding=codec) == records_of(write(tmp_path / f"utf8{suffix}", "utf-8"))


def test_a_gbk_line_in_a_utf8_file_stops_at_its_line(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(as_text(".jsonl").encode() + json.dumps(RECORDS[1], ensure_ascii=False).encode("gbk") + b"\n")
    with pytest.raises(DataError, match=r"looks like GBK/GB18030 \(line 5 is not UTF-8\)"):
        records_of(path, on_error="skip", skipped=[])


def test_damaged_utf8_and_stray_bytes_stay_bad_records(tmp_path):
    """A UTF-8 line missing a byte, or holding a stray one, is a bad line, not a file in another encoding."""
    good = json.dumps(RECORDS[3], ensure_ascii=False).encode()
    cut = good.index("亿".encode())
    damaged = good[:cut + 1] + good[cut + 2:]
    latin1 = '{"instruction": "Zürich, Genève", "output": "naïve café"}'.encode("latin-1")
    path = tmp_path / "damaged.jsonl"
    path.write_bytes(as_text(".jsonl").encode() + damaged + b"\n" + b"\xff\n" + latin1 + b"\n")
    skipped: list = []
    assert len(records_of(path, on_error="skip", skipped=skipped)) == 4
    assert [(e.line, e.problem[:13]) for e in skipped] == [(5, "invalid UTF-8"), (6, "invalid UTF-8"),
                                                           (7, "invalid UTF-8")]


def test_a_legacy_encoding_given_for_a_utf8_file_stops(tmp_path):
    path = write(tmp_path / "utf8.jsonl", "utf-8")
    with pytest.raises(DataError, match="--encoding gbk given, but the file is UTF-8"):
        records_of(path, encoding="gbk")
    assert records_of(path, encoding="utf-8") == RECORDS


@pytest.mark.parametrize("suffix, line", [(".jsonl", 3), (".csv", 4)])
def test_bytes_the_given_encoding_cannot_decode_are_a_bad_record(tmp_path, suffix, line):
    path = tmp_path / f"bad{suffix}"
    text = as_text(suffix).encode("gb18030").split(b"\n")
    text[line - 1] = text[line - 1].replace("负面".encode("gb18030"), b"\x81\x20")
    path.write_bytes(b"\n".join(text))
    with pytest.raises(DataError) as e:
        records_of(path, encoding="gb18030")
    assert e.value.line == line and "not valid gb18030 at column" in e.value.problem and "\\x81" in e.value.problem
    if suffix == ".jsonl":  # a line-located problem: the others are read
        skipped: list = []
        assert len(records_of(path, encoding="gb18030", on_error="skip", skipped=skipped)) == 3
        assert [e.line for e in skipped] == [line]


def test_a_non_utf8_jsonl_file_is_read_by_one_process(tmp_path):
    gbk = write(tmp_path / "gbk.jsonl", "gbk")
    utf16 = write(tmp_path / "u16.jsonl", "utf-16")
    utf8 = write(tmp_path / "utf8.jsonl", "utf-8")
    assert workers_for(utf8, 2) == 2 and workers_for(utf16, 2) == 1
    with reading_as(gbk, "gb18030"):
        assert workers_for(gbk, 2) == 1


def test_encoding_and_columns_settings_are_checked(tmp_path):
    cfg = load_config(FinetuneConfig, None, {"data": {"encoding": "GB18030", "columns": "instruction=指令, output=输出"}})
    assert cfg.data.encoding == "GB18030" and cfg.data.columns == {"instruction": "指令", "output": "输出"}
    assert load_config(PrepareConfig, None, {"columns": {"output": "回答"}}).columns == {"output": "回答"}
    for bad, message in [({"encoding": "klingon"}, "unknown text encoding 'klingon'"),
                         ({"encoding": "base64"}, "unknown text encoding 'base64'"),
                         ({"columns": "instruction"}, "expected name=column pairs"),
                         ({"columns": "instruction=问,output=问"}, "column 问 is mapped to two names")]:
        with pytest.raises(R1TuneError, match=message):
            load_config(FinetuneConfig, None, {"data": bad})


# ------------------------------------------------------------ columns

CHINESE_COLUMNS = [{"指令": r["instruction"], "输入": r["input"], "输出": r["output"]} for r in RECORDS]
MAPPING = {"instruction": "指令", "input": "输入", "output": "输出"}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_columns_that_match_no_format_are_named_with_the_mapping(tmp_path, suffix):
    path = tmp_path / f"cn{suffix}"
    if suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(CHINESE_COLUMNS), path)
    else:
        write(path, "utf-8", CHINESE_COLUMNS)
    for on_error in ("stop", "skip"):
        with pytest.raises(DataError) as e:
            load_samples(path, on_error=on_error)
        assert (e.value.file, e.value.line) == (str(path), None)
        assert str(e.value).startswith(f"{path}: columns 指令, 输入, 输出 match no known format (alpaca: "
                                       "instruction/input/output, ShareGPT: conversations, OpenAI: messages)")
        assert "data.columns: {instruction: 指令, input: 输入, output: 输出}" in str(e.value)
        assert "--columns instruction=指令,input=输入,output=输出" in str(e.value)
    samples, _ = load_samples(path, columns=MAPPING)
    assert [s.messages for s in samples] == [s.messages for s in load_samples(write(tmp_path / "en.csv", "utf-8"))[0]]


def test_columns_are_renamed_in_place_and_checked(tmp_path):
    path = write(tmp_path / "cn.csv", "utf-8", CHINESE_COLUMNS)
    assert records_of(path, columns=MAPPING) == RECORDS  # same keys, same order
    with pytest.raises(DataError, match=r"columns: no column '问题' in the file \(its columns: 指令, 输入, 输出\)"):
        records_of(path, columns={"instruction": "问题", "output": "输出"})
    clash = write(tmp_path / "clash.jsonl", "utf-8", [{"指令": "a", "instruction": "b", "output": "c"}, RECORDS[1]])
    skipped: list = []
    assert records_of(clash, columns={"instruction": "指令"}, on_error="skip", skipped=skipped) == [RECORDS[1]]
    assert (skipped[0].line, skipped[0].field) == (1, "指令") and "has a 'instruction' field too" in skipped[0].problem


def test_a_jsonl_file_with_no_record_in_a_format_is_one_columns_error(tmp_path):
    path = write(tmp_path / "text.jsonl", "utf-8", [{"text": "好", "label": "正面"}, {"text": "差", "label": "负面"}])
    with pytest.raises(DataError, match=r"text\.jsonl:1: cannot tell the record format: fields text, label match"):
        load_samples(path)
    with pytest.raises(DataError, match=r"text\.jsonl: columns text, label match no known format .*"
                                        r"data\.columns: \{instruction: text, output: label\}"):
        load_samples(path, on_error="skip")
    samples, _ = load_samples(path, columns={"instruction": "text", "output": "label"})
    assert [s.answer for s in samples] == ["正面", "负面"]


def test_the_format_questions_other_parts_ask():
    assert detect_format(RECORDS[0]) == "alpaca" and detect_format(CHINESE_COLUMNS[0]) is None
    assert untrainable_reason(RECORDS[0]) is None
    assert untrainable_reason({"instruction": "q", "output": " "}) == "output: empty"
    assert untrainable_reason(CHINESE_COLUMNS[0]).startswith("cannot tell the record format: fields 指令")
    assert columns_problem(["prompt", "completion"]).endswith(
        "--columns instruction=prompt,output=completion)")
    assert "{instruction: COLUMN, output: COLUMN}" in columns_problem(["a", "b"])


def test_prepare_check_reads_its_input_as_the_config_declares(tmp_path, cli):
    """`prepare check --config` takes the config's encoding and columns for IN (as the pipeline does); the
    command line's --encoding / --columns still win."""
    path = write(tmp_path / "cn.jsonl", "gbk", CHINESE_COLUMNS)
    config = tmp_path / "prepare.yaml"
    config.write_text("encoding: gb18030\ncolumns: {instruction: 指令, input: 输入, output: 输出}\n", encoding="utf-8")
    code, out, err = cli("prepare", "check", path, "--out", tmp_path / "report", "--config", config)
    assert code == 0, err
    quality = json.loads((tmp_path / "report" / "quality.json").read_text(encoding="utf-8"))
    assert (quality["readable_records"], quality["trainable_records"]) == (len(RECORDS), len(RECORDS))
    code, out, err = cli("prepare", "check", path, "--out", tmp_path / "report2", "--config", config,
                         "--encoding", "utf-8")
    assert code == 2 and "invalid UTF-8" in err
