"""Advisor memory estimates for the real R1-Distill checkpoints (configs written out: no hub needed).

    .venv/bin/python bench/r1_distill_memory.py [--seq 4096] [--batch 1]

Per-GPU peak in bf16, one process (divide weights + gradients + optimizer by the GPU count for ZeRO-3/FSDP).
"""

import argparse

import torch
from transformers import LlamaConfig, Qwen2Config

from r1tune.config import MethodConfig
from r1tune.train.memory import GIB, estimate_memory

MODELS = {  # the published config.json values of the R1-Distill checkpoints
    "R1-Distill-Qwen-7B": Qwen2Config(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                      num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                                      tie_word_embeddings=False),
    "R1-Distill-Llama-8B": LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                       num_attention_heads=32, num_key_value_heads=8, vocab_size=128256),
    "R1-Distill-Qwen-32B": Qwen2Config(hidden_size=5120, intermediate_size=27648, num_hidden_layers=64,
                                       num_attention_heads=40, num_key_value_heads=8, vocab_size=152064,
                                       tie_word_embeddings=False),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--methods", nargs="+", default=["qlora", "lora", "freeze", "full"])
    args = ap.parse_args()
    print("| model | method | weights | grads + AdamW | activations (ckpt) | total, 1 GPU (ckpt) |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        cfg = MODELS[name]
        for method in args.methods:
            m = MethodConfig(name=method, lora_r=16, lora_alpha=32, trainable_layers=cfg.num_hidden_layers // 4)
            est = estimate_memory(cfg, m, args.batch, args.seq, torch.bfloat16, gradient_checkpointing=True,
                                  flash_attention=True)  # GPU runs use flash attention
            states = (est.gradients + est.optimizer) / GIB
            print(f"| {name} | {method} | {est.weights / GIB:.1f} GiB | {states:.1f} GiB "
                  f"| {est.activations / GIB:.1f} GiB | {est.total / GIB:.1f} GiB |", flush=True)


if __name__ == "__main__":
    main()
