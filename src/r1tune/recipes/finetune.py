"""The finetune recipe: one training flow for every method, readable top to bottom.

    r1tune finetune configs/quickstart.yaml
    r1tune finetune --model DIR --data train.jsonl --out runs/x --method lora --max-steps 200

Steps: load tokenizer and R1 template → read and tokenize data (bad rows stop the run or are listed in
OUT/skipped.jsonl) → load the model and wrap it for the method → AdamW + warmup/cosine → train with
gradient accumulation normalised by target tokens → evaluate, early-stop, checkpoint atomically → write
OUT/final/ (adapter or model, tokenizer, config.yaml, provenance.json) and loss/lr plots.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import peft  # noqa: F401  (imported before the memory baseline: a library is not training memory)
import torch
from accelerate import DistributedType
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import set_seed

from r1tune.config import FinetuneConfig, dump_config
from r1tune.data.io import write_jsonl
from r1tune.errors import R1TuneError
from r1tune.model.load import load_tokenizer
from r1tune.model.methods import (
    add_hidden_dropout,
    apply_method,
    count_parameters,
    decoder_layers,
    load_trainable_state,
    trainable_state,
)
from r1tune.model.runs import library_versions, write_final
from r1tune.model.template import resolve_template, template_hash, template_name
from r1tune.model.vision import image_processor_for, vision_lr
from r1tune.recipes.continual import continue_model, finish_continual, make_anchor, prepare_continual
from r1tune.train.checkpoint import kill_if_asked, latest_checkpoint, resume_latest, rng_state, save_checkpoint
from r1tune.train.data import BatchStream, TrainingData, collate, load_training_data, token_capped_pieces
from r1tune.train.distributed import all_reduce_gradients, gather_objects
from r1tune.train.fsdp import (
    FullStateOptimizer,
    clip_grad_norm,
    evaluate_loss_sharded,
    full_trainable_state,
    gather_full_weights,
    load_full_trainable_state,
    shard_model,
    use_fsdp,
)
from r1tune.train.loss import evaluate_loss, sharded_loss, target_loss
from r1tune.train.memory import (
    auto_batch_size,
    micro_batch_token_cap,
    parse_memory,
    peak_memory,
)
from r1tune.train.mix import MixedStream, load_mix, mix_line
from r1tune.train.monitor import EarlyStopping, MetricsLog, plot_metrics, truncate_metrics
from r1tune.train.optim import param_groups
from r1tune.train.precision import resolve_precision
from r1tune.train.schedule import effective_warmup, make_scheduler
from r1tune.train.setup import enable_gradient_checkpointing, load_base, prepare_process, start_accelerator
from r1tune.train.timing import RunClock, timing_line, write_timing
from r1tune.train.token_cache import cached_training_data


def provenance(cfg: FinetuneConfig, template: str, data: TrainingData, step: int, stop_reason: str | None) -> dict:
    """What made this run: read back by evaluate, export and serve (`model/runs.py`)."""
    return {
        "base_model": cfg.model.name_or_path, "revision": cfg.model.revision, "method": cfg.method.name,
        "quantization": cfg.method.quant_type if cfg.method.name == "qlora" else None,
        "template": template_name(template), "template_hash": template_hash(template),
        "reasoning": cfg.data.reasoning, "reasoning_plan": data.reasoning, "data_hash": data.data_hash,
        "train_samples": len(data.train), "validation_samples": len(data.validation), "skipped": len(data.skipped),
        "truncate": cfg.data.truncate, "prompt_too_long": data.prompt_too_long, "prompt_cut": data.prompt_cut,
        "steps": step,
        "stop_reason": stop_reason, "versions": library_versions(),
    }


def data_counts(data: TrainingData) -> str:
    """The start line's account of the data: what was left out, cut, or lacks a trace."""
    skipped = f"{len(data.skipped)} skipped"
    if data.prompt_too_long:
        fix = "set data.truncate=left to keep them cut from the left, or raise data.max_length"
        skipped += (f" (prompt longer than max_length: {fix})" if data.prompt_too_long == len(data.skipped)
                    else f" ({data.prompt_too_long} with a prompt longer than max_length: {fix})")
    cut = f", {data.prompt_cut} prompts cut from the left" if data.prompt_cut else ""
    return f"{skipped}, {data.truncated} truncated{cut}, {data.without_reasoning} without a trace"


