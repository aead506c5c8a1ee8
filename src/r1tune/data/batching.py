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
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
