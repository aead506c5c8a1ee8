"""Training memory: the estimate per method before any weight is loaded, and the probes that measure it.

    est = estimate_memory(AutoConfig.from_pretrained(M), MethodConfig(name="lora"), batch_size=4, seq_len=1024)
    est.total, est.as_dict()

The model is built on PyTorch's `meta` device (shapes, no storage), wrapped for the method exactly as the
recipe wraps it, and two optimizer steps (forward, backward, clipping, AdamW) run on it under a dispatch
mode that adds up every tensor created and subtracts it when it dies. The peak it sees is what autograd,
the attention kernel and the optimizer really hold at once for this architecture and method — not a rule
of thumb. The chunked LM-head loss is added from its kernels' footprint (three fp32 logit-sized buffers of
one chunk); QLoRA's 4-bit base is counted as NF4 blocks.

On CPU, glibc keeps freed blocks in its heap for reuse (its mmap threshold grows after each large free up to
32 MiB), so resident memory ends above what tensors use: the estimate adds `GLIBC_RETENTION` of the activations
for a CPU run. `train.return_freed_memory` pins the threshold instead (`return_freed_memory_to_os()`, with one
malloc arena): every large tensor is mmapped and handed back when freed, peak RSS tracks tensor memory whatever
the machine's load and the estimate adds nothing,
but the page faults cost speed. Measured (issue 20; CPU time of the training steps, peak RSS above the process
before model load): small bench model, LoRA 8 x 512, 1.11x the CPU time pinned, 1.33 vs 1.82 GiB; tiny model
8 x 256, LoRA 1.16x at 146 vs 201 MiB, full 1.24x at 155 vs 187 MiB. Speed is the default.

Measured peaks: `process_memory()` marks a baseline (and restarts the peak counter), `peak_memory(baseline)`
reads the peak above it — the GPU's max allocated, or on CPU this process image's own VmHWM.
"""

from __future__ import annotations

import contextlib
import ctypes
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

from r1tune.config import CPU_MICRO_BATCH_TOKENS, MethodConfig
from r1tune.errors import R1TuneError
from r1tune.model.methods import apply_method
from r1tune.model.vision import is_vision_config
from r1tune.train.loss import final_hidden, loss_chunk_tokens

NF4_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit codes + uint8 absmax per 64 + fp32 per 256 blocks
GIB = 1024**3
MICRO_BATCHES = (16, 8, 4, 2, 1)
# what the runtime holds beside tensors while training (autograd graph nodes, oneDNN primitive caches,
# per-thread scratch): measured 14–20 MiB on the tiny model whatever the method (bench/memory_vs_estimate.py)
RUNTIME_OVERHEAD = 12 * 1024**2
# glibc's heap keeps freed activation blocks resident when the mmap threshold is not pinned (the default): peak
# RSS above tensor memory, as a share of the traced activations. Fitted on an idle machine to every method on the
# tiny and small bench models (bench/memory_vs_estimate.py with and without --pinned): 0.2-0.6 for all but QLoRA,
# whose per-matmul dequantised weights churn through the heap (0.9-1.3). A busy machine moves these shares;
# the pinned setting is the one whose peak follows the estimate whatever the load.
GLIBC_RETENTION = 0.4
GLIBC_RETENTION_QLORA = 1.0


