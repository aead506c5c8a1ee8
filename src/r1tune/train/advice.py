"""The advisor's computation: the guide's choice matrix weighed against the data and the memory per device.

    advice = recommend("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "train.jsonl", memory="24GiB")
    advice.settings[0]                     # the recommendation: method, rank, lr, micro-batch × accumulation, …
    advice.fitting_methods()               # the methods whose estimate fits the memory, best first
    micro, checkpointing, need, estimate = fit_setting(advice, MethodConfig(name="dora"), max_length=1024)

`r1tune advise` renders an `Advice` (and times a few real steps of each setting); `r1tune search` starts its
study from `settings[0]` and searches among the methods that fit. Inputs and how they move the ranking:
- data size: under 10k samples → light methods (prompt/prefix, low-rank LoRA); 10k–100k → LoRA/DoRA;
  over 100k → full or freeze fine-tuning when memory allows (the guide's matrix);
- how far the domain is from the base model: base-model perplexity on a sample of the answers;
- whether general ability must be kept: lighter methods, lower learning rates;
- memory per device and the number of devices: every candidate's peak memory is estimated
  (`train/memory.py`) and its micro-batch is the largest that fits; the rest of the global batch comes
  from gradient accumulation (and gradient checkpointing when even one sample does not fit).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

from r1tune.config import MethodConfig, ModelConfig
from r1tune.data.formats import load_samples
from r1tune.data.images import load_image_samples
from r1tune.model.load import load_model, load_tokenizer
from r1tune.model.methods import bf16_base_on_cpu
from r1tune.model.template import render_training, resolve_template, tokenize_training
from r1tune.model.vision import image_processor_for, is_vision_config
from r1tune.train.data import collate
from r1tune.train.loss import target_loss
from r1tune.train.memory import (
    GIB,
    MICRO_BATCHES,
    MemoryEstimate,
    available_memory,
    estimate_memory,
    micro_batch_token_cap,
    parse_memory,
)
from r1tune.train.vision_data import tokenize_vision_sample

GLOBAL_BATCH = 32  # samples per optimizer step the guide recommends (32–128)
LEARNING_RATES = {"full": 1e-5, "freeze": 5e-5, "lora": 2e-4, "dora": 2e-4, "qlora": 2e-4, "ia3": 3e-3,
                  "prefix": 1e-2, "prompt": 3e-2, "ptuning": 1e-3}
LORA_FAMILY = ("lora", "dora", "qlora")
SHARDED_METHODS = ("full", "freeze")  # ZeRO-3 / FSDP shard these across devices


@dataclass
class DataProfile:
    samples: int
    p50_tokens: int
    p95_tokens: int
    max_tokens: int
    target_fraction: float
    tokens_per_epoch: int


@dataclass
class Setting:
    method: str
    lora_r: int | None
    lr: float
    batch_size: int
    grad_accum: int
    max_length: int
    gradient_checkpointing: bool
    memory_bytes: int
    memory_breakdown: dict
    fits: bool
    hours_per_epoch: float | None = None
    time_basis: str = ""
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)


@dataclass
class Advice:
    model: str
    data: str
    budget: int  # bytes of memory per device the settings must fit in
    gpus: int
    profile: DataProfile
    perplexity: float | None
    distance: str  # close / moderate / far / unknown
    reasons: list[str]  # what moved the recommendation, for the report
    settings: list[Setting]  # ranked, best first
    model_config: object  # the transformers config the estimates were made on
    n_params: int
    fits_here: bool  # the base model is small enough to load on this machine (perplexity, measured steps)
    dtype: torch.dtype  # the precision a run on this machine trains in

    def fitting_methods(self) -> list[str]:
        """Methods whose estimate fits the memory, in the advisor's order."""
        return list(dict.fromkeys(s.method for s in self.settings if s.fits))


def _tokenized(tokenizer, s, max_length: int, image_processor=None, truncate: str = "skip"):
    """A sample's ids and labels; with a vision model's image processor its images count as their tokens."""
    if image_processor is None:
        return tokenize_training(tokenizer, render_training(tokenizer, s.messages, s.reasoning), max_length, s.source,
                                 truncate=truncate)
    limits = SimpleNamespace(max_length=max_length, truncate=truncate)  # what a DataConfig gives it
    return tokenize_vision_sample(tokenizer, image_processor, s, "keep", resolve_template(tokenizer), limits)


