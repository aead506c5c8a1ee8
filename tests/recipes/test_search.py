"""`r1tune search` end to end on the tiny model and 120 finsent samples: the advisor's trial first, a pruned
trial, kill -9 of the study mid-trial and a rerun that redoes the interrupted trial, best.yaml retraining to the
best trial's metric, report.html."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml

pytestmark = pytest.mark.slow

SPACE = {
    "method.name": {"type": "categorical", "choices": ["lora"]},
    "method.lora_r": {"type": "categorical", "choices": [4, 8]},
    "train.lr": {"type": "float", "low": 1e-5, "high": 3e-2, "log": True},
    # the rest of the built-in space stays at the base config's values: a short, comparable study
    **{key: None for key in ("method.lora_alpha", "method.lora_dropout", "train.warmup_steps", "train.global_batch",
                             "data.max_length", "data.reasoning", "train.max_steps")},
}


@pytest.fixture(scope="module")
def study_dir(tiny_model_dir, finsent_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "study"
    config = {
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"train": str(finsent_file(120)), "val_split": 0.2, "max_length": 128},
        "train": {"max_steps": 6, "batch_size": 8, "warmup_steps": 0, "eval_every": 2, "save_every": 100,
                  "threads": 1},
        "out": str(out),
        "search": {"trials": 4, "timeout": "20m", "pruner_startup_trials": 2, "space": SPACE,
                   # a good rate, then one far too low: the median pruner stops the second at its first evaluation
                   "enqueue": [{"train.lr": 0.02}, {"train.lr": 1e-5}]},
    }
    path = out.parent / "search.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path, out


def load_study(out):
    return optuna.load_study(study_name="r1tune-search", storage=f"sqlite:///{out / 'study.db'}")


def test_search_prunes_survives_kill_9_and_best_yaml_reproduces(study_dir, cli):
    path, out = study_dir
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    started = time.time()
    # first run: killed with SIGKILL while its fourth trial (number 3) trains
    study = subprocess.Popen([sys.executable, "-m", "r1tune.cli", "search", str(path)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim = out / "trials" / "003" / "metrics.jsonl"
    while not (victim.exists() and victim.stat().st_size) and study.poll() is None:
        time.sleep(0.2)
    assert study.poll() is None, study.stdout.read()
    study.send_signal(signal.SIGKILL)
    first_output = study.communicate()[0]
    assert "trial 002 pruned" in first_output, first_output
    killed = load_study(out).trials
    assert [t.state.name for t in killed] == ["COMPLETE", "COMPLETE", "PRUNED", "RUNNING"]

    # the same command again: trial 3 marked failed and redone (as trial 4) with the same values
    code, stdout, stderr = cli("search", path)
    assert code == 0, stderr
    assert "1 interrupted trial(s) to redo" in stdout
    trials = load_study(out).trials
    assert [t.state.name for t in trials][:4] == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL"]
    assert trials[0].user_attrs["advisor"] and trials[0].params["train.lr"] == pytest.approx(2e-4)  # LoRA's rate
    assert trials[2].user_attrs["prune_reason"].startswith("pruned at step 2")
    assert trials[3].user_attrs["interrupted"] and trials[4].user_attrs["redo_of"] == 3
    assert trials[4].params == trials[3].params and trials[4].state.name in ("COMPLETE", "PRUNED")
    assert len(trials) == 5 and time.time() - started < 20 * 60
    # the killed study's trial process died with it (PR_SET_PDEATHSIG): it never finished its run
    assert not (out / "trials" / "003" / "result.json").exists()
    assert stdout.count("best so far") == 1  # a progress line for the one trial this run ran

    result = json.loads((out / "search.json").read_text())
    best = result["best"]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert best["values"]["val_loss"] == min(t.value for t in complete)
    assert best["values"]["val_loss"] < result["advisor"]["values"]["val_loss"]  # 0.02 beats 2e-4 in 6 steps
    assert (out / "best" / "final" / "adapter_model.safetensors").exists()
    report = (out / "report.html").read_text()
    assert "optimisation history" in report and "PRUNED" in report and "redoes trial 3" in report

    # best.yaml retrains the best trial to the same validation loss
    code, _, stderr = cli("finetune", out / "best.yaml")
    assert code == 0, stderr
    rerun = yaml.safe_load((out / "best.yaml").read_text())["out"]
    evals = [r for r in map(json.loads, open(f"{rerun}/metrics.jsonl")) if r["split"] == "eval"]
    assert evals[-1]["loss"] == pytest.approx(best["values"]["val_loss"], rel=1e-5)
