"""Candidate recipe changes, measured by the bench as monkeypatches (src/ is not edited here).

    import patches; patches.apply("fused")      # before the recipe runs

fused — `r1tune.train.loss.head_loss` replaced by a fused LM-head loss for a *frozen* head (LoRA family, prompt
        methods): per chunk of target rows, logits → loss sum, correct count and d(loss)/d(hidden) are computed in
        the forward pass; the chunk's logits die at once and backward only scales the stored (n, hidden) gradient.
        The recipe's path instead checkpoints each chunk, so the 151,936 × hidden head matmul runs three times per
        chunk (forward, recompute, input-gradient) and autocast casts the fp32 head weight to bf16 on each of them;
        here it runs twice and is cast once per step. A trainable head falls back to the recipe's path.
mb    — token-budgeted micro-batches: the recipe's `target_loss` call on a batch of 8 samples is split into
        micro-batches of at most MICRO_TOKENS padded tokens (rows sorted by length, packed greedily), each run
        forward + backward at once, so activations of only ~MICRO_TOKENS tokens are alive, whatever the batch's
        lengths (a length-grouped batch of 8 long samples is 8 x 1024 tokens). The gradient is the same sum
        over the same target tokens, divided by the batch's target count, as the recipe's. Valid as a patch for
        grad_accum 1 on one process (what the bench runs); in the recipe it belongs in the micro-batch loop.
"""

from __future__ import annotations

import torch

from r1tune.train import loss as loss_mod
from r1tune.train.memory import loss_chunk_tokens

ORIGINAL_HEAD_LOSS = loss_mod.head_loss


class FusedHeadLoss(torch.autograd.Function):
    """Sum of cross-entropy of `hidden @ weight.T` against `targets`, chunked, with d/d(hidden) computed in the
    forward. One fp32 logits buffer per chunk lives at a time (it becomes softmax, then softmax - onehot, in place).
    Returns (loss sum, correct predictions) like `r1tune.train.loss.head_loss`."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk, dtype):
        n = targets.numel()
        w = weight if weight.dtype == dtype else weight.to(dtype)  # one cast per step, not one per chunk and pass
        grad = torch.empty_like(hidden)
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        for s in range(0, n, chunk):
            h, t = hidden[s:s + chunk], targets[s:s + chunk]
            logits = (h.to(dtype) @ w.t()).float()
            lse = torch.logsumexp(logits, dim=-1)
            rows = torch.arange(t.numel(), device=t.device)
            loss += (lse - logits[rows, t]).sum()
            correct += (logits.argmax(-1) == t).sum()
            logits.sub_(lse[:, None]).exp_()  # softmax
            logits[rows, t] -= 1.0  # d(sum of CE)/d(logits)
            grad[s:s + chunk] = logits.to(dtype) @ w
            del logits
        ctx.save_for_backward(grad)
        return loss, correct

    @staticmethod
    def backward(ctx, g_loss, g_correct):
        (grad,) = ctx.saved_tensors
        return grad * g_loss.to(grad.dtype), None, None, None, None


def fused_head_loss(head, hidden, targets, chunk_size=None):
    if head.weight.requires_grad or not (torch.is_grad_enabled() and hidden.requires_grad):
        return ORIGINAL_HEAD_LOSS(head, hidden, targets, chunk_size)  # trained head, or evaluation: recipe path
    chunk_size = chunk_size or loss_chunk_tokens(head.weight.shape[0])
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    with torch.autocast(device, enabled=False):
        return FusedHeadLoss.apply(hidden, head.weight, targets, chunk_size, dtype)


MICRO_TOKENS = 2048


def micro_batched(target_loss):
    def split_target_loss(model, input_ids, attention_mask, labels, chunk_size=None):
        lengths = attention_mask.sum(1).tolist()
        if len(lengths) * max(lengths) <= MICRO_TOKENS or not torch.is_grad_enabled():
            return target_loss(model, input_ids, attention_mask, labels, chunk_size)
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        groups, cur = [], []
        for i in order:  # rows longest first: a group's width is its first row's length
            if cur and (len(cur) + 1) * lengths[cur[0]] > MICRO_TOKENS:
                groups.append(cur)
                cur = []
            cur.append(i)
        groups.append(cur)
        n_targets = int((labels[:, 1:] != -100).sum())
        loss_sum = torch.zeros((), dtype=torch.float32)
        correct = torch.zeros((), dtype=torch.long)
        for g in groups:
            width = max(lengths[i] for i in g)
            idx = torch.tensor(g)
            part, _, c = target_loss(model, input_ids[idx, :width], attention_mask[idx, :width], labels[idx, :width],
                                     chunk_size)
            (part / n_targets).backward()  # the recipe backpropagates loss_sum / n_targets: same gradient
            loss_sum += part.detach().float()
            correct += c
        # the recipe calls backward on (this * 1 / n_targets): a leaf, so that backward does nothing more
        return loss_sum.requires_grad_(), n_targets, correct

    return split_target_loss


def apply(names: str) -> None:
    import r1tune.recipes.finetune as recipe

    for name in names.split(","):
        if name == "fused":
            loss_mod.head_loss = fused_head_loss
        elif name == "mb":
            recipe.target_loss = micro_batched(recipe.target_loss)
        elif name != "none":
            raise SystemExit(f"unknown patch {name!r} (fused, mb, none)")
