"""`r1tune advise`: the guide's choice matrix turned into code — which method, rank, learning rate, batch.

    r1tune advise --model deepseek-ai/DeepSeek-R1-Distill-Qwen-7B --data train.jsonl --memory 24GiB
    r1tune advise --model M --data D --method lora --batch-size 4 --max-length 2048 --json   # one setting

Inputs it weighs, each reported with the reason it moved the recommendation:
- data size: under 10k samples → light methods (prompt/prefix, low-rank LoRA); 10k–100k → LoRA/DoRA;
  over 100k → full or freeze fine-tuning when memory allows (the guide's matrix);
- how far the domain is from the base model: base-model perplexity on a sample of the answers;
- whether general ability must be kept: lighter methods, lower learning rates;
- memory per device and the number of devices: every candidate's peak memory is estimated
  (`train/memory.py`) and its micro-batch is the largest that fits; the rest of the global batch comes
  from gradient accumulation (and gradient checkpointing when even one sample does not fit).
Time comes from the throughput of a few real steps when the model fits this machine, else from FLOPs; while
the steps run, stderr shows which one (a spinner on a terminal, a line per step elsewhere).
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from rich.console import Console

from r1tune.config import MethodConfig, ModelConfig
from r1tune.data.formats import load_samples
from r1tune.model.load import load_model, load_tokenizer
from r1tune.model.methods import bf16_base_on_cpu
from r1tune.model.template import render_training, tokenize_training
from r1tune.train.data import collate
from r1tune.train.loss import target_loss
from r1tune.train.memory import (
    GIB,
    MICRO_BATCHES,
    available_memory,
    estimate_memory,
    micro_batch_token_cap,
    parse_memory,
)

GLOBAL_BATCH = 32  # samples per optimizer step the guide recommends (32–128)
MEASURED_STEPS = 3  # real training steps timed per recommendation when the model fits this machine
LEARNING_RATES = {"full": 1e-5, "freeze": 5e-5, "lora": 2e-4, "dora": 2e-4, "qlora": 2e-4, "ia3": 3e-3,
                  "prefix": 1e-2, "prompt": 3e-2, "ptuning": 1e-3}


@dataclass
class DataProfile:
    samples: int
    p50_tokens: int
    p95_tokens: int
    max_tokens: int
    target_fraction: float
    tokens_per_epoch: int


@dataclass
class Setting:
    method: str
    lora_r: int | None
    lr: float
    batch_size: int
    grad_accum: int
    max_length: int
    gradient_checkpointing: bool
    memory_bytes: int
    memory_breakdown: dict
    fits: bool
    hours_per_epoch: float | None = None
    time_basis: str = ""
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)


def profile_data(data: str, tokenizer, max_length: int, limit: int = 2000) -> DataProfile:
    samples, _ = load_samples(data, on_error="skip")
    lengths, fractions = [], []
    for s in samples[:limit]:
        tok = tokenize_training(tokenizer, render_training(tokenizer, s.messages, s.reasoning), 10**9, s.source)
        lengths.append(len(tok.input_ids))
        fractions.append(tok.n_targets / len(tok.input_ids))
    lengths.sort()
    clipped = [min(n, max_length) for n in lengths]
    return DataProfile(samples=len(samples), p50_tokens=lengths[len(lengths) // 2],
                       p95_tokens=lengths[int(len(lengths) * 0.95) - 1 if len(lengths) > 1 else 0],
                       max_tokens=lengths[-1], target_fraction=statistics.mean(fractions),
                       tokens_per_epoch=int(statistics.mean(clipped) * len(samples)))


def domain_perplexity(model_path: str, tokenizer, data: str, n: int = 32) -> float:
    """Perplexity of the base model on the answers of `n` samples: how new the domain is to it."""
    model = load_model(ModelConfig(name_or_path=model_path, dtype="float32")).eval()
    samples, _ = load_samples(data, on_error="skip")
    # a long prompt is cut from the left (not skipped, not an error): the answer is what is measured
    toks = [tokenize_training(tokenizer, render_training(tokenizer, s.messages, s.reasoning), 1024, s.source,
                              truncate="left") for s in samples[:n]]
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(toks), 8):
            loss, k, _ = target_loss(model, **collate(toks[i:i + 8], tokenizer.pad_token_id))
            total, count = total + float(loss), count + k
    return math.exp(total / max(1, count))


def candidates(n_samples: int, distance: str, keep_general: bool) -> list[tuple[str, int | None, float, str]]:
    """(method, LoRA rank, prior score, why) from the guide's matrix; higher score ranks first."""
    if n_samples < 10_000:
        out = [("lora", 8, 3.0, f"{n_samples:,} samples (< 10k): low-rank LoRA learns the task, little over-fitting"),
               ("prompt", None, 2.0, "under 10k samples: prompt tuning keeps every base weight (general ability)"),
               ("prefix", None, 1.5, "under 10k samples: prefix tuning, a light adapter, the base untouched"),
               ("dora", 8, 2.2, "DoRA: LoRA's cost, often a little better at low rank")]
    elif n_samples <= 100_000:
        out = [("lora", 16, 3.0, f"{n_samples:,} samples (10k–100k): LoRA is the guide's choice"),
               ("dora", 16, 2.6, "DoRA: LoRA's memory with magnitude/direction split, usually a small gain"),
               ("freeze", None, 1.8, "freeze: train the top layers only, a middle road to full fine-tuning")]
    else:
        out = [("full", None, 3.0, f"{n_samples:,} samples (> 100k): enough data for full fine-tuning"),
               ("freeze", None, 2.5, "freeze the lower half: most of full's gain at about half its memory"),
               ("lora", 64, 2.2, "high-rank LoRA when full fine-tuning does not fit")]
    adjusted = []
    for method, rank, score, why in out:
        if keep_general:
            # the guide's matrix: prefix tuning is the choice when the original ability must be kept
            bonus = {"prefix": 2.2, "prompt": 1.5, "lora": 0.3, "dora": 0.3, "full": -1.5, "freeze": -0.5}
            score += bonus.get(method, 0)
        if distance == "far":
            score += {"full": 0.8, "freeze": 0.5, "prompt": -1.5, "prefix": -1.0}.get(method, 0)
            rank = rank * 2 if rank else rank
        elif distance == "close":
            score += {"prompt": 0.6, "prefix": 0.4, "full": -0.5}.get(method, 0)
        adjusted.append((method, rank, score, why))
    return adjusted


