"""The training set as the loop sees it: tokenized samples, the batch stream, the data hash.

    data = load_training_data(cfg.data, tokenizer, template, seed)      # TrainingData: train / validation
    stream = BatchStream(data.train, global_batch=8, seed=42)
    for piece in token_capped_pieces(stream.batch(k), 2048):
        batch = collate(piece, tokenizer.pad_token_id)

Samples are rendered with the R1 template exactly as inference renders them (`model/template.py`), and a
sample that cannot train is an error naming it, or — with `data.on_error: skip` — listed in `skipped`. A
sample whose prompt alone fills max_length is listed in `skipped` and counted (`data.truncate: skip`), or
its prompt is cut from the left (`left`). What a sample without a reasoning trace trains is decided once,
over the training set (`reasoning_plan`), and recorded in provenance.
Batches are length-grouped: samples of similar length share a batch so padding does not dominate, and each
sample is its own row (its own attention mask), so samples never attend to each other. The batch stream is a
pure function of (seed, epoch): a resumed run regenerates it and skips what was consumed; with several
processes every rank builds the same global batches and takes its own slice.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field

import torch

from r1tune.data.formats import ChatSample, load_samples
from r1tune.data.images import load_image_samples
from r1tune.errors import DataError, R1TuneError
from r1tune.model.template import IGNORE, PromptTooLong, TokenizedSample, render_training, tokenize_training
from r1tune.train.vision_data import tokenize_vision_sample, vision_batch


@dataclass
class TrainingData:
    train: list[TokenizedSample]
    validation: list[TokenizedSample]
    skipped: list[dict] = field(default_factory=list)
    truncated: int = 0  # training samples whose target was cut at max_length
    without_reasoning: int = 0  # training samples without a reasoning trace
    data_hash: str = ""
    prompt_too_long: int = 0  # samples (train and validation) skipped: the prompt alone fills max_length
    prompt_cut: int = 0  # training samples whose prompt was cut from the left (data.truncate: left)
    reasoning: dict = field(default_factory=dict)  # reasoning_plan: what traced and trace-less samples train


def has_trace(sample: ChatSample) -> bool:
    return bool((sample.reasoning or "").strip())


def reasoning_plan(setting: str, samples: list[ChatSample]) -> dict:
    """What samples with and without a reasoning trace train, for `data.reasoning` on these (training) samples.

    auto: traces are kept where present; trace-less samples train the empty think block (`empty`) when most
    samples lack a trace — else the model would never learn to close its think block, and an evaluation
    finds every answer left inside it — and only their answer after it (`drop`) otherwise."""
    without = sum(not has_trace(s) for s in samples)
    if setting == "auto":
        traced, traceless = "keep", "empty" if 2 * without > len(samples) else "drop"
    else:
        traced, traceless = setting, "empty" if setting == "empty" else "drop"
    return {"setting": setting, "with_trace": len(samples) - without, "without_trace": without,
            "traced": traced, "traceless": traceless}


def tokenize_samples(samples: list[ChatSample], tokenizer, template: str, cfg, skipped: list[dict],
                     plan: dict, image_processor=None) -> tuple[list[TokenizedSample], dict[str, int]]:
    """Render and tokenize; a sample that cannot train is an error, or listed in `skipped`. A prompt longer
    than max_length is listed (or cut from the left) whatever `on_error` says: `data.truncate` decides it."""
    out: list[TokenizedSample] = []
    counts = {"truncated": 0, "prompt_cut": 0, "prompt_too_long": 0}
    for s in samples:
        mode = plan["traced"] if has_trace(s) else plan["traceless"]
        try:
            if image_processor is not None:  # issue 19: a vision model; its images become image tokens
                tok = tokenize_vision_sample(tokenizer, image_processor, s, mode, template, cfg)
            else:
                text = render_training(tokenizer, s.messages, s.reasoning, mode, template)
                tok = tokenize_training(tokenizer, text, cfg.max_length, source=s.source, truncate=cfg.truncate)
        except PromptTooLong as e:
            counts["prompt_too_long"] += 1
            skipped.append({"source": s.source, "reason": e.reason, "prompt_tokens": e.tokens,
                            "max_length": e.max_length})
            continue
        except R1TuneError as e:
            if cfg.on_error == "stop":
                raise
            skipped.append({"source": s.source, "reason": str(e)})
            continue
        counts["truncated"] += tok.truncated
        counts["prompt_cut"] += tok.prompt_cut
        out.append(tok)
    return out, counts


def file_hash(*paths: str | None) -> str:
    """A short content hash of the data files (recorded in provenance; a changed file changes it)."""
    h = hashlib.sha256()
    for p in paths:
        if p:
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def hold_out(samples: list, share: float, seed: int, source: str) -> tuple[list, list]:
    """(train, validation): a deterministic `share` of `samples` held out (also what `r1tune search` scores on)."""
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    n_val = int(len(order) * share)
    if n_val and len(order) - n_val < 1:
        raise R1TuneError(f"{source}: too few samples to hold out a validation split")
    return [samples[i] for i in sorted(order[n_val:])], [samples[i] for i in order[:n_val]]


def load_training_data(cfg, tokenizer, template: str, seed: int, image_processor=None) -> TrainingData:
    """`cfg` is a DataConfig: train (and validation, or a held-out share of train), tokenized. With an image
    processor (a vision model), records may show images (`data/images.py`)."""
    errors: list[DataError] = []
    read = load_samples if image_processor is None else load_image_samples
    train_samples, bad = read(cfg.train, cfg.format, cfg.on_error, cfg.encoding, cfg.columns)
    errors += bad
    if cfg.validation:
        val_samples, bad = read(cfg.validation, cfg.format, cfg.on_error, cfg.encoding, cfg.columns)
        errors += bad
    else:
        train_samples, val_samples = hold_out(train_samples, cfg.val_split, seed, cfg.train)
    skipped = [e.as_dict() for e in errors]
    plan = reasoning_plan(cfg.reasoning, train_samples)
    train, counts = tokenize_samples(train_samples, tokenizer, template, cfg, skipped, plan, image_processor)
    val, val_counts = tokenize_samples(val_samples, tokenizer, template, cfg, skipped, plan, image_processor)
    too_long = counts["prompt_too_long"] + val_counts["prompt_too_long"]
    if not train:
        hint = (f"; {too_long} with a prompt longer than max_length: set data.truncate=left to keep them cut from "
                "the left, or raise data.max_length") if too_long else ""
        first = f"; the first: {skipped[0].get('source') or skipped[0].get('file')}: {skipped[0]['reason']}" \
            if skipped else ""
        raise R1TuneError(f"{cfg.train}: no trainable samples ({len(skipped)} skipped{hint}{first})")
    return TrainingData(train, val, skipped, counts["truncated"], plan["without_trace"],
                        file_hash(cfg.train, cfg.validation), too_long, counts["prompt_cut"], plan)


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, epoch: int,
                           group_factor: int = 32) -> list[list[int]]:
    """Shuffle, sort within groups of `group_factor` batches by length, cut into batches, shuffle the batches."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(lengths), generator=g).tolist()
    group = batch_size * group_factor
    batches = []
    for start in range(0, len(order), group):
        chunk = sorted(order[start:start + group], key=lambda i: -lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    perm = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in perm]


