"""r1tune.files: outputs replace their target only when complete, never an input; OSErrors become one line.

The prepare steps' hostile cases are in tests/data/test_outputs.py; the other verbs' (annotate, evaluate,
human-eval) are at the end of this file.
"""

import errno
import json
import os
import stat

import pytest

from r1tune import files
from r1tune.errors import R1TuneError
from r1tune.files import OutputSet, check_outputs, replaced, replaced_folder, write_bytes, write_text


def leftovers(folder):
    """Temporary files the writer left behind (there must never be any)."""
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or p.name.endswith((".partial", ".old")))


def disk_full(*args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# ---------------------------------------------------------------- one file


def test_a_complete_write_replaces_the_file_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "out" / "x.json"  # the folder is made
    assert write_text(target, "新的内容\n") == target
    assert target.read_text(encoding="utf-8") == "新的内容\n"
    write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert leftovers(target.parent) == []


def test_a_crash_mid_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "x.jsonl"
    target.write_text("old\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="crash"):
        with replaced(target) as f:
            f.write("half of the new content" * 10000)  # past the buffer: bytes reached the temporary file
            raise RuntimeError("crash")
    assert target.read_text(encoding="utf-8") == "old\n"
    assert leftovers(tmp_path) == []


def test_the_file_is_not_there_under_its_name_until_it_is_complete(tmp_path):
    target = tmp_path / "x.jsonl"
    with replaced(target) as f:
        f.write("a\n" * 100000)
        f.flush()
        assert not target.exists()
        assert len(leftovers(tmp_path)) == 1 and leftovers(tmp_path)[0].startswith(".x.jsonl.tmp-")
    assert target.read_text(encoding="utf-8") == "a\n" * 100000


def test_a_full_disk_on_write_is_one_line_naming_the_target(tmp_path, monkeypatch):
    target = tmp_path / "x.jsonl"
    target.write_text("old\n", encoding="utf-8")
    monkeypatch.setattr(files, "_write", disk_full)
    with pytest.raises(R1TuneError) as caught:
        write_text(target, "new\n")
    assert str(caught.value) == f"{target}: no space left on device"
    assert target.read_text(encoding="utf-8") == "old\n" and leftovers(tmp_path) == []


def test_a_full_disk_on_fsync_is_one_line_naming_the_target(tmp_path, monkeypatch):
    target = tmp_path / "x.jsonl"
    monkeypatch.setattr(files, "_fsync", disk_full)
    with pytest.raises(R1TuneError, match="no space left on device") as caught:
        write_text(target, "new\n")
    assert str(caught.value).startswith(str(target)) and not target.exists() and leftovers(tmp_path) == []


def test_a_directory_where_a_file_should_be(tmp_path):
    with pytest.raises(R1TuneError) as caught:
        write_text(tmp_path, "x")
    assert str(caught.value) == f"{tmp_path}: is a directory, expected a file"


def test_a_parent_that_is_a_file(tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine", encoding="utf-8")
    for target in (blocker / "x.json", blocker / "deeper" / "x.json"):
        with pytest.raises(R1TuneError) as caught:
            write_text(target, "x")
        assert str(caught.value) == f"{target}: cannot write here ({blocker} is a file, not a folder)"
    assert blocker.read_text(encoding="utf-8") == "mine"


def test_a_place_that_cannot_be_written(tmp_path):
    target = "/proc/r1tune-test/x.json"  # read-only even for root
    with pytest.raises(R1TuneError) as caught:
        write_text(target, "x")
    assert str(caught.value).startswith(f"{target}: cannot write here (") and "\n" not in str(caught.value)


def test_permissions_of_a_replaced_file_are_kept_and_new_files_get_the_usual_ones(tmp_path):
    old = tmp_path / "script.sh"
    old.write_text("old", encoding="utf-8")
    old.chmod(0o750)
    write_text(old, "new")
    assert stat.S_IMODE(old.stat().st_mode) == 0o750
    umask = os.umask(0)
    os.umask(umask)
    write_text(tmp_path / "fresh.txt", "x")
    assert stat.S_IMODE((tmp_path / "fresh.txt").stat().st_mode) == 0o666 & ~umask


def test_a_symlinked_output_is_written_through_the_link(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old", encoding="utf-8")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_text(link, "new")
    assert link.is_symlink() and real.read_text(encoding="utf-8") == "new"


# ---------------------------------------------------------------- files that belong together


def test_a_set_lands_together_or_not_at_all(tmp_path):
    data, log = tmp_path / "clean.jsonl", tmp_path / "clean.log.jsonl"
    data.write_text("old data\n", encoding="utf-8")
    log.write_text("old log\n", encoding="utf-8")
    with pytest.raises(ValueError):
        with OutputSet() as outputs:
            outputs.open(data).write("new data\n")
            outputs.open(log).write("new log\n")
            raise ValueError("the step failed after writing both")
    assert data.read_text(encoding="utf-8") == "old data\n" and log.read_text(encoding="utf-8") == "old log\n"
    with OutputSet() as outputs:
        outputs.open(data).write("new data\n")
        outputs.open(log).write("new log\n")
    assert data.read_text(encoding="utf-8") == "new data\n" and log.read_text(encoding="utf-8") == "new log\n"
    assert leftovers(tmp_path) == []


def test_a_full_disk_on_the_second_file_renames_neither(tmp_path, monkeypatch):
    data, log = tmp_path / "clean.jsonl", tmp_path / "clean.log.jsonl"
    data.write_text("old data\n", encoding="utf-8")
    calls = []

    def second_fails(fd):
        calls.append(fd)
        if len(calls) == 2:
            disk_full()
        os.fsync(fd)

    monkeypatch.setattr(files, "_fsync", second_fails)
    with pytest.raises(R1TuneError) as caught:
        with OutputSet() as outputs:
            outputs.open(data).write("new data\n")
            outputs.open(log).write("new log\n")
    assert str(caught.value) == f"{log}: no space left on device"
    assert data.read_text(encoding="utf-8") == "old data\n" and not log.exists() and leftovers(tmp_path) == []


def test_an_error_while_reading_an_input_is_not_blamed_on_the_output(tmp_path):
    with pytest.raises(IsADirectoryError):
        with replaced(tmp_path / "x.jsonl") as f:
            f.write("x")
            open(tmp_path)  # noqa: SIM115 - the input is a folder: its own error, not the output's
    assert leftovers(tmp_path) == [] and not (tmp_path / "x.jsonl").exists()


# ---------------------------------------------------------------- a folder replaced whole


def test_a_folder_is_swapped_in_complete_or_not_at_all(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "old.bin").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with replaced_folder(out) as partial:
            (partial / "new.bin").write_bytes(b"new")
            raise RuntimeError("crash while saving")
    assert sorted(p.name for p in out.iterdir()) == ["old.bin"] and leftovers(tmp_path) == []
    with replaced_folder(out) as partial:
        (partial / "new.bin").write_bytes(b"new")
    assert sorted(p.name for p in out.iterdir()) == ["new.bin"] and leftovers(tmp_path) == []


# ---------------------------------------------------------------- the input check


def test_an_output_that_is_an_input_in_any_spelling_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    data = tmp_path / "d" / "a.jsonl"
    data.write_text("{}\n", encoding="utf-8")
    (tmp_path / "link.jsonl").symlink_to(data)
    os.link(data, tmp_path / "hard.jsonl")
    for spelling in (data, tmp_path / "d" / ".." / "d" / "a.jsonl", tmp_path / "link.jsonl",
                     tmp_path / "hard.jsonl"):
        with pytest.raises(R1TuneError) as caught:
            check_outputs([tmp_path / "other.jsonl", spelling], inputs=[data])
        assert str(caught.value).startswith(f"{spelling}: is also the input")
    check_outputs([tmp_path / "other.jsonl", None], inputs=[data, None])  # different files pass


def test_a_folder_replaced_whole_may_not_hold_an_input(tmp_path):
    data = tmp_path / "export" / "test.jsonl"
    data.parent.mkdir()
    data.write_text("{}\n", encoding="utf-8")
    with pytest.raises(R1TuneError, match="is replaced as a whole, but the input"):
        check_outputs([], inputs=[data], folders=[tmp_path / "export"])
    check_outputs([], inputs=[data], folders=[tmp_path / "other"])


# ---------------------------------------------------------------- the other verbs, through the CLI


def same_bytes_and_one_line(code, err, path, before):
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and str(path) in errors[0], err
    assert path.read_bytes() == before


def test_annotate_refuses_to_write_over_its_input(cli, tmp_path):
    from pathlib import Path

    schema = Path(__file__).resolve().parents[1] / "configs" / "annotate" / "finance-schema.yaml"
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "公司营收增长"}\n', encoding="utf-8")
    before = texts.read_bytes()
    code, _, err = cli("annotate", "tasks", texts, "--schema", schema, "--out", texts)
    same_bytes_and_one_line(code, err, texts, before)

    export = tmp_path / "export.json"
    export.write_text("[]", encoding="utf-8")
    code, _, err = cli("annotate", "agreement", export, "--schema", schema, "--out", export)
    same_bytes_and_one_line(code, err, export, b"[]")
    problems = tmp_path / "problems.jsonl"
    problems.write_text("[]", encoding="utf-8")
    code, _, err = cli("annotate", "import", problems, "--schema", schema, "--out", tmp_path)
    same_bytes_and_one_line(code, err, problems, b"[]")


def test_evaluate_refuses_to_replace_predictions_it_reads(cli, tmp_path):
    out = tmp_path / "eval"
    predictions = out / "predictions" / "vllm.jsonl"
    predictions.parent.mkdir(parents=True)
    rows = [{"id": i, "reference": label, "label": label, "prediction": label} for i, label in enumerate(["正面", "负面"])]
    predictions.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    before = predictions.read_bytes()
    code, _, err = cli("evaluate", "--predictions", f"vllm={predictions}", "--out", out)
    same_bytes_and_one_line(code, err, predictions, before)
    assert not (out / "metrics.json").exists()


def test_human_eval_import_refuses_a_filled_sheet_named_like_its_output(cli, tmp_path):
    sheet_dir = tmp_path / "human"
    sheet_dir.mkdir()
    (sheet_dir / "key.json").write_text(json.dumps({"evaluation": str(tmp_path / "eval"), "baseline": "a",
                                                    "candidate": "b", "items": {}}), encoding="utf-8")
    filled = sheet_dir / "human.json"
    filled.write_text("[]", encoding="utf-8")
    code, _, err = cli("human-eval", "import", sheet_dir, filled)
    same_bytes_and_one_line(code, err, filled, b"[]")
