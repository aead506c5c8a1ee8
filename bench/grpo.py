"""`make bench`, GRPO part: `r1tune grpo` against TRL's GRPOTrainer, same work, one session.

    .venv/bin/python bench/grpo.py                          # the defaults: 2 rounds, what `make bench` runs
    .venv/bin/python bench/grpo.py --rounds 1 --steps 3 --prompts 2 --completion 32    # a smoke run

Same for every variant:
  model      the peer's "small" Qwen2 (R1-Distill-Qwen architecture, 151,936-row vocabulary, untied LM head), built
             once by bench/run.py's peer scripts into bench/out/peer/models/small;
  prompts    the first finsent training prompts (chat messages), `--prompts` per step; both stacks render them with
             the model's R1 template, so every prompt ends `<｜Assistant｜><think>\\n`;
  rollouts   `--generations` (G) completions per prompt, `--completion` new tokens at most, temperature 0.6, top-p
             0.95, all of a step's completions generated together with a KV cache; the random-init model never
             says eos, so every completion is `--completion` tokens long: the same generation work;
  reward     the share of distinct characters in the completion: every group has variance, so r1tune drops no
             group (the same training work as TRL, which never drops);
  training   LoRA r 16, alpha 32, dropout 0, all linear projections; AdamW lr 1e-5, no weight decay, cosine, no
             warmup; beta 0, loss dapo, one pass per batch; fp32 (this CPU has no native bf16), 2 torch threads,
             seed 42, no gradient checkpointing — except `trl_ckpt`, TRL's own GRPO default (checkpointing on).

Every run is its own process, the order alternates per round, and peak RSS is the kernel's high-water mark of that
process (`os.wait4`, see bench/run.py). Time per step is over steps 2..N (step 1 carries one-off warm-up): TRL's
from a callback at each step end, r1tune's from its metrics.jsonl (`step_s`); both split into generation
(sampling and scoring) and training.

Writes bench/out/grpo_<time>/results.json and summary.md and prints the table with the within-round ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / "bench" / "out"
VARIANTS = ("r1tune", "trl", "trl_ckpt")
FINSENT = ROOT / "src" / "r1tune" / "resources" / "datasets" / "finsent" / "train.jsonl"


def distinct_share(text: str) -> float:
    return len(set(text)) / max(1, len(text))


def r1tune_reward(answers, samples):
    """r1tune's user-reward signature: f(answers, samples) → one float per completion."""
    return [distinct_share(s["completion"]) for s in samples]


def trl_reward(completions, **_):
    """TRL's reward signature: completions are [{"role": "assistant", "content": …}] for chat prompts."""
    return [distinct_share(c[0]["content"] if isinstance(c, list) else c) for c in completions]


# ------------------------------------------------------------------ the TRL child (runs in .venv-peer)

def trl_child(args) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(2)
    prompts = [json.loads(line)["prompt"] for line in Path(args.prompts_file).read_text().splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    config = GRPOConfig(
        output_dir=str(Path(args.out).parent / "trl-work"), per_device_train_batch_size=args.prompts * args.generations,
        num_generations=args.generations, max_completion_length=args.completion, temperature=0.6, top_p=0.95,
        learning_rate=1e-5, weight_decay=0.0, lr_scheduler_type="cosine", warmup_steps=0, max_grad_norm=1.0,
        beta=0.0, loss_type="dapo", num_iterations=1, max_steps=args.steps, logging_steps=1, save_strategy="no",
        report_to="none", use_cpu=True, bf16=False, seed=42, gradient_checkpointing=args.variant == "trl_ckpt",
        dataloader_num_workers=0, disable_tqdm=True)
    peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = GRPOTrainer(model=model, reward_funcs=trl_reward, args=config, processing_class=tokenizer,
                          train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]), peft_config=peft_config)
    times = {"step_end": [], "generation": []}
    generate = trainer._generate_and_score_completions

    def timed_generate(*a, **k):
        t0 = time.perf_counter()
        try:
            return generate(*a, **k)
        finally:
            times["generation"].append(time.perf_counter() - t0)

    trainer._generate_and_score_completions = timed_generate

    class StepClock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            if not times["step_end"]:
                times["start"] = time.perf_counter()

        def on_step_end(self, *a, **k):
            times["step_end"].append(time.perf_counter())

    trainer.add_callback(StepClock())
    trainer.train()
    ends = [times["start"]] + times["step_end"]
    step_s = [b - a for a, b in zip(ends, ends[1:])]
    logs = [h for h in trainer.state.log_history if "loss" in h]
    lengths = [h.get("completions/mean_length") for h in logs]
    Path(args.out).write_text(json.dumps({"step_s": step_s, "generation_s": times["generation"],
                                          "completion_mean_length": lengths,
                                          "versions": {"trl": __import__("trl").__version__,
                                                       "torch": torch.__version__}}))