def profile_data(data: str, tokenizer, max_length: int, limit: int = 2000, image_processor=None) -> DataProfile:
    samples, _ = (load_samples if image_processor is None else load_image_samples)(data, on_error="skip")
    lengths, fractions = [], []
    for s in samples[:limit]:
        tok = _tokenized(tokenizer, s, 10**9, image_processor)  # issue 19: image tokens counted
        lengths.append(len(tok.input_ids))
        fractions.append(tok.n_targets / len(tok.input_ids))
    lengths.sort()
    clipped = [min(n, max_length) for n in lengths]
    return DataProfile(samples=len(samples), p50_tokens=lengths[len(lengths) // 2],
                       p95_tokens=lengths[int(len(lengths) * 0.95) - 1 if len(lengths) > 1 else 0],
                       max_tokens=lengths[-1], target_fraction=statistics.mean(fractions),
                       tokens_per_epoch=int(statistics.mean(clipped) * len(samples)))


def domain_perplexity(model_path: str, tokenizer, data: str, n: int = 32, image_processor=None) -> float:
    """Perplexity of the base model on the answers of `n` samples: how new the domain is to it."""
    model = load_model(ModelConfig(name_or_path=model_path, dtype="float32")).eval()
    samples, _ = (load_samples if image_processor is None else load_image_samples)(data, on_error="skip")
    # a long prompt is cut from the left (not skipped, not an error): the answer is what is measured
    toks = [_tokenized(tokenizer, s, 1024, image_processor, truncate="left") for s in samples[:n]]
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(toks), 8):
            loss, k, _ = target_loss(model, **collate(toks[i:i + 8], tokenizer.pad_token_id))
            total, count = total + float(loss), count + k
    return math.exp(total / max(1, count))


def candidates(n_samples: int, distance: str, keep_general: bool) -> list[tuple[str, int | None, float, str]]:
    """(method, LoRA rank, prior score, why) from the guide's matrix; higher score ranks first."""
    if n_samples < 10_000:
        out = [("lora", 8, 3.0, f"{n_samples:,} samples (< 10k): low-rank LoRA learns the task, little over-fitting"),
               ("prompt", None, 2.0, "under 10k samples: prompt tuning keeps every base weight (general ability)"),
               ("prefix", None, 1.5, "under 10k samples: prefix tuning, a light adapter, the base untouched"),
               ("dora", 8, 2.2, "DoRA: LoRA's cost, often a little better at low rank")]
    elif n_samples <= 100_000:
        out = [("lora", 16, 3.0, f"{n_samples:,} samples (10k–100k): LoRA is the guide's choice"),
               ("dora", 16, 2.6, "DoRA: LoRA's memory with magnitude/direction split, usually a small gain"),
               ("freeze", None, 1.8, "freeze: train the top layers only, a middle road to full fine-tuning")]
    else:
        out = [("full", None, 3.0, f"{n_samples:,} samples (> 100k): enough data for full fine-tuning"),
               ("freeze", None, 2.5, "freeze the lower half: most of full's gain at about half its memory"),
               ("lora", 64, 2.2, "high-rank LoRA when full fine-tuning does not fit")]
    adjusted = []
    for method, rank, score, why in out:
        if keep_general:
            # the guide's matrix: prefix tuning is the choice when the original ability must be kept
            bonus = {"prefix": 2.2, "prompt": 1.5, "lora": 0.3, "dora": 0.3, "full": -1.5, "freeze": -0.5}
            score += bonus.get(method, 0)
        if distance == "far":
            score += {"full": 0.8, "freeze": 0.5, "prompt": -1.5, "prefix": -1.0}.get(method, 0)
            rank = rank * 2 if rank else rank
        elif distance == "close":
            score += {"prompt": 0.6, "prefix": 0.4, "full": -0.5}.get(method, 0)
        adjusted.append((method, rank, score, why))
    return adjusted


def fit_batch(model_config, method: MethodConfig, max_length: int, target_fraction: float, budget: int,
              gpus: int, sharded: bool, dtype: torch.dtype) -> tuple[int, bool, int, MemoryEstimate]:
    """Largest micro-batch (and whether checkpointing is needed) whose estimate fits `budget` per device."""
    for checkpointing in (False, True):
        for micro in MICRO_BATCHES:
            est = estimate_memory(model_config, method, micro, max_length, dtype, checkpointing, target_fraction,
                                  max_micro_batch_tokens=micro_batch_token_cap(None))
            need = est.total
            if sharded and gpus > 1:  # ZeRO-3 / FSDP shard weights, gradients and optimizer states
                need = (est.weights + est.gradients + est.optimizer) // gpus + est.activations
            if need <= budget:
                return micro, checkpointing, need, est
    return 1, True, need, est


def run_dtype(advice: Advice, method: str) -> torch.dtype:
    """The finetune recipe's own precision choice: a CPU with native bf16 keeps a LoRA-family base in bf16."""
    cuda = torch.cuda.is_available()
    return torch.bfloat16 if not cuda and bf16_base_on_cpu(method) else advice.dtype


def fit_setting(advice: Advice, method: MethodConfig, max_length: int) -> tuple[int, bool, int, MemoryEstimate]:
    """(micro-batch, gradient checkpointing, bytes needed, estimate) for `method` at `max_length` in the
    advice's memory: the largest micro-batch that fits, as the advisor sizes its own settings."""
    return fit_batch(advice.model_config, method, max_length, advice.profile.target_fraction, advice.budget,
                     advice.gpus, method.name in SHARDED_METHODS, run_dtype(advice, method.name))


