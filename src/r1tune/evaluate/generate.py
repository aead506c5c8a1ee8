"""Batched generation with a KV cache, then the R1 reasoning parser on every output.

    outputs = generate(model, tokenizer, [[{"role": "user", "content": "…"}]], max_new_tokens=256)
    outputs[0].answer, outputs[0].reasoning

Prompts are rendered with the R1 template (generation prompt `<｜Assistant｜><think>\\n`), left-padded so
every row's last token is its own, and decoded without special tokens — `<think>`/`</think>` are not
special in R1 tokenizers, so they survive decoding and the parser sees them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from r1tune.model.reasoning import ParsedOutput, split_reasoning
from r1tune.model.template import generation_prefix, render_prompt, resolve_template


@dataclass
class Generation:
    text: str
    parsed: ParsedOutput
    new_tokens: int
    seconds: float  # wall time of the batch this output was generated in

    @property
    def answer(self) -> str:
        return self.parsed.answer

    @property
    def reasoning(self) -> str:
        return self.parsed.reasoning


@torch.no_grad()
def generate(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int = 256,
             do_sample: bool = False, temperature: float = 0.6, top_p: float = 0.95, batch_size: int = 16,
             template: str | None = None, seed: int | None = None) -> list[Generation]:
    template = template or resolve_template(tokenizer)
    started_in_think = bool(generation_prefix(template))
    prompts = [render_prompt(tokenizer, conv, template) for conv in conversations]
    device = next(model.parameters()).device
    results: list[Generation | None] = [None] * len(prompts)
    # similar lengths together: less left padding
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    if seed is not None:
        torch.manual_seed(seed)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        encoded = [tokenizer(prompts[i], add_special_tokens=False)["input_ids"] for i in idx]
        width = max(map(len, encoded))
        ids = torch.full((len(idx), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, e in enumerate(encoded):
            ids[row, width - len(e):] = torch.tensor(e)
            mask[row, width - len(e):] = 1
        sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if do_sample else dict(do_sample=False)
        t0 = time.perf_counter()
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                             use_cache=True, **sampling, **({} if do_sample else {"temperature": None, "top_p": None,
                                                                                 "top_k": None}))
        seconds = time.perf_counter() - t0
        for row, i in enumerate(idx):
            new = out[row, width:].tolist()
            if tokenizer.eos_token_id in new:
                new = new[:new.index(tokenizer.eos_token_id) + 1]
            text = tokenizer.decode(new, skip_special_tokens=True)
            results[i] = Generation(text, split_reasoning(text, started_in_think), len(new), seconds)
    return results  # type: ignore[return-value]