def reasoning_line(plan: dict) -> str:
    """What samples with and without a trace train, said so that the user sees the choice and how to change it."""
    n, traced, traceless = plan["with_trace"] + plan["without_trace"], plan["with_trace"], plan["without_trace"]
    line = f"reasoning (data.reasoning={plan['setting']}): {traced} of {n} training samples have a trace"
    if traced:
        line += " (trained)" if plan["traced"] == "keep" else f" (not trained: {plan['traced']})"
    if not traceless:
        return line
    line += f"; the {traceless} without one "
    if plan["traceless"] == "empty":
        line += ("train the empty think block `<think>\\n\\n</think>\\n\\n` before their answer, so the model learns "
                 "to close the block itself")
        return line + (" — set data.reasoning=drop to train only their answers" if plan["setting"] == "auto" else "")
    line += "train only their answer, after an untrained empty think block"
    if 2 * traceless > n:  # only an explicit keep / drop gets here: auto would have trained the block
        return (line + " — most samples lack a trace, so the model may never learn to write </think> and leave "
                "its answers inside the think block: data.reasoning=auto (or empty) trains them to close it")
    return line + (" (the traced samples teach closing the block) — set data.reasoning=empty to train every "
                   "sample to answer without reasoning" if plan["setting"] == "auto" else "")


