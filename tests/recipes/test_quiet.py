"""The normal path is quiet: a LoRA finetune and an evaluation of it through the `r1tune` command never import
bitsandbytes (peft would, and on AVX512-BF16 CPUs bitsandbytes logs "Failed to load CPU gemm_4bit_forward from
kernels-community…" on every run), and write nothing to stderr but the weight-loading bar and the progress
lines; a QLoRA run in the same process still gets bitsandbytes."""

import os
import re
import subprocess
import sys

SCRIPT = """
import sys
from r1tune.cli import main

def run(*args):
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        if e.code:
            raise

model, data, test, out = sys.argv[1:5]
common = ["--data", data, "--max-steps", 1, "--batch-size", 4, "--set", "data.max_length=96",
          "--set", "train.threads=1"]
run("finetune", "--model", model, "--out", f"{out}/lora", "--method", "lora", *common)
run("evaluate", "--model", model, "--adapter", f"{out}/lora", "--data", test, "--out", f"{out}/eval",
    "--max-new-tokens", 2, "--metrics", "accuracy", "--set", "general.enabled=false",
    "--set", "generation.latency_requests=0", "--set", "bootstrap.resamples=10")
print("bitsandbytes after lora and evaluate:", sys.modules.get("bitsandbytes") is not None, flush=True)
print("=== qlora ===", file=sys.stderr, flush=True)
run("finetune", "--model", model, "--out", f"{out}/qlora", "--method", "qlora", *common)
print("bitsandbytes after qlora:", sys.modules.get("bitsandbytes") is not None, flush=True)
"""

EXPECTED_STDERR = re.compile(r"Loading weights: .*|  (base|tuned): \d+/\d+ prompts, .*")


def test_lora_finetune_and_evaluate_leave_bitsandbytes_alone_and_stderr_quiet(tiny_model_dir, finsent_file, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT, encoding="utf-8")
    run = subprocess.run([sys.executable, script, tiny_model_dir, finsent_file(24), finsent_file(3, "test"),
                          tmp_path / "out"], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "bitsandbytes after lora and evaluate: False" in run.stdout
    normal, _, quantized = run.stderr.partition("=== qlora ===")
    assert "gemm_4bit" not in normal and "kernels-community" not in normal
    unexpected = [line for line in re.split(r"[\r\n]+", normal) if line.strip() and not EXPECTED_STDERR.fullmatch(line)]
    assert unexpected == []  # no FutureWarning from peft, no library chatter
    assert "r1tune finetune: qlora on" in run.stdout and run.stdout.rstrip().endswith("bitsandbytes after qlora: True")
    assert "/qlora/final\n" in run.stdout
