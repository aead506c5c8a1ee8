"""What every training recipe does before its loop (src/r1tune/train/setup.py): a clean accelerate state per run,
the base loaded and made resident with loading's peak measured apart, checkpointing enabled only where it can be."""

import torch

from r1tune.config import MethodConfig, ModelConfig
from r1tune.train.setup import enable_gradient_checkpointing, load_base, start_accelerator


def test_each_run_gets_its_own_precision_in_one_process():
    """accelerate refuses a second precision in a process; a notebook or the quickstart runs several."""
    assert start_accelerator("no").mixed_precision == "no"
    assert start_accelerator("bf16").mixed_precision == "bf16"
    assert start_accelerator("no").mixed_precision == "no"


def test_load_base_and_checkpointing(tiny_model_dir):
    loaded = load_base(ModelConfig(name_or_path=str(tiny_model_dir)), MethodConfig(name="lora"), "float32", "cpu")
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.memory_before_model > 0 and loaded.load_peak >= 0
    enable_gradient_checkpointing(loaded.model, "prefix")  # prefix tuning cannot: left alone
    assert not loaded.model.is_gradient_checkpointing
    enable_gradient_checkpointing(loaded.model, "lora")
    assert loaded.model.is_gradient_checkpointing
