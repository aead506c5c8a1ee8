"""`make bench`: r1tune's LoRA finetune against the standard Hugging Face stack, same work, one session.

    .venv/bin/python bench/run.py                       # the defaults (2 rounds), what `make bench` runs
    .venv/bin/python bench/run.py --rounds 3 --steps 8 --variants trl_nopack trl_pack r1tune r1tune_bf16
    .venv/bin/python bench/run.py --quick               # 1 round, 3 steps, TRL packing vs r1tune: a smoke run

The peer is the reference harness in `../shared/bench/peer/` (next to this repository; the bench stops with a
message when it is missing). Its own scripts build, once, into `bench/out/peer/` (git-ignored): the Qwen2
"small" model with the real 151,936-row vocabulary and untied LM head, and the synthetic mixed-language data with
a long-tailed length distribution. Its environment `.venv-peer` (torch 2.13.0 CPU first, then TRL and friends at
versions verified together) is created on first use.

Every run is its own process, the order alternates per round (forward, then reversed), and each run's peak RSS
is the kernel's high-water mark of that one process (`os.wait4` rusage of the child; a `/proc/<pid>/status`
poller is the cross-check). Same for all variants:
  model, data (the peer's prompt_completion.jsonl; r1tune reads the same rows as `messages`), LoRA r 16, alpha 32,
  dropout 0, all linear projections, AdamW lr 2e-4, weight decay 0.01, warmup ceil(10% of steps) then cosine,
  max length 1024, seed 42, 2 torch threads, `--steps` optimizer steps of `--batch` samples (TRL packing: rows of
  up to 1024 tokens, `--pack-batch` rows a step, which is about the same real tokens per step).

Variants: trl_nopack, trl_pack, hf_trainer (the peer's bench_trl.py; `_bf16` suffix = its --bf16 autocast);
r1tune = the recipe's defaults (on a CPU with native bf16: frozen base stored in bf16 + bf16 autocast, adapters and
AdamW fp32; fused frozen-head loss; micro-batches run in pieces of at most 2,048 padded tokens), r1tune_fp32 (the
same in fp32: `model.dtype=float32`, `train.mixed_precision=no`), r1tune_bf16 (fp32 weights under bf16 autocast),
r1tune_fp32_nocap (fp32 and `train.max_micro_batch_tokens=0`: what the token cap buys in memory).

Metrics, computed the same way for every variant:
  real tokens/s   non-padding tokens of steps 2..N / time of steps 2..N (step 1 carries one-off warm-up). The peer
                  measures it in-process; for r1tune the per-step real tokens come from replaying the recipe's own
                  batch stream (checked against the target-token counts in its metrics.jsonl) and the per-step
                  time from metrics.jsonl (tokens_per_s = real tokens / step time).
  padding share   1 - real / (rows x padded width) over steps 2..N.
  peak RSS        whole process, as above.
  loss@T          token-weighted mean of the per-step training losses over the first T real tokens, T the least
                  any variant of the round trained on (the same tokens budget for all); dLoss = against TRL
                  without packing in the same round. A faster stack that did less work would show up here.
  MFU             the peer's model-FLOPs formula (bench_trl.py: 4 x frozen matmul weights + 6 x LoRA weights per real
                  token, plus causal attention) over the measured matmul peak of the run's dtype: the best trial of
                  the peer's peak_flops.py over this session's rounds (fp32 for fp32 runs, bf16 for bf16 runs).

Writes bench/out/run_<time>/results.json (every run with its per-step arrays) and summary.md, and prints the
tables. The data-preparation bench (bench/bench_prepare.py) runs last (`--no-prepare` skips it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER = ROOT.parent / "shared" / "bench" / "peer"
OUT = ROOT / "bench" / "out"
PEER_VENV = ROOT / ".venv-peer"
# torch first and pinned (an unpinned torch pulls a multi-GB CUDA build); the rest verified together with it
PEER_TORCH = "torch==2.13.0"
PEER_PACKAGES = ["trl==1.16.0", "transformers==5.24.0", "peft==0.21.2", "datasets==5.2.0", "accelerate==1.15.0"]
PEER_VARIANTS = ("trl_nopack", "trl_pack", "hf_trainer")
# r1tune: the recipe's defaults (on a CPU with native bf16: frozen base in bf16 + autocast; fused frozen-head
# loss; micro-batches cut into pieces of at most 2,048 padded tokens). The others pin one setting for comparison.
R1_VARIANTS = ("r1tune", "r1tune_fp32", "r1tune_bf16", "r1tune_fp32_nocap")
ALL_VARIANTS = PEER_VARIANTS + tuple(v + "_bf16" for v in PEER_VARIANTS) + R1_VARIANTS
# hf_trainer is left out of the defaults: it peaks near 20 GB (logits of padded batches), which on a shared 24 GB
# machine starves everything else; name it in --variants to run it
DEFAULT_VARIANTS = ["trl_nopack", "trl_pack", "trl_pack_bf16", "r1tune_fp32", "r1tune"]
LABELS = {"trl_nopack": "TRL SFTTrainer + PEFT, no packing", "trl_pack": "TRL SFTTrainer + PEFT, packing",
          "hf_trainer": "transformers Trainer + PEFT", "r1tune": "r1tune finetune (lora)"}
ENV = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "PYTHONUNBUFFERED": "1"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load1() -> float:
    return os.getloadavg()[0]


# ------------------------------------------------------------------ setup: peer harness, environment, model, data

def check_peer() -> None:
    missing = [f for f in ("bench_trl.py", "make_model.py", "make_data.py", "peak_flops.py") if not (PEER / f).exists()]
    if missing:
        raise SystemExit(f"bench: the peer harness is missing: expected {PEER} (../shared/bench/peer relative to the "
                         f"repository) with {', '.join(missing)}. It ships in the workspace's shared folder; without "
                         "it there is nothing to compare against.")


def ensure_peer_env() -> Path:
    py = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".installed"
    want = " ".join([PEER_TORCH, *PEER_PACKAGES])
    if stamp.exists() and stamp.read_text().strip() == want and py.exists():
        return py
    log(f"creating {PEER_VENV.name} ({want}) — once, a minute or two")
    base = getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable
    steps = [[base, "-m", "venv", str(PEER_VENV)],
             [str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"],
             [str(py), "-m", "pip", "install", "-q", PEER_TORCH],
             [str(py), "-m", "pip", "install", "-q", PEER_TORCH, *PEER_PACKAGES]]
    for cmd in steps:
        if subprocess.run(cmd).returncode != 0:
            raise SystemExit(f"bench: creating {PEER_VENV} failed at: {' '.join(cmd)}")
    check = subprocess.run([str(py), "-c", "import torch, trl, peft, transformers, datasets, accelerate; "
                            "assert torch.__version__.startswith('2.13.0'), torch.__version__"])
    if check.returncode != 0:
        raise SystemExit(f"bench: {PEER_VENV} does not import torch/trl/peft/transformers/datasets/accelerate")
    stamp.write_text(want + "\n")
    return py


def child_env() -> dict:
    env = dict(os.environ)
    env.update(ENV)
    env.pop("VIRTUAL_ENV", None)
    return env


def ensure_model_and_data(peer_py: Path) -> tuple[Path, Path, Path]:
    base = OUT / "peer"
    model, data = base / "models" / "small", base / "data"
    if not (model / "model.safetensors").exists():
        log("building the peer's small model (make_model.py --size small), once")
        run_checked([str(peer_py), str(PEER / "make_model.py"), "--size", "small", "--out", str(model)])
    if not (data / "prompt_completion.jsonl").exists():
        log("building the peer's data (make_data.py --n 2000 --seed 0), once")
        run_checked([str(peer_py), str(PEER / "make_data.py"), "--tokenizer", str(model), "--out", str(data),
                     "--n", "2000", "--seed", "0"])
    # r1tune reads the very rows the peer trains on, as OpenAI messages (prompt + completion)
    r1_data = base / "data_r1tune.jsonl"
    src = data / "prompt_completion.jsonl"
    if not r1_data.exists() or r1_data.stat().st_mtime < src.stat().st_mtime:
        with open(src, encoding="utf-8") as f, open(r1_data, "w", encoding="utf-8") as g:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    g.write(json.dumps({"messages": row["prompt"] + row["completion"]}, ensure_ascii=False) + "\n")
    return model, data, r1_data


def run_checked(cmd: list[str]) -> None:
    r = subprocess.run(cmd, env=child_env(), capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-3000:] + r.stderr[-3000:])
        raise SystemExit(f"bench: failed: {' '.join(cmd)}")


# ------------------------------------------------------------------ running one child, measuring its process

def status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run_measured(cmd: list[str], log_path: Path, watch: Path | None = None) -> dict:
    """Run cmd; return rc, wall, peak RSS of that process (wait4 rusage) and a /proc poll cross-check. With
    `watch`, also the time at which each line of that file (metrics.jsonl) appeared."""
    with open(log_path, "w") as logf:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=child_env(), cwd=str(ROOT))
        polled = {"hwm_kb": 0, "rss_kb": 0}
        lines_seen: list[float] = []
        cpu_seen: list[float | None] = []
        done = threading.Event()

        def poll():
            while not done.is_set():
                hwm = status_kb(p.pid, "VmHWM")
                rss = status_kb(p.pid, "VmRSS")
                if hwm:
                    polled["hwm_kb"] = max(polled["hwm_kb"], hwm)
                if rss:
                    polled["rss_kb"] = max(polled["rss_kb"], rss)
                if watch is not None and watch.exists():
                    try:
                        n = sum(1 for line in open(watch, encoding="utf-8") if line.strip())
                    except OSError:
                        n = len(lines_seen)
                    while len(lines_seen) < n:
                        lines_seen.append(time.perf_counter() - t0)
                        cpu_seen.append(proc_cpu_s(p.pid))
                done.wait(0.1)

        th = threading.Thread(target=poll, daemon=True)
        th.start()
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        done.set()
        th.join()
        p.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": p.returncode, "wall_s": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "polled_hwm_mb": round(polled["hwm_kb"] / 1024, 1), "polled_rss_mb": round(polled["rss_kb"] / 1024, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "line_times": lines_seen, "line_cpu": cpu_seen}


def proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) the process has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


# ------------------------------------------------------------------ FLOPs (the peer's formula)

def flop_terms(model_dir: Path, lora_r: int = 16) -> dict:
    """N_frozen_matmul (every frozen linear incl. the LM head), N_lora (r x (in + out) per adapted linear), as
    bench_trl.py's model_flop_terms counts them on the loaded model."""
    cfg = json.loads((model_dir / "config.json").read_text())
    d, inter, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or d // heads
    shapes = [(d, heads * hd), (d, kv * hd), (d, kv * hd), (heads * hd, d), (d, inter), (d, inter), (inter, d)]
    frozen = layers * sum(i * o for i, o in shapes) + cfg["vocab_size"] * d
    lora = layers * sum(lora_r * (i + o) for i, o in shapes)
    return {"n_frozen_matmul": frozen, "n_lora": lora, "n_layers": layers, "d_model": heads * hd}


