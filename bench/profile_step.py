"""Where an r1tune LoRA step spends its time, and what the candidate recipe changes buy (same batches, same init).

    .venv/bin/python bench/profile_step.py --model bench/out/peer/models/small --data bench/out/peer/data_r1tune.jsonl \
        [--configs fp32 fp32_fused autocast_bf16 bf16_base bf16_base_fused] [--batches 3] [--reps 2]

Each config loads the model as the recipe does (`load_model` → `apply_method` LoRA r16/α32/dropout 0, all linear),
then runs forward + backward + AdamW on the same `--batches` length-grouped batches of 8 (the recipe's own
`BatchStream`), `--reps` times, in alternating config order (the machine is shared: interleaving spreads the noise).
Per config it prints real tokens/s, the split of one step into decoder forward / LM-head loss (forward + backward) /
decoder backward, the peak RSS growth over the step, and the first batch's loss (same weights, same batch: a
precision change shows up here as a loss difference).

Configs (`fused` is `r1tune.train.loss.head_loss(fused=…)`; the recipe fuses whenever the head is frozen):
  fp32             fp32 weights, chunked target-only head loss with checkpoint-recompute (a trained head's path)
  fp32_fused       fp32, head loss fused (the recipe's path for a frozen head): per chunk, logits → loss and
                   d(loss)/d(hidden) in the forward pass, the chunk's logits freed at once; backward only scales
                   the stored (n, d) gradient. No recompute of
                   the 151,936-row head (the recipe's checkpoint path runs the head matmul 3× per chunk, this 2×)
  autocast_bf16    fp32 weights under torch.autocast(cpu, bf16) — what `train.mixed_precision=bf16` does
  autocast_bf16_fused  autocast_bf16 + the fused head loss (head matmuls in bf16, the head weight cast once a step)
  bf16_base        frozen base weights stored in bf16 (`model.dtype=bfloat16`), LoRA adapters fp32 (PEFT's default
                   autocast_adapter_dtype), autocast bf16; the head loss's softmax in fp32
  bf16_base_fused  bf16_base + the fused head loss
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import time
from contextlib import nullcontext

import torch

from r1tune.train import loss as loss_mod
from r1tune.train.memory import return_freed_memory_to_os

CONFIGS = ("fp32", "fp32_fused", "autocast_bf16", "autocast_bf16_fused", "bf16_base", "bf16_base_fused")


def rss_hwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def build(cfg_name, model_dir):
    from r1tune.config import MethodConfig, ModelConfig
    from r1tune.model.load import load_model
    from r1tune.model.methods import apply_method

    torch.manual_seed(42)
    dtype = "bfloat16" if cfg_name.startswith("bf16_base") else "float32"
    model = load_model(ModelConfig(name_or_path=model_dir, dtype=dtype))
    with torch.no_grad():
        for p in model.parameters():
            p.sum()
    model = apply_method(model, MethodConfig(name="lora", lora_r=16, lora_alpha=32, lora_dropout=0.0))
    model.train()
    return model


def timed_step(model, batch, cfg_name, opt):
    """One optimizer step; returns (loss, n_targets, seconds of decoder fwd, head loss fwd+bwd, decoder bwd, total)."""
    fused = cfg_name.endswith("_fused")
    ac = torch.autocast("cpu", dtype=torch.bfloat16) if "bf16" in cfg_name else nullcontext()
    _, head = loss_mod.decoder_and_head(model)
    t0 = time.perf_counter()
    with ac:
        hidden = loss_mod.final_hidden(model, batch["input_ids"], batch["attention_mask"])
        t1 = time.perf_counter()
        targets = batch["labels"][:, 1:]
        keep = targets != -100
        tg = targets[keep]
        h = hidden[:, :-1][keep]
        h_leaf = h.detach().requires_grad_(True)  # split the graph to time the head separately
        loss, correct = loss_mod.head_loss(head, h_leaf, tg, fused=fused)
        (loss / tg.numel()).backward()
    t2 = time.perf_counter()
    h.backward(h_leaf.grad)
    t3 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    t4 = time.perf_counter()
    return float(loss) / tg.numel(), tg.numel(), t1 - t0, t2 - t1, t3 - t2, t4 - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--first-batch", type=int, default=0)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    return_freed_memory_to_os()

    from r1tune.config import DataConfig, ModelConfig
    from r1tune.model.load import load_tokenizer
    from r1tune.model.template import resolve_template
    from r1tune.train.data import BatchStream, collate, load_training_data

    tok = load_tokenizer(ModelConfig(name_or_path=args.model))
    data = load_training_data(DataConfig(train=args.data, val_split=0.0, max_length=1024), tok,
                              resolve_template(tok), 42)
    stream = BatchStream(data.train, 8, 42)
    batches = [collate(stream.batch(k), tok.pad_token_id)
               for k in range(args.first_batch, args.first_batch + args.batches)]
    real = [int(b["attention_mask"].sum()) for b in batches]
    print(json.dumps({"batches_real_tokens": real, "shapes": [list(b["input_ids"].shape) for b in batches]}))
    results = {c: [] for c in args.configs}
    for rep in range(args.reps):
        order = args.configs if rep % 2 == 0 else list(reversed(args.configs))
        for c in order:
            model = build(c, args.model)
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, weight_decay=0.01)
            timed_step(model, batches[0], c, opt)  # warm-up (kernel selection, first-touch)
            model = build(c, args.model)  # fresh weights: the first measured batch sees the initial model
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, weight_decay=0.01)
            gc.collect()
            base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            reset_hwm()
            rss0 = rss_hwm()
            c0 = time.process_time()
            rows = [timed_step(model, b, c, opt) for b in batches]
            cpu = time.process_time() - c0
            peak = rss_hwm() - rss0
            wall = sum(r[5] for r in rows)
            rec = {"config": c, "rep": rep, "real_tok_per_s": round(sum(real) / wall, 1),
                   "loss_first_batch": round(rows[0][0], 5), "losses": [round(r[0], 5) for r in rows],
                   "s_decoder_fwd": round(sum(r[2] for r in rows), 2), "s_head_loss": round(sum(r[3] for r in rows), 2),
                   "s_decoder_bwd": round(sum(r[4] for r in rows), 2), "s_total": round(wall, 2),
                   "cpu_util": round(cpu / wall / args.threads, 2), "step_peak_rss_growth_mb": round(peak / 2**20),
                   "targets": [r[1] for r in rows], "maxrss_before_mb": round(base / 1024)}
            results[c].append(rec)
            print(json.dumps(rec), flush=True)
            del model, opt
            gc.collect()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
