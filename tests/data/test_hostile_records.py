"""Hostile data through the commands users run (`prepare clean`, `prepare check`, `finetune`): a bad record
ends with exit 2 and `file:line: field: problem`, or with on_error=skip is listed and the rest goes on; a file
in another encoding stops with the --encoding to pass; columns in no format are named. Never exit 1, a
traceback, a partial output or invalid JSON written out."""

import json

import pytest

RECORDS = [
    {"instruction": "判断以下文本的情感。", "input": "公司2023年实现营业收入3.5亿元，同比增长12.3%。", "output": "正面"},
    {"instruction": "判断以下文本的情感。", "input": "经营活动现金流量净额较上年同期下降15%。", "output": "负面"},
    {"instruction": "Classify the sentiment of the text.", "input": "Revenue rose 12% year on year.", "output": "正面"},
    {"instruction": "判断以下文本的情感。", "input": "董事会审议通过了利润分配预案。", "output": "中性"},
    {"instruction": "总结要点。", "input": "患者主诉头痛、发热3天，体温38.5℃。", "output": "头痛发热3天"},
    {"instruction": "判断以下文本的情感。", "input": "毛利率环比提升2个百分点。", "output": "正面"},
]

# bad line (written as line 4), field, what the message says
BAD_LINES = {
    "deep": ('{"instruction": "问", "output": ' + "[" * 5000 + "]" * 5000 + "}", None,
             "nested deeper than 100 levels"),
    "lone_surrogate": ('{"instruction": "问", "output": "坏\\ud800了"}', "output", "lone surrogate \\ud800"),
    "nan": ('{"instruction": "问", "output": "好", "score": NaN}', "score", "NaN is not valid JSON"),
    "overflow": ('{"instruction": "问", "output": "好", "score": -1e999}', "score", "-1e999 is a number too large"),
}


def data_with(tmp_path, bad_line: str):
    path = tmp_path / "raw.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in RECORDS]
    path.write_text("\n".join(lines[:3] + [bad_line] + lines[3:]) + "\n", encoding="utf-8")
    return path


def strict_lines(path) -> list[dict]:
    """The file's records, refusing what json.loads would let through (NaN) and what UTF-8 cannot hold."""
    def refuse(constant):
        raise AssertionError(f"{constant} written out")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text(encoding="utf-8").splitlines()]


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("case", BAD_LINES)
def test_prepare_clean_stops_or_skips_a_bad_record(tmp_path, cli, case):
    bad_line, field, problem = BAD_LINES[case]
    raw = data_with(tmp_path, bad_line)
    out = tmp_path / "clean.jsonl"
    code, _, err = cli("prepare", "clean", raw, out, "--on-error", "stop")
    where = f"{raw}:4: field '{field}':" if field else f"{raw}:4:"
    assert code == 2 and one_error_line(err).startswith(f"error: {where}") and problem in err
    assert not out.exists()
    code, stdout, err = cli("prepare", "clean", raw, out)  # skip, the default
    assert code == 0 and "unreadable 1" in stdout
    assert len(strict_lines(out)) == len(RECORDS)
    log = strict_lines(tmp_path / "clean.log.jsonl")
    unreadable = [e for e in log if e["rule"] == "unreadable"]
    assert [e["source"] for e in unreadable] == [f"{raw}:4"] and problem in unreadable[0]["reason"]


@pytest.mark.parametrize("case", BAD_LINES)
def test_prepare_check_lists_a_bad_record(tmp_path, cli, case):
    bad_line, _, problem = BAD_LINES[case]
    raw = data_with(tmp_path, bad_line)
    code, _, err = cli("prepare", "check", raw, "--out", tmp_path / "report")
    assert code == 0, err
    problems = strict_lines(tmp_path / "report" / "problems.jsonl")
    unreadable = [p for p in problems if p["rule"] == "unreadable"]
    assert [p["source"] for p in unreadable] == [f"{raw}:4"] and problem in unreadable[0]["reason"]


