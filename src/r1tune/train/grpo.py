"""GRPO's arithmetic, as pure functions over tensors: group advantages, per-token log-probs of completions, the
clipped policy loss in its variants, and the zero-variance accounting.

    advantages, zero_std = group_advantages(rewards, group_size=8, scale="group")
    logps, entropy = completion_logprobs(model, input_ids, attention_mask, prompt_width, temperature=0.6)
    per_token, stats = policy_objective(logps, old_logps, advantages, epsilon_low, epsilon_high, beta, ref_logps)
    loss = reduce_loss(per_token, mask, "dapo", n_sequences, n_tokens, max_completion_length)

Formulas are TRL's GRPOTrainer's (1.16, `_compute_loss`; `tests/train/test_grpo_loss.py` checks loss and
gradients against it to 1e-5):
- advantage_i = (r_i − mean of its group) / (std + 1e-4), std with Bessel's correction over the group
  (`scale="group"`) or the batch (`"batch"`), or not divided (`"none"`, Dr. GRPO);
- ratio = exp(logp − old_logp) per token; per-token loss = −min(ratio·A, clip(ratio, 1 − ε_low, 1 + ε_high)·A)
  + β·ratio·KL, KL = exp(ref − logp) − (ref − logp) − 1 (k3, always ≥ 0; × ratio makes its gradient the
  unbiased reverse-KL gradient, DeepSeek-V3.2's correction and TRL's default);
- dapo: the sum over every completion token of the step / the number of those tokens (no length bias);
  grpo: each completion's token mean, averaged over completions; dr_grpo: the token sum / (completions ×
  max_completion_length).
`reduce_loss` takes the step's totals as normalisers, so a step run in pieces (micro-batches, several
processes) sums to exactly the loss of the whole step at once.

Log-probs are of the sampling distribution (logits / temperature), as TRL takes them. The LM head (151,936 rows
for R1-Distill) runs only on completion positions, a chunk at a time; when it is frozen (LoRA family, the usual
case) each chunk's log-prob and its gradient wrt the hidden state come out of one pass, and the logits die at once
(the same trick as `train/loss.py`'s fused target loss).
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from r1tune.train.loss import decoder_and_head, final_hidden, loss_chunk_tokens

LOSS_TYPES = ("dapo", "grpo", "dr_grpo")


def nanstd(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Standard deviation ignoring NaNs, with Bessel's correction (NaN for fewer than two values)."""
    mean = torch.nanmean(x, dim=dim, keepdim=True)
    count = (~torch.isnan(x)).sum(dim=dim, keepdim=True)
    variance = torch.nanmean((x - mean) ** 2, dim=dim, keepdim=True) * count / (count - 1)
    variance = torch.where(count > 1, variance, torch.full_like(variance, float("nan")))
    std = variance.sqrt()
    return std.squeeze(dim) if dim is not None else std.squeeze()


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group") -> tuple[torch.Tensor, torch.Tensor]:
    """(advantage per completion, zero-variance flag per group). `rewards` (n,) holds groups of `group_size`
    consecutive completions of one prompt; NaN = not scored (left out of the baseline, advantage 0)."""
    grouped = rewards.view(-1, group_size)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(group_size)
    group_std = nanstd(grouped, dim=1)
    if scale == "batch":
        std = nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
    elif scale in ("group", "none"):
        std = group_std.repeat_interleave(group_size)
    else:
        raise ValueError(f"scale must be group, batch or none, not {scale!r}")
    advantages = rewards - mean
    if scale != "none":
        advantages = advantages / (std + 1e-4)
    # a group is uninformative when its rewards are all equal (or it has fewer than two scored completions)
    zero_std = torch.nan_to_num(group_std, nan=0.0).abs() < 1e-6
    return torch.nan_to_num(advantages, nan=0.0), zero_std


class FrozenHeadLogprob(torch.autograd.Function):
    """log softmax(hidden @ weight.T / temperature)[target] per row, a chunk of rows at a time, with the
    gradient wrt `hidden` worked out in the forward: (one-hot − softmax) @ weight / temperature. Backward only
    scales it by the incoming per-row gradient. Also returns each row's entropy (no gradient)."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, temperature, chunk_size, dtype):
        w = weight if weight.dtype == dtype else weight.to(dtype)
        n = targets.numel()
        logps = torch.empty(n, dtype=torch.float32, device=hidden.device)
        entropy = torch.empty(n, dtype=torch.float32, device=hidden.device)
        grad = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        for start in range(0, n, chunk_size):
            h, t = hidden[start:start + chunk_size], targets[start:start + chunk_size]
            logits = (h.to(dtype) @ w.t()).float().div_(temperature)
            rows = torch.arange(t.numel(), device=t.device)
            target_logit = logits[rows, t]
            log_z = torch.logsumexp(logits, dim=-1)
            logps[start:start + chunk_size] = target_logit - log_z
            probs = logits.sub_(log_z.unsqueeze(-1)).exp_()  # softmax, in place
            entropy[start:start + chunk_size] = torch.special.entr(probs).sum(-1)
            if grad is not None:
                probs.neg_()
                probs[rows, t] += 1.0  # one-hot − softmax = d logp / d logits (× temperature)
                grad[start:start + chunk_size] = (probs.div_(temperature).to(dtype) @ w).to(hidden.dtype)
            del logits
        ctx.save_for_backward(grad if grad is not None else hidden.new_empty(0))
        ctx.mark_non_differentiable(entropy)
        return logps, entropy

    @staticmethod
    def backward(ctx, grad_logps, grad_entropy):
        (grad,) = ctx.saved_tensors
        return grad * grad_logps.unsqueeze(-1).to(grad.dtype), None, None, None, None, None


def _chunk_logprob(head, h, t, temperature):
    logits = head(h).float() / temperature
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(-1, t.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def _chunk_entropy(head, h, temperature):
    logp = torch.log_softmax(head(h).float() / temperature, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def head_logprobs(head, hidden: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                  chunk_size: int | None = None, fused: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-prob of each target, entropy of each row) of `hidden` rows (n, d) through the LM head at
    `temperature`, one chunk of logits at a time. `fused`: None takes the fused path when the head is a frozen
    plain linear layer; False forces the checkpointed path (a trained head)."""
    chunk_size = chunk_size or loss_chunk_tokens(head.weight.shape[0])
    can_fuse = type(head) is torch.nn.Linear and not head.weight.requires_grad and head.bias is None
    if can_fuse and fused is not False:
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
        with torch.autocast(device, enabled=False):
            return FrozenHeadLogprob.apply(hidden, head.weight, targets, temperature, chunk_size, dtype)
    training = torch.is_grad_enabled() and (hidden.requires_grad or head.weight.requires_grad)
    logps, entropy = [], []
    for start in range(0, targets.numel(), chunk_size):
        h, t = hidden[start:start + chunk_size], targets[start:start + chunk_size]
        if training:  # recompute each chunk's logits in backward: one chunk of logits alive at a time
            logps.append(checkpoint(_chunk_logprob, head, h, t, temperature, use_reentrant=False))
        else:
            logps.append(_chunk_logprob(head, h, t, temperature))
        entropy.append(_chunk_entropy(head, h, temperature))
    if not logps:
        return hidden.new_zeros(0, dtype=torch.float32), hidden.new_zeros(0, dtype=torch.float32)
    return torch.cat(logps), torch.cat(entropy)