def flops_for_lens(lens: list[int], t: dict) -> float:
    per_tok = 4 * t["n_frozen_matmul"] + 6 * t["n_lora"]
    return float(sum(L * per_tok + 6 * t["n_layers"] * t["d_model"] * L * L for L in lens))


# ------------------------------------------------------------------ r1tune: replay the recipe's batches

def r1tune_batches(model_dir: Path, data_path: Path, steps: int, batch: int, max_length: int, seed: int) -> list[dict]:
    """The recipe's own global batches for steps 1..steps (grad_accum 1, one process): real tokens, padded tokens,
    target tokens and sequence lengths per step."""
    cache = OUT / "peer" / f"r1tune_batches_{steps}_{batch}_{max_length}_{seed}.json"
    # the data file and the code that turns it into batches: a recipe change must not replay a stale plan
    code = hashlib.sha256(b"".join((ROOT / "src" / "r1tune" / f).read_bytes() for f in
                                   ("train/data.py", "model/template.py", "model/encode.py", "data/formats.py")))
    key = f"{data_path.stat().st_mtime_ns}:{data_path.stat().st_size}:{code.hexdigest()[:16]}"
    if cache.exists():
        got = json.loads(cache.read_text())
        if got.get("key") == key:
            return got["steps"]
    from r1tune.config import DataConfig, ModelConfig
    from r1tune.model.load import load_tokenizer
    from r1tune.model.template import resolve_template
    from r1tune.train.data import BatchStream, load_training_data

    tok = load_tokenizer(ModelConfig(name_or_path=str(model_dir)))
    data = load_training_data(DataConfig(train=str(data_path), val_split=0.0, max_length=max_length,
                                         reasoning="keep"),  # as run_r1tune sets it
                              tok, resolve_template(tok), seed)
    stream = BatchStream(data.train, batch, seed)
    out = []
    for k in range(steps):
        b = stream.batch(k)
        lens = [len(s.input_ids) for s in b]
        out.append({"real": sum(lens), "total": len(b) * max(lens), "loss_tok": sum(s.n_targets for s in b),
                    "lens": lens})
    cache.write_text(json.dumps({"key": key, "steps": out}))
    return out