class BatchStream:
    """Global micro-batches in a fixed order: micro-batch k is batch k % n of epoch k // n."""

    def __init__(self, samples: list[TokenizedSample], global_batch: int, seed: int):
        self.samples, self.global_batch, self.seed = samples, global_batch, seed
        self.lengths = [len(s.input_ids) for s in samples]
        self.per_epoch = math.ceil(len(samples) / global_batch)
        self._epoch, self._batches = -1, []

    def batch(self, k: int) -> list[TokenizedSample]:
        epoch = k // self.per_epoch
        if epoch != self._epoch:
            self._epoch = epoch
            self._batches = length_grouped_batches(self.lengths, self.global_batch, self.seed, epoch)
        return [self.samples[i] for i in self._batches[k % self.per_epoch]]


def token_capped_pieces(samples: list, max_tokens: int | None) -> list[list]:
    """Split a micro-batch into pieces of at most `max_tokens` padded tokens (rows × longest row), longest rows
    first, keeping each piece's rows of similar length. A row longer than the cap is a piece of its own.

    The recipe runs forward and backward piece by piece: the gradient is the same sum over the same target
    tokens, but only one piece's activations are alive, so peak memory follows `max_tokens`, not the longest
    batch the data happens to produce."""
    if not max_tokens or len(samples) * max(len(s.input_ids) for s in samples) <= max_tokens:
        return [list(samples)]
    pieces, piece = [], []
    for s in sorted(samples, key=lambda s: -len(s.input_ids)):
        if piece and (len(piece) + 1) * len(piece[0].input_ids) > max_tokens:  # piece[0] is its widest row
            pieces.append(piece)
            piece = []
        piece.append(s)
    return pieces + [piece]


def collate(samples: list, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest sample; labels of padding are IGNORE by position (pad == eos in R1)."""
    width = max(len(s.input_ids) for s in samples)
    ids = torch.full((len(samples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(samples), width), dtype=torch.long)
    for row, s in enumerate(samples):
        n = len(s.input_ids)
        ids[row, :n] = torch.tensor(s.input_ids)
        labels[row, :n] = torch.tensor(s.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, **vision_batch(samples, ids)}