def completion_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_width: int,
                        temperature: float = 1.0, chunk_size: int | None = None,
                        fused: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs and entropies (batch, completion width) of the completion tokens of rows
    [left-padded prompt | right-padded completion]; zero at padding. Only positions with a real completion token
    go through the LM head."""
    _, head = decoder_and_head(getattr(model, "module", model))
    hidden = final_hidden(model, input_ids, attention_mask)
    # position j predicts token j + 1: the completion's tokens are predicted from prompt_width − 1 on
    predicting = hidden[:, prompt_width - 1:-1]
    targets = input_ids[:, prompt_width:]
    real = attention_mask[:, prompt_width:].bool()
    logps, entropy = head_logprobs(head, predicting[real], targets[real], temperature, chunk_size, fused)
    out = torch.zeros(targets.shape, dtype=torch.float32, device=hidden.device)
    ent = torch.zeros(targets.shape, dtype=torch.float32, device=hidden.device)
    return out.masked_scatter(real, logps), ent.masked_scatter(real, entropy)


def policy_objective(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, epsilon_low: float,
                     epsilon_high: float, beta: float = 0.0,
                     ref_logps: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token loss (batch, width) and per-token statistics (clipped, kl) before masking and reduction.
    `advantages` (batch,) or (batch, 1)."""
    advantages = advantages.view(-1, 1)
    ratio = torch.exp(logps - old_logps)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    per_token = -torch.min(ratio * advantages, clipped * advantages)
    stats = {"clipped_low": ((ratio < 1 - epsilon_low) & (advantages < 0)).float(),
             "clipped_high": ((ratio > 1 + epsilon_high) & (advantages > 0)).float()}
    if beta:
        if ref_logps is None:
            raise ValueError("beta > 0 needs the reference log-probs")
        kl = torch.exp(ref_logps - logps) - (ref_logps - logps) - 1
        # times the ratio: the unbiased reverse-KL gradient off-policy (DeepSeek-V3.2; TRL's default)
        per_token = per_token + beta * kl * ratio
        stats["kl"] = kl.detach()
    return per_token, stats


def reduce_loss(per_token: torch.Tensor, mask: torch.Tensor, loss_type: str, n_sequences: int, n_tokens: int,
                max_completion_length: int) -> torch.Tensor:
    """This piece's share of the step's loss; `n_sequences` / `n_tokens` are the step's totals (every piece,
    every process), so the shares add up to the loss of the whole step."""
    masked = per_token * mask
    if loss_type == "dapo":
        return masked.sum() / max(1, n_tokens)
    if loss_type == "grpo":
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).sum() / max(1, n_sequences)
    if loss_type == "dr_grpo":
        return masked.sum() / (max(1, n_sequences) * max_completion_length)
    raise ValueError(f"loss_type must be one of {', '.join(LOSS_TYPES)}, not {loss_type!r}")


def rows_to_train(zero_std: torch.Tensor, truncated: torch.Tensor, group_size: int, drop_zero_variance: bool,
                  mask_truncated: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows that count, rows that run) of a rollout. Zero-variance groups are left out altogether (they carry no
    gradient); a masked truncated completion still counts as a sequence in grpo / dr_grpo's mean, as TRL counts
    it, but contributes no token, so it is not run."""
    counted = torch.ones_like(truncated, dtype=torch.bool)
    if drop_zero_variance:
        counted &= ~zero_std.repeat_interleave(group_size)
    run = counted & ~truncated if mask_truncated else counted
    return counted, run


def token_capped_rows(lengths: list[int], rows: list[int], max_tokens: int | None) -> list[list[int]]:
    """`rows` in pieces of at most `max_tokens` padded tokens (rows × longest), longest first; a row longer than
    the cap is a piece of its own."""
    order = sorted(rows, key=lambda r: -lengths[r])
    if not max_tokens:
        return [order] if order else []
    pieces, piece = [], []
    for r in order:
        if piece and (len(piece) + 1) * lengths[piece[0]] > max_tokens:
            pieces.append(piece)
            piece = []
        piece.append(r)
    return pieces + ([piece] if piece else [])