@pytest.mark.parametrize("case", BAD_LINES)
def test_finetune_stops_at_a_bad_record_or_skips_it(tmp_path, cli, tiny_model_dir, case):
    bad_line, field, problem = BAD_LINES[case]
    raw = data_with(tmp_path, bad_line)
    args = ["finetune", "--model", tiny_model_dir, "--data", raw, "--max-steps", 1, "--batch-size", 2,
            "--max-length", 64, "--set", "train.threads=1"]
    code, _, err = cli(*args, "--out", tmp_path / "stop")
    where = f"{raw}:4: field '{field}':" if field else f"{raw}:4:"
    assert code == 2 and one_error_line(err).startswith(f"error: {where}") and problem in err
    code, _, err = cli(*args, "--out", tmp_path / "skip", "--set", "data.on_error=skip")
    assert code == 0, err
    skipped = strict_lines(tmp_path / "skip" / "skipped.jsonl")
    assert [(s["file"], s["line"], s["field"]) for s in skipped] == [(str(raw), 4, field)]
    assert problem in skipped[0]["reason"]


# ------------------------------------------------------------ encodings through the commands

def encoded(tmp_path, name: str, codec: str):
    path = tmp_path / name
    path.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS).encode(codec))
    return path


def without_source_file(records: list[dict]) -> list[dict]:
    return [{**r, "provenance": {**r["provenance"], "file": "-"}} for r in records]


@pytest.mark.parametrize("codec, line", [("gbk", 1), ("utf-16-le", 1)])
def test_prepare_clean_and_check_stop_on_another_encoding_and_read_it_when_told(tmp_path, cli, codec, line):
    raw = encoded(tmp_path, f"{codec}.jsonl", codec)
    suggested = "gb18030" if codec == "gbk" else codec
    message = f"(line {line} is not UTF-8); convert it to UTF-8 or pass --encoding {suggested}"
    for workers in ("1", "2"):
        code, _, err = cli("prepare", "clean", raw, tmp_path / "out.jsonl", "--workers", workers)  # skip mode
        assert code == 2 and one_error_line(err).startswith(f"error: {raw}: file looks like") and message in err
        assert not (tmp_path / "out.jsonl").exists()
    code, _, err = cli("prepare", "check", raw, "--out", tmp_path / "report")
    assert code == 2 and message in one_error_line(err)
    twin = encoded(tmp_path, "utf8.jsonl", "utf-8")
    assert cli("prepare", "clean", twin, tmp_path / "twin.jsonl")[0] == 0
    for workers in ("1", "2"):
        out = tmp_path / f"read-{workers}.jsonl"
        code, _, err = cli("prepare", "clean", raw, out, "--encoding", suggested, "--workers", workers)
        assert code == 0, err
        assert without_source_file(strict_lines(out)) == without_source_file(strict_lines(tmp_path / "twin.jsonl"))
    code, _, err = cli("prepare", "check", raw, "--out", tmp_path / "report", "--encoding", suggested)
    assert code == 0, err


def test_the_pipeline_reads_its_input_with_the_configured_encoding(tmp_path, cli):
    raw = encoded(tmp_path, "gbk.jsonl", "gbk")
    config = tmp_path / "prepare.yaml"
    config.write_text(f"input: {raw}\nout: {tmp_path / 'run'}\nsplit:\n  enabled: false\n", encoding="utf-8")
    code, _, err = cli("prepare", config)
    assert code == 2 and "pass --encoding gb18030" in one_error_line(err)
    code, _, err = cli("prepare", config, "--set", "encoding=gb18030")
    assert code == 0, err
    cleaned = strict_lines(tmp_path / "run" / "01-clean.jsonl")
    assert [r["output"] for r in cleaned] == [r["output"] for r in RECORDS]


def test_finetune_stops_on_a_gbk_file_and_trains_on_it_when_told(tmp_path, cli, tiny_model_dir):
    raw = encoded(tmp_path, "gbk.jsonl", "gbk")
    args = ["finetune", "--model", tiny_model_dir, "--data", raw, "--max-steps", 1, "--batch-size", 2,
            "--max-length", 64, "--set", "train.threads=1", "--set", "data.on_error=skip"]
    code, _, err = cli(*args, "--out", tmp_path / "auto")
    assert code == 2 and "file looks like GBK/GB18030 (line 1 is not UTF-8)" in one_error_line(err)
    code, _, err = cli(*args, "--out", tmp_path / "gbk", "--encoding", "gb18030")
    assert code == 0, err


