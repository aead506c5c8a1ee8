"""FSDP on r1tune's own loop: weights, gradients and optimizer states sharded over the processes (FSDP2).

    r1tune finetune … --method full --nproc 2 --set train.fsdp=true        # local processes (gloo on CPU)
    torchrun --nnodes 2 --node-rank 0|1 --nproc-per-node 1 --master-addr HOST --master-port P \\
        -m r1tune finetune … --set train.fsdp=true                          # one command per node

    plan = shard_model(model, method)                # before the optimizer exists: parameters become DTensor shards
    loss = sharded_loss(model, batch)                # through the root's forward, which gathers the shards
    grad_norm = clip_grad_norm(params, max_norm)     # one global norm over every rank's shards
    weights = full_trainable_state(model)            # every rank calls these together (collectives);
    optim = FullStateOptimizer(model, optimizer)     # checkpoints hold whole tensors keyed by parameter name,
    gather_full_weights(model, keep=is_main)         # the run is over: whole weights back for write_final

Each decoder layer is one FSDP unit (all-gathered just before it runs, freed after), and the root holds the rest
(embeddings, final norm, LM head — tied or not — and any prompt encoder). Under PEFT frozen and trainable
parameters share a unit; only those that train get gradients reduced. FSDP averages gradients over ranks, so the
recipe multiplies each loss by the world size, as for any sharded engine.

Checkpoints stay in the one format `train/checkpoint.py` writes: the trainable weights as whole tensors, the
optimizer state as whole tensors keyed by parameter name. Rank 0 writes them; on resume every rank reads the
files and keeps its own shard, so a run laid out over 2 local processes may resume over 2 nodes (the process
count stays: each rank's RNG state comes back). torch.distributed.fsdp runs on CPU with gloo; accelerate does not:
under `use_cpu` it turns an FSDP or DeepSpeed launch config into plain multi-CPU data parallelism without a word,
which is why the switch is `train.fsdp` and not only accelerate's config (`use_fsdp`).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from r1tune.errors import R1TuneError
from r1tune.model.methods import decoder_layers
from r1tune.model.template import IGNORE
from r1tune.train.data import collate

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)  # whole tensors, on CPU, rank 0's only
FULL_ON_EVERY_RANK = StateDictOptions(full_state_dict=True, strict=False)  # loading: each rank has the whole dict


def use_fsdp(configured: bool, processes: int, distributed_type: str) -> tuple[bool, str | None]:
    """(shard with FSDP?, a line to tell the user). `train.fsdp` with several processes shards. accelerate runs its
    FSDP and DeepSpeed engines only on accelerators: on CPU it turns either launch config into plain multi-CPU data
    parallelism without a word. An FSDP config is honoured here with r1tune's own FSDP; a DeepSpeed one is named.
    Under DeepSpeed proper (GPUs) accelerate's wrapper cannot drive this loop: it refuses `prepare` without a
    dataloader, and it steps the optimizer on every backward while this loop accumulates micro-batches itself."""
    if distributed_type == "DEEPSPEED":
        raise R1TuneError("r1tune finetune does not run under DeepSpeed (accelerate's wrapper steps on every backward, "
                          "r1tune accumulates micro-batches itself): launch without the DeepSpeed config and add "
                          "--set train.fsdp=true, which shards weights, gradients and optimizer states as ZeRO-3 does")
    if processes < 2 or distributed_type == "FSDP":  # one process; or accelerate's own FSDP (GPUs) wraps the model
        return False, None
    on_cpu = distributed_type == "MULTI_CPU"
    if on_cpu and os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return configured, ("accelerate does not run DeepSpeed on CPU: this run is plain data parallelism"
                            + ("" if configured else " (--set train.fsdp=true shards it with FSDP)"))
    if on_cpu and os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and not configured:
        return True, "accelerate does not run FSDP on CPU: sharding with r1tune's FSDP (train.fsdp) instead"
    return configured, None


def wrapping_plan(model) -> list[str]:
    """The modules that become FSDP units, in the order `shard_model` wraps them (the root, '', last)."""
    names = {id(m): n for n, m in model.named_modules()}
    return [names[id(layer)] for layer in decoder_layers(model)] + [""]


def shard_model(model, method: str, reshard_after_forward: bool = True) -> list[str]:
    """Shard `model` in place over the default process group; returns the wrapping plan. Build the optimizer
    afterwards: its parameters must be the shards."""
    if method == "qlora":
        raise R1TuneError("train.fsdp: QLoRA's 4-bit weights cannot be sharded by FSDP here; use method=lora")
    if not dist.is_initialized() or dist.get_world_size() < 2:
        raise R1TuneError("train.fsdp needs several processes: add --nproc N, or launch with torchrun / accelerate")
    for layer in decoder_layers(model):
        fully_shard(layer, reshard_after_forward=reshard_after_forward)
    fully_shard(model, reshard_after_forward=reshard_after_forward)
    return wrapping_plan(model)


def clip_grad_norm(params: list[torch.nn.Parameter], max_norm: float) -> float:
    """Clip by the global norm over all ranks' gradient shards; returns that norm."""
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads)
    if isinstance(total, DTensor):  # partial norms on each rank: reduce to the global one
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return float(total)


