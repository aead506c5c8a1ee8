"""`r1tune make-tiny-model DIR`: a deterministic random-init R1-Distill-architecture model with an R1 tokenizer.

    r1tune make-tiny-model runs/tiny --arch qwen2 --size tiny
    r1tune make-tiny-model runs/small --arch llama --size small

For tests, benchmarks and the offline quickstart: no hub is needed (`model/tiny.py` builds it).
"""

from __future__ import annotations

from pathlib import Path

from r1tune.model.tiny import make_tiny_model as build_tiny_model


def make_tiny_model(out: str | Path, arch: str = "qwen2", size: str = "tiny", seed: int = 0) -> dict:
    info = build_tiny_model(out, arch=arch, size=size, seed=seed)
    print(f"wrote {info['arch']}/{info['size']} model ({info['parameters']:,} parameters) to {out}")
    return info
