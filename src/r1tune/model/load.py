"""Load R1-Distill models and tokenizers: hub ids or local folders, safetensors only.

    model, tokenizer = load_for_inference("runs/quickstart/tuned")      # a finetune run (adapter or full)
    model = load_model(ModelConfig(name_or_path="deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"))

`trust_remote_code` stays off unless the config turns it on; `dtype: auto` is bf16 where the hardware has it
and fp32 otherwise (fp16 overflows on Qwen2, so it is never chosen automatically).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from r1tune.config import ModelConfig
from r1tune.errors import R1TuneError


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
    from transformers import AutoModelForCausalLM

    if not cfg.name_or_path:
        raise R1TuneError("no model given: set model.name_or_path (or --model)")
    try:
        return AutoModelForCausalLM.from_pretrained(
            cfg.name_or_path, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code,
            dtype=dtype or resolve_dtype(cfg.dtype), use_safetensors=True,
            attn_implementation=cfg.attn_implementation, **kwargs)
    except OSError as e:
        raise R1TuneError(f"cannot load model '{cfg.name_or_path}': {_first_line(e)}") from None


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def resolve_run(path: str | Path) -> Path:
    """A run folder (with final/), or a folder holding a model or an adapter directly."""
    path = Path(path)
    if (path / "final").is_dir():
        return path / "final"
    return path


def read_provenance(folder: Path) -> dict:
    p = Path(folder) / "provenance.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}


def load_for_inference(path: str | Path, dtype: str = "auto", base: str | None = None):
    """(model, tokenizer) in eval mode from a model folder / hub id, or a run holding a PEFT adapter."""
    folder = resolve_run(path)
    if (folder / "adapter_config.json").exists():
        from peft import PeftModel

        adapter_cfg = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        prov = read_provenance(folder)
        base = base or prov.get("base_model") or adapter_cfg.get("base_model_name_or_path")
        extra = {}
        if prov.get("quantization"):  # a QLoRA adapter runs on the 4-bit base it was trained on
            from r1tune.config import MethodConfig
            from r1tune.model.methods import quantization_config

            device = "cuda" if torch.cuda.is_available() else "cpu"
            method = MethodConfig(name="qlora", quant_type=prov["quantization"])
            extra = {"quantization_config": quantization_config(method), "device_map": {"": device}}
        model = load_model(ModelConfig(name_or_path=base, dtype=dtype), **extra)
        model = PeftModel.from_pretrained(model, str(folder))
    else:
        model = load_model(ModelConfig(name_or_path=str(folder) if folder.exists() else str(path), dtype=dtype))
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(folder) if folder.exists() else str(path)))
    model.eval()
    return model, tokenizer