# ------------------------------------------------------------------ same objective on the same samples

def loss_parity(model_dir: Path, data: Path, n: int = 16, max_length: int = 1024) -> dict:
    """The training runs see different samples per step (TRL shuffles, r1tune groups by length, packing packs), so
    their loss curves differ by data order. This checks the objective itself: the initial model's mean loss per
    loss token on the same `n` samples, tokenized and masked the peer's way (bench_trl.tokenize_like_trl, the
    transformers model's own shifted loss) and r1tune's way (R1 training rendering, chunked target-only loss)."""
    import torch

    sys.path.insert(0, str(PEER))
    from bench_trl import tokenize_like_trl  # stdlib-only at import

    from r1tune.config import ModelConfig
    from r1tune.data.formats import ChatSample
    from r1tune.model.load import load_model, load_tokenizer
    from r1tune.model.template import render_training, resolve_template, tokenize_training
    from r1tune.train.loss import target_loss

    rows = [json.loads(x) for x in (data / "prompt_completion.jsonl").read_text(encoding="utf-8").splitlines()[:n]]
    tok = load_tokenizer(ModelConfig(name_or_path=str(model_dir)))
    template = resolve_template(tok)
    model = load_model(ModelConfig(name_or_path=str(model_dir), dtype="float32")).eval()
    peer_sum = peer_n = r1_sum = r1_n = peer_real = r1_real = 0.0
    with torch.no_grad():
        for row in rows:
            t = tokenize_like_trl(tok, row["prompt"], row["completion"], max_length)
            ids, labels = torch.tensor([t["input_ids"]]), torch.tensor([t["labels"]])
            k = int((labels[:, 1:] != -100).sum())
            peer_sum += float(model(input_ids=ids, labels=labels).loss) * k
            peer_n, peer_real = peer_n + k, peer_real + ids.numel()
            s = ChatSample(messages=row["prompt"] + row["completion"])
            ts = tokenize_training(tok, render_training(tok, s.messages, None, "keep", template), max_length)
            ids = torch.tensor([ts.input_ids])
            loss, k, _ = target_loss(model, ids, torch.ones_like(ids), torch.tensor([ts.labels]))
            r1_sum, r1_n, r1_real = r1_sum + float(loss), r1_n + k, r1_real + ids.numel()
    return {"samples": n, "peer_loss": peer_sum / peer_n, "r1tune_loss": r1_sum / r1_n,
            "diff": r1_sum / r1_n - peer_sum / peer_n, "peer_loss_tokens": int(peer_n), "r1tune_loss_tokens": int(r1_n),
            "peer_real_tokens": int(peer_real), "r1tune_real_tokens": int(r1_real)}