def return_freed_memory_to_os(threshold: int = 64 * 1024) -> bool:
    """Linux/glibc: allocations above `threshold` bytes are mmapped and returned to the OS when freed."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8
    # one heap for the small blocks too: under CPU contention glibc opens a new arena whenever a thread finds the
    # lock taken, and each keeps its own freed blocks (the tiny LoRA run measured 1.3x its peak beside a busy
    # test worker on the CI machine, 1.0x alone)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold)) and bool(libc.mallopt(M_ARENA_MAX, 1))


def micro_batch_token_cap(setting: int | None) -> int | None:
    """train.max_micro_batch_tokens decided: on CPU, 2,048 padded tokens a piece keeps peak memory flat at no
    cost in speed (the matmuls are already large enough); on a GPU, bigger pieces keep the card busy, so no cap
    unless asked."""
    if setting is None:
        return None if torch.cuda.is_available() else CPU_MICRO_BATCH_TOKENS
    return setting or None


@dataclass
class MemoryEstimate:
    weights: int  # the model's parameters at their precision (NF4 for a QLoRA base)
    gradients: int  # of the trainable parameters
    optimizer: int  # AdamW's two moments
    activations: int  # everything else at the peak: saved activations, loss chunk, temporaries
    trainable_parameters: int
    total_parameters: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


class LiveTensorPeak(TorchDispatchMode):
    """Adds up the storage of every tensor an op creates, subtracts it when the storage dies; keeps the peak."""

    def __init__(self, existing: list[torch.Tensor] = ()):
        super().__init__()
        self.live = self.peak = 0
        self.seen = WeakIdKeyDictionary()
        for t in existing:  # parameters and inputs: views of them (w.t() in every linear) allocate nothing
            self.seen[t.untyped_storage()] = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                if storage not in self.seen:
                    n = storage.nbytes()
                    self.seen[storage] = n
                    self.live += n
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._free, n)
        return out

    def _free(self, n: int) -> None:
        self.live -= n


@contextlib.contextmanager
def _meta_friendly_transformers(flash_attention: bool):
    """transformers inspects mask and position values (data-dependent) to pick fast paths; on the meta device
    there are no values, so report 'tracing' and let it take the general path."""
    import torch.nn.functional as F
    import transformers.masking_utils as masking

    saved = masking.is_tracing, F.scaled_dot_product_attention
    masking.is_tracing = lambda *a, **k: True
    if flash_attention:
        F.scaled_dot_product_attention = _flash_attention
    try:
        yield
    finally:
        masking.is_tracing, F.scaled_dot_product_attention = saved


def _flash_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """On meta, SDPA picks the math kernel, which keeps the full attention matrix for backward. GPU flash kernels
    keep only the output and a log-sum-exp: trace a flash kernel instead. (On CPU the measured peak follows the
    math kernel's footprint more closely — its flash backward allocates that much — so CPU keeps the default.)"""
    if enable_gqa and k.shape[1] != q.shape[1]:  # as transformers' repeat_kv does when a mask is given
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)[0]


def estimate_memory(model_config, method: MethodConfig, batch_size: int, seq_len: int,
                    dtype: torch.dtype = torch.float32, gradient_checkpointing: bool = False,
                    target_fraction: float = 0.5, flash_attention: bool | None = None,
                    max_micro_batch_tokens: int | None = None, freed_memory_returned: bool = False) -> MemoryEstimate:
    """Peak training memory of one process for this model, method, micro-batch and sequence length.

    `target_fraction`: the share of tokens that carry a label (the answer part); the advisor measures it on
    the user's data. It sizes the loss, which on a 152k vocabulary is a large part of the peak.
    `flash_attention`: trace attention as a flash kernel (default: when a GPU is present).
    `max_micro_batch_tokens`: the recipe's cap on padded tokens per forward/backward piece; the peak is that
    of the largest piece (rows of `seq_len` tokens).
    `freed_memory_returned`: train.return_freed_memory; without it a CPU run's glibc heap keeps freed activations
    resident, and `GLIBC_RETENTION` of them is added."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    # issue 19: a vision-language model is estimated whole (vision weights counted) with its image tokens as part of
    # seq_len; the vision tower's own activations are not traced (it runs frozen unless method.vision_lr is set)
    auto = AutoModelForImageTextToText if is_vision_config(model_config) else AutoModelForCausalLM
    text_config = model_config.get_text_config()
    if max_micro_batch_tokens:
        batch_size = min(batch_size, max(1, max_micro_batch_tokens // seq_len))
    wrap = method.model_copy(update={"name": "lora"}) if method.name == "qlora" else method
    with torch.device("meta"):
        model = auto.from_config(model_config, dtype=dtype)
        if gradient_checkpointing and method.name != "prefix":
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        model = apply_method(model, wrap, gradient_checkpointing and method.name != "prefix")
    model.train()
    weights = trainable_bytes = n_trainable = n_total = 0
    for name, p in model.named_parameters():
        n_total += p.numel()
        quantised = (method.name == "qlora" and not p.requires_grad and p.ndim == 2 and ".layers." in name)
        weights += int(p.numel() * NF4_BYTES_PER_PARAM) if quantised else p.numel() * p.element_size()
        if p.requires_grad:
            n_trainable += p.numel()
            trainable_bytes += p.numel() * p.element_size()
    params = [p for p in model.parameters() if p.requires_grad]
    head_trains = model.get_output_embeddings().weight.requires_grad
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    ids = torch.zeros((batch_size, seq_len), dtype=torch.long, device="meta")
    tracker = LiveTensorPeak([*model.parameters(), *model.buffers(), ids])
    flash = torch.cuda.is_available() if flash_attention is None else flash_attention
    with _meta_friendly_transformers(flash), tracker:
        for _ in range(2):  # the second step has gradients and optimizer moments alive from the start
            # the body's forward and backward; the LM-head loss is added below from the kernels' real footprint
            final_hidden(model, ids, None).sum().backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    if method.name == "qlora":  # each matmul dequantises one weight to the compute dtype for a moment
        largest = max(p.numel() for n, p in model.named_parameters() if ".layers." in n and p.ndim == 2)
        tracker.peak += largest * 4
    gradients, moments = trainable_bytes, 2 * trainable_bytes
    # chunked target-only loss (train/loss.py), beside the gathered hidden rows and their gradient. A trained
    # head recomputes a chunk in backward, where its fp32 logits, their log-softmax and the logits' gradient
    # are alive at once; the fused frozen-head path keeps one fp32 chunk, plus its half-precision copy when
    # the model computes in half precision
    targets = batch_size * max(1, int(seq_len * target_fraction))
    chunk = min(targets, loss_chunk_tokens(text_config.vocab_size))
    logit_buffers = 3 if head_trains else 1.0 if dtype == torch.float32 else 1.5
    loss = int(logit_buffers * chunk * text_config.vocab_size * 4) + 2 * targets * text_config.hidden_size * 4
    activations = max(0, tracker.peak - gradients - moments) + loss
    if not freed_memory_returned and not torch.cuda.is_available():
        activations = int(activations * (1 + (GLIBC_RETENTION_QLORA if method.name == "qlora" else GLIBC_RETENTION)))
    return MemoryEstimate(weights=weights, gradients=gradients, optimizer=moments,
                          activations=activations + RUNTIME_OVERHEAD,
                          trainable_parameters=n_trainable, total_parameters=n_total)


def parse_memory(text: str) -> int:
    """'24GiB', '80GB', '512MiB', '1.5T' → bytes."""
    units = {"": 1, "k": 1e3, "kb": 1e3, "kib": 1024, "m": 1e6, "mb": 1e6, "mib": 1024**2, "g": 1e9, "gb": 1e9,
             "gib": GIB, "t": 1e12, "tb": 1e12, "tib": 1024**4}
    s = text.strip().lower().replace(" ", "")
    number = s.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = s[len(number):]
    if not number or unit not in units:
        raise R1TuneError(f"cannot read memory size {text!r} (e.g. 24GiB, 80GB, 512MiB)")
    return int(float(number) * units[unit])


def available_memory() -> int:
    """Memory one training process may use: the GPU's total, or the RAM available now."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory
    import psutil

    return psutil.virtual_memory().available


