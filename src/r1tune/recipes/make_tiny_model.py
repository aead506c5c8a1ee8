"""`r1tune make-tiny-model DIR`: a deterministic random-init R1-Distill-architecture model with an R1 tokenizer.

    r1tune make-tiny-model runs/tiny --arch qwen2 --size tiny
    r1tune make-tiny-model runs/small --arch llama --size small
    r1tune make-tiny-model runs/tiny-vl --arch qwen2_5_vl     # vision-language (also qwen2_vl)
    r1tune make-tiny-model runs/tiny-vl --arch qwen2_5_vl --chat chatml   # laid out as the hub's VLMs ship

For tests, benchmarks and the offline quickstart: no hub is needed (`model/tiny.py` builds it).
"""

from __future__ import annotations

from pathlib import Path

from r1tune.errors import R1TuneError
from r1tune.model.tiny import make_tiny_model as build_tiny_model


def make_tiny_model(out: str | Path, arch: str = "qwen2", size: str = "tiny", seed: int = 0, chat: str = "r1") -> dict:
    from r1tune.model.vision import VISION_ARCHS, make_tiny_vision_model  # torch: kept out of the CLI's import

    if arch in VISION_ARCHS:  # issue 19: Qwen2(.5)-VL
        info = make_tiny_vision_model(out, arch=arch, size=size, seed=seed, chat=chat)
    elif chat != "r1":
        raise R1TuneError("--chat chatml is for the vision archs (qwen2_5_vl, qwen2_vl); R1-Distill models are r1")
    else:
        info = build_tiny_model(out, arch=arch, size=size, seed=seed)
    print(f"wrote {info['arch']}/{info['size']} model ({info['parameters']:,} parameters) to {out}")
    return info