# ------------------------------------------------------------------ one run of a variant

def run_peer(peer_py: Path, variant: str, rnd: int, args, model: Path, data: Path, run_dir: Path) -> dict:
    base, bf16 = (variant[:-5], True) if variant.endswith("_bf16") else (variant, False)
    out = run_dir / "peer.jsonl"
    cmd = [str(peer_py), str(PEER / "bench_trl.py"), "--variant", base, "--model", str(model), "--data", str(data),
           "--steps", str(args.steps), "--batch", str(args.batch), "--pack-batch", str(args.pack_batch),
           "--max-length", str(args.max_length), "--round", str(rnd), "--out", str(out),
           "--workdir", str(run_dir / "work"), "--threads", "2", "--seed", "42"] + (["--bf16"] if bf16 else [])
    m = run_measured(cmd, run_dir / f"log_{variant}_r{rnd}.txt")
    rec = None
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            if r.get("variant") == base and str(r.get("round")) == str(rnd) and \
                    r.get("compute_dtype", "float32") == ("bfloat16" if bf16 else "float32"):
                rec = r
    res = {"variant": variant, "round": rnd, "rc": m["rc"], "wall_s": m["wall_s"], "peak_rss_mb": m["peak_rss_mb"],
           "polled_hwm_mb": m["polled_hwm_mb"], "cpu_s": m["cpu_s"],
           "compute_dtype": "bfloat16" if bf16 else "float32"}
    if rec is None or "real_tok_per_s" not in rec:
        res["error"] = (rec or {}).get("errors") or f"no result, see {run_dir / f'log_{variant}_r{rnd}.txt'}"
        return res
    ss_time = rec["sec_per_step_ss"] * (rec["steps_done"] - 1)
    real = rec["step_real"]
    res.update({
        "real_tok_per_s": rec["real_tok_per_s"], "total_tok_per_s": rec["total_tok_per_s"],
        "loss_tok_per_s": rec["loss_tok_per_s"], "padding_frac": rec["padding_frac"],
        "sec_per_step_ss": rec["sec_per_step_ss"], "steps": rec["steps_done"],
        "real_per_step": round(statistics.mean(real), 1),
        "loss_tok_per_step": round(rec["loss_tok_per_s"] * ss_time / (rec["steps_done"] - 1), 1),
        "max_total_per_step": max(rec["step_total"]), "step_real": real, "step_total": rec["step_total"],
        "losses": rec["losses"], "model_gflops_per_s": rec["model_gflops_per_s"],
        "inproc_peak_rss_mb": rec["peak_rss_mb"], "cpu_util": rec.get("cpu_util"),
        "versions": rec.get("versions"),
        # issue 20: the whole process as the user waits for it (exec to exit), all steps' real tokens
        "real_tok_per_s_whole": round(sum(real) / m["wall_s"], 2),
    })
    return res


