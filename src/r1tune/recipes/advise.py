"""`r1tune advise`: the guide's choice matrix turned into code — which method, rank, learning rate, batch.

    r1tune advise --model deepseek-ai/DeepSeek-R1-Distill-Qwen-7B --data train.jsonl --memory 24GiB
    r1tune advise --model M --data D --method lora --batch-size 4 --max-length 2048 --json   # one setting

The ranking itself is `train/advice.py` (`recommend`, shared with `r1tune search`; its docstring lists the
inputs weighed); this flow times the settings and renders them, each with the reason it moved the recommendation.
Time comes from the throughput of a few real steps when the model fits this machine, else from FLOPs; while
the steps run, stderr shows which one (a spinner on a terminal, a line per step elsewhere).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from io import StringIO
from pathlib import Path

from rich.console import Console
from rich.table import Table

from r1tune.train.advice import Advice, DataProfile, Setting, recommend
from r1tune.train.memory import GIB

MEASURED_STEPS = 3  # real training steps timed per recommendation when the model fits this machine


def advise(model: str, data: str, memory: str | None = None, gpus: int = 1, keep_general_ability: bool = False,
           method: str | None = None, batch_size: int | None = None, max_length: int | None = None,
           measure: bool = True, as_json: bool = False) -> str:
    advice = recommend(model, data, memory, gpus, keep_general_ability, method, batch_size, max_length)
    for s in advice.settings:
        s.hours_per_epoch, s.time_basis = estimate_time(s, model, data, advice.profile, advice.n_params, gpus,
                                                        measure and advice.fits_here)
        if not measure:
            break
    report = advice_report(advice)
    return json.dumps(report, indent=1, ensure_ascii=False) + "\n" if as_json else render_report(report)


def advice_report(advice: Advice) -> dict:
    return {"model": advice.model, "data": advice.data, "device_memory_bytes": advice.budget, "gpus": advice.gpus,
            "domain_perplexity": advice.perplexity, "domain_distance": advice.distance,
            "data_profile": asdict(advice.profile), "reasons": advice.reasons,
            "recommendations": [asdict(s) for s in advice.settings]}


def estimate_time(s: Setting, model: str, data: str, prof: DataProfile, n_params: int, gpus: int,
                  measure: bool) -> tuple[float | None, str]:
    """Hours per epoch from the throughput of 3 real steps (when the model fits here), else from FLOPs."""
    if measure:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "r1tune.cli", "finetune", "--model", model, "--data", data, "--out", tmp,
                   "--method", s.method, "--batch-size", str(s.batch_size), "--max-length", str(s.max_length),
                   "--max-steps", str(MEASURED_STEPS), "--set", "data.val_split=0", "--set", "data.on_error=skip",
                   "--set", "train.save_every=1000", "--set", "train.log_every=1",
                   "--set", f"train.gradient_checkpointing={s.gradient_checkpointing}"]
            returncode = run_showing_steps(cmd, Path(tmp) / "metrics.jsonl",
                                           f"advise: measuring {s.method} (micro-batch {s.batch_size}, "
                                           f"max_length {s.max_length})")
            prov = Path(tmp) / "final" / "provenance.json"
            if returncode == 0 and prov.exists():
                tps = json.loads(prov.read_text())["training"]["tokens_per_s"]
                return prof.tokens_per_epoch / (tps * gpus) / 3600, f"measured {tps:,.0f} tokens/s over 3 steps here"
    # 6 FLOPs per parameter per token (forward + backward), at 40% of an A100's 312 bf16 TFLOP/s
    flops = 6 * n_params * prof.tokens_per_epoch
    return flops / (0.4 * 312e12 * gpus) / 3600, "FLOPs estimate at 40% MFU of A100-class GPUs"


def run_showing_steps(cmd: list[str], metrics: Path, label: str, poll_s: float = 0.5) -> int:
    """Run a `finetune --max-steps N` child, showing on stderr which step it is on (read from the train lines of
    its metrics.jsonl) and the time elapsed: a spinner on a terminal, else a line as each step finishes. Its own
    output goes to a temporary file (not a pipe nobody reads, which would stall it). Returns its exit code."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    start, shown = time.perf_counter(), 0
    terminal = sys.stderr.isatty()
    if not terminal:
        console.print(f"{label}: loading the model, then {MEASURED_STEPS} steps")
    status = console.status(f"{label}: loading the model") if terminal else None
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        if status:
            status.start()
        try:
            while True:
                finished = child.poll() is not None
                done = _train_steps_logged(metrics)
                elapsed = _clock(time.perf_counter() - start)
                if status:
                    step = ("loading the model" if not done else "finishing" if done >= MEASURED_STEPS
                            else f"step {done + 1}/{MEASURED_STEPS}")
                    status.update(f"{label}: {step} ({elapsed})")
                for k in range(shown + 1, done + 1) if not terminal else ():
                    console.print(f"  step {k}/{MEASURED_STEPS} done ({elapsed})")
                shown = done
                if finished:
                    break
                time.sleep(poll_s)
        finally:
            if status:
                status.stop()
            if child.poll() is None:  # interrupted: do not leave a training process behind
                child.kill()
                child.wait()
    if child.returncode:
        console.print(f"  the measurement failed (exit {child.returncode}): time falls back to a FLOPs estimate")
    return child.returncode


def _train_steps_logged(metrics: Path) -> int:
    try:
        return metrics.read_text(encoding="utf-8").count('"split": "train"')
    except OSError:
        return 0


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def render_report(report: dict) -> str:
    buf = StringIO()
    console = Console(file=buf, width=140, color_system=None)
    for line in report["reasons"]:
        console.print(f"• {line}")
    table = Table(title=f"recommendations for {report['model']} ({report['device_memory_bytes'] / GIB:.1f} GiB "
                        f"× {report['gpus']} device(s))")
    for col in ("#", "method", "rank", "lr", "micro-batch × accum", "ckpt", "memory", "h/epoch", "why"):
        table.add_column(col)
    for i, s in enumerate(report["recommendations"], 1):
        table.add_row(str(i), s["method"], str(s["lora_r"] or "-"), f"{s['lr']:.0e}",
                      f"{s['batch_size']} × {s['grad_accum']}", "yes" if s["gradient_checkpointing"] else "no",
                      f"{s['memory_bytes'] / GIB:.2f} GiB" + ("" if s["fits"] else " (too big)"),
                      "-" if s["hours_per_epoch"] is None else f"{s['hours_per_epoch']:.2f}", "; ".join(s["reasons"]))
    console.print(table)
    return buf.getvalue()