def fit_batch(model_config, method: MethodConfig, max_length: int, target_fraction: float, budget: int,
              gpus: int, sharded: bool, dtype: torch.dtype):
    """Largest micro-batch (and whether checkpointing is needed) whose estimate fits `budget` per device."""
    for checkpointing in (False, True):
        for micro in MICRO_BATCHES:
            est = estimate_memory(model_config, method, micro, max_length, dtype, checkpointing, target_fraction,
                                  max_micro_batch_tokens=micro_batch_token_cap(None))
            need = est.total
            if sharded and gpus > 1:  # ZeRO-3 / FSDP shard weights, gradients and optimizer states
                need = (est.weights + est.gradients + est.optimizer) // gpus + est.activations
            if need <= budget:
                return micro, checkpointing, need, est
    return 1, True, need, est


def advise(model: str, data: str, memory: str | None = None, gpus: int = 1, keep_general_ability: bool = False,
           method: str | None = None, batch_size: int | None = None, max_length: int | None = None,
           measure: bool = True, as_json: bool = False) -> str:
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(model)
    tokenizer = load_tokenizer(ModelConfig(name_or_path=model))
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    budget = parse_memory(memory) if memory else available_memory()
    prof = profile_data(data, tokenizer, max_length or 4096)
    length = max_length or min(4096, max(64, 2 ** math.ceil(math.log2(max(prof.p95_tokens, 2)))))
    reasons_global = [f"data: {prof.samples:,} samples, p50 {prof.p50_tokens} / p95 {prof.p95_tokens} tokens, "
                      f"{prof.target_fraction:.0%} of tokens are answer", f"max_length {length} covers p95"]

    n_params = sum(p.numel() for p in _meta_params(model_config))
    weights_bytes = n_params * (2 if dtype != torch.float32 else 4)
    distance, ppl = "unknown", None
    if weights_bytes < 0.4 * available_memory():
        ppl = domain_perplexity(model, tokenizer, data)
        distance = "close" if ppl < 20 else "moderate" if ppl < 200 else "far"
        reasons_global.append(f"base-model perplexity on the answers: {ppl:,.1f} → domain is {distance} "
                              "(close < 20 ≤ moderate < 200 ≤ far)")
    else:
        reasons_global.append("domain distance not measured: the base model is too large for this machine")

    if method:  # estimate exactly what was asked
        pool = [(method, None, 0.0, "the setting you asked for")]
    else:
        pool = candidates(prof.samples, distance, keep_general_ability)
    settings = []
    for name, rank, score, why in pool:
        mcfg = MethodConfig(name=name, **({"lora_r": rank, "lora_alpha": 2 * rank} if rank else {}))
        # the finetune recipe's own precision choice: a CPU with native bf16 keeps a LoRA-family base in bf16
        run_dtype = torch.bfloat16 if not cuda and bf16_base_on_cpu(name) else dtype
        if batch_size:
            est = estimate_memory(model_config, mcfg, batch_size, length, run_dtype, False, prof.target_fraction,
                                  max_micro_batch_tokens=micro_batch_token_cap(None))
            micro, ckpt, need = batch_size, False, est.total
        else:
            micro, ckpt, need, est = fit_batch(model_config, mcfg, length, prof.target_fraction, budget, gpus,
                                               name in ("full", "freeze"), run_dtype)
        fits = need <= budget
        accum = max(1, math.ceil(GLOBAL_BATCH / (micro * gpus)))
        reasons = [why]
        if ckpt:
            reasons.append("gradient checkpointing: even the smallest micro-batch does not fit without it")
        if not fits:
            score -= 10
            reasons.append(f"needs {need / GIB:.1f} GiB per device, more than the {budget / GIB:.1f} GiB available")
        lr = LEARNING_RATES[name] * (0.5 if keep_general_ability else 1.0)
        if keep_general_ability:
            reasons.append("learning rate halved to preserve general ability")
        settings.append(Setting(method=name, lora_r=rank if name in ("lora", "dora", "qlora") else None, lr=lr,
                                batch_size=micro, grad_accum=accum, max_length=length, gradient_checkpointing=ckpt,
                                memory_bytes=int(need), memory_breakdown=est.as_dict(), fits=fits, score=score,
                                reasons=reasons))
    if not method and not any(s.fits for s in settings):
        mcfg = MethodConfig(name="qlora", lora_r=16, lora_alpha=32)
        micro, ckpt, need, est = fit_batch(model_config, mcfg, length, prof.target_fraction, budget, gpus, False, dtype)
        settings.append(Setting(method="qlora", lora_r=16, lr=LEARNING_RATES["qlora"], batch_size=micro,
                                grad_accum=max(1, math.ceil(GLOBAL_BATCH / (micro * gpus))), max_length=length,
                                gradient_checkpointing=ckpt, memory_bytes=int(need), memory_breakdown=est.as_dict(),
                                fits=need <= budget, score=1.0,
                                reasons=["nothing else fits: QLoRA keeps the base in 4 bit (NF4)"]))
    settings.sort(key=lambda s: -s.score)
    for s in settings:
        s.hours_per_epoch, s.time_basis = estimate_time(s, model, data, prof, n_params, gpus,
                                                        measure and weights_bytes < 0.4 * available_memory())
        if not measure:
            break
    report = {"model": model, "data": data, "device_memory_bytes": budget, "gpus": gpus,
              "domain_perplexity": ppl, "domain_distance": distance, "data_profile": asdict(prof),
              "reasons": reasons_global, "recommendations": [asdict(s) for s in settings]}
    return json.dumps(report, indent=1, ensure_ascii=False) + "\n" if as_json else render_report(report)


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


def _meta_params(model_config):
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return list(AutoModelForCausalLM.from_config(model_config).parameters())


def render_report(report: dict) -> str:
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

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
