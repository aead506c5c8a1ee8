"""The whole run as a user waits for it: a short LoRA run timed from process start to exit, r1tune against TRL.

    .venv/bin/python bench/whole_run.py                      # 96 samples, 1 epoch, max length 512 (`make bench`)
    .venv/bin/python bench/whole_run.py --variants trl_pack r1tune r1tune_cached --rounds 2

Same model, data rows and recipe as bench/run.py (the peer's small model, LoRA r 16 on all linear layers, AdamW
2e-4, 2 threads, seed 42), but the first `--samples` rows for one epoch: batch 8 (TRL packing: rows of max
length, `--pack-batch` a step, steps enough for one pass over the packed rows). Each variant is its own process;
its wall time is measured from outside, from exec to exit, so interpreter start, imports, model load,
tokenizing, warm-up, saving and plots all count.

  whole real tok/s   real (non-padding) tokens trained / the process's wall time; per CPU-s: / its CPU time (user +
                     system, all threads), the figure that holds on a machine shared with other work
  steady real tok/s  real tokens of steps 2..N / their time (the peer measures it in-process; r1tune: its
                     OUT/timing.json, the training steps after the first)
  r1tune             the recipe's defaults with a cold token cache (a fresh data.token_cache folder)
  r1tune_cached      the same run again: the tokenized set comes from the cache the first run wrote

r1tune's own timing.json (start-up, tokenizer, data, model load, first step, steps, save, plots; wall and
CPU seconds) is printed beside. Writes bench/out/whole_<time>/results.json and summary.md.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (the peer harness, environment and process measuring of bench/run.py)

VARIANTS = ("trl_nopack", "trl_pack", "r1tune", "r1tune_cached")
DEFAULT = ["trl_pack", "trl_nopack", "r1tune", "r1tune_cached"]


def subset(data: Path, n: int) -> tuple[Path, Path]:
    """The first `n` rows: a peer data folder, and the same rows as r1tune `messages`."""
    folder = bench.OUT / "peer" / f"data{n}"
    folder.mkdir(parents=True, exist_ok=True)
    rows = [x for x in (data / "prompt_completion.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()][:n]
    (folder / "prompt_completion.jsonl").write_text("".join(x + "\n" for x in rows), encoding="utf-8")
    r1 = folder / "messages.jsonl"
    r1.write_text("".join(json.dumps({"messages": (r := json.loads(x))["prompt"] + r["completion"]},
                                     ensure_ascii=False) + "\n" for x in rows), encoding="utf-8")
    return folder, r1


def run_peer(peer_py: Path, variant: str, rnd: int, args, model: Path, folder: Path, steps: int, run_dir: Path):
    out = run_dir / "peer.jsonl"
    batch = args.pack_batch if variant == "trl_pack" else args.batch
    cmd = [str(peer_py), str(bench.PEER / "bench_trl.py"), "--variant", variant, "--model", str(model), "--data",
           str(folder), "--steps", str(steps), "--batch", str(args.batch), "--pack-batch", str(batch),
           "--max-length", str(args.max_length), "--round", str(rnd), "--out", str(out),
           "--workdir", str(run_dir / "work"), "--threads", "2", "--seed", "42"]
    m = bench.run_measured(cmd, run_dir / f"log_{variant}_r{rnd}.txt")
    rec = next((r for r in map(json.loads, out.read_text().splitlines()) if r.get("variant") == variant
                and str(r.get("round")) == str(rnd)), None) if out.exists() else None
    res = {"variant": variant, "round": rnd, "rc": m["rc"], "wall_s": m["wall_s"], "cpu_s": m["cpu_s"],
           "peak_rss_mb": m["peak_rss_mb"]}
    if not rec or "real_tok_per_s" not in rec:
        return {**res, "error": f"no result, see {run_dir / f'log_{variant}_r{rnd}.txt'}"}
    real = sum(rec["step_real"])
    return {**res, "steps": rec["steps_done"], "real_tokens": real, "whole_tok_per_s": real / m["wall_s"],
            "steady_tok_per_s": rec["real_tok_per_s"], "in_process_s": rec["wall_total_s"],
            "first_step_s": rec["step1_s"], "train_s": rec["wall_train_s"]}


def run_r1tune(variant: str, rnd: int, args, model: Path, data: Path, run_dir: Path, cache: Path) -> dict:
    out = run_dir / f"{variant}_r{rnd}"
    shutil.rmtree(out, ignore_errors=True)
    if variant == "r1tune":  # cold: nothing tokenized before
        shutil.rmtree(cache, ignore_errors=True)
    steps = math.ceil(args.samples / args.batch)
    sets = {"method.lora_r": 16, "method.lora_alpha": 32, "method.lora_dropout": 0.0,
            "method.target_modules": "all-linear", "train.weight_decay": 0.01,
            "train.warmup_steps": max(1, math.ceil(0.1 * steps)), "train.threads": 2, "data.val_split": 0.0,
            "train.save_every": 10**6, "train.grad_accum": 1, "data.reasoning": "keep", "data.token_cache": cache}
    cmd = [str(bench.ROOT / ".venv" / "bin" / "r1tune"), "finetune", "--model", str(model), "--data", str(data),
           "--out", str(out), "--method", "lora", "--epochs", "1", "--batch-size", str(args.batch),
           "--max-length", str(args.max_length), "--seed", "42", "--lr", "2e-4"]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    m = bench.run_measured(cmd, run_dir / f"log_{variant}_r{rnd}.txt")
    res = {"variant": variant, "round": rnd, "rc": m["rc"], "wall_s": m["wall_s"], "cpu_s": m["cpu_s"],
           "peak_rss_mb": m["peak_rss_mb"]}
    timing = json.loads((out / "timing.json").read_text()) if (out / "timing.json").exists() else None
    if m["rc"] != 0 or timing is None:
        return {**res, "error": f"rc={m['rc']}, no timing.json; see {run_dir / f'log_{variant}_r{rnd}.txt'}"}
    return {**res, "steps": timing["step"], "real_tokens": timing["real_tokens"],
            "whole_tok_per_s": timing["real_tokens"] / m["wall_s"],
            "steady_tok_per_s": timing["real_tokens_per_s_steady"], "in_process_s": timing["total_s"],
            "first_step_s": timing["first_step_s"], "train_s": timing["first_step_s"] + timing.get("steps_s", 0.0),
            "timing": timing}


def summarise(results: list[dict], args) -> str:
    lines = [f"Whole run: the first {args.samples} rows, 1 epoch, max length {args.max_length}, batch {args.batch} "
             f"(TRL packing: {args.pack_batch} rows of {args.max_length} a step), one process each, wall from exec "
             "to exit.", "",
             "| round | variant | steps | real tokens | wall | CPU | whole real tok/s | whole real tok per CPU-s | "
             "steady real tok/s | whole / steady | first step | peak RSS |", "|" + "---|" * 12]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['round']} | {r['variant']} | error: {r['error']} |" + " |" * 9)
            continue
        lines.append(f"| {r['round']} | {r['variant']} | {r['steps']} | {r['real_tokens']} | {r['wall_s']:.0f} s | "
                     f"{r['cpu_s']:.0f} s | {r['whole_tok_per_s']:.1f} | {r['real_tokens'] / r['cpu_s']:.1f} | "
                     f"{r['steady_tok_per_s']:.1f} | "
                     f"{r['whole_tok_per_s'] / r['steady_tok_per_s']:.2f} | {r['first_step_s']:.1f} s | "
                     f"{r['peak_rss_mb'] / 1024:.2f} GiB |")
    lines += ["", "Ratios within a round (r1tune ÷ peer, the same measure on both sides):", "",
              "| round | r1tune variant | peer | whole (wall) | whole (per CPU-s) | steady |", "|" + "---|" * 6]
    for rnd in sorted({r["round"] for r in results}):
        ok = {r["variant"]: r for r in results if r["round"] == rnd and "error" not in r}
        for v in (x for x in ok if x.startswith("r1tune")):
            for p in (x for x in ok if x.startswith("trl")):
                per_cpu = (ok[v]["real_tokens"] / ok[v]["cpu_s"]) / (ok[p]["real_tokens"] / ok[p]["cpu_s"])
                lines.append(f"| {rnd} | {v} | {p} | {ok[v]['whole_tok_per_s'] / ok[p]['whole_tok_per_s']:.2f}× | "
                             f"{per_cpu:.2f}× | {ok[v]['steady_tok_per_s'] / ok[p]['steady_tok_per_s']:.2f}× |")
    lines += ["", "r1tune's timing.json (seconds, wall / CPU; CPU below wall = the machine was shared):", ""]
    for r in results:
        if "timing" in r:
            t = r["timing"]
            parts = [(k[:-2], v) for k, v in t.items() if k.endswith("_s") and isinstance(v, float)]
            lines.append(f"- {r['variant']} r{r['round']}: " + ", ".join(
                f"{k} {v:.1f}/{t['cpu_s'].get(k, 0.0):.1f}" for k, v in parts)
                + f"; token cache {'hit' if t.get('token_cache_hit') else 'miss'}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=96)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--pack-batch", type=int, default=4, help="packed rows of max length per step (TRL packing)")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--variants", nargs="+", default=DEFAULT, choices=VARIANTS)
    ap.add_argument("--out", default=None)
    ap.add_argument("--resummarise", metavar="RUN_DIR", default=None, help="only rebuild summary.md of a run")
    args = ap.parse_args(argv)
    if args.resummarise:
        got = json.loads((Path(args.resummarise) / "results.json").read_text())
        text = summarise(got["results"], argparse.Namespace(**got["args"]))
        (Path(args.resummarise) / "summary.md").write_text(text)
        print(text)
        return 0
    bench.check_peer()
    peer_py = bench.ensure_peer_env()
    model, data, _ = bench.ensure_model_and_data(peer_py)
    folder, r1_data = subset(data, args.samples)
    run_dir = Path(args.out) if args.out else bench.OUT / time.strftime("whole_%Y%m%d_%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    cache = run_dir / "token_cache"
    # one pass over the packed rows: the r1tune tokenization's token count, cut at max length, in full rows
    plan = bench.r1tune_batches(model, r1_data, math.ceil(args.samples / args.batch), args.batch, args.max_length, 42)
    pack_steps = math.ceil(sum(s["real"] for s in plan) / args.max_length / args.pack_batch)
    results = []
    for rnd in range(1, args.rounds + 1):
        order = list(args.variants) if rnd % 2 else list(reversed(args.variants))
        if "r1tune_cached" in order and "r1tune" in order:  # the cached run reads what the cold run wrote
            order.remove("r1tune_cached")
            order.insert(order.index("r1tune") + 1, "r1tune_cached")
        for v in order:
            bench.log(f"round {rnd}: {v} (load {bench.load1():.1f})")
            if v.startswith("r1tune"):
                res = run_r1tune(v, rnd, args, model, r1_data, run_dir, cache)
            else:
                steps = pack_steps if v == "trl_pack" else math.ceil(args.samples / args.batch)
                res = run_peer(peer_py, v, rnd, args, model, folder, steps, run_dir)
            results.append(res)
            bench.log("  " + (res.get("error") or f"whole {res['whole_tok_per_s']:.1f} real tok/s, steady "
                                                   f"{res['steady_tok_per_s']:.1f}, wall {res['wall_s']:.0f} s"))
            (run_dir / "results.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    text = summarise(results, args)
    (run_dir / "summary.md").write_text(text)
    print("\n" + text)
    bench.log(f"results in {run_dir}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
