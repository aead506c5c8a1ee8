"""Sampling a GRPO step's completions: G per prompt, batched, with a KV cache, R1's sampling defaults.

    rollout = sample_completions(model, [prompt_ids, …], num_generations=8, max_new_tokens=1024,
                                 temperature=0.6, top_p=0.95, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id,
                                 generator=torch.Generator().manual_seed(step_seed))
    rollout.completion_ids, rollout.completion_mask, rollout.truncated     # rows = prompts × G, groups consecutive

Prompts are the ids `encode_generation_prompt` gives — the exact prompt `r1tune serve` builds, ending
`<｜Assistant｜><think>\\n` — left-padded. Each prompt is run through the model once and its KV cache copied G
times (the G completions share the prompt), then all rows decode together, one token per step: temperature,
then top-p, sampled with the step's own generator (a pure function of seed and step, so a resumed run samples
the same completions without storing RNG state). A row stops at eos; rows that stopped are dropped from the
batch (and its cache) once they are a quarter of it, so the long tail does not pay for finished rows. A row that
reaches max_new_tokens without eos is `truncated`.

Top-p is exact but cheap: a row samples among its 64 most likely tokens when they hold the nucleus, else by
rejection from the whole distribution (`sample_next`); nothing sorts all 151,936 probabilities of every row every
step, and draws are inverse-CDF lookups rather than torch.multinomial.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from r1tune.model.reasoning import ParsedOutput, split_reasoning


@dataclass
class Completion:
    text: str  # decoded, special tokens skipped; starts inside the reasoning
    parsed: ParsedOutput
    n_tokens: int  # eos included
    truncated: bool  # stopped by max_completion_length, not by eos


@dataclass
class Rollout:
    prompt_ids: torch.Tensor  # (rows, P) left-padded
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor  # (rows, C) right-padded with pad
    completion_mask: torch.Tensor  # 1 on the completion's tokens, its eos included
    truncated: torch.Tensor  # (rows,) bool: stopped by max_new_tokens, not by eos
    seconds: float

    @property
    def lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(-1)


def generation_model(model):
    """The transformers causal LM to decode with (adapter layers are injected into it)."""
    model = getattr(model, "module", model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def inverse_cdf(weights: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One index per row, drawn with probability proportional to `weights` (≥ 0): a uniform draw looked up in the
    cumulative sum. Exact, and ~25× cheaper than torch.multinomial over a 151,936-token vocabulary on CPU."""
    cumulative = weights.cumsum(-1)
    u = torch.rand(weights.shape[0], 1, generator=generator, device=weights.device, dtype=cumulative.dtype)
    index = torch.searchsorted(cumulative, u * cumulative[:, -1:], right=True)
    return index.clamp_(max=weights.shape[-1] - 1).squeeze(1)


