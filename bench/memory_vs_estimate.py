"""Estimated vs measured peak training memory, per method, on the tiny and small test models.

    .venv/bin/python bench/memory_vs_estimate.py [--sizes tiny small] [--methods lora qlora …] [--json OUT]

Each measurement is a fresh `r1tune finetune` process (3 steps, micro-batch B, every sample cut to L tokens);
measured = the run's own `training.peak_memory_bytes` (peak RSS above the process before the model was
loaded, on CPU). The estimate is `r1tune.train.memory.estimate_memory` at the run's measured answer share, base
dtype (bf16 for the LoRA family on CPUs with native bf16) and micro-batch token cap.
"""

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig

from r1tune.config import MethodConfig
from r1tune.model.methods import PEFT_METHODS
from r1tune.train.memory import estimate_memory, micro_batch_token_cap

SETTINGS = {"tiny": (8, 256), "small": (2, 256)}


def long_samples(path: Path, n: int = 48) -> Path:
    rng = random.Random(0)
    words = "营收 增长 利润 下降 风险 the revenue grew margin fell guidance raised 股东 会议 报告 quarter".split()
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            f.write(json.dumps({"instruction": " ".join(rng.choices(words, k=60)),
                                "output": " ".join(rng.choices(words, k=200))}, ensure_ascii=False) + "\n")
    return path


def measure(model: Path, method: str, batch: int, length: int, data: Path, work: Path, pinned: bool = False) -> dict:
    out = work / f"run-{model.name}-{method}{'-pinned' if pinned else ''}"
    cmd = [sys.executable, "-m", "r1tune.cli", "finetune", "--model", str(model), "--data", str(data), "--out",
           str(out), "--max-steps", "3", "--batch-size", str(batch), "--max-length", str(length), "--method", method,
           "--set", "train.threads=2", "--set", "data.val_split=0", "--set", "train.save_every=1000",
           "--set", f"train.return_freed_memory={str(pinned).lower()}"]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode:
        raise RuntimeError(run.stderr[-2000:])
    return json.loads((out / "final" / "provenance.json").read_text())["training"]


def compare(model: Path, method: str, batch: int, length: int, data: Path, work: Path, pinned: bool = False) -> dict:
    """`pinned`: both sides with train.return_freed_memory (glibc's mmap threshold pinned), where resident memory
    follows tensor memory; without it (the default) glibc keeps freed activations, an amount that varies with
    how the allocator's arenas meet the CPU load of the moment."""
    measured = measure(model, method, batch, length, data, work, pinned)
    est = estimate_memory(AutoConfig.from_pretrained(model), MethodConfig(name=method), batch, length,
                          getattr(torch, measured["base_dtype"]), target_fraction=measured["target_fraction"],
                          max_micro_batch_tokens=micro_batch_token_cap(None), freed_memory_returned=pinned)
    return {"model": model.name, "method": method, "batch": batch, "length": length, "estimate_bytes": est.total,
            "measured_bytes": measured["peak_memory_bytes"], "dtype": measured["base_dtype"],
            "ratio": est.total / measured["peak_memory_bytes"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["tiny", "small"])
    ap.add_argument("--methods", nargs="+", default=[*PEFT_METHODS, "full", "freeze"])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--pinned", action="store_true", help="measure with train.return_freed_memory (64 KiB mmap pin)")
    args = ap.parse_args()
    from r1tune.model.tiny import make_tiny_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = long_samples(work / "long.jsonl")
        for size in args.sizes:
            model = work / size
            make_tiny_model(model, size=size)
            batch, length = SETTINGS[size]
            for method in args.methods:
                row = compare(model, method, batch, length, data, work, args.pinned)
                rows.append(row)
                print(f"{size:6s} {method:8s} {row['dtype']:8s} estimate {row['estimate_bytes'] / 2**20:8.1f} MiB"
                      f"  measured {row['measured_bytes'] / 2**20:8.1f} MiB  ratio {row['ratio']:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
