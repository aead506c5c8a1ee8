"""Length-grouped batches: samples of similar length share a batch, so padding does not dominate.

Each sample is its own row (its own attention mask), so samples never attend to each other. The batch
stream is a pure function of (seed, epoch): a resumed run regenerates it and skips what was consumed.
With several processes every rank builds the same global batches and takes its own slice.
"""

from __future__ import annotations

import torch

from r1tune.model.template import IGNORE


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
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
