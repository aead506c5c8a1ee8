"""Several processes (gloo on CPU): the same weights and losses as one process with the same global batch;
only rank 0 writes; a killed multi-process run resumes exactly."""

import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from r1tune.train.checkpoint import complete_checkpoints


@pytest.fixture(scope="module")
def data_file(finsent_file):
    return finsent_file(48)


def run(model, data, out, *extra, env=None):
    args = ["finetune", "--model", str(model), "--data", str(data), "--out", str(out), "--max-steps", "6",
            "--lr", "5e-3", "--save-every", "3", "--eval-every", "2", "--set", "data.val_split=0.25",
            "--set", "train.threads=1", "--set", "train.mixed_precision=no", *extra]  # fp32: exact equivalence
    return subprocess.run([sys.executable, "-m", "r1tune", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def losses(out):
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in line]


def max_diff(a, b):
    a, b = load_file(a / "final" / "adapter_model.safetensors"), load_file(b / "final" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_two_processes_equal_one_process_with_the_same_global_batch(tiny_model_dir, data_file, tmp_path):
    one = run(tiny_model_dir, data_file, tmp_path / "one", "--batch-size", "4", "--set", "method.lora_dropout=0")
    two = run(tiny_model_dir, data_file, tmp_path / "two", "--batch-size", "2", "--nproc", "2",
              "--set", "method.lora_dropout=0")
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    assert max_diff(tmp_path / "one", tmp_path / "two") <= 1e-5
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(a) == len(b) == 6  # rank 0 alone logs: no duplicated lines
    assert all(abs(x - y) <= 1e-5 * max(1.0, abs(x)) for x, y in zip(a, b)), (a, b)
    assert two.stdout.count("done: 6 steps") == 1
    assert [p.name for p in complete_checkpoints(tmp_path / "two" / "checkpoints")] == ["step-000003"]


def test_killed_multi_process_run_resumes_exactly(tiny_model_dir, data_file, tmp_path):
    # dropout on: each rank's RNG must come back from the checkpoint
    extra = ["--batch-size", "2", "--nproc", "2", "--set", "method.lora_dropout=0.2"]
    straight = run(tiny_model_dir, data_file, tmp_path / "straight", *extra)
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = run(tiny_model_dir, data_file, tmp_path / "killed", *extra, env={"R1TUNE_KILL_AT_STEP": "5"})
    assert killed.returncode != 0 and not (tmp_path / "killed" / "final").exists()
    resumed = run(tiny_model_dir, data_file, tmp_path / "killed", *extra, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert max_diff(tmp_path / "straight", tmp_path / "killed") <= 1e-6
    assert losses(tmp_path / "straight") == losses(tmp_path / "killed")