def run_r1tune(variant: str, rnd: int, args, model: Path, data: Path, run_dir: Path, plan: list[dict],
               terms: dict) -> dict:
    out = run_dir / f"{variant}_r{rnd}"
    shutil.rmtree(out, ignore_errors=True)
    warmup = max(1, math.ceil(0.1 * args.steps))  # transformers: warmup_steps=0.1 → ceil(10% of the steps)
    sets = {"method.lora_r": 16, "method.lora_alpha": 32, "method.lora_dropout": 0.0,
            "method.target_modules": "all-linear", "train.weight_decay": 0.01, "train.warmup_steps": warmup,
            "train.threads": 2, "data.val_split": 0.0, "train.save_every": 10**6, "train.max_grad_norm": 1.0,
            "train.grad_accum": 1, "data.reasoning": "keep"}
    if variant != "r1tune":
        sets["model.dtype"] = "float32"
        sets["train.mixed_precision"] = "bf16" if variant == "r1tune_bf16" else "no"
    if variant == "r1tune_fp32_nocap":
        sets["train.max_micro_batch_tokens"] = 0
    cmd = [str(ROOT / ".venv" / "bin" / "r1tune"), "finetune", "--model", str(model), "--data", str(data), "--out",
           str(out), "--method", "lora", "--max-steps", str(args.steps), "--batch-size", str(args.batch),
           "--max-length", str(args.max_length), "--seed", "42", "--lr", "2e-4"]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    m = run_measured(cmd, run_dir / f"log_{variant}_r{rnd}.txt", watch=out / "metrics.jsonl")
    final = out / "final" / "provenance.json"
    precision = json.loads(final.read_text())["training"]["mixed_precision"] if final.exists() else "no"
    dtype = "bfloat16" if precision == "bf16" else "float32"
    res = {"variant": variant, "round": rnd, "rc": m["rc"], "wall_s": m["wall_s"], "peak_rss_mb": m["peak_rss_mb"],
           "polled_hwm_mb": m["polled_hwm_mb"], "cpu_s": m["cpu_s"], "compute_dtype": dtype}
    metrics = out / "metrics.jsonl"
    rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()] if metrics.exists() else []
    rows = [r for r in rows if r.get("split") == "train"]
    if m["rc"] != 0 or len(rows) < 2:
        res["error"] = f"rc={m['rc']}, {len(rows)} steps logged; see {run_dir / f'log_{variant}_r{rnd}.txt'}"
        return res
    n = len(rows)
    steps = plan[:n]
    mismatch = [i + 1 for i, (r, s) in enumerate(zip(rows, steps)) if r["target_tokens"] != s["loss_tok"]]
    if mismatch:
        res["error"] = (f"replayed batches disagree with metrics.jsonl target_tokens at steps {mismatch[:5]}: the "
                        "recipe's batching changed; update r1tune_batches() in bench/run.py")
        return res
    dts = [s["real"] / r["tokens_per_s"] for r, s in zip(rows, steps)]
    ss, ss_dt = steps[1:], sum(dts[1:])
    tot = lambda rs, k: sum(r[k] for r in rs)  # noqa: E731
    prov = json.loads((out / "final" / "provenance.json").read_text())
    lt = m["line_times"]
    wall_ss = (lt[n - 1] - lt[0]) if len(lt) >= n else None  # metrics lines 1..n appeared: wall clock cross-check
    lc = m["line_cpu"]
    cpu_ss = (lc[n - 1] - lc[0]) if len(lc) >= n and lc[0] is not None and lc[n - 1] is not None else None
    flops = sum(flops_for_lens(s["lens"], terms) for s in ss)
    res.update({
        "real_tok_per_s": round(tot(ss, "real") / ss_dt, 2), "total_tok_per_s": round(tot(ss, "total") / ss_dt, 2),
        "loss_tok_per_s": round(tot(ss, "loss_tok") / ss_dt, 2),
        "real_tok_per_s_wallclock": round(tot(ss, "real") / wall_ss, 2) if wall_ss else None,
        "padding_frac": round(1 - tot(ss, "real") / tot(ss, "total"), 4),
        "sec_per_step_ss": round(ss_dt / (n - 1), 3), "steps": n,
        "real_per_step": round(statistics.mean(s["real"] for s in steps), 1),
        "loss_tok_per_step": round(statistics.mean(s["loss_tok"] for s in ss), 1),
        "max_total_per_step": max(s["total"] for s in steps),
        "step_real": [s["real"] for s in steps], "step_total": [s["total"] for s in steps],
        "losses": [round(r["loss"], 4) for r in rows], "model_gflops_per_s": round(flops / ss_dt / 1e9, 2),
        "train_peak_memory_mb": round(prov["training"]["peak_memory_bytes"] / 2**20, 1),
        "real_tok_per_s_whole": round(sum(s["real"] for s in steps) / m["wall_s"], 2),  # issue 20, as the peer's
        # CPU share the training steps got (2 threads = 1.0): steps 2..N, from /proc/<pid>/stat as lines appeared
        "cpu_util": round(cpu_ss / wall_ss / 2, 3) if cpu_ss and wall_ss else round(m["cpu_s"] / m["wall_s"] / 2, 3),
    })
    return res


# ------------------------------------------------------------------ summary

def loss_at(res: dict, budget: float) -> float | None:
    """Token-weighted mean of the per-step losses over the first `budget` real tokens."""
    if "losses" not in res:
        return None
    acc = w = 0.0
    for loss, real in zip(res["losses"], res["step_real"]):
        take = min(real, budget - w)
        if take <= 0:
            break
        acc, w = acc + loss * take, w + take
    return acc / w if w else None


def _ratio(a: dict, b: dict | None, key: str) -> float | None:
    return a[key] / b[key] if b and a.get(key) and b.get(key) else None


def fmt(x, nd=1, pct=False):
    if x is None:
        return "n/a"
    return f"{100 * x:.{nd}f}%" if pct else f"{x:.{nd}f}"


