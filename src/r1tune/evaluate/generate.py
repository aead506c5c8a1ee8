"""Batched generation with a KV cache, then the R1 reasoning parser on every output.

    outputs = generate(model, tokenizer, [[{"role": "user", "content": "…"}]], max_new_tokens=256)
    outputs[0].answer, outputs[0].reasoning

    with generation_progress("tuned", len(conversations)) as advance:   # done/total prompts with an ETA
        outputs = generate(model, tokenizer, conversations, on_batch=advance)

Prompts are encoded as serving and training encode them (`encode_generation_prompt`: the R1 template, a
marker typed inside a message stays plain text, generation prompt `<｜Assistant｜><think>\\n`, forced with
the 2025-01 template too), left-padded so every row's last token is its own, and decoded without special
tokens — `<think>`/`</think>` are not special in R1 tokenizers, so they survive decoding and the parser sees
them. The output therefore always starts inside the reasoning.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from r1tune.model.reasoning import ParsedOutput, split_reasoning
from r1tune.model.template import encode_generation_prompt, resolve_template
from r1tune.model.vision import IMAGE_PAD, conversation_images, encode_image_prompt, load_image_processor
from r1tune.train.vision_data import vision_batch


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
             template: str | None = None, seed: int | None = None,
             on_batch: Callable[[int], None] | None = None, image_processor=None) -> list[Generation]:
    """`on_batch(n)` is called after each batch with the number of prompts it finished (progress).
    Conversations whose messages carry `images` (a vision model) are encoded with their image tokens and
    patches; the image processor defaults to the one saved beside the tokenizer."""
    template = template or resolve_template(tokenizer)
    features: list[dict] = [{}] * len(conversations)
    if any(conversation_images(conv) for conv in conversations):  # issue 19
        image_processor = image_processor or load_image_processor(tokenizer.name_or_path)
        prompts, features = map(list, zip(*(encode_image_prompt(tokenizer, image_processor, conv, template)
                                            for conv in conversations)))
    else:
        prompts = [encode_generation_prompt(tokenizer, conv, template) for conv in conversations]
    device = next(model.parameters()).device
    results: list[Generation | None] = [None] * len(prompts)
    # similar lengths together: less left padding
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    if seed is not None:
        torch.manual_seed(seed)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        encoded = [prompts[i] for i in idx]
        width = max(map(len, encoded))
        ids = torch.full((len(idx), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, e in enumerate(encoded):
            ids[row, width - len(e):] = torch.tensor(e)
            mask[row, width - len(e):] = 1
        sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if do_sample else dict(do_sample=False)
        t0 = time.perf_counter()
        rows = [_Patches(features[i], tokenizer) for i in idx]
        images = {k: v.to(device) for k, v in vision_batch(rows, ids).items()}
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                             **images,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                             use_cache=True, **sampling, **({} if do_sample else {"temperature": None, "top_p": None,
                                                                                 "top_k": None}))
        seconds = time.perf_counter() - t0
        for row, i in enumerate(idx):
            new = out[row, width:].tolist()
            if tokenizer.eos_token_id in new:
                new = new[:new.index(tokenizer.eos_token_id) + 1]
            text = tokenizer.decode(new, skip_special_tokens=True)
            results[i] = Generation(text, split_reasoning(text, started_in_think=True), len(new), seconds)
        if on_batch:
            on_batch(len(idx))
    return results  # type: ignore[return-value]


class _Patches:
    """One prompt's image features as `vision_batch` reads them (the row order of a batch)."""

    def __init__(self, features: dict, tokenizer):
        self.pixel_values, self.image_grid_thw = features.get("pixel_values"), features.get("image_grid_thw")
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_PAD)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


@contextmanager
def generation_progress(label: str, total: int, every_s: float = 10.0) -> Iterator[Callable[[int], None]]:
    """advance(n) after each batch → done/total prompts with elapsed time and an ETA, on stderr: a rich bar on
    a terminal; elsewhere (a log, a pipe, CI) a plain line after the first batch, then at least `every_s`
    apart, and at the end. The ETA assumes later batches take as long as the earlier ones did."""
    done = 0
    if sys.stderr.isatty():
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("prompts"),
                      TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                      console=Console(stderr=True)) as bar:
            task = bar.add_task(label, total=total)
            yield lambda n: bar.update(task, advance=n)
        return
    start, last = time.perf_counter(), None

    def advance(n: int) -> None:
        nonlocal done, last
        done += n
        now = time.perf_counter()
        if last is not None and now - last < every_s and done < total:
            return
        last, elapsed = now, now - start
        rest = "done" if done >= total else f"ETA {_clock(elapsed / done * (total - done))}"
        print(f"{label}: {done}/{total} prompts, {_clock(elapsed)} elapsed, {rest}", file=sys.stderr, flush=True)

    yield advance
