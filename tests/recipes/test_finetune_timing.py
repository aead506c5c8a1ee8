"""OUT/timing.json accounts for the whole process (start-up to plots), and a rerun reads its tokens from the cache
and trains the same model."""

import json
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

PHASES = ("startup", "setup", "tokenizer", "data", "model_load", "prepare", "first_step", "steps", "eval",
          "checkpoint", "save", "plots")


def test_timing_covers_the_whole_process_and_a_rerun_hits_the_token_cache(tiny_model_dir, finsent_file, tmp_path,
                                                                          cli):
    args = ["finetune", "--model", tiny_model_dir, "--data", finsent_file(40), "--method", "lora", "--max-steps", "4",
            "--batch-size", "4", "--max-length", "64", "--set", "train.eval_every=2", "--set", "train.save_every=2",
            "--set", f"data.token_cache={tmp_path / 'cache'}"]
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "r1tune", *map(str, args), "--out", str(tmp_path / "a")],
                         capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    assert run.returncode == 0, run.stderr
    timing = json.loads((tmp_path / "a" / "timing.json").read_text())
    assert set(PHASES) <= {k[:-2] for k in timing if k.endswith("_s")}
    assert timing["step"] == 4 and timing["token_cache_hit"] is False
    # the interpreter and imports (torch, transformers) happened before the recipe: they are counted
    assert timing["startup_s"] > 0.3 and timing["cpu_s"]["startup"] > 0.3
    parts = sum(timing[f"{p}_s"] for p in PHASES)
    assert parts <= timing["total_s"] + 0.01 and timing["total_s"] <= wall
    assert parts >= 0.98 * timing["total_s"]  # nothing between the marks goes unaccounted
    assert set(timing["cpu_s"]) == set(PHASES) | {"total"}
    # total_s is written to the millisecond, the rate from the unrounded total
    assert timing["real_tokens"] > 0 and timing["real_tokens_per_s_whole"] == pytest.approx(
        timing["real_tokens"] / timing["total_s"], rel=1e-3)
    assert timing["real_tokens_per_s_steady"] > timing["real_tokens_per_s_whole"]
    assert "time: " in run.stdout and "real tok/s over the whole process" in run.stdout

    # the same run again, inside this process: the tokenized set comes from the cache, the model is the same,
    # and the start-up of a process that did other things first is not the run's
    code, out, err = cli(*args, "--out", tmp_path / "b")
    assert code == 0, err
    again = json.loads((tmp_path / "b" / "timing.json").read_text())
    assert again["token_cache_hit"] is True and again["startup_s"] == 0.0
    a = load_file(tmp_path / "a" / "final" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "final" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
