"""The grpo recipe: reinforcement learning with verifiable rewards, the stage after SFT, top to bottom.

    r1tune grpo --model M [--adapter SFT_RUN] --data prompts.jsonl --out runs/grpo --reward accuracy,format
    r1tune grpo configs/grpo-finsent.yaml --set grpo.num_generations=8

Steps: load tokenizer and template → read the prompts with their references, check every reward against them
(a reward needing a reference the data lacks, a prompt over max_prompt_length, an adapter from another base,
user code not allowed: all stop here, before any generation) → load the model, wrapped for the method or with
the SFT run's adapter → each step: sample G completions per prompt with the KV cache (the exact serve prompt,
R1 sampling, a generator seeded by step), score them, group-relative advantages, drop zero-variance groups,
then the clipped policy loss over completion tokens (dapo / grpo / dr_grpo), AdamW; `num_iterations` passes
per batch of completions → checkpoint atomically at generation boundaries → OUT/final/ (adapter or model,
tokenizer, config.yaml, provenance.json), which `r1tune evaluate`, `export` and `serve` read like a finetune run.

Logged per step (metrics.jsonl, TensorBoard): loss, reward and each reward's mean / std, frac_reward_zero_std,
completions/clipped_ratio and lengths, kl (beta > 0), clip ratios, entropy, tokens/s, generation vs training
seconds. OUT/completions.jsonl keeps one group of completions per step, with its rewards.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import peft  # noqa: F401  (imported before the memory baseline: a library is not training memory)
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import set_seed

from r1tune.config import GrpoConfig, dump_config
from r1tune.data.io import write_jsonl
from r1tune.errors import R1TuneError
from r1tune.model.load import load_tokenizer
from r1tune.model.methods import (
    PROMPT_METHODS,
    apply_method,
    count_parameters,
    decoder_layers,
    load_trainable_state,
    trainable_state,
)
from r1tune.model.runs import check_same_base, library_versions, resolve_run, write_final
from r1tune.model.template import resolve_template, template_hash, template_name
from r1tune.train.checkpoint import kill_if_asked, latest_checkpoint, resume_latest, rng_state, save_checkpoint
from r1tune.train.data import file_hash
from r1tune.train.distributed import all_reduce_gradients, gather_objects
from r1tune.train.grpo import (
    completion_logprobs,
    group_advantages,
    policy_objective,
    reduce_loss,
    rows_to_train,
    token_capped_rows,
)
from r1tune.train.memory import micro_batch_token_cap, peak_memory
from r1tune.train.monitor import MetricsLog, plot_metrics, truncate_metrics
from r1tune.train.optim import param_groups
from r1tune.train.precision import resolve_precision
from r1tune.train.prompts import PromptSet, PromptStream, load_prompts
from r1tune.train.rewards import build_rewards, score, weighted_total
from r1tune.train.rollout import decode_completions, sample_completions
from r1tune.train.schedule import make_scheduler
from r1tune.train.setup import enable_gradient_checkpointing, load_base, prepare_process, start_accelerator

CLIPPED_WARNING = 0.5  # share of cut-off completions above which a step warns (trl#5697: rewards and gradient vanish)


def with_adapter_run(cfg: GrpoConfig):
    """(the config with `model` and `method` taken from the --adapter run, that run) — or (cfg, None). Stops when the
    run holds no LoRA-family adapter or was trained on another base than --model."""
    if not cfg.adapter:
        return cfg, None
    run = resolve_run(cfg.adapter)
    if run.kind != "adapter":
        hint = f" (a full model: pass it as --model {run.folder})" if run.kind == "model" else ""
        raise R1TuneError(f"--adapter {cfg.adapter}: not a run holding an adapter{hint}")
    sft = run.config()
    if sft is None:
        raise R1TuneError(f"--adapter {cfg.adapter}: no config.yaml saying how its adapter was made: pass the "
                          "finetune run's folder")
    if sft.method.name in PROMPT_METHODS:
        raise R1TuneError(f"--adapter {cfg.adapter}: a {sft.method.name} adapter; grpo trains LoRA-family "
                          "adapters (lora, dora, qlora, ia3), full and freeze runs")
    model = cfg.model.name_or_path or run.base_model()
    check_same_base(run, model)
    model_cfg = cfg.model.model_copy(update={"name_or_path": model})
    return cfg.model_copy(update={"model": model_cfg, "method": sft.method}), run


def provenance(cfg: GrpoConfig, template: str, prompts: PromptSet, rewards, step: int) -> dict:
    """What made this run: read back by evaluate, export and serve (`model/runs.py`)."""
    return {
        "base_model": cfg.model.name_or_path, "revision": cfg.model.revision, "method": cfg.method.name,
        "quantization": cfg.method.quant_type if cfg.method.name == "qlora" else None,
        "template": template_name(template), "template_hash": template_hash(template),
        "stage": "grpo", "adapter_from": cfg.adapter, "data_hash": file_hash(cfg.data.train),
        "prompts": len(prompts.samples), "skipped": len(prompts.skipped), "prompts_too_long": prompts.too_long,
        "rewards": {r.name: r.weight for r in rewards}, "loss_type": cfg.grpo.loss_type,
        "num_generations": cfg.grpo.num_generations, "steps": step, "stop_reason": None,
        "versions": library_versions(),
    }


def disable_dropout(model) -> None:
    """The ratio of a first pass must be exactly 1 and completions scored by the policy that sampled them."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