def recommend(model: str, data: str, memory: str | None = None, gpus: int = 1, keep_general_ability: bool = False,
              method: str | None = None, batch_size: int | None = None,
              max_length: int | None = None) -> Advice:
    """Rank the candidate settings for `model` on `data` (or estimate exactly `method`, and `batch_size`)."""
    model_config = AutoConfig.from_pretrained(model)
    tokenizer = load_tokenizer(ModelConfig(name_or_path=model))
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    budget = parse_memory(memory) if memory else available_memory()
    image_processor = image_processor_for(model)  # issue 19: None for a text model
    prof = profile_data(data, tokenizer, max_length or 4096, image_processor=image_processor)
    length = max_length or min(4096, max(64, 2 ** math.ceil(math.log2(max(prof.p95_tokens, 2)))))
    reasons_global = [f"data: {prof.samples:,} samples, p50 {prof.p50_tokens} / p95 {prof.p95_tokens} tokens, "
                      f"{prof.target_fraction:.0%} of tokens are answer", f"max_length {length} covers p95"]

    n_params = sum(p.numel() for p in _meta_params(model_config))
    weights_bytes = n_params * (2 if dtype != torch.float32 else 4)
    fits_here = weights_bytes < 0.4 * available_memory()
    distance, ppl = "unknown", None
    if fits_here:
        ppl = domain_perplexity(model, tokenizer, data, image_processor=image_processor)
        distance = "close" if ppl < 20 else "moderate" if ppl < 200 else "far"
        reasons_global.append(f"base-model perplexity on the answers: {ppl:,.1f} → domain is {distance} "
                              "(close < 20 ≤ moderate < 200 ≤ far)")
    else:
        reasons_global.append("domain distance not measured: the base model is too large for this machine")
    advice = Advice(model=model, data=data, budget=budget, gpus=gpus, profile=prof, perplexity=ppl,
                    distance=distance, reasons=reasons_global, settings=[], model_config=model_config,
                    n_params=n_params, fits_here=fits_here, dtype=dtype)

    if method:  # estimate exactly what was asked
        pool = [(method, None, 0.0, "the setting you asked for")]
    else:
        pool = candidates(prof.samples, distance, keep_general_ability)
    settings = []
    for name, rank, score, why in pool:
        mcfg = MethodConfig(name=name, **({"lora_r": rank, "lora_alpha": 2 * rank} if rank else {}))
        if batch_size:
            est = estimate_memory(model_config, mcfg, batch_size, length, run_dtype(advice, name), False,
                                  prof.target_fraction, max_micro_batch_tokens=micro_batch_token_cap(None))
            micro, ckpt, need = batch_size, False, est.total
        else:
            micro, ckpt, need, est = fit_setting(advice, mcfg, length)
        fits = need <= budget
        accum = max(1, math.ceil(GLOBAL_BATCH / (micro * gpus)))
        reasons = [why]
        if ckpt:
            reasons.append("gradient checkpointing: even the smallest micro-batch does not fit without it")
        if not fits:
            score -= 10
            reasons.append(f"needs {need / GIB:.1f} GiB per device, more than the {budget / GIB:.1f} GiB available")
        lr = LEARNING_RATES[name] * (0.5 if keep_general_ability else 1.0)
        if keep_general_ability:
            reasons.append("learning rate halved to preserve general ability")
        settings.append(Setting(method=name, lora_r=rank if name in LORA_FAMILY else None, lr=lr,
                                batch_size=micro, grad_accum=accum, max_length=length, gradient_checkpointing=ckpt,
                                memory_bytes=int(need), memory_breakdown=est.as_dict(), fits=fits, score=score,
                                reasons=reasons))
    if not method and not any(s.fits for s in settings):
        mcfg = MethodConfig(name="qlora", lora_r=16, lora_alpha=32)
        micro, ckpt, need, est = fit_batch(model_config, mcfg, length, prof.target_fraction, budget, gpus, False, dtype)
        settings.append(Setting(method="qlora", lora_r=16, lr=LEARNING_RATES["qlora"], batch_size=micro,
                                grad_accum=max(1, math.ceil(GLOBAL_BATCH / (micro * gpus))), max_length=length,
                                gradient_checkpointing=ckpt, memory_bytes=int(need), memory_breakdown=est.as_dict(),
                                fits=need <= budget, score=1.0,
                                reasons=["nothing else fits: QLoRA keeps the base in 4 bit (NF4)"]))
    settings.sort(key=lambda s: -s.score)
    advice.settings = settings
    return advice


def _meta_params(model_config):
    auto = AutoModelForImageTextToText if is_vision_config(model_config) else AutoModelForCausalLM
    with torch.device("meta"):
        return list(auto.from_config(model_config).parameters())
