"""`r1tune make-tiny-model DIR`: a deterministic random-init R1-Distill-architecture model with an R1 tokenizer.

    r1tune make-tiny-model runs/tiny --arch qwen2 --size tiny
    r1tune make-tiny-model runs/small --arch llama --size small
    r1tune make-tiny-model runs/tiny-vl --arch qwen2_5_vl     # vision-language (also qwen2_vl)

For tests, benchmarks and the offline quickstart: no hub is needed (`model/tiny.py` builds it).
"""

from __future__ import annotations

from pathlib import Path

from r1tune.model.tiny import make_tiny_model as build_tiny_model


def make_tiny_model(out: str | Path, arch: str = "qwen2", size: str = "tiny", seed: int = 0) -> dict:
    from r1tune.model.vision import VISION_ARCHS, make_tiny_vision_model  # torch: kept out of the CLI's import

    build = make_tiny_vision_model if arch in VISION_ARCHS else build_tiny_model  # issue 19: Qwen2(.5)-VL
    info = build(out, arch=arch, size=size, seed=seed)
    print(f"wrote {info['arch']}/{info['size']} model ({info['parameters']:,} parameters) to {out}")
    return info