def auto_batch_size(model_config, method: MethodConfig, batch_size: int, grad_accum: int, max_length: int,
                    target_fraction: float = 0.5, budget: int | None = None, dtype: torch.dtype = torch.float32,
                    gradient_checkpointing: bool = False, max_micro_batch_tokens: int | None = None,
                    freed_memory_returned: bool = False) -> tuple[int, int]:
    """Largest micro-batch that fits and divides the global batch; gradient accumulation keeps the global batch."""
    budget = budget or int(available_memory() * 0.9)
    global_batch = batch_size * grad_accum
    for micro in sorted({m for m in range(1, global_batch + 1) if global_batch % m == 0}, reverse=True):
        est = estimate_memory(model_config, method, micro, max_length, dtype, gradient_checkpointing, target_fraction,
                              max_micro_batch_tokens=max_micro_batch_tokens,
                              freed_memory_returned=freed_memory_returned)
        if est.total <= budget:
            return micro, global_batch // micro
    raise R1TuneError(f"even a micro-batch of 1 needs more than {budget / GIB:.1f} GiB: enable "
                      "train.gradient_checkpointing, lower data.max_length or use method qlora")


def process_memory() -> int:
    """Resident memory now (CPU) or allocated now (GPU), in bytes; the peak counter restarts here, so that
    the peak read later belongs to what happened after this call."""
    reset_peak_memory()
    if torch.cuda.is_available():
        return torch.cuda.memory_allocated()
    import psutil

    return psutil.Process().memory_info().rss


def reset_peak_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return
    try:  # "5" resets this process's VmHWM to its current RSS (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss() -> int:
    """This process image's peak RSS in bytes. Not getrusage's ru_maxrss: Linux carries that across execve,
    so a run started from a big parent (a test runner, a notebook) would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_memory(baseline: int) -> int:
    """Peak memory of training: the GPU's max allocated, or on CPU the peak RSS above what the process held
    just before the model was loaded (Python, libraries and the tokenized data are not training memory)."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated()
    return peak_rss() - baseline