def finetune(cfg: FinetuneConfig, resume: bool = False) -> dict:
    clock = RunClock()  # issue 20: where the whole process's time goes (OUT/timing.json at the end)
    cfg, parent = prepare_continual(cfg)  # issue 15: --continue-from (parent, lineage, replay as data.mix)
    tc = cfg.train
    out = Path(cfg.out)
    ckpt_root = out / "checkpoints"
    if not resume and latest_checkpoint(ckpt_root) is not None:
        raise R1TuneError(f"{out} already holds checkpoints: pass --resume to continue, or choose another --out")
    prepare_process(tc.threads, tc.return_freed_memory)
    dtype, mixed_precision = resolve_precision(cfg)
    accelerator = start_accelerator(mixed_precision)
    rank, world = accelerator.process_index, accelerator.num_processes
    # FSDP / DeepSpeed shard the parameters: the model must run inside accelerate's wrapper there
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    # issue 20: FSDP2 on this loop (train/fsdp.py), CPU (gloo) or GPU
    fsdp, engine_note = use_fsdp(tc.fsdp, world, accelerator.distributed_type.value)
    if engine_note and accelerator.is_main_process:
        print(engine_note)
    sharded = sharded or fsdp
    set_seed(tc.seed)
    clock.mark("setup")

    # data: rendered with the same template inference will use; tokenized once per data/tokenizer/settings
    tokenizer = load_tokenizer(cfg.model)
    template = resolve_template(tokenizer, cfg.data.chat_template)
    clock.mark("tokenizer")
    image_processor = image_processor_for(cfg.model.name_or_path, cfg.model.revision)  # issue 19: None for text
    if image_processor is None:
        data, clock.notes["token_cache_hit"] = cached_training_data(cfg.data, tokenizer, template, tc.seed)
    else:  # images are not in the token cache: read, check and tokenize them each run
        data = load_training_data(cfg.data, tokenizer, template, tc.seed, image_processor)
    clock.mark("data")
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_jsonl(out / "skipped.jsonl", data.skipped)
        dump_config(cfg, out / "config.yaml")

    # model, wrapped for the method
    loaded = load_base(cfg.model, cfg.method, dtype, accelerator.device)
    model, memory_before_model, load_peak = loaded.model, loaded.memory_before_model, loaded.load_peak
    clock.mark("model_load")
    n_layers = len(decoder_layers(model))
    if tc.gradient_checkpointing:
        enable_gradient_checkpointing(model, cfg.method.name)
    if parent is not None and parent.is_adapter:  # issue 15: the parent's adapter, trained further
        model = continue_model(model, parent)
    else:
        model = apply_method(model, cfg.method, tc.gradient_checkpointing, tokenizer_path=cfg.model.name_or_path)
    if cfg.model.hidden_dropout:
        add_hidden_dropout(model, cfg.model.hidden_dropout)
    model.train()
    trainable, total = count_parameters(model)

    if tc.auto_batch_size:
        target_fraction = sum(x.n_targets for x in data.train) / sum(len(x.input_ids) for x in data.train)
        longest = max(len(x.input_ids) for x in data.train)
        micro, accum = auto_batch_size(model.config, cfg.method, tc.batch_size, tc.grad_accum, longest,
                                       target_fraction, parse_memory(tc.memory_budget) if tc.memory_budget else None,
                                       next(model.parameters()).dtype, tc.gradient_checkpointing,
                                       max_micro_batch_tokens=micro_batch_token_cap(tc.max_micro_batch_tokens),
                                       freed_memory_returned=tc.return_freed_memory)
        print(f"auto batch size: micro-batch {micro} × accumulation {accum} (was {tc.batch_size} × {tc.grad_accum})")
        tc = tc.model_copy(update={"batch_size": micro, "grad_accum": accum})
    stream = BatchStream(data.train, tc.batch_size * world, tc.seed)
    mix = load_mix(cfg.data, tokenizer, template, data.reasoning, data.skipped)  # issue 15: data.mix / replay
    if mix:
        stream = MixedStream(data.train, mix, tc.batch_size * world, tc.seed)
    total_steps = tc.max_steps or max(1, math.ceil(tc.epochs * stream.per_epoch / tc.grad_accum))
    if fsdp:  # issue 20: before the optimizer, whose parameters must be the shards
        plan = shard_model(model, cfg.method.name)
        if accelerator.is_main_process:
            print(f"FSDP over {world} processes: {len(plan)} units ({plan[0]} … {plan[-2]}, and the root)")
    groups = param_groups(model, tc.lr, tc.weight_decay, n_layers, cfg.method.layerwise_lr_decay,
                          lr_of=lambda name: vision_lr(name, cfg.method, tc.lr))
    optimizer = torch.optim.AdamW(groups, lr=tc.lr, betas=(0.9, 0.999), eps=1e-8)
    scheduler = make_scheduler(optimizer, total_steps, tc.warmup_steps, tc.min_lr_ratio)
    if fsdp:
        optimizer = accelerator.prepare(optimizer)
    elif sharded:
        model, optimizer = accelerator.prepare(model, optimizer)
    else:  # plain data parallelism: gradients are summed by hand after accumulation (train/distributed.py)
        model = model.to(accelerator.device)
        optimizer = accelerator.prepare(optimizer)
    # issue 15: L2 / EWC toward the weights the run starts from (the parent's), taken before a resume loads others
    anchor = make_anchor(model, cfg, parent, tokenizer, template, data.reasoning, accelerator.device, sharded)
    early = EarlyStopping(tc.early_stopping_patience, tc.early_stopping_rising)
    step, micro, stop_reason = 0, 0, None

    if resume:
        ckpt, weights, state = resume_latest(ckpt_root, FullStateOptimizer(model, optimizer) if fsdp else optimizer,
                                             scheduler, rank)
        if fsdp:
            load_full_trainable_state(model, weights)
        else:
            load_trainable_state(accelerator.unwrap_model(model), weights)
        step, micro = state["step"], state["micro_batches"]
        early = EarlyStopping(**state["early_stopping"])
        if accelerator.is_main_process:
            print(f"resumed from step {step} ({ckpt.relative_to(out)})")
            truncate_metrics(out / "metrics.jsonl", step)
    elif accelerator.is_main_process:
        (out / "metrics.jsonl").unlink(missing_ok=True)

    log = MetricsLog(out) if accelerator.is_main_process else None
    if accelerator.is_main_process:
        print(f"r1tune finetune: {cfg.method.name} on {cfg.model.name_or_path} — {trainable:,} of {total:,} "
              f"parameters train; {len(data.train)} train / {len(data.validation)} validation samples"
              f" ({data_counts(data)}); {total_steps} steps, warmup {effective_warmup(tc.warmup_steps, total_steps)}"
              f"\n  {reasoning_line(data.reasoning)}")
        if mix:
            print("  " + mix_line(stream, total_steps * tc.grad_accum))
    pad_id = tokenizer.pad_token_id
    piece_tokens = micro_batch_token_cap(tc.max_micro_batch_tokens)
    params = [p for p in model.parameters() if p.requires_grad]
    progress = Progress(TextColumn("step {task.completed}/{task.total}"), BarColumn(),
                        TextColumn("loss {task.fields[loss]:.4f}  {task.fields[tps]:.0f} tok/s"),
                        TimeRemainingColumn(), disable=not accelerator.is_main_process)
    task = progress.add_task("train", total=total_steps, completed=step, loss=float("nan"), tps=0.0)
    train_tokens, train_targets, train_seconds = 0, 0, 0.0
    clock.mark("prepare")
    with progress:
        while step < total_steps and stop_reason is None:
            t0 = time.perf_counter()
            batches = [stream.batch(micro + i) for i in range(tc.grad_accum)]
            micro += tc.grad_accum
            # normalise by the target tokens of the whole accumulated global batch
            n_step_targets = sum(s.n_targets for b in batches for s in b)
            n_real_tokens = sum(len(s.input_ids) for b in batches for s in b)
            loss_sum = torch.zeros((), device=accelerator.device)
            for global_batch in batches:
                local = global_batch[rank * tc.batch_size:(rank + 1) * tc.batch_size]
                if not local:
                    continue
                for piece in token_capped_pieces(local, piece_tokens):
                    batch = {k: v.to(accelerator.device) for k, v in collate(piece, pad_id).items()}
                    with accelerator.autocast():
                        part = sharded_loss(model, batch) if sharded else target_loss(model, **batch)[0]
                        # divided by the target tokens of the whole global step; sharded engines average over
                        # ranks, so there the world size is multiplied back in
                        accelerator.backward(part * (world if sharded else 1) / n_step_targets)
                    loss_sum += part.detach()
            if world > 1 and not sharded:
                all_reduce_gradients(params)
            penalty = anchor.add_gradients() if anchor else None  # after the all-reduce: the same on every rank
            loss_sum = accelerator.reduce(loss_sum, "sum")
            loss = float(loss_sum) / n_step_targets
            if not math.isfinite(loss):
                last = latest_checkpoint(ckpt_root)
                raise R1TuneError(f"loss became {loss} at step {step + 1}: stopped. Last good checkpoint: "
                                  f"{last or 'none'}. Lower train.lr, use bf16 rather than fp16, or check the data.")
            if fsdp:
                accelerator.unscale_gradients()
                grad_norm = clip_grad_norm(params, tc.max_grad_norm)
            else:
                grad_norm = float(accelerator.clip_grad_norm_(params, tc.max_grad_norm))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            dt = time.perf_counter() - t0
            train_tokens, train_seconds = train_tokens + n_real_tokens, train_seconds + dt
            train_targets += n_step_targets
            record = {"step": step, "split": "train", "loss": loss, "lr": scheduler.get_last_lr()[0],
                      "grad_norm": grad_norm, "tokens_per_s": n_real_tokens / dt, "target_tokens": n_step_targets}
            if penalty is not None:
                record["anchor_penalty"] = penalty
            if log and (step % tc.log_every == 0 or step == total_steps):
                log.write(record)
            progress.update(task, completed=step, loss=loss, tps=record["tokens_per_s"])
            clock.mark("steps" if train_seconds > dt else "first_step")  # the first step carries the warm-up
            clock.notes.setdefault("first_step_real_tokens", n_real_tokens)

            if data.validation and (step % tc.eval_every == 0 or step == total_steps):
                evaluate = evaluate_loss_sharded if sharded else evaluate_loss  # sharded: through the wrapper
                metrics = evaluate(model, data.validation, tc.batch_size, pad_id, accelerator.device)
                stop_reason = early.update(metrics["loss"])
                if log:
                    log.write({"step": step, "split": "eval", **metrics})
                clock.mark("eval")
            if step % tc.save_every == 0 and step < total_steps:
                rng_per_rank = gather_objects(rng_state(), world)  # dropout differs per rank: keep each one's
                if fsdp:  # issue 20: whole tensors, gathered by every rank together, written by rank 0
                    weights = full_trainable_state(model)
                    optim_state = FullStateOptimizer(model, optimizer).state_dict()
                elif accelerator.is_main_process:
                    weights, optim_state = trainable_state(accelerator.unwrap_model(model)), optimizer
                if accelerator.is_main_process:
                    save_checkpoint(ckpt_root, step, weights, optim_state, scheduler,
                                    {"step": step, "micro_batches": micro, "early_stopping": early.state()},
                                    keep=tc.keep_checkpoints, rng_per_rank=rng_per_rank)
                accelerator.wait_for_everyone()
                clock.mark("checkpoint")
            kill_if_asked(step)

    accelerator.wait_for_everyone()
    if fsdp:  # issue 20: whole weights back, so the final model is written as without FSDP
        gather_full_weights(model, keep=accelerator.is_main_process)
    summary = provenance(cfg, template, data, step, stop_reason)
    summary["training"] = {"peak_memory_bytes": peak_memory(memory_before_model),
                           "load_peak_memory_bytes": load_peak,
                           "memory_measure": "cuda_max_allocated" if torch.cuda.is_available() else "peak_rss_delta",
                           "tokens_per_s": train_tokens / train_seconds if train_seconds else None,
                           "target_fraction": train_targets / train_tokens if train_tokens else None,
                           "trainable_parameters": trainable, "total_parameters": total,
                           "base_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
                           "mixed_precision": mixed_precision, "batch_size": tc.batch_size,
                           "grad_accum": tc.grad_accum, "processes": world,
                           "distributed": "FSDP" if fsdp else accelerator.distributed_type.value}
    if accelerator.is_main_process:
        if stop_reason:
            print(f"early stop at step {step}: {stop_reason}")
        final = write_final(out / "final", accelerator.unwrap_model(model), tokenizer, cfg, summary)
        if image_processor is not None:  # issue 19: evaluate and serve read the run's image processor
            image_processor.save_pretrained(final)
        clock.mark("save")
        plot_metrics(out)
        clock.mark("plots")
        timing = clock.record(step, train_tokens)  # OUT/timing.json; the summary stays what provenance.json holds
        write_timing(out / "timing.json", timing)
        log.close()
        print(f"done: {step} steps; model in {final}\n{timing_line(timing)}")
        gate = finish_continual(cfg, parent, out, accelerator.unwrap_model(model), data.train, pad_id,
                                accelerator.device, summary)  # issue 15: Fisher, lineage, gate
        if gate is not None:
            summary["continual"] = gate
    return summary