class Reference:
    """Log-probs of the reference policy for the KL term: the model with its adapter disabled (a fresh adapter),
    the --adapter run's adapter as loaded (a frozen copy of the adapter only), or a frozen copy of a full / freeze
    model."""

    def __init__(self, model, cfg: GrpoConfig):
        self.model, self.copy, self.adapter = model, None, None
        if hasattr(model, "disable_adapter"):
            if cfg.adapter:
                model.load_adapter(str(resolve_run(cfg.adapter).folder), adapter_name="reference", is_trainable=False)
                self.adapter = "reference"
        else:
            import copy

            self.copy = copy.deepcopy(model).requires_grad_(False)

    @torch.no_grad()
    def logprobs(self, input_ids, attention_mask, prompt_width: int, temperature: float) -> torch.Tensor:
        if self.copy is not None:
            return completion_logprobs(self.copy, input_ids, attention_mask, prompt_width, temperature)[0]
        if self.adapter is None:
            with self.model.disable_adapter():
                return completion_logprobs(self.model, input_ids, attention_mask, prompt_width, temperature)[0]
        trained = [p for p in self.model.parameters() if p.requires_grad]
        self.model.set_adapter(self.adapter)
        try:
            return completion_logprobs(self.model, input_ids, attention_mask, prompt_width, temperature)[0]
        finally:
            self.model.set_adapter("default")
            for name, p in self.model.named_parameters():  # set_adapter marks the active adapter trainable
                p.requires_grad_(f".{self.adapter}." not in name and p.requires_grad)
            for p in trained:
                p.requires_grad_(True)

    def drop(self) -> None:
        """Before saving: only the trained adapter is the run's."""
        if self.adapter is not None:
            self.model.delete_adapter(self.adapter)