def summarise(results: list[dict], peaks: list[dict], variants: list[str]) -> tuple[str, dict]:
    peak, peak_cpu = {}, {}  # best trial, and the best trial per CPU share (the machine is shared)
    for pk in peaks:
        for dt, v in pk.get("peak_gflops", {}).items():
            peak[dt] = max(peak.get(dt, 0.0), v["gflops"])
            for sq in pk.get("square", []):
                if sq["dtype"] == dt and sq.get("cpu_util_at_max"):
                    peak_cpu[dt] = max(peak_cpu.get(dt, 0.0), sq["gflops_max"] / min(1.0, sq["cpu_util_at_max"]))
    lines = ["Measured matmul peak (peer's peak_flops.py, best trial over the rounds, 2 threads): "
             + ", ".join(f"{dt} {g:.1f} GFLOP/s" for dt, g in peak.items())
             + "; per full CPU share (trial GFLOP/s ÷ the CPU share it got): "
             + ", ".join(f"{dt} {g:.1f}" for dt, g in peak_cpu.items()), ""]
    rounds = sorted({r["round"] for r in results})
    for r in results:
        if "model_gflops_per_s" in r and r["compute_dtype"] in peak:
            r["mfu"] = r["model_gflops_per_s"] / peak[r["compute_dtype"]]
            r["mfu_fp32_peak"] = r["model_gflops_per_s"] / peak["float32"] if "float32" in peak else None
        if "model_gflops_per_s" in r and r.get("cpu_util") and r["compute_dtype"] in peak_cpu:
            # both sides per full CPU share: robust to other processes on the machine
            r["mfu_cpu_norm"] = r["model_gflops_per_s"] / min(1.0, r["cpu_util"]) / peak_cpu[r["compute_dtype"]]
            r["real_tok_per_cpu_s"] = r["real_tok_per_s"] / min(1.0, r["cpu_util"]) / 2
    hdr = ("| round | variant | dtype | real tok/s | whole-process real tok/s | padding | real / loss tok per step | "
           "max padded tok/step | "
           "peak RSS | loss@T | ΔL vs TRL-nopack | MFU (own dtype peak) | MFU (fp32 peak) | CPU share | "
           "MFU per CPU share | wall |")
    lines += [hdr, "|" + "---|" * (hdr.count("|") - 1)]
    summary = {"peak_gflops": peak, "rounds": {}}
    for rd in rounds:
        rs = [r for r in results if r["round"] == rd]
        ok = [r for r in rs if "losses" in r]
        budget = min(sum(r["step_real"]) for r in ok) if ok else 0
        ref = next((r for r in ok if r["variant"] == "trl_nopack"), None)
        ref_loss = loss_at(ref, budget) if ref else None
        for r in sorted(rs, key=lambda r: variants.index(r["variant"]) if r["variant"] in variants else 99):
            r["loss_at_T"], r["loss_T_tokens"] = loss_at(r, budget), budget
            known = r["loss_at_T"] is not None and ref_loss
            r["dloss_vs_trl_nopack"] = (r["loss_at_T"] - ref_loss) if known else None
            if "error" in r:
                lines.append(f"| {rd} | {r['variant']} | {r['compute_dtype']} | error: {str(r['error'])[:120]} |"
                             + " |" * 12)
                continue
            lines.append(
                f"| {rd} | {r['variant']} | {r['compute_dtype']} | {fmt(r['real_tok_per_s'])} | "
                f"{fmt(r.get('real_tok_per_s_whole'))} | {fmt(r['padding_frac'], 0, True)} | "
                f"{r['real_per_step']:.0f} / {r['loss_tok_per_step']:.0f} | "
                f"{r['max_total_per_step']} | {r['peak_rss_mb'] / 1024:.2f} GiB | {fmt(r['loss_at_T'], 4)} | "
                f"{fmt(r['dloss_vs_trl_nopack'], 4)} | {fmt(r.get('mfu'), 1, True)} | "
                f"{fmt(r.get('mfu_fp32_peak'), 1, True)} | {fmt(r.get('cpu_util'), 2)} | "
                f"{fmt(r.get('mfu_cpu_norm'), 1, True)} | {r['wall_s']:.0f} s |")
        summary["rounds"][rd] = {"loss_T_tokens": budget}
    lines += ["", "whole-process real tok/s: real tokens of all steps ÷ the process's wall time from exec to exit "
              "(imports, model load, tokenizing, warm-up, saving included; bench/whole_run.py times a whole short "
              "run). loss@T: mean training loss over the first T real tokens (T = least tokens any variant of the "
              "round trained on); ΔL = loss@T − TRL-nopack's loss@T in the same round. CPU share: CPU time of "
              "the training steps ÷ (wall × 2 threads) — below 1 when other processes took the cores; MFU per CPU "
              "share divides both the run and the matmul peak by the CPU share each got.", ""]
    # within-round ratios
    lines += ["Within-round ratios (same round, same dtype for the peers; targets: speed ≥ 2.0× TRL-nopack and "
              "≥ 1.3× the best peer; peak RSS ≤ 0.6× TRL-nopack and ≤ 1.0× TRL-packing):", ""]
    hdr2 = ("| round | r1tune variant | vs TRL-nopack (speed) | best peer (same dtype) | vs best peer (speed) | "
            "whole process: vs TRL-nopack / vs the best peer's whole process | "
            "per CPU share: vs TRL-nopack / vs best peer | RSS / TRL-nopack | RSS / TRL-packing | ΔL vs TRL-nopack |")
    lines += [hdr2, "|" + "---|" * (hdr2.count("|") - 1)]
    ratios = {}
    for rd in rounds:
        rs = {r["variant"]: r for r in results if r["round"] == rd and "real_tok_per_s" in r}
        for v, r in rs.items():
            if not v.startswith("r1tune"):
                continue
            sfx = "_bf16" if r["compute_dtype"] == "bfloat16" else ""
            nop = rs.get("trl_nopack" + sfx) or rs.get("trl_nopack")
            pk = rs.get("trl_pack" + sfx) or rs.get("trl_pack")
            others = [p for k, p in rs.items() if not k.startswith("r1tune")]
            peers = [p for p in others if p["compute_dtype"] == r["compute_dtype"]] or others
            best = max(peers, key=lambda p: p["real_tok_per_s"]) if peers else None
            row = {
                "speed_vs_trl_nopack": r["real_tok_per_s"] / nop["real_tok_per_s"] if nop else None,
                "best_peer": best["variant"] if best else None,
                "speed_vs_best_peer": r["real_tok_per_s"] / best["real_tok_per_s"] if best else None,
                "cpu_norm_vs_trl_nopack": _ratio(r, nop, "real_tok_per_cpu_s"),
                "cpu_norm_vs_best_peer": _ratio(r, max(peers, key=lambda p: p.get("real_tok_per_cpu_s") or 0)
                                                if peers else None, "real_tok_per_cpu_s"),
                "rss_vs_trl_nopack": r["peak_rss_mb"] / nop["peak_rss_mb"] if nop else None,
                "rss_vs_trl_pack": r["peak_rss_mb"] / pk["peak_rss_mb"] if pk else None,
                "dloss_vs_trl_nopack": r.get("dloss_vs_trl_nopack"),
                "whole_vs_trl_nopack": _ratio(r, nop, "real_tok_per_s_whole"),  # issue 20
                "whole_vs_best_peer": _ratio(r, max(peers, key=lambda p: p.get("real_tok_per_s_whole") or 0)
                                             if peers else None, "real_tok_per_s_whole"),
            }
            ratios.setdefault(v, []).append(row)
            lines.append(f"| {rd} | {v} | {fmt(row['speed_vs_trl_nopack'], 2)}× | {row['best_peer']} | "
                         f"{fmt(row['speed_vs_best_peer'], 2)}× | {fmt(row['whole_vs_trl_nopack'], 2)}× / "
                         f"{fmt(row['whole_vs_best_peer'], 2)}× | {fmt(row['cpu_norm_vs_trl_nopack'], 2)}× / "
                         f"{fmt(row['cpu_norm_vs_best_peer'], 2)}× | {fmt(row['rss_vs_trl_nopack'], 2)} | "
                         f"{fmt(row['rss_vs_trl_pack'], 2)} | {fmt(row['dloss_vs_trl_nopack'], 4)} |")
    summary["ratios"] = ratios
    lines += ["", "Across rounds (mean [min, max]):", ""]
    lines += ["| variant | n | real tok/s | peak RSS GiB | MFU (own dtype) |", "|---|---|---|---|---|"]
    agg = {}
    for r in results:
        if "real_tok_per_s" in r:
            agg.setdefault(r["variant"], []).append(r)
    summary["variants"] = {}
    for v in [v for v in variants if v in agg]:
        rs = agg[v]

        def mm(key, scale=1.0, rs=rs):
            xs = [x[key] * scale for x in rs if x.get(key) is not None]
            return (statistics.mean(xs), min(xs), max(xs)) if xs else (float("nan"),) * 3

        t, m, f = mm("real_tok_per_s"), mm("peak_rss_mb", 1 / 1024), mm("mfu", 100)
        summary["variants"][v] = {"n": len(rs), "real_tok_per_s": t, "peak_rss_gib": m, "mfu_pct": f}
        lines.append(f"| {v} | {len(rs)} | {t[0]:.1f} [{t[1]:.1f}, {t[2]:.1f}] | {m[0]:.2f} [{m[1]:.2f}, {m[2]:.2f}] | "
                     f"{f[0]:.1f}% [{f[1]:.1f}, {f[2]:.1f}] |")
    return "\n".join(lines) + "\n", summary


