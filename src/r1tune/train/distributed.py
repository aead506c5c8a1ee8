"""Several processes, one run: launching, gradient sync and per-rank state.

    r1tune finetune … --nproc 2                       # local processes (gloo on CPU, NCCL on GPUs)
    accelerate launch --config_file configs/accelerate/fsdp.yaml -m r1tune finetune …   # multi-node, FSDP, ZeRO

`--batch-size` is per process: every rank builds the same global micro-batches (batch × processes) and
takes its own slice, so `--nproc 2 --batch-size 2` sees exactly what one process with `--batch-size 4` sees.
In plain data parallelism each rank's loss is already divided by the global number of target tokens, so
summing the gradients over ranks (one all-reduce of one flat buffer per optimizer step) gives the
single-process gradient; no DDP wrapper is needed, and the recipe's loss may call the decoder directly.
FSDP and DeepSpeed shard the parameters, so there the model goes through accelerate's wrapper instead.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import torch
import torch.distributed as dist


def launch(nproc: int, argv: list[str]) -> int:
    """Re-run this command in `nproc` local processes (torch.distributed.run); returns their exit code."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "--master-addr=127.0.0.1",
           f"--master-port={port}", "-m", "r1tune", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, os.cpu_count() // nproc)))}
    return subprocess.call(cmd, env=env)


def in_launched_process() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def all_reduce_gradients(params: list[torch.nn.Parameter]) -> None:
    """Sum gradients over all ranks, in one flat buffer (one collective instead of one per tensor)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def gather_objects(obj, world: int) -> list:
    """Every rank's `obj`, in rank order (one process: just [obj])."""
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out
