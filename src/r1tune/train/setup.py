"""What every training recipe does before its loop: the process, accelerate, and the model loaded and wrapped.

    prepare_process(cfg.train.threads)
    accelerator = start_accelerator(mixed_precision)              # a clean accelerate state, CPU or GPU
    loaded = load_base(cfg.model, cfg.method, dtype, accelerator.device)   # LoadedModel: model, memory marks
    enable_gradient_checkpointing(loaded.model, cfg.method.name)
    model = apply_method(loaded.model, cfg.method, …)

`r1tune finetune` and `r1tune grpo` share these, so both load, quantize, measure and checkpoint-enable a model the
same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from r1tune.model.load import load_model
from r1tune.model.methods import quantization_config
from r1tune.train.memory import peak_memory, process_memory, reset_peak_memory, return_freed_memory_to_os


def prepare_process(threads: int | None, return_freed_memory: bool = False) -> None:
    """Torch threads as configured; on CPU with `return_freed_memory` (train.return_freed_memory), freed memory
    goes back to the OS at once — slower steps, lower peak RSS; the memory estimate follows either way
    (train/memory.py)."""
    if threads:
        torch.set_num_threads(threads)
    if return_freed_memory and not torch.cuda.is_available():
        return_freed_memory_to_os()


def start_accelerator(mixed_precision: str) -> Accelerator:
    """accelerate keeps one process-wide state and refuses a second precision in the same process (a notebook,
    the quickstart, a sweep): each run starts from a clean state; the process group itself is kept."""
    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=mixed_precision,
                       cpu=not torch.cuda.is_available())  # cpu=True: several CPU processes use gloo


@dataclass
class LoadedModel:
    model: object
    memory_before_model: int  # baseline the training peak is measured above
    load_peak: int  # loading's own transient peak, reported apart


def load_base(model_cfg, method_cfg, dtype: str, device) -> LoadedModel:
    """The base model in `dtype` (4-bit for QLoRA), its weights made resident, with loading's peak measured apart
    from training's."""
    quantization = quantization_config(method_cfg)
    extra = {"quantization_config": quantization, "device_map": {"": device}} if quantization else {}
    if model_cfg.attention_dropout is not None:
        extra["attention_dropout"] = model_cfg.attention_dropout
    if quantization is not None:
        import bitsandbytes  # noqa: F401  (imported before the memory baseline: a library is not training memory)
    memory_before_model = process_memory()
    model = load_model(model_cfg.model_copy(update={"dtype": dtype}), **extra)
    if not torch.cuda.is_available():  # weights load memory-mapped: make them resident, as training soon will
        with torch.no_grad():
            for p in model.parameters():
                p.sum()
    # loading has its own transient peak (a checkpoint stored in fp32 and loaded in bf16 is briefly in memory
    # twice): reported apart, so the training peak is the one the memory estimate is about
    load_peak = peak_memory(memory_before_model)
    reset_peak_memory()
    return LoadedModel(model, memory_before_model, load_peak)


def enable_gradient_checkpointing(model, method: str) -> None:
    """Non-reentrant checkpointing, with input gradients on so LoRA on a frozen embedding still gets gradients.
    QLoRA's is enabled by peft's k-bit preparation; prefix tuning cannot run with it (`apply_method` says so)."""
    if method not in ("qlora", "prefix"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