# ------------------------------------------------------------------ main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps per run (steady state = steps 2..N)")
    ap.add_argument("--variants", nargs="+", default=None, choices=ALL_VARIANTS, metavar="VARIANT",
                    help=f"default: {' '.join(DEFAULT_VARIANTS)}; all: {' '.join(ALL_VARIANTS)}")
    ap.add_argument("--batch", type=int, default=8, help="samples per optimizer step (TRL-nopack, Trainer, r1tune)")
    ap.add_argument("--pack-batch", type=int, default=2, help="packed rows of max-length per step (TRL packing)")
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--quick", action="store_true", help="1 round, 3 steps, trl_pack + r1tune: a smoke run")
    ap.add_argument("--no-prepare", action="store_true", help="skip the data-preparation bench at the end")
    ap.add_argument("--out", default=None, help="run directory (default bench/out/run_<time>)")
    ap.add_argument("--resummarise", metavar="RUN_DIR", default=None,
                    help="only rebuild the tables (and the loss-parity check) of a run directory")
    args = ap.parse_args(argv)
    if args.resummarise:
        return resummarise(Path(args.resummarise), prepare=not args.no_prepare)
    if args.quick:
        args.rounds, args.steps = 1, 3
        args.variants = args.variants or ["trl_pack", "r1tune"]
    variants = args.variants or DEFAULT_VARIANTS
    if args.steps < 2:
        raise SystemExit("bench: --steps must be at least 2 (steady state is steps 2..N)")

    check_peer()
    peer_py = ensure_peer_env()
    model, data, r1_data = ensure_model_and_data(peer_py)
    run_dir = Path(args.out) if args.out else OUT / time.strftime("run_%Y%m%d_%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    terms = flop_terms(model)
    plan = r1tune_batches(model, r1_data, args.steps, args.batch, args.max_length, 42) \
        if any(v.startswith("r1tune") for v in variants) else []
    env_info = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "argv": sys.argv, "variants": variants,
                "steps": args.steps, "batch": args.batch, "pack_batch": args.pack_batch, "max_length": args.max_length,
                "rounds": args.rounds, "flop_terms": terms, "cpu": _cpu(), "loadavg_start": os.getloadavg()}
    log(f"run directory {run_dir}; variants {' '.join(variants)}; {args.rounds} rounds × {args.steps} steps")
    results, peaks = [], []
    t_start = time.perf_counter()
    for rnd in range(1, args.rounds + 1):
        pk = run_dir / f"peak_r{rnd}.json"
        log(f"round {rnd}: matmul peak (peak_flops.py, load {load1():.1f})")
        r = subprocess.run([str(peer_py), str(PEER / "peak_flops.py"), "measure", "--sizes", "2048", "4096",
                            "--no-shapes", "--trials", "5", "--out", str(pk)], env=child_env(), capture_output=True,
                           text=True)
        if r.returncode == 0 and pk.exists():
            peaks.append(json.loads(pk.read_text()))
            log("  " + ", ".join(f"{dt} {v['gflops']:.0f} GFLOP/s" for dt, v in peaks[-1]["peak_gflops"].items()))
        order = variants if rnd % 2 == 1 else list(reversed(variants))
        for v in order:
            log(f"round {rnd}: {v} (load {load1():.1f})")
            if v.startswith("r1tune"):
                res = run_r1tune(v, rnd, args, model, r1_data, run_dir, plan, terms)
            else:
                res = run_peer(peer_py, v, rnd, args, model, data, run_dir)
            res["loadavg_end"] = round(load1(), 2)
            results.append(res)
            if "error" in res:
                log(f"  ERROR {res['error']}")
            else:
                log(f"  {res['real_tok_per_s']:.1f} real tok/s, padding {100 * res['padding_frac']:.0f}%, peak RSS "
                    f"{res['peak_rss_mb'] / 1024:.2f} GiB, loss {res['losses'][0]:.4f}→{res['losses'][-1]:.4f}, "
                    f"wall {res['wall_s']:.0f} s")
            (run_dir / "results.json").write_text(json.dumps({"env": env_info, "results": results}, indent=1))
    env_info["wall_s"] = round(time.perf_counter() - t_start, 1)
    return finish(run_dir, env_info, results, peaks, variants, model, data, prepare=not args.no_prepare)


