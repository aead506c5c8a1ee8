"""Load R1-Distill models and tokenizers: hub ids or local folders, safetensors only.

    model = load_model(ModelConfig(name_or_path="deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"))
    tokenizer = load_tokenizer(ModelConfig(name_or_path="deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"))

Run folders (adapters, checkpoints, exports) are resolved and loaded for inference in `model/runs.py`.

`trust_remote_code` stays off unless the config turns it on; `dtype: auto` is bf16 where the hardware has it
and fp32 otherwise (fp16 overflows on Qwen2, so it is never chosen automatically). A model quantized with
bitsandbytes (a QLoRA base, an 8-bit export) imports it first: the `r1tune` command keeps it hidden
otherwise (`model/bitsandbytes_import.py`).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from r1tune.config import ModelConfig
from r1tune.errors import R1TuneError
from r1tune.model.bitsandbytes_import import import_bitsandbytes
from r1tune.model.vision import is_vision_checkpoint

# peft reads transformers' deprecated `is_gradient_checkpointing` each time it wraps a model: a FutureWarning on
# every adapter run that only peft can act on (this message only; other warnings still show)
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def resolve_dtype(name: str) -> torch.dtype:
    if name == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def cpu_has_native_bf16() -> bool:
    """x86 CPUs with bf16 dot-product instructions (AVX512-BF16, AMX): bf16 matmuls run several times faster than
    fp32 there (4.3× on this project's EPYC test machine). Elsewhere bf16 on CPU is emulated and slower."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def load_tokenizer(cfg: ModelConfig, path: str | None = None):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path or cfg.name_or_path, revision=cfg.revision,
                                            trust_remote_code=cfg.trust_remote_code)
    except OSError as e:
        raise R1TuneError(f"cannot load the tokenizer of '{path or cfg.name_or_path}': {_first_line(e)}") from None
    if tok.pad_token_id is None:  # R1 tokenizers pad with eos; masking is by position, so this is safe
        tok.pad_token = tok.eos_token
    return tok


def load_model(cfg: ModelConfig, dtype: torch.dtype | None = None, **kwargs):
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    if not cfg.name_or_path:
        raise R1TuneError("no model given: set model.name_or_path (or --model)")
    if quantized_with_bitsandbytes(cfg, kwargs.get("quantization_config")):
        import_bitsandbytes()
    # issue 19: Qwen2-VL / Qwen2.5-VL are image-text-to-text models, not in the causal-LM auto class
    auto = AutoModelForImageTextToText if is_vision_checkpoint(cfg.name_or_path, cfg.revision) else AutoModelForCausalLM
    try:
        return auto.from_pretrained(
            cfg.name_or_path, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code,
            dtype=dtype or resolve_dtype(cfg.dtype), use_safetensors=True,
            attn_implementation=cfg.attn_implementation, **kwargs)
    except OSError as e:
        raise R1TuneError(f"cannot load model '{cfg.name_or_path}': {_first_line(e)}") from None


def quantized_with_bitsandbytes(cfg: ModelConfig, quantization=None) -> bool:
    """The load asks bitsandbytes for a quantization, or the model's config says it was quantized with it."""
    method = quantization.get("quant_method") if isinstance(quantization, dict) else getattr(quantization,
                                                                                              "quant_method", None)
    if quantization is not None and "bitsandbytes" in str(getattr(method, "value", method)):
        return True
    try:
        if Path(cfg.name_or_path).is_dir():
            config = json.loads((Path(cfg.name_or_path) / "config.json").read_text(encoding="utf-8"))
        else:  # a hub id: the config from_pretrained reads next (cached)
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(cfg.name_or_path, revision=cfg.revision,
                                                trust_remote_code=cfg.trust_remote_code).to_dict()
    except (OSError, ValueError):
        return False  # from_pretrained says what is wrong
    declared = config.get("quantization_config") if isinstance(config, dict) else None
    return isinstance(declared, dict) and "bitsandbytes" in str(declared.get("quant_method", ""))


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
