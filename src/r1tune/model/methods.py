"""Fine-tuning methods: each is a way of wrapping the model and of saving it, never a new recipe.

    model = apply_method(model, MethodConfig(name="lora"))
    save_trained(model, out_dir)   # adapter for PEFT methods, the whole model otherwise

lora   — PEFT LoRA on every linear layer but the LM head (or `target_modules`).
full   — every parameter trains.
freeze — only the top `trainable_layers` decoder layers train (plus norm + LM head if asked): the
         "middle and top layers" that domain adaptation mostly needs, at a fraction of full's memory.
"""

from __future__ import annotations

from pathlib import Path

import torch

from r1tune.config import MethodConfig
from r1tune.errors import R1TuneError

PEFT_METHODS = ("lora",)


def decoder_layers(model) -> torch.nn.ModuleList:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = getattr(getattr(base, "model", None), "layers", None)
    if layers is None:
        raise R1TuneError(f"cannot find the decoder layers of {type(base).__name__}")
    return layers


def apply_method(model, cfg: MethodConfig):
    if cfg.name == "lora":
        from peft import LoraConfig, get_peft_model

        peft_cfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                              target_modules=cfg.target_modules, task_type="CAUSAL_LM", bias="none")
        return get_peft_model(model, peft_cfg)
    if cfg.name == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if cfg.name == "freeze":
        layers = decoder_layers(model)
        if cfg.trainable_layers > len(layers):
            raise R1TuneError(f"method.trainable_layers={cfg.trainable_layers} but the model has {len(layers)} layers")
        for p in model.parameters():
            p.requires_grad_(False)
        for layer in layers[len(layers) - cfg.trainable_layers:]:
            for p in layer.parameters():
                p.requires_grad_(True)
        if cfg.train_lm_head:
            for module in (model.model.norm, model.get_output_embeddings()):
                for p in module.parameters():
                    p.requires_grad_(True)
        return model
    raise R1TuneError(f"unknown method {cfg.name!r}")


def trainable_state(model) -> dict[str, torch.Tensor]:
    """Parameters that train, by name: what a checkpoint must hold besides the optimizer."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = [n for n in state if n not in params]
    if missing:
        raise R1TuneError(f"checkpoint does not match the model: unknown parameters {missing[:3]}")
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t)


def count_parameters(model) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def save_trained(model, out: Path) -> None:
    """PEFT models save their adapter (loadable by peft); full/freeze save the whole model (transformers)."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
