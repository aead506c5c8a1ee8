"""No prepare step destroys data: an output (or its log, or a split file) that is the input is refused before
anything is read or written; a missing input, a folder given as a file, a parent that is a file and an
unwritable place end in one line naming the path (exit 2); a step that fails leaves the previous output and
log as they were. Everything goes through the CLI, as a user would type it.
"""

import errno
import os
from pathlib import Path

import pytest

from r1tune import files

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "configs" / "prepare-finance" / "statements-spec.yaml"
RECORDS = [{"instruction": "判断情绪", "input": f"第{i}家公司营业收入同比增长{i}%，净利润明显提高。", "output": "正面",
            "label": "正面"} for i in range(6)] + [
    {"instruction": "Classify", "input": "Net profit fell 20% as costs rose sharply.", "output": "负面", "label": "负面"}]


@pytest.fixture
def data(tmp_path, jsonl):
    return jsonl(tmp_path / "d" / "a.jsonl", RECORDS)


def refused(result, path, inputs: dict[Path, bytes]) -> None:
    """Exit 2 with one line naming `path`; every input byte for byte as it was; no temporary file anywhere."""
    code, _, err = result
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and str(path) in errors[0], err
    for inp, before in inputs.items():
        assert inp.read_bytes() == before, inp
        assert not [p for p in inp.parent.iterdir() if ".tmp-" in p.name]


# ---------------------------------------------------------------- an output that is the input


@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink", "hardlink"])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_clean_into_its_own_input_is_refused_in_every_spelling(cli, data, tmp_path, spelling, workers):
    before = data.read_bytes()
    out = {"same": data, "dotted": Path(f"{tmp_path}/d/../d/a.jsonl"), "symlink": tmp_path / "link.jsonl",
           "hardlink": tmp_path / "hard.jsonl"}[spelling]
    if spelling == "symlink":
        out.symlink_to(data)
    if spelling == "hardlink":
        os.link(data, out)
    refused(cli("prepare", "clean", data, out, "--workers", workers), out, {data: before})
    assert not (tmp_path / "d" / "a.log.jsonl").exists()


def test_an_output_whose_log_is_the_input_is_refused(cli, jsonl, tmp_path):
    log_named = jsonl(tmp_path / "x.log.jsonl", RECORDS)
    before = log_named.read_bytes()
    refused(cli("prepare", "clean", log_named, tmp_path / "x.jsonl"), log_named, {log_named: before})
    assert not (tmp_path / "x.jsonl").exists()


def test_split_into_the_folder_of_its_input_is_refused(cli, jsonl, tmp_path):
    train = jsonl(tmp_path / "sp" / "train.jsonl", RECORDS)
    before = train.read_bytes()
    refused(cli("prepare", "split", train, "--out", tmp_path / "sp"), train, {train: before})
    assert sorted(p.name for p in (tmp_path / "sp").iterdir()) == ["train.jsonl"]


def test_check_into_the_folder_of_its_input_is_refused(cli, jsonl, tmp_path):
    problems = jsonl(tmp_path / "r" / "problems.jsonl", RECORDS)
    before = problems.read_bytes()
    refused(cli("prepare", "check", problems, "--out", tmp_path / "r"), problems, {problems: before})
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["problems.jsonl"]


@pytest.mark.parametrize("step, options", [
    ("dedupe", []), ("tag", ["--add-tags"]), ("augment", []), ("convert", ["--kind", "structured", "--spec", SPEC]),
    ("window", ["--model", "not-loaded-before-the-check"])])
def test_every_step_refuses_its_input_as_output(cli, data, step, options):
    before = data.read_bytes()
    refused(cli("prepare", step, data, data, *options), data, {data: before})
    assert sorted(p.name for p in data.parent.iterdir()) == ["a.jsonl"]


def test_leakage_log_over_the_train_file_is_refused(cli, jsonl, tmp_path):
    train = jsonl(tmp_path / "leakage.jsonl", RECORDS)  # the default log is leakage.jsonl next to train
    other = jsonl(tmp_path / "test.jsonl", RECORDS[:2])
    before = train.read_bytes()
    refused(cli("prepare", "leakage", train, other), train, {train: before})