# ------------------------------------------------------------------ the parent

def prompts_file(path: Path, n: int) -> Path:
    """The first n finsent prompts as chat messages (TRL's `prompt` column; r1tune reads `messages` too)."""
    rows = [json.loads(line) for line in FINSENT.read_text(encoding="utf-8").splitlines()[:n]]
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            prompt = [{"role": "user", "content": f"{r['instruction']}\n{r['input']}"}]
            f.write(json.dumps({"prompt": prompt, "messages": prompt}, ensure_ascii=False) + "\n")
    return path


def run_variant(variant: str, rnd: int, args, model: Path, prompts: Path, run_dir: Path, peer_py: Path) -> dict:
    import run as bench_run  # bench/run.py: the measured child, the peer environment

    log_path = run_dir / f"log_{variant}_r{rnd}.txt"
    if variant == "r1tune":
        out = run_dir / f"r1tune_r{rnd}"
        cmd = [str(ROOT / ".venv" / "bin" / "r1tune"), "grpo", "--model", str(model), "--data", str(prompts),
               "--out", str(out), "--method", "lora", "--reward", f"{HERE / 'grpo.py'}:r1tune_reward", "--allow-code",
               "--num-generations", str(args.generations), "--max-completion-length", str(args.completion),
               "--batch-size", str(args.prompts), "--max-steps", str(args.steps), "--lr", "1e-5", "--seed", "42"]
        for key, value in {"method.lora_r": 16, "method.lora_alpha": 32, "method.lora_dropout": 0.0,
                           "train.threads": 2, "train.save_every": 10**6, "grpo.loss_type": "dapo",
                           "grpo.beta": 0.0, "model.dtype": "float32", "train.mixed_precision": "no",
                           "data.max_prompt_length": 1024}.items():
            cmd += ["--set", f"{key}={value}"]
        m = bench_run.run_measured(cmd, log_path)
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()] \
            if (out / "metrics.jsonl").exists() else []
        # generation as TRL's is timed: sampling, decoding and scoring, everything before the training pass
        result = {"step_s": [r["step_s"] for r in rows], "generation_s": [r["step_s"] - r["training_s"] for r in rows],
                  "completion_mean_length": [r["completions/mean_length"] for r in rows]}
    else:
        out = run_dir / f"{variant}_r{rnd}.json"
        cmd = [str(peer_py), str(HERE / "grpo.py"), "--child", variant, "--out", str(out), "--model", str(model),
               "--prompts-file", str(prompts), "--prompts", str(args.prompts), "--generations", str(args.generations),
               "--completion", str(args.completion), "--steps", str(args.steps)]
        m = bench_run.run_measured(cmd, log_path)
        result = json.loads(out.read_text()) if out.exists() else {}
    res = {"variant": variant, "round": rnd, "rc": m["rc"], "wall_s": m["wall_s"], "peak_rss_mb": m["peak_rss_mb"],
           "cpu_s": m["cpu_s"], **result}
    steps = res.get("step_s") or []
    if m["rc"] != 0 or len(steps) < 2:
        res["error"] = f"rc={m['rc']}, {len(steps)} steps; see {log_path}"
        return res
    res["sec_per_step"] = statistics.mean(steps[1:])
    res["generation_s_per_step"] = statistics.mean(res["generation_s"][1:])
    res["training_s_per_step"] = res["sec_per_step"] - res["generation_s_per_step"]
    return res


