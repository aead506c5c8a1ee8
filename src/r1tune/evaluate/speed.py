"""Generation speed: throughput of the batched pass, and per-request latency at batch size 1.

    throughput(generations, seconds)           # {"tokens_per_s", "chars_per_s", …} of a batched run
    latencies = measure_latency(model, tokenizer, conversations[:8], max_new_tokens=256)
    latency_summary(latencies)                 # {"p50_s", "p95_s", "mean_s", "requests"}

Throughput is what an offline batch job sees (all new tokens over the wall time of the whole pass).
Latency is what one user sees: each request generated alone, start to last token, so batching does not
blur it. Characters per second is reported too because token counts differ between tokenizers (a Chinese
character is about one token in R1's tokenizer, an English word about 1.3).
"""

from __future__ import annotations

import time

import numpy as np

from r1tune.evaluate.generate import generate


def throughput(generations, seconds: float) -> dict:
    tokens = sum(g.new_tokens for g in generations)
    chars = sum(len(g.text) for g in generations)
    return {"tokens_per_s": tokens / seconds if seconds else 0.0, "chars_per_s": chars / seconds if seconds else 0.0,
            "new_tokens_mean": tokens / max(1, len(generations)), "seconds": seconds, "outputs": len(generations)}


def measure_latency(model, tokenizer, conversations: list[list[dict]], **generate_kwargs) -> list[dict]:
    """Generate each conversation alone; [{"seconds", "new_tokens", "chars"}] per request."""
    generate_kwargs = {**generate_kwargs, "batch_size": 1}
    out = []
    for conversation in conversations:
        t0 = time.perf_counter()
        (generation,) = generate(model, tokenizer, [conversation], **generate_kwargs)
        out.append({"seconds": time.perf_counter() - t0, "new_tokens": generation.new_tokens,
                    "chars": len(generation.text)})
    return out


def latency_summary(seconds: list[float]) -> dict:
    if not seconds:
        return {"requests": 0}
    values = np.asarray(seconds, dtype=float)
    return {"requests": len(values), "p50_s": float(np.percentile(values, 50)),
            "p95_s": float(np.percentile(values, 95)), "mean_s": float(values.mean()), "max_s": float(values.max())}