# ------------------------------------------------------------ columns through the commands

def chinese_columns_csv(tmp_path):
    path = tmp_path / "cn.csv"
    rows = ["指令,输入,输出"] + [f"{r['instruction']},{r['input']},{r['output']}" for r in RECORDS]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_finetune_names_columns_in_no_format_and_trains_with_the_mapping(tmp_path, cli, tiny_model_dir):
    raw = chinese_columns_csv(tmp_path)
    args = ["finetune", "--model", tiny_model_dir, "--data", raw, "--max-steps", 1, "--batch-size", 2,
            "--max-length", 64, "--set", "train.threads=1"]
    code, _, err = cli(*args, "--out", tmp_path / "plain", "--set", "data.on_error=skip")
    line = one_error_line(err)
    assert code == 2 and line.startswith(f"error: {raw}: columns 指令, 输入, 输出 match no known format")
    assert "--columns instruction=指令,input=输入,output=输出" in line
    code, _, err = cli(*args, "--out", tmp_path / "mapped", "--columns", "instruction=指令,input=输入,output=输出")
    assert code == 0, err


def test_prepare_steps_rename_columns_on_every_worker(tmp_path, cli):
    raw = tmp_path / "cn.jsonl"
    raw.write_text("".join(json.dumps({"指令": r["instruction"], "输入": r["input"], "输出": r["output"]},
                                      ensure_ascii=False) + "\n" for r in RECORDS * 400), encoding="utf-8")
    mapping = "instruction=指令,input=输入,output=输出"
    for workers in ("1", "2"):
        code, _, err = cli("prepare", "clean", raw, tmp_path / f"clean-{workers}.jsonl", "--columns", mapping,
                           "--workers", workers)
        assert code == 0, err
    one, two = (strict_lines(tmp_path / f"clean-{n}.jsonl") for n in ("1", "2"))
    assert one == two and list(one[0])[:3] == ["instruction", "input", "output"]
    code, _, err = cli("prepare", "check", raw, "--out", tmp_path / "report", "--columns", mapping, "--workers", "2")
    assert code == 0, err
    report = json.loads((tmp_path / "report" / "quality.json").read_text(encoding="utf-8"))
    problems = [json.loads(x) for x in (tmp_path / "report" / "problems.jsonl").read_text().splitlines()]
    assert report["unreadable_records"] == 0 and not [p for p in problems if p["rule"] == "format_invalid"]
    code, _, err = cli("prepare", "clean", raw, tmp_path / "x.jsonl", "--columns", "instruction")
    assert code == 2 and "columns: Value error, expected name=column pairs" in one_error_line(err)


def test_evaluate_reads_its_test_set_with_the_encoding_and_columns(tmp_path, cli):
    test_set = tmp_path / "test.csv"
    rows = ["指令,输入,输出"] + [f"{r['instruction']},{r['input']},{r['output']}" for r in RECORDS]
    test_set.write_bytes(("\n".join(rows) + "\n").encode("gbk"))
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(json.dumps({"id": str(n), "prediction": r["output"]}, ensure_ascii=False) + "\n"
                                   for n, r in enumerate(RECORDS)), encoding="utf-8")
    args = ["evaluate", "--data", test_set, "--predictions", f"sys={predictions}", "--set", "general.enabled=false",
            "--set", "bootstrap.resamples=10"]
    code, _, err = cli(*args, "--out", tmp_path / "a")
    assert code == 2 and "file looks like GBK/GB18030 (line 1 is not UTF-8)" in one_error_line(err)
    code, _, err = cli(*args, "--out", tmp_path / "b", "--encoding", "gb18030")
    assert code == 2 and "columns 指令, 输入, 输出 match no known format" in one_error_line(err)
    code, _, err = cli(*args, "--out", tmp_path / "c", "--encoding", "gb18030",
                       "--columns", "instruction=指令,input=输入,output=输出")
    assert code == 0, err
    metrics = json.loads((tmp_path / "c" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["samples"] == len(RECORDS)