def finish(run_dir: Path, env_info: dict, results: list[dict], peaks: list[dict], variants: list[str], model: Path,
           data: Path, prepare: bool = True, parity: bool = True) -> int:
    """Tables, the loss-parity check and the data-preparation bench; writes results.json and summary.md."""
    text, summary = summarise(results, peaks, variants)
    par = None
    if parity and any(v.startswith("r1tune") for v in variants) and any(not v.startswith("r1tune") for v in variants):
        log("loss parity: the initial model on the same 16 samples, the peer's masking vs r1tune's")
        par = loss_parity(model, data)
        text += (f"\nSame objective on the same samples (initial model, first {par['samples']} samples): peer "
                 f"(TRL/Trainer completion mask, transformers loss) {par['peer_loss']:.5f} over "
                 f"{par['peer_loss_tokens']} loss tokens of {par['peer_real_tokens']}; r1tune (R1 training "
                 f"rendering, chunked target-only loss) {par['r1tune_loss']:.5f} over {par['r1tune_loss_tokens']} of "
                 f"{par['r1tune_real_tokens']}; difference {par['diff']:+.5f}.\n")
    prep = None
    if prepare:
        log("data preparation bench (bench/bench_prepare.py)")
        r = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_prepare.py")], env=child_env(),
                           capture_output=True, text=True, cwd=str(ROOT))
        start = r.stdout.find("\n{") + 1 if not r.stdout.startswith("{") else 0  # one JSON object, indented
        try:
            prep = json.loads(r.stdout[start:]) if r.returncode == 0 else None
        except json.JSONDecodeError:
            prep = None
        prep = prep or {"error": (r.stdout + r.stderr)[-2000:]}
        text += "\nData preparation (bench/bench_prepare.py):\n\n```\n" + json.dumps(prep, indent=1) + "\n```\n"
    env_info["loadavg_end"] = os.getloadavg()
    (run_dir / "results.json").write_text(json.dumps({"env": env_info, "summary": summary, "results": results,
                                                      "peaks": peaks, "parity": par, "prepare": prep}, indent=1))
    head = (f"# bench {run_dir.name}: {env_info['rounds']} rounds × {env_info['steps']} steps, batch "
            f"{env_info['batch']} (packing {env_info['pack_batch']} × {env_info['max_length']}), load average "
            f"{env_info['loadavg_start'][0]:.1f} → {env_info['loadavg_end'][0]:.1f}\n\n")
    (run_dir / "summary.md").write_text(head + text)
    print("\n" + head + text)
    log(f"results in {run_dir}")
    return 0 if all("error" not in r for r in results) else 1


def resummarise(run_dir: Path, prepare: bool) -> int:
    """Tables again from a finished (or interrupted) run directory's results.json and peak_r*.json."""
    got = json.loads((run_dir / "results.json").read_text())
    peaks = [json.loads(p.read_text()) for p in sorted(run_dir.glob("peak_r*.json"))]
    env = got["env"]
    base = OUT / "peer"
    return finish(run_dir, env, got["results"], peaks, env["variants"], base / "models" / "small", base / "data",
                  prepare=prepare)


def _cpu() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        name = re.search(r"model name\s*:\s*(.*)", text)
        flags = re.search(r"flags\s*:\s*(.*)", text)
        fl = flags.group(1).split() if flags else []
        return (name.group(1) if name else "?") + " | " + " ".join(f for f in ("avx512f", "avx512_bf16", "amx_bf16")
                                                                   if f in fl)
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
