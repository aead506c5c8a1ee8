"""`r1tune quickstart` end to end, offline: the tuned model beats the base clearly."""

import json
import os
import subprocess
import sys


def test_quickstart_end_to_end(tmp_path):
    out = tmp_path / "qs"
    run = subprocess.run([sys.executable, "-m", "r1tune.cli", "quickstart", "--out", str(out)],
                         capture_output=True, text=True, timeout=1800, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    base, tuned = metrics["base"], metrics["tuned"]
    assert set(base) >= {"accuracy", "macro_f1", "reasoning_well_formed", "per_class"}
    assert tuned["accuracy"] >= base["accuracy"] + 0.5, (base["accuracy"], tuned["accuracy"])
    assert tuned["macro_f1"] >= base["macro_f1"] + 0.5
    assert tuned["reasoning_well_formed"] >= 0.9
    assert metrics["test_samples"] == 150
    assert "accuracy" in run.stdout and (out / "tuned" / "final" / "adapter_model.safetensors").exists()