def summarise(results: list[dict], args) -> str:
    lines = [f"GRPO: {args.prompts} prompts × G {args.generations} = {args.prompts * args.generations} completions "
             f"of {args.completion} tokens per step, {args.steps} steps (steady state: steps 2..{args.steps}), LoRA "
             "r16, fp32, 2 threads, peer small model (151,936-row vocabulary)", "",
             "| round | variant | s / step | generation s | training s | peak RSS | mean completion tokens | wall |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['round']} | {r['variant']} | error: {r['error']} | | | | | |")
            continue
        length = statistics.mean(x for x in r["completion_mean_length"] if x is not None) \
            if r.get("completion_mean_length") else float("nan")
        lines.append(f"| {r['round']} | {r['variant']} | {r['sec_per_step']:.2f} | {r['generation_s_per_step']:.2f} | "
                     f"{r['training_s_per_step']:.2f} | {r['peak_rss_mb'] / 1024:.2f} GiB | {length:.0f} | "
                     f"{r['wall_s']:.0f} s |")
    lines += ["", "Within-round ratios (r1tune against each TRL variant; speed = TRL's s/step ÷ r1tune's; aim ≥ 1.5× "
              "at ≤ 1.0× the memory):", "", "| round | vs | speed | generation speed | training speed | peak RSS |",
              "|---|---|---|---|---|---|"]
    for rnd in sorted({r["round"] for r in results}):
        ours = next((r for r in results if r["round"] == rnd and r["variant"] == "r1tune" and "error" not in r), None)
        for peer in (r for r in results if r["round"] == rnd and r["variant"] != "r1tune" and "error" not in r):
            if ours is None:
                continue
            lines.append(f"| {rnd} | {peer['variant']} | {peer['sec_per_step'] / ours['sec_per_step']:.2f}× | "
                         f"{peer['generation_s_per_step'] / ours['generation_s_per_step']:.2f}× | "
                         f"{peer['training_s_per_step'] / ours['training_s_per_step']:.2f}× | "
                         f"{ours['peak_rss_mb'] / peer['peak_rss_mb']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=2, help="prompts per step")
    ap.add_argument("--generations", type=int, default=8, help="completions per prompt (G)")
    ap.add_argument("--completion", type=int, default=96, help="max new tokens per completion")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--out", default=None, help="run directory (default bench/out/grpo_<time>)")
    ap.add_argument("--child", choices=VARIANTS[1:], help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--prompts-file", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        args.variant = args.child
        trl_child(args)
        return 0
    if args.steps < 2:
        raise SystemExit("bench: --steps must be at least 2 (steady state is steps 2..N)")
    sys.path.insert(0, str(HERE))
    import run as bench_run

    bench_run.check_peer()
    peer_py = bench_run.ensure_peer_env()
    model, _, _ = bench_run.ensure_model_and_data(peer_py)
    run_dir = Path(args.out) if args.out else OUT / time.strftime("grpo_%Y%m%d_%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    prompts = prompts_file(run_dir / "prompts.jsonl", max(64, args.prompts * args.steps))
    results = []
    bench_run.log(f"GRPO bench in {run_dir}: {' '.join(args.variants)}; {args.rounds} rounds × {args.steps} steps")
    for rnd in range(1, args.rounds + 1):
        for variant in (args.variants if rnd % 2 else list(reversed(args.variants))):
            bench_run.log(f"round {rnd}: {variant} (load {os.getloadavg()[0]:.1f})")
            res = run_variant(variant, rnd, args, model, prompts, run_dir, peer_py)
            results.append(res)
            done = res.get("error") or f"{res['sec_per_step']:.2f} s/step, peak RSS {res['peak_rss_mb'] / 1024:.2f} GiB"
            bench_run.log(f"  {done}")
            (run_dir / "results.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    text = summarise(results, args)
    (run_dir / "summary.md").write_text(text)
    print("\n" + text)
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
