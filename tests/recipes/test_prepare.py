"""`r1tune prepare`: the configured pipeline on the bundled finance example, and every step from the CLI."""

import json
from pathlib import Path

import pytest

from helpers import read_jsonl as read
from helpers import run_main as cli
from helpers import write_jsonl as write

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "configs" / "prepare-finance.yaml"


@pytest.fixture(scope="module")
def finance_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("prepare-finance")
    import os

    cwd = os.getcwd()
    os.chdir(ROOT)  # the example config names its input relative to the repository
    try:
        code = cli("prepare", EXAMPLE, "--set", f"out={out}")
    finally:
        os.chdir(cwd)
    return code, out


def test_the_example_config_runs_with_the_literal_command(finance_run):
    code, out = finance_run
    assert code == 0
    for name in ["01-clean.jsonl", "01-clean.log.jsonl", "02-dedupe.jsonl", "02-dedupe.log.jsonl", "03-tag.jsonl",
                 "quality.json", "report.md", "problems.jsonl", "train.jsonl", "validation.jsonl", "test.jsonl",
                 "train-augmented.jsonl", "train-augmented.log.jsonl", "leakage.jsonl", "summary.json",
                 "prepare-config.yaml", "tagging.json"]:
        assert (out / name).exists(), name


def test_nothing_is_lost_silently(finance_run):
    _, out = finance_run
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    steps = {s["step"]: s for s in summary["steps"]}
    assert steps["clean"]["read"] == 33  # 32 records and one broken line
    for step in summary["steps"]:
        assert step["read"] == step["written"] + step["dropped"] - step.get("added", 0), step["step"]
        assert len(read(step["log"])) >= step["dropped"] + step.get("added", 0)
    clean_log = read(out / "01-clean.log.jsonl")
    dropped = {e["rule"] for e in clean_log if e["action"] == "dropped"}
    assert dropped == {"unreadable", "language", "repetition", "too_short"}
    assert all(e["source"].startswith("configs/prepare-finance/raw.jsonl:") for e in clean_log)
    dedupe = {e["rule"] for e in read(out / "02-dedupe.log.jsonl")}
    assert dedupe == {"exact_duplicate", "near_duplicate"}


def test_the_report_covers_the_data_the_pipeline_and_leakage(finance_run):
    _, out = finance_run
    report = json.loads((out / "quality.json").read_text(encoding="utf-8"))
    assert report["passed"] is True
    assert report["sections"]["consistency"]["conflicting_labels"]["count"] == 1
    assert report["personal_data"] == {}  # masked by the cleaner
    assert report["personal_data_in_input"]["found"] == {"name": 2, "phone": 2, "id_card": 1, "account_id": 1,
                                                         "bank_card": 1, "email": 1}
    assert [s["step"] for s in report["pipeline"]] == ["clean", "dedupe", "tag", "split", "augment"]
    assert report["leakage"]["checked"] == report["pipeline"][3]["splits"]["validation"] + \
        report["pipeline"][3]["splits"]["test"]
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "## Pipeline" in markdown and "## Train / evaluation leakage" in markdown


def test_the_outputs_are_clean_masked_and_augmentation_stays_in_train(finance_run):
    _, out = finance_run
    every = {split: read(out / f"{split}.jsonl") for split in ("train", "validation", "test")}
    text = json.dumps(every, ensure_ascii=False) + (out / "train-augmented.jsonl").read_text(encoding="utf-8")
    for secret in ["13812345678", "11010519491231002X", "张伟", "ACC20240001", "ir@example.com", "6222 0212"]:
        assert secret not in text, secret
    assert "[PHONE_1]" in text and "[NAME_1]" in text
    assert "宁德时代第三季度营收1,054.3亿元，同比增长8.3%，毛利率提升至22.4%。" in text  # HTML and &nbsp; gone
    assert not any("augmented" in r for r in every["validation"] + every["test"])
    augmented = read(out / "train-augmented.jsonl")
    assert sum("augmented" in r for r in augmented) > 0
    assert {r["label"] for rows in every.values() for r in rows} == {"正面", "负面", "中性"}
    assert all("lang" in r and "provenance" in r for rows in every.values() for r in rows)


def test_the_pipeline_on_two_workers_writes_the_same_files(finance_run, tmp_path, monkeypatch):
    _, out = finance_run
    monkeypatch.chdir(ROOT)
    assert cli("prepare", EXAMPLE, "--set", f"out={tmp_path}", "--set", "workers=2") == 0
    for name in ["01-clean.jsonl", "01-clean.log.jsonl", "train.jsonl", "validation.jsonl", "test.jsonl",
                 "train-augmented.jsonl", "problems.jsonl"]:
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name
    report = json.loads((tmp_path / "quality.json").read_text(encoding="utf-8"))
    assert report["sections"] == json.loads((out / "quality.json").read_text(encoding="utf-8"))["sections"]
    assert cli("prepare", "clean", "configs/prepare-finance/raw.jsonl", tmp_path / "cli.jsonl", "--workers", "2") == 0
    assert (tmp_path / "cli.jsonl").stat().st_size > 0
    assert cli("prepare", "check", tmp_path / "cli.jsonl", "--out", tmp_path / "cli-report", "--workers", "2") == 0
    assert (tmp_path / "cli-report" / "quality.json").exists()