def sample_next(logits: torch.Tensor, temperature: float, top_p: float,
                generator: torch.Generator | None) -> torch.Tensor:
    """One token per row from softmax(logits / temperature) restricted to the nucleus of mass top_p: a token is
    kept when the mass of the tokens more likely than it is below top_p (transformers' TopPLogitsWarper).

    Rows whose nucleus lies within their 64 most likely tokens (a trained model, nearly always) sample there.
    Others (a flat distribution) draw from the whole distribution and keep the draw if it is in the nucleus,
    else draw again: that is exactly the nucleus distribution renormalised, each draw is accepted with probability
    ≥ top_p, and nothing sorts 151,936 probabilities."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p >= 1.0:
        return inverse_cdf(probs, generator)
    k = min(probs.shape[-1], 64)
    top, index = probs.topk(k, dim=-1)
    cumulative = top.cumsum(-1)
    tokens = index.gather(1, inverse_cdf(top * ((cumulative - top) < top_p), generator).unsqueeze(1)).squeeze(1)
    pending = (cumulative[:, -1] < top_p).nonzero().squeeze(1)
    while pending.numel():
        rows = probs[pending]
        draw = inverse_cdf(rows, generator)
        p = rows.gather(1, draw.unsqueeze(1))
        inside = (rows * (rows > p)).sum(-1) < top_p
        tokens[pending[inside]] = draw[inside]
        pending = pending[~inside]
    return tokens


def left_padded(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[row, width - len(p):] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def _decode(lm, ids, mask, num_generations, max_new_tokens, temperature, top_p, eos_id, pad_id, generator):
    """Completion ids (rows, max_new_tokens) padded with pad, and their lengths, for one batch of prompts."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = lm(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    cache.batch_repeat_interleave(num_generations)
    logits = out.logits[:, -1].repeat_interleave(num_generations, dim=0)
    mask = mask.repeat_interleave(num_generations, dim=0)
    next_position = positions[:, -1].repeat_interleave(num_generations) + 1
    rows = logits.shape[0]
    tokens = torch.full((rows, max_new_tokens), pad_id, dtype=torch.long, device=ids.device)
    lengths = torch.zeros(rows, dtype=torch.long, device=ids.device)
    present = torch.arange(rows, device=ids.device)  # the row each cache row belongs to
    done = torch.zeros(rows, dtype=torch.bool, device=ids.device)  # per cache row
    for step in range(max_new_tokens):
        token = sample_next(logits, temperature, top_p, generator)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        tokens[present, step] = token
        lengths[present] += (~done).long()
        done = done | (token == eos_id)
        if step == max_new_tokens - 1 or bool(done.all()):
            break
        if int(done.sum()) * 4 >= done.numel():  # drop finished rows once they are a quarter of the batch
            keep = (~done).nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            present, done, mask, next_position, token = (present[keep], done[keep], mask[keep],
                                                         next_position[keep], token[keep])
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        out = lm(input_ids=token.unsqueeze(1), attention_mask=mask, position_ids=next_position.unsqueeze(1),
                 past_key_values=cache, use_cache=True)
        logits = out.logits[:, -1]
        next_position = next_position + 1
    return tokens, lengths


def sample_completions(model, prompts: list[list[int]], num_generations: int, max_new_tokens: int,
                       temperature: float, top_p: float, eos_id: int, pad_id: int,
                       generator: torch.Generator | None = None, batch_rows: int | None = None) -> Rollout:
    """G completions of each prompt; `batch_rows` caps the completions decoded together (whole groups)."""
    lm = generation_model(model)
    device = next(lm.parameters()).device
    was_training = lm.training
    lm.eval()  # no dropout, and gradient checkpointing (training mode only) would turn the cache off
    t0 = time.perf_counter()
    per_batch = max(1, (batch_rows or len(prompts) * num_generations) // num_generations)
    pieces = []
    try:
        for start in range(0, len(prompts), per_batch):
            ids, mask = left_padded(prompts[start:start + per_batch], pad_id, device)
            pieces.append(_decode(lm, ids, mask, num_generations, max_new_tokens, temperature, top_p, eos_id,
                                  pad_id, generator))
    finally:
        lm.train(was_training)
    lengths = torch.cat([n for _, n in pieces])
    width = max(1, int(lengths.max()))
    completion_ids = torch.cat([t[:, :width] for t, _ in pieces])
    completion_mask = (torch.arange(width, device=device).unsqueeze(0) < lengths.unsqueeze(1)).long()
    last = completion_ids.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    truncated = (last != eos_id) | (lengths == 0)
    prompt_ids, prompt_mask = left_padded([p for p in prompts for _ in range(num_generations)], pad_id, device)
    return Rollout(prompt_ids, prompt_mask, completion_ids, completion_mask, truncated, time.perf_counter() - t0)


def decode_completions(tokenizer, rollout: Rollout) -> list[Completion]:
    """Each row's text (special tokens skipped: `<think>` / `</think>` are not special in R1 tokenizers, so they
    stay), parsed as an output that started inside the reasoning."""
    lengths = rollout.lengths.tolist()
    texts = tokenizer.batch_decode([row[:n] for row, n in zip(rollout.completion_ids.tolist(), lengths)],
                                   skip_special_tokens=True)
    return [Completion(text, split_reasoning(text, started_in_think=True), n, bool(cut))
            for text, n, cut in zip(texts, lengths, rollout.truncated.tolist())]
