"""Learning-rate schedule: linear warmup, then cosine decay to `min_lr_ratio` × peak."""

from __future__ import annotations

import math

from torch.optim.lr_scheduler import LambdaLR


def effective_warmup(warmup_steps: int, total_steps: int) -> int:
    """The configured warmup, capped at 10% of the run: 500 warmup steps would swallow a 300-step run whole."""
    return min(warmup_steps, max(1, total_steps // 10)) if warmup_steps else 0


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the peak lr for the optimizer step about to be taken (step counts from 0)."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return min_lr_ratio + (1.0 - min_lr_ratio) * cosine


def make_scheduler(optimizer, total_steps: int, warmup_steps: int, min_lr_ratio: float = 0.0) -> LambdaLR:
    warmup = effective_warmup(warmup_steps, total_steps)
    return LambdaLR(optimizer, lambda step: warmup_cosine(step, total_steps, warmup, min_lr_ratio))