def test_a_crossed_threshold_fails_the_run_after_writing_everything(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = cli("prepare", EXAMPLE, "--set", f"out={tmp_path}", "--set", "check.thresholds.any=0.0",
               "--set", "augment.enabled=false")
    assert code == 2
    assert "error: quality thresholds crossed: any 3.70% > 0.00%" in capsys.readouterr().err
    assert (tmp_path / "report.md").exists() and (tmp_path / "test.jsonl").exists()


def test_config_errors_name_the_key(tmp_path, capsys):
    assert cli("prepare", EXAMPLE, "--set", "clean.rulez=[nfkc]") == 2
    assert "clean.rulez" in capsys.readouterr().err
    assert cli("prepare", "run", tmp_path / "missing.yaml") == 2
    assert "config file not found" in capsys.readouterr().err


def test_each_step_runs_alone_from_the_cli(tmp_path, capsys, tiny_model_dir):
    raw = write(tmp_path / "raw.jsonl", [
        {"instruction": "判断情绪", "input": "<p>营收３.５亿元，同比增长12.3%</p>", "output": "正面", "label": "正面"},
        {"instruction": "判断情绪", "input": "营收3.5亿元，同比增长12.3%", "output": "正面", "label": "正面"},
        {"instruction": "Classify", "input": "Net profit fell 20%. Call 13812345678.", "output": "负面", "label": "负面"},
    ] + [{"instruction": "判断情绪", "input": f"第{i}家公司营业收入同比增长{i}%，净利润明显提高。" * 30, "output": "正面",
          "label": "正面"} for i in range(12)])
    rules = tmp_path / "rules.yaml"
    rules.write_text("clean:\n  rules: [html, nfkc, numbers, whitespace]\n  max_repetition: null\n", encoding="utf-8")
    assert cli("prepare", "clean", raw, tmp_path / "clean.jsonl", "--rules", rules) == 0
    cleaned = read(tmp_path / "clean.jsonl")
    assert cleaned[0]["input"] == "营收3.5e8元，同比增长12.3%" and cleaned[2]["input"].endswith("Call [PHONE_1].")
    assert "clean: read 15, wrote 15" in capsys.readouterr().out

    assert cli("prepare", "dedupe", tmp_path / "clean.jsonl", tmp_path / "dedupe.jsonl", "--near") == 0
    assert len(read(tmp_path / "dedupe.jsonl")) == 14 and (tmp_path / "dedupe.log.jsonl").exists()

    assert cli("prepare", "check", tmp_path / "dedupe.jsonl", "--out", tmp_path / "report",
               "--labels", "正面,负面") == 0
    assert json.loads((tmp_path / "report" / "quality.json").read_text(encoding="utf-8"))["records"] == 14
    assert cli("prepare", "check", tmp_path / "dedupe.jsonl", "--out", tmp_path / "report2",
               "--labels", "正面", "--threshold", "label_not_in_set=0") == 2

    assert cli("prepare", "window", tmp_path / "dedupe.jsonl", tmp_path / "window.jsonl", "--model", tiny_model_dir,
               "--window", 64, "--stride", 32) == 0
    windows = read(tmp_path / "window.jsonl")
    assert len(windows) > 14 and any(r.get("window", {}).get("index") == 1 for r in windows)

    assert cli("prepare", "tag", tmp_path / "dedupe.jsonl", tmp_path / "tag.jsonl", "--add-tags") == 0
    assert read(tmp_path / "tag.jsonl")[0]["instruction"] == "[ZH] 判断情绪"

    assert cli("prepare", "split", tmp_path / "dedupe.jsonl", "--out", tmp_path / "splits", "--seed", 3) == 0
    assert sum(len(read(tmp_path / "splits" / f"{s}.jsonl")) for s in ("train", "validation", "test")) == 14

    mine = tmp_path / "mine.txt"
    mine.write_text("营业收入 营业总收入\n", encoding="utf-8")
    assert cli("prepare", "augment", tmp_path / "splits" / "train.jsonl", tmp_path / "train-aug.jsonl",
               "--ratio", 1, "--dict", mine) == 0
    assert any("augmented" in r for r in read(tmp_path / "train-aug.jsonl"))
    assert cli("prepare", "augment", tmp_path / "splits" / "test.jsonl", tmp_path / "x.jsonl") == 2

    assert cli("prepare", "leakage", tmp_path / "splits" / "train.jsonl", tmp_path / "splits" / "test.jsonl") == 0
    assert "leakage:" in capsys.readouterr().out

    assert cli("prepare", "convert", ROOT / "configs" / "prepare-finance" / "statements.csv", tmp_path / "st.jsonl",
               "--kind", "structured", "--spec", ROOT / "configs" / "prepare-finance" / "statements-spec.yaml") == 0
    samples = read(tmp_path / "st.jsonl")
    assert len(samples) == 6 and samples[0]["provenance"]["rule"] == "revenue_qa"
    assert {e["reason"] for e in read(tmp_path / "st.log.jsonl")} == {
        "'revenue' is a required property", "year: '二〇二三' is not of type 'integer'"}