def piece_inputs(rollout, rows: list[int], device) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(input ids, attention mask, prompt width, completion width) of some rows, padding trimmed to them."""
    index = torch.tensor(rows, device=rollout.prompt_ids.device)
    prompt_mask = rollout.prompt_mask[index]
    completion_mask = rollout.completion_mask[index]
    prompt_width = int(prompt_mask.sum(-1).max())
    completion_width = int(completion_mask.sum(-1).max())
    ids = torch.cat([rollout.prompt_ids[index, -prompt_width:], rollout.completion_ids[index, :completion_width]], 1)
    mask = torch.cat([prompt_mask[:, -prompt_width:], completion_mask[:, :completion_width]], 1)
    return ids.to(device), mask.to(device), prompt_width, completion_width


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def start_line(cfg: GrpoConfig, prompts: PromptSet, rewards, trainable: int, total: int, world: int) -> str:
    g = cfg.grpo
    skipped = f"{len(prompts.skipped)} skipped"
    if prompts.too_long:
        skipped += (f", {prompts.too_long} longer than max_prompt_length "
                    f"({'left out' if cfg.data.truncate == 'skip' else 'cut from the left'})")
    adapter = f" (adapter from {cfg.adapter})" if cfg.adapter else ""
    weights = ", ".join(f"{r.name}×{r.weight:g}" for r in rewards)
    return (f"r1tune grpo: {cfg.method.name}{adapter} on {cfg.model.name_or_path} — {trainable:,} of {total:,} "
            f"parameters train; {len(prompts.samples)} prompts ({skipped}); {cfg.train.max_steps} steps of "
            f"{cfg.train.batch_size * world} prompts × {g.num_generations} completions (≤ {g.max_completion_length} "
            f"tokens, temperature {g.temperature}, top-p {g.top_p}); loss {g.loss_type}, beta {g.beta}, "
            f"{g.num_iterations} pass(es) per batch\n  rewards: {weights}; the prompt pre-fills `<think>\\n`, so "
            "completions start inside the reasoning and format expects one `</think>` then the answer")


def grpo(cfg: GrpoConfig, resume: bool = False) -> dict:
    tc, gc = cfg.train, cfg.grpo
    out = Path(cfg.out)
    ckpt_root = out / "checkpoints"
    if not resume and latest_checkpoint(ckpt_root) is not None:
        raise R1TuneError(f"{out} already holds checkpoints: pass --resume to continue, or choose another --out")
    if cfg.method.name in PROMPT_METHODS and not cfg.adapter:
        raise R1TuneError(f"method {cfg.method.name}: grpo trains LoRA-family adapters (lora, dora, qlora, ia3), "
                          "full and freeze runs")
    cfg, adapter_run = with_adapter_run(cfg)
    prepare_process(tc.threads)
    dtype, mixed_precision = resolve_precision(cfg)
    accelerator = start_accelerator(mixed_precision)
    rank, world = accelerator.process_index, accelerator.num_processes
    set_seed(tc.seed)

    # prompts and rewards, checked against each other before anything is loaded or generated
    tokenizer = load_tokenizer(cfg.model)
    template = resolve_template(tokenizer, cfg.data.chat_template)
    prompts = load_prompts(cfg.data, tokenizer, template)
    rewards = build_rewards(cfg.rewards, gc, prompts.samples, cfg.data.reference_field)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_jsonl(out / "skipped.jsonl", prompts.skipped)
        dump_config(cfg, out / "config.yaml")

    # the policy: the base wrapped for the method, or carrying the SFT run's adapter
    loaded = load_base(cfg.model, cfg.method, dtype, accelerator.device)
    model = loaded.model
    n_layers = len(decoder_layers(model))
    if tc.gradient_checkpointing:
        enable_gradient_checkpointing(model, cfg.method.name)
    if adapter_run is not None:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, str(adapter_run.folder), is_trainable=True)
        except (RuntimeError, ValueError) as e:
            raise R1TuneError(f"--adapter {cfg.adapter} does not fit {cfg.model.name_or_path}: "
                              f"{str(e).strip().splitlines()[0]}") from None
    else:
        model = apply_method(model, cfg.method, tc.gradient_checkpointing, tokenizer_path=cfg.model.name_or_path)
    disable_dropout(model)
    model = model.to(accelerator.device)
    model.train()
    reference = Reference(model, cfg) if gc.beta else None
    trainable, total = count_parameters(model)
    params = [p for p in model.parameters() if p.requires_grad]

    stream = PromptStream(len(prompts.samples), tc.batch_size * world, tc.seed)
    optimizer = torch.optim.AdamW(param_groups(model, tc.lr, tc.weight_decay, n_layers), lr=tc.lr,
                                  betas=(0.9, 0.999), eps=1e-8)
    scheduler = make_scheduler(optimizer, tc.max_steps, tc.warmup_steps, tc.min_lr_ratio)
    optimizer = accelerator.prepare(optimizer)
    step = 0
    if resume:
        ckpt, weights, state = resume_latest(ckpt_root, optimizer, scheduler, rank)
        load_trainable_state(model, weights)
        step = state["step"]
        if accelerator.is_main_process:
            print(f"resumed from step {step} ({ckpt.relative_to(out)})")
            truncate_metrics(out / "metrics.jsonl", step)
            truncate_metrics(out / "completions.jsonl", step)
    elif accelerator.is_main_process:
        (out / "metrics.jsonl").unlink(missing_ok=True)
        (out / "completions.jsonl").unlink(missing_ok=True)

    log = MetricsLog(out) if accelerator.is_main_process else None
    if accelerator.is_main_process:
        print(start_line(cfg, prompts, rewards, trainable, total, world))
    eps_low, eps_high = gc.epsilon, gc.epsilon_high if gc.epsilon_high is not None else gc.epsilon
    piece_tokens = micro_batch_token_cap(tc.max_micro_batch_tokens)
    pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    progress = Progress(TextColumn("step {task.completed}/{task.total}"), BarColumn(),
                        TextColumn("reward {task.fields[reward]:.3f}  {task.fields[tps]:.0f} tok/s"),
                        TimeRemainingColumn(), disable=not accelerator.is_main_process)
    task = progress.add_task("grpo", total=tc.max_steps, completed=step, reward=float("nan"), tps=0.0)
    batch = None  # the current batch of completions, reused for num_iterations steps
    clipped_warnings = 0
    totals = {"generated_tokens": 0, "generation_s": 0.0, "training_s": 0.0, "steps": 0}
    with progress:
        while step < tc.max_steps:
            t0 = time.perf_counter()
            generation = step // gc.num_iterations
            fresh = batch is None or step % gc.num_iterations == 0
            if fresh:
                # ---- rollouts: this rank's prompts, G completions each, scored
                indices = stream.batch(generation)[rank * tc.batch_size:(rank + 1) * tc.batch_size]
                samples = [prompts.samples[i] for i in indices]
                generator = torch.Generator(device=accelerator.device)
                generator.manual_seed(tc.seed * 1_000_003 + generation * 1009 + rank)
                rollout = sample_completions(model, [s.prompt_ids for s in samples], gc.num_generations,
                                             gc.max_completion_length, gc.temperature, gc.top_p, eos_id, pad_id,
                                             generator, gc.generation_batch_size)
                completions = decode_completions(tokenizer, rollout)
                per_row = [s for s in samples for _ in range(gc.num_generations)]
                table = score(rewards, completions, per_row)
                total_reward = weighted_total(table, rewards)
                if gc.scale_rewards == "batch" and world > 1:  # the batch std spans every rank's completions
                    everyone = torch.cat(gather_objects(total_reward, world))
                    advantages, _ = group_advantages(everyone, gc.num_generations, "batch")
                    advantages = advantages[rank * len(total_reward):(rank + 1) * len(total_reward)]
                    _, zero_std = group_advantages(total_reward, gc.num_generations, "group")
                else:
                    advantages, zero_std = group_advantages(total_reward, gc.num_generations, gc.scale_rewards)
                counted, run = rows_to_train(zero_std, rollout.truncated, gc.num_generations, gc.drop_zero_variance,
                                             gc.truncated == "mask")
                rows = run.nonzero().squeeze(1).tolist()
                lengths = (rollout.prompt_mask.sum(-1) + rollout.lengths).tolist()
                pieces = token_capped_rows(lengths, rows, piece_tokens)
                totals_here = torch.tensor([int(counted.sum()), int(rollout.completion_mask[run].sum())],
                                           dtype=torch.float64, device=accelerator.device)
                n_sequences, n_tokens = (int(x) for x in accelerator.reduce(totals_here, "sum"))
                old, ref = {}, {}
                if gc.num_iterations > 1 or reference is not None:
                    for piece in pieces:
                        ids, mask, width, cwidth = piece_inputs(rollout, piece, accelerator.device)
                        with torch.no_grad(), accelerator.autocast():
                            if gc.num_iterations > 1:
                                old[tuple(piece)] = completion_logprobs(model, ids, mask, width, gc.temperature)[0]
                            if reference is not None:
                                ref[tuple(piece)] = reference.logprobs(ids, mask, width, gc.temperature)
                seen = {"table": table, "total": total_reward, "lengths": rollout.lengths.cpu(),
                        "truncated": rollout.truncated.cpu(), "zero_std": zero_std,
                        "trained": torch.tensor([len(rows)]), "masked": (counted & ~run).sum().view(1)}
                if world > 1:  # the step's metrics are every rank's completions, not rank 0's
                    seen = {k: torch.cat([x.cpu() for x in gather_objects(t, world)]) for k, t in seen.items()}
                batch = dict(rollout=rollout, completions=completions, seen=seen,
                             advantages=advantages.to(accelerator.device), pieces=pieces, n_sequences=n_sequences,
                             n_tokens=n_tokens, old=old, ref=ref, samples=samples, generation_s=rollout.seconds)
            t_train = time.perf_counter()

            # ---- one optimisation pass over the batch's completions
            loss_sum = torch.zeros((), device=accelerator.device)
            stat_sums = {"clipped_low": 0.0, "clipped_high": 0.0, "kl": 0.0, "entropy": 0.0, "tokens": 0}
            rollout = batch["rollout"]
            for piece in batch["pieces"]:
                ids, mask, width, cwidth = piece_inputs(rollout, piece, accelerator.device)
                completion_mask = mask[:, width:].float()
                with accelerator.autocast():
                    logps, entropy = completion_logprobs(model, ids, mask, width, gc.temperature)
                    old_logps = batch["old"].get(tuple(piece), logps.detach())
                    per_token, stats = policy_objective(logps, old_logps, batch["advantages"][piece], eps_low,
                                                        eps_high, gc.beta, batch["ref"].get(tuple(piece)))
                    part = reduce_loss(per_token, completion_mask, gc.loss_type, batch["n_sequences"],
                                       batch["n_tokens"], gc.max_completion_length)
                    accelerator.backward(part)
                loss_sum += part.detach()
                for key in ("clipped_low", "clipped_high", "kl"):
                    if key in stats:
                        stat_sums[key] += float((stats[key] * completion_mask).sum())
                stat_sums["entropy"] += float((entropy * completion_mask).sum())
                stat_sums["tokens"] += int(completion_mask.sum())
            trained = batch["n_tokens"] > 0  # on any rank: a rank whose groups all dropped still joins the sum
            if world > 1 and trained:
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                all_reduce_gradients(params)
            loss = float(accelerator.reduce(loss_sum, "sum"))
            if not math.isfinite(loss):
                last = latest_checkpoint(ckpt_root)
                raise R1TuneError(f"loss became {loss} at step {step + 1}: stopped. Last good checkpoint: "
                                  f"{last or 'none'}. Lower train.lr, use bf16 rather than fp16, or check the rewards.")
            grad_norm = float(accelerator.clip_grad_norm_(params, tc.max_grad_norm)) if trained else 0.0
            optimizer.step()  # nothing trained: every gradient is None and AdamW leaves the weights alone
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            t_end = time.perf_counter()

            # ---- what the step did
            generation_s = batch["generation_s"] if fresh else 0.0
            record = step_record(step, batch, rewards, gc, loss, grad_norm, scheduler.get_last_lr()[0], stat_sums,
                                 generation_s, t_end - t_train, t_end - t0)
            totals["generated_tokens"] += record["completions/generated_tokens"] if fresh else 0
            totals["generation_s"] += generation_s
            totals["training_s"] += t_end - t_train
            totals["steps"] += 1
            if accelerator.is_main_process:
                if fresh and record["completions/clipped_ratio"] > CLIPPED_WARNING:
                    clipped_warnings += 1
                    if clipped_warnings == 1 or clipped_warnings % 10 == 0:
                        progress.console.print(
                            f"[bold red]warning[/]: step {step}: {record['completions/clipped_ratio']:.0%} of the "
                            f"completions hit max_completion_length ({gc.max_completion_length} tokens) before "
                            "eos — cut completions earn no answer reward, so learning stalls: raise "
                            "grpo.max_completion_length (or add the length reward / grpo.truncated=mask)")
                if step % tc.log_every == 0 or step == tc.max_steps:
                    log.write(record)
                if fresh:
                    with open(out / "completions.jsonl", "a", encoding="utf-8") as f:
                        f.write(json.dumps(completion_record(step, batch, rewards), ensure_ascii=False) + "\n")
            progress.update(task, completed=step, reward=record["reward"], tps=record["tokens_per_s"])

            if step % tc.save_every == 0 and step < tc.max_steps and step % gc.num_iterations == 0:
                rng_per_rank = gather_objects(rng_state(), world)
                if accelerator.is_main_process:
                    save_checkpoint(ckpt_root, step, trainable_state(model), optimizer, scheduler,
                                    {"step": step, "micro_batches": step // gc.num_iterations,
                                     "early_stopping": {}}, keep=tc.keep_checkpoints, rng_per_rank=rng_per_rank)
                accelerator.wait_for_everyone()
            kill_if_asked(step)

    accelerator.wait_for_everyone()
    summary = provenance(cfg, template, prompts, rewards, step)
    summary["training"] = {
        "peak_memory_bytes": peak_memory(loaded.memory_before_model), "load_peak_memory_bytes": loaded.load_peak,
        "memory_measure": "cuda_max_allocated" if torch.cuda.is_available() else "peak_rss_delta",
        "generation_s": totals["generation_s"], "training_s": totals["training_s"],
        "generated_tokens_per_s": totals["generated_tokens"] / totals["generation_s"] if totals["generation_s"]
        else None, "trainable_parameters": trainable, "total_parameters": total,
        "base_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "mixed_precision": mixed_precision, "processes": world}
    if accelerator.is_main_process:
        if reference is not None:
            reference.drop()
        final = write_final(out / "final", model, tokenizer, cfg, summary)
        log.close()
        plot_metrics(out)
        print(f"done: {step} steps; model in {final}")
    return summary


def step_record(step: int, batch: dict, rewards, gc, loss: float, grad_norm: float, lr: float, stats: dict,
                generation_s: float, training_s: float, step_s: float) -> dict:
    """One metrics line over the step's completions (every rank's); clip ratios, kl and entropy are rank 0's."""
    seen = batch["seen"]
    table, total, lengths, truncated = seen["table"], seen["total"], seen["lengths"].float(), seen["truncated"]
    finished = lengths[~truncated]
    tokens = max(1, stats["tokens"])
    generated = int(lengths.sum())
    record = {"step": step, "split": "train", "loss": loss, "lr": lr, "grad_norm": grad_norm}
    record["reward"], record["reward_std"] = mean_std(total.tolist())
    for k, reward in enumerate(rewards):
        record[f"rewards/{reward.name}/mean"], record[f"rewards/{reward.name}/std"] = mean_std(table[:, k].tolist())
    record["frac_reward_zero_std"] = float(seen["zero_std"].float().mean())
    record["completions/clipped_ratio"] = float(truncated.float().mean())
    record["completions/mean_length"] = float(lengths.mean())
    record["completions/mean_terminated_length"] = float(finished.mean()) if finished.numel() else 0.0
    record["completions/max_length"] = float(lengths.max())
    record["completions/generated_tokens"] = generated
    record["completions/trained"] = int(seen["trained"].sum())
    record["completions/masked_truncated"] = int(seen["masked"].sum())
    record["clip_ratio/low_mean"] = stats["clipped_low"] / tokens
    record["clip_ratio/high_mean"] = stats["clipped_high"] / tokens
    record["clip_ratio/region_mean"] = (stats["clipped_low"] + stats["clipped_high"]) / tokens
    if gc.beta:
        record["kl"] = stats["kl"] / tokens
    record["entropy"] = stats["entropy"] / tokens if stats["tokens"] else float("nan")
    record["generation_s"], record["training_s"], record["step_s"] = generation_s, training_s, step_s
    record["tokens_per_s"] = (generated + stats["tokens"]) / step_s if generation_s else stats["tokens"] / step_s
    record["generated_tokens_per_s"] = generated / generation_s if generation_s else None
    return record


def completion_record(step: int, batch: dict, rewards) -> dict:
    """The first group of a step's completions with their rewards and advantages (OUT/completions.jsonl)."""
    g = len(batch["completions"]) // len(batch["samples"])
    sample = batch["samples"][0]
    return {"step": step, "source": sample.source, "prompt": sample.prompt_text, "reference": sample.reference,
            "completions": [{"text": c.text, "tokens": c.n_tokens, "truncated": c.truncated,
                             "advantage": round(float(batch["advantages"][i]), 4),
                             "rewards": {r.name: (None if math.isnan(v) else v)
                                         for r, v in zip(rewards, batch["seen"]["table"][i].tolist())}}
                            for i, c in enumerate(batch["completions"][:g])]}
