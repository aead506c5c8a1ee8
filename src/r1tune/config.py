"""The typed schema of every r1tune run. Defaults live here and nowhere else.

A run is a YAML file validated against one of the `*Config` classes below; unknown keys are rejected
(a typo must not be silently ignored), and any key can be overridden from the command line:

    r1tune finetune configs/quickstart.yaml --set train.lr=1e-4 --set data.reasoning=empty
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from r1tune.errors import R1TuneError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    name_or_path: str = Field("", description="Hub id (deepseek-ai/DeepSeek-R1-Distill-Qwen-7B) or a local folder.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) to pin.")
    trust_remote_code: bool = Field(False, description="Run code shipped with the checkpoint. Off unless you trust it.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bf16 where the hardware has it, fp32 otherwise.")
    attn_implementation: str = Field("sdpa", description="Attention kernel passed to transformers.")


class DataConfig(Section):
    train: str = Field("", description="Training data: .jsonl/.json/.csv/.parquet in alpaca, ShareGPT or messages form.")
    validation: str | None = Field(None, description="Validation data; when unset, `val_split` of train is held out.")
    val_split: float = Field(0.1, ge=0.0, lt=1.0, description="Share of train held out for validation if no file is given.")
    format: Literal["auto", "alpaca", "sharegpt", "messages"] = Field("auto", description="Record format.")
    reasoning: Literal["keep", "drop", "empty"] = Field(
        "keep",
        description="keep: train the final answer's reasoning trace; drop: train only the answer, after an "
        "unlabelled empty think block; empty: also train the model to emit the empty `<think>\\n\\n</think>`.")
    max_length: int = Field(1024, gt=8, description="Tokens per sample; longer targets are cut at the end.")
    on_error: Literal["stop", "skip"] = Field("stop", description="Stop at the first bad record, or skip and list it.")
    chat_template: Literal["model", "r1", "r1-2025-01"] = Field(
        "model", description="Template to train with: the tokenizer's own, or one of the bundled R1 templates.")


class MethodConfig(Section):
    name: Literal["lora", "full", "freeze"] = Field("lora", description="How the model is wrapped for training.")
    lora_r: int = Field(8, gt=0, description="LoRA rank.")
    lora_alpha: int = Field(16, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Modules LoRA adapts; all-linear = every linear layer but the LM head.")
    trainable_layers: int = Field(2, gt=0, description="freeze: number of top decoder layers left trainable.")
    train_lm_head: bool = Field(False, description="freeze: also train the final norm and LM head.")


class TrainConfig(Section):
    epochs: float = Field(1.0, gt=0, description="Passes over the training data (ignored when max_steps is set).")
    max_steps: int | None = Field(None, gt=0, description="Optimizer steps; overrides epochs.")
    batch_size: int = Field(4, gt=0, description="Samples per micro-batch (per process).")
    grad_accum: int = Field(1, gt=0, description="Micro-batches per optimizer step.")
    lr: float = Field(2e-4, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not applied to norms and biases).")
    warmup_steps: int = Field(500, ge=0, description="Linear warmup steps, capped at 10% of a short run.")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="Cosine decays to lr * min_lr_ratio.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping by global norm.")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on GPUs that have it, fp16 on older GPUs, none on CPU.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward to save memory.")
    seed: int = Field(42, description="Seed for initialisation, data order and dropout.")
    eval_every: int = Field(50, gt=0, description="Evaluate on the validation split every N optimizer steps.")
    save_every: int = Field(100, gt=0, description="Checkpoint every N optimizer steps.")
    keep_checkpoints: int = Field(2, gt=0, description="How many recent checkpoints to keep.")
    log_every: int = Field(1, gt=0, description="Write a metrics line every N optimizer steps.")
    early_stopping_patience: int | None = Field(
        None, gt=0, description="Stop when eval loss has not improved for this many evaluations.")
    early_stopping_rising: int = Field(
        10, gt=0, description="Stop when eval loss rose in this many consecutive evaluations.")
    threads: int | None = Field(None, gt=0, description="CPU threads for torch (default: torch's choice).")


class FinetuneConfig(Section):
    """`r1tune finetune`: one recipe for every method."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    out: str = Field("runs/finetune", description="Output folder: checkpoints/, final/, metrics.jsonl.")


def parse_overrides(pairs: list[str]) -> dict:
    """["train.lr=1e-4", "method.name=full"] → nested dict, values parsed as YAML scalars/lists."""
    tree: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise R1TuneError(f"--set expects key=value, got '{pair}'")
        key, value = pair.split("=", 1)
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value) if value != "" else None
    return tree


def merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(cls: type[Section], path: str | Path | None = None, overrides: dict | None = None):
    """Read YAML (optional), apply overrides, validate. Errors name the key that is wrong."""
    raw: dict = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise R1TuneError(f"config file not found: {path}") from None
        except yaml.YAMLError as e:
            raise R1TuneError(f"{path}: invalid YAML: {e}") from None
        if not isinstance(raw, dict):
            raise R1TuneError(f"{path}: a config must be a mapping of sections")
    raw = merge(raw, overrides or {})
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise R1TuneError(f"{path or 'config'}: {problems}") from None


def dump_config(config: Section, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.model_dump(mode="json"), allow_unicode=True, sort_keys=False),
                          encoding="utf-8")
