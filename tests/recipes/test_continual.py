"""Continual fine-tuning (issue 15): two tasks in sequence on the tiny model, with and without replay.

Task A is the bundled financial-sentiment set (positive / negative / neutral). Task B asks, about the same
news in the same prompt format, for the risk it signals (low / high / medium): the two tasks conflict, so
plain continuation on B forgets A fast, while B with `--replay` keeps A. One module-scoped chain of three
real `r1tune finetune` runs (A; B continued plainly; B continued with replay) serves every test here; the
error cases stop before any training.
"""

import json
import shutil

import pytest

from helpers import FINSENT

STEPS_A, STEPS_B, LR, REPLAY = 200, 40, "3e-3", 0.5
RISK = {"positive": "low", "negative": "high", "neutral": "medium"}
RISK_INSTRUCTION = "Rate the risk this news signals for an investor: answer low, medium or high only."


def task_file(path, split: str, n: int, risk: bool):
    rows = [json.loads(line) for line in (FINSENT / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()][:n]
    for r in rows:
        r.pop("reasoning", None)  # short answers: the tasks train in few steps
        if risk:
            r["instruction"], r["output"] = RISK_INSTRUCTION, RISK[r["label"]]
            r["label"] = r["output"]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def run_cli(*args):
    """(exit code, stdout) of `r1tune ARGS` in this process."""
    import contextlib
    import io

    from r1tune.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code
    return code, out.getvalue() + err.getvalue()


def common(*extra):
    return ["--max-length", 96, "--batch-size", 32, "--lr", LR, "--reasoning", "empty", "--set", "data.val_split=0",
            "--set", "train.warmup_steps=5", "--set", "train.threads=1", "--set", "continual.max_new_tokens=8",
            "--set", "continual.max_test_samples=60", *extra]


@pytest.fixture(scope="module")
def chain(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("continual")
    files = {"a_train": task_file(root / "a_train.jsonl", "train", 400, False),
             "a_test": task_file(root / "a_test.jsonl", "test", 60, False),
             "b_train": task_file(root / "b_train.jsonl", "train", 400, True),
             "b_test": task_file(root / "b_test.jsonl", "test", 60, True)}
    runs = root / "runs"
    results = {"files": files, "runs": runs}
    results["a"] = run_cli("finetune", "--model", tiny_model_dir, "--method", "full", "--data", files["a_train"],
                           "--test", files["a_test"], "--out", runs / "A", "--max-steps", STEPS_A, *common())
    for name, extra in (("plain", []), ("replay", ["--replay", REPLAY])):
        results[name] = run_cli("finetune", "--continue-from", runs / "A", "--data", files["b_train"], "--test",
                                files["b_test"], "--out", runs / name, "--max-steps", STEPS_B, *extra, *common())
    return results


def lineage(run):
    return json.loads((run / "lineage.json").read_text(encoding="utf-8"))


def test_replay_keeps_task_a_and_the_gate_stops_plain_continuation(chain):
    runs = chain["runs"]
    code, out = chain["a"]
    assert code == 0, out
    first = lineage(runs / "A")["increments"]
    assert len(first) == 1 and first[0]["promoted"] and first[0]["test"]["sha256"]
    acc_a = first[0]["metrics"]["A"]
    assert acc_a >= 0.6, out  # task A learned (chance: about 0.33)

    code, out = chain["plain"]
    assert code == 3, out  # not promoted
    assert "NOT promoted" in out and "task A fell by" in out
    plain = lineage(runs / "plain")["increments"]
    assert [inc["name"] for inc in plain] == ["A", "plain"] and plain[0]["metrics"] == first[0]["metrics"]
    assert not plain[1]["promoted"] and plain[1]["gate"]["drops"]["A"] > 0.05
    acc_plain = plain[1]["metrics"]["A"]

    code, out = chain["replay"]
    assert code == 0, out
    assert "data.mix: train" in out and "replay:A" in out  # the start line counts each source's samples
    replay = lineage(runs / "replay")["increments"]
    assert replay[1]["promoted"] and replay[1]["replay"] == REPLAY
    acc_replay = replay[1]["metrics"]["A"]
    print(f"\ntask A accuracy: after A {acc_a:.3f}; after B plain {acc_plain:.3f}; after B with replay {REPLAY} "
          f"{acc_replay:.3f}; task B: plain {plain[1]['metrics']['plain']:.3f}, "
          f"replay {replay[1]['metrics']['replay']:.3f}")
    assert acc_a - acc_replay <= 0.05  # within the gate's few points
    assert acc_a - acc_plain >= acc_a - acc_replay + 0.2  # plain continuation forgets clearly more

    page = (runs / "replay" / "lineage.html").read_text(encoding="utf-8")
    assert "<table>" in page and "data:image/png;base64," in page and "promoted" in page
    # the continued run took its parent's method and weights, and records its mix
    cfg = (runs / "replay" / "config.yaml").read_text(encoding="utf-8")
    assert "replay:A" in cfg and "name: full" in cfg


def test_bad_continuations_are_refused_before_training(chain, tmp_path):
    runs, files = chain["runs"], chain["files"]
    base = ["--data", files["b_train"], "--out", tmp_path / "out", "--max-steps", 1, *common()]

    (tmp_path / "empty").mkdir()
    code, out = run_cli("finetune", "--continue-from", tmp_path / "empty", *base)
    assert code == 2 and "not an r1tune run" in out

    code, out = run_cli("finetune", "--continue-from", runs / "A", "--replay", 1.0, *base)
    assert code == 2 and "continual.replay" in out and "less than 1" in out

    code, out = run_cli("finetune", "--continue-from", runs / "A", "--method", "lora", *base)
    assert code == 2 and "keeps its parent's method" in out

    code, out = run_cli("finetune", "--model", runs / "A" / "final", "--replay", 0.2, *base)
    assert code == 2 and "--continue-from" in out

    code, out = run_cli("finetune", "--continue-from", runs / "A", "--model", tmp_path / "empty", *base)
    assert code == 2 and "starts from its parent's weights" in out

    code, out = run_cli("finetune", "--continue-from", runs / "A", "--set", "data.chat_template=r1-2025-01", *base)
    assert code == 2 and "keeps its parent's template" in out

    edited = tmp_path / "edited"
    shutil.copytree(runs / "A", edited)
    record = json.loads((edited / "lineage.json").read_text(encoding="utf-8"))
    record["increments"][0]["metrics"]["A"] = 1.0
    (edited / "lineage.json").write_text(json.dumps(record), encoding="utf-8")
    code, out = run_cli("finetune", "--continue-from", edited, *base)
    assert code == 2 and "edited by hand" in out
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_replay_refuses_changed_or_vanished_data(chain, tmp_path):
    runs, files = chain["runs"], chain["files"]
    base = ["--data", files["b_train"], "--out", tmp_path / "out", "--max-steps", 1, "--replay", 0.2, *common()]
    a_train = files["a_train"]
    kept = a_train.read_bytes()
    try:
        a_train.write_bytes(kept + kept[:200])
        code, out = run_cli("finetune", "--continue-from", runs / "A", *base)
        assert code == 2 and "changed since it was recorded" in out and str(a_train) in out
        a_train.unlink()
        code, out = run_cli("finetune", "--continue-from", runs / "replay", *base)
        assert code == 2 and "is gone" in out
    finally:
        a_train.write_bytes(kept)


def test_a_lora_run_continues_its_adapter_with_replay_l2_and_ewc(tiny_model_dir, tmp_path):
    from r1tune.model.runs import resolve_run
    from r1tune.train.anchor import FISHER_FILE

    a_train = task_file(tmp_path / "a.jsonl", "train", 64, False)
    b_train = task_file(tmp_path / "b.jsonl", "train", 64, True)
    quick = ["--max-length", 96, "--batch-size", 8, "--lr", "1e-2", "--reasoning", "empty", "--set",
             "data.val_split=0", "--set", "train.warmup_steps=0", "--set", "train.threads=1", "--set",
             "continual.general_enabled=false"]
    code, out = run_cli("finetune", "--model", tiny_model_dir, "--method", "lora", "--data", a_train, "--out",
                        tmp_path / "A", "--max-steps", 6, "--set", "continual.fisher_samples=4", *quick)
    assert code == 0, out
    assert (tmp_path / "A" / "final" / FISHER_FILE).is_file()  # stored for a later run's EWC
    assert not (tmp_path / "A" / "lineage.json").exists()  # no test set, no parent: a plain run
    code, out = run_cli("finetune", "--continue-from", tmp_path / "A", "--data", b_train, "--out", tmp_path / "B",
                        "--max-steps", 3, "--replay", 0.3, "--set", "continual.l2=0.5", "--set", "continual.ewc=5",
                        *quick)
    assert code == 0, out
    assert "r1tune finetune: lora" in out and "replay:A" in out
    rows = [json.loads(line) for line in (tmp_path / "B" / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r.get("split") == "train"]
    assert train_rows[0]["anchor_penalty"] == 0.0 and train_rows[-1]["anchor_penalty"] > 0  # pulled once it moved
    parent_rows = [json.loads(line) for line in (tmp_path / "A" / "metrics.jsonl").read_text().splitlines()]
    parent_train = [r for r in parent_rows if r.get("split") == "train"]
    # the child starts from the parent's adapter, not a fresh one: its first loss is the parent's last, not first
    assert abs(train_rows[0]["loss"] - parent_train[0]["loss"]) > abs(train_rows[0]["loss"] - parent_train[-1]["loss"])
    assert resolve_run(tmp_path / "B").kind == "adapter"
    increments = lineage(tmp_path / "B")["increments"]
    assert [i["name"] for i in increments] == ["A", "B"] and increments[1]["ewc"] == 5 and increments[1]["promoted"]
    # a third increment continues the second the same way, replaying both earlier increments' data
    code, out = run_cli("finetune", "--continue-from", tmp_path / "B", "--data", a_train, "--out", tmp_path / "C",
                        "--max-steps", 1, "--replay", 0.4, *quick)
    assert code == 0, out
    assert "replay:A" in out and "replay:B" in out
    assert [i["name"] for i in lineage(tmp_path / "C")["increments"]] == ["A", "B", "C"]