def test_the_pipeline_refuses_an_input_in_its_out_folder_with_a_step_files_name(cli, jsonl, tmp_path):
    for name, extra in (("01-clean.jsonl", ""), ("train.jsonl", "split:\n  enabled: true\n"),
                        ("quality.json", "check:\n  enabled: true\n")):
        out = tmp_path / name.split(".")[0]
        raw = jsonl(out / name, RECORDS)
        before = raw.read_bytes()
        config = tmp_path / f"{out.name}.yaml"
        config.write_text(f"input: {raw}\nout: {out}\n{extra}", encoding="utf-8")
        refused(cli("prepare", config), raw, {raw: before})
        assert sorted(p.name for p in out.iterdir()) == [name]  # not even prepare-config.yaml was written


# ---------------------------------------------------------------- missing input, bad output places


@pytest.mark.parametrize("args", [
    ["clean", "IN", "OUT/x.jsonl"], ["clean", "IN", "OUT/x.jsonl", "--workers", "2"], ["dedupe", "IN", "OUT/x.jsonl"],
    ["tag", "IN", "OUT/x.jsonl"], ["augment", "IN", "OUT/x.jsonl"], ["split", "IN", "--out", "OUT"],
    ["check", "IN", "--out", "OUT"], ["convert", "IN", "OUT/x.jsonl", "--kind", "structured", "--spec", SPEC],
    ["leakage", "IN", "OTHER"]])
def test_a_missing_input_leaves_no_output(cli, tmp_path, args):
    missing, out = tmp_path / "missing.jsonl", tmp_path / "out"
    args = [str(a).replace("IN", str(missing)).replace("OUT", str(out)).replace("OTHER", str(tmp_path / "o.jsonl"))
            for a in args]
    code, _, err = cli("prepare", *args)
    assert code == 2 and err == f"error: {missing}: file not found\n"
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_folder_given_as_the_output_file(cli, data, tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    code, _, err = cli("prepare", "clean", data, folder)
    assert code == 2 and err == f"error: {folder}: is a directory, expected a file\n"
    assert list(folder.iterdir()) == []


def test_an_output_under_a_file(cli, data, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n", encoding="utf-8")
    code, _, err = cli("prepare", "clean", data, notes / "x.jsonl")
    assert code == 2 and err == f"error: {notes / 'x.jsonl'}: cannot write here ({notes} is a file, not a folder)\n"
    code, _, err = cli("prepare", "split", data, "--out", notes)
    assert code == 2 and f"cannot write here ({notes} is a file, not a folder)" in err and err.count("\n") == 1
    assert notes.read_text(encoding="utf-8") == "mine\n"


def test_an_unwritable_place(cli, data):
    code, _, err = cli("prepare", "clean", data, "/proc/r1tune/x.jsonl")  # read-only, even for root
    assert code == 2 and err.startswith("error: /proc/r1tune/x") and "cannot write here" in err
    assert err.count("\n") == 1


# ---------------------------------------------------------------- a failing step keeps the previous files


def test_a_failing_step_leaves_the_previous_output_and_log(cli, data, jsonl, tmp_path):
    out = tmp_path / "out" / "clean.jsonl"
    assert cli("prepare", "clean", data, out)[0] == 0
    old = {p: p.read_bytes() for p in (out, tmp_path / "out" / "clean.log.jsonl")}
    jsonl(data, [{"instruction": "新的", "input": "营业收入同比增长，净利润明显提高了很多。", "output": "正面"}] * 50
          + ["{broken"])  # new records first, then a line that stops the step
    code, _, err = cli("prepare", "clean", data, out, "--on-error", "stop")
    assert code == 2 and "invalid JSON" in err
    assert {p: p.read_bytes() for p in old} == old
    assert sorted(p.name for p in out.parent.iterdir()) == ["clean.jsonl", "clean.log.jsonl"]


def test_a_full_disk_is_one_line_and_leaves_the_previous_files(cli, data, tmp_path, monkeypatch):
    out = tmp_path / "out" / "clean.jsonl"
    assert cli("prepare", "clean", data, out)[0] == 0
    old = {p: p.read_bytes() for p in out.parent.iterdir()}

    def disk_full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "_write", disk_full)
    for args in (["clean", data, out], ["split", data, "--out", out.parent]):
        code, _, err = cli("prepare", *args)
        assert code == 2 and err.endswith(": no space left on device\n") and err.count("\n") == 1, err
        assert err.startswith(f"error: {out.parent}/")
        assert {p: p.read_bytes() for p in out.parent.iterdir()} == old  # nothing new, nothing half-written