def full_trainable_state(model) -> dict[str, torch.Tensor]:
    """The trainable parameters as whole tensors by name, as `trainable_state` gives them without FSDP. Every
    rank must call it (one all-gather per parameter)."""
    return {n: (p.full_tensor() if isinstance(p, DTensor) else p).detach().cpu().clone()
            for n, p in model.named_parameters() if p.requires_grad}


def load_full_trainable_state(model, state: dict[str, torch.Tensor]) -> None:
    """Whole tensors from a checkpoint into this rank's shards."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    unknown = sorted(set(state) - trainable)
    if unknown:
        raise R1TuneError(f"checkpoint does not match the model: unknown parameters {unknown[:3]}")
    set_model_state_dict(model, state, options=FULL_ON_EVERY_RANK)


class FullStateOptimizer:
    """The optimizer as a checkpoint holds it under FSDP: whole tensors keyed by parameter name. `state_dict` is a
    collective (every rank calls it, rank 0 gets the tensors); `load_state_dict` keeps this rank's shard."""

    def __init__(self, model, optimizer):
        self.model, self.optimizer = model, optimizer

    def state_dict(self) -> dict:
        return get_optimizer_state_dict(self.model, self.optimizer, options=FULL)

    def load_state_dict(self, state: dict) -> None:
        set_optimizer_state_dict(self.model, self.optimizer, state, options=FULL_ON_EVERY_RANK)


@torch.no_grad()
def gather_full_weights(model, keep: bool) -> None:
    """End of training: every parameter all-gathered back into an ordinary whole tensor, so the final model is
    written by the same code as without FSDP. Ranks that do not write (`keep=False`) drop what they gather. Every
    rank must call it; the model must not run forward again."""
    whole: dict[int, torch.nn.Parameter] = {}  # tied parameters (embeddings = LM head) stay one parameter
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if not isinstance(p, DTensor):
                continue
            if id(p) not in whole:
                full = p.full_tensor()
                data = full.cpu() if keep else torch.empty(0, dtype=full.dtype)
                whole[id(p)] = torch.nn.Parameter(data, requires_grad=p.requires_grad)
            module._parameters[name] = whole[id(p)]


@torch.no_grad()
def evaluate_loss_sharded(model, samples: list, batch_size: int, pad_id: int, device) -> dict:
    """`evaluate_loss` through the root's forward (the decoder alone cannot run outside it under FSDP). Every
    rank runs every batch: the forward is a collective."""
    was_training = model.training
    model.eval()
    loss_sum, n_targets, n_correct = 0.0, 0, 0
    order = sorted(range(len(samples)), key=lambda i: len(samples[i].input_ids))
    for start in range(0, len(order), batch_size):
        batch = {k: v.to(device) for k, v in collate([samples[i] for i in order[start:start + batch_size]],
                                                      pad_id).items()}
        out = model(**batch, num_items_in_batch=torch.ones((), device=device))
        targets = batch["labels"][:, 1:]
        keep = targets != IGNORE
        loss_sum += float(out.loss)
        n_targets += int(keep.sum())
        n_correct += int((out.logits[:, :-1].argmax(-1)[keep] == targets[keep]).sum())
    model.train(was_training)
    return {"loss": loss_sum / max(1, n_targets), "token_accuracy": n_correct / max(1, n_targets)}
