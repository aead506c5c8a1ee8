"""Vision-language (Qwen2-VL / Qwen2.5-VL) models: the tiny one, image features, image tokens, what trains.

    r1tune make-tiny-model runs/tiny-vl --arch qwen2_5_vl

R1-style reasoning VLMs (R1-V, VLM-R1, …) are Qwen2-VL / Qwen2.5-VL checkpoints trained with think traces. A
message that shows images holds one `<image>` placeholder per image in its text (LLaMA-Factory's layout; the
OpenAI `image_url` parts are turned into it by `data/images.py`) and the decoded images in `message["images"]`.
Rendering keeps the R1 template untouched and swaps each placeholder, after the template ran, for the structure
`<|vision_start|>` + `<|image_pad|>` × n + `<|vision_end|>`, n being what the image processor makes of that image
(patches / merge²). Those markers are added tokens: typed inside a message they stay plain text
(`model/encode.py`), so a user can never forge an image slot, and the label mask never covers them because
they only ever sit in the prompt.

What trains: the method wraps the language model (LoRA targets only its decoder layers); the vision tower and the
projector (`visual.merger`) are frozen unless `method.vision_lr` / `method.projector_lr` give them a learning rate.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import torch

from r1tune.data.images import IMAGE_PLACEHOLDER
from r1tune.errors import R1TuneError
from r1tune.model.encode import Piece, encode_pieces
from r1tune.model.template import generation_pieces
from r1tune.model.tiny import save_tiny, train_tokenizer

VISION_ARCHS = ("qwen2_5_vl", "qwen2_vl")
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"
VISION_TOKENS = (VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)
# the tiny model's images are resized to this many pixels at most: 56×56 is 16 patches of 14², 4 image tokens
TINY_IMAGE_PIXELS = 56 * 56
VISION_SIZES = {
    "tiny": dict(text=dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2), mrope_section=[4, 6, 6],
                 vision=dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4), bpe_vocab=4000),
    "small": dict(text=dict(hidden_size=512, intermediate_size=2816, num_hidden_layers=6, num_attention_heads=8,
                            num_key_value_heads=2), mrope_section=[8, 12, 12],
                  vision=dict(depth=4, hidden_size=256, intermediate_size=1024, num_heads=4), bpe_vocab=8000),
}


def is_vision_config(config) -> bool:
    """A transformers config (or its dict) of a Qwen2-VL / Qwen2.5-VL model."""
    model_type = config.get("model_type") if isinstance(config, dict) else getattr(config, "model_type", None)
    return model_type in VISION_ARCHS


def is_vision_checkpoint(name_or_path: str | Path, revision: str | None = None) -> bool:
    """Whether a model folder or hub id holds a vision-language model (read from its config, no weights)."""
    path = Path(str(name_or_path))
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():  # an adapter run: its base decides
            return False
        return is_vision_config(json.loads(config_file.read_text(encoding="utf-8")))
    try:
        from transformers import AutoConfig

        return is_vision_config(AutoConfig.from_pretrained(str(name_or_path), revision=revision))
    except (OSError, ValueError):
        return False


def is_vision_model(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base = getattr(base, "module", base)
    return is_vision_config(getattr(base, "config", None))


def vision_body(model):
    """The multimodal body (vision tower + language model, returns hidden states) under PEFT / DDP wrappers."""
    base = getattr(model, "module", model)
    base = base.get_base_model() if hasattr(base, "get_base_model") else base
    return base.model


def make_tiny_vision_model(out: str | Path, arch: str = "qwen2_5_vl", size: str = "tiny", seed: int = 0,
                           tokenizer=None, chat: str = "r1") -> dict:
    """A random-init Qwen2.5-VL (or Qwen2-VL) with the Qwen vision tokens and the real Qwen2-VL image processor
    layout (14-pixel patches, 2×2 merge, temporal patch 2), saved as a checkpoint. chat='r1': the R1 tokenizer
    and template; chat='chatml': the hub checkpoints' own layout (ChatML template, no R1 marker, eos
    `<|im_end|>`). `tokenizer`: a tiny tokenizer of the same size when one is at hand (tests), else trained here."""
    from tokenizers import AddedToken
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
    )

    if arch not in VISION_ARCHS:
        raise R1TuneError(f"--arch must be one of {', '.join(VISION_ARCHS)} for a vision model, not {arch!r}")
    if size not in VISION_SIZES:
        raise R1TuneError(f"--size must be one of {', '.join(VISION_SIZES)}, not {size!r}")
    spec = VISION_SIZES[size]
    tokenizer = copy.deepcopy(tokenizer) if tokenizer is not None else train_tokenizer(spec["bpe_vocab"], chat)
    # after the R1 markers, as Qwen's own vision tokens follow its text vocabulary; special, so never split
    tokenizer.add_special_tokens({"additional_special_tokens": [
        AddedToken(t, special=True, normalized=False) for t in VISION_TOKENS]})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS}
    vocab = ((len(tokenizer) + 63) // 64) * 64
    text = dict(vocab_size=vocab, max_position_embeddings=16384, rms_norm_eps=1e-6, tie_word_embeddings=False,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": spec["mrope_section"]},
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, **spec["text"])
    vision = dict(spec["vision"], out_hidden_size=spec["text"]["hidden_size"])
    token_ids = dict(image_token_id=ids[IMAGE_PAD], video_token_id=ids[VIDEO_PAD],
                     vision_start_token_id=ids[VISION_START], vision_end_token_id=ids[VISION_END])
    if arch == "qwen2_5_vl":
        vision.update(fullatt_block_indexes=[vision["depth"] - 1], window_size=112)
        config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **token_ids)
        model_cls = Qwen2_5_VLForConditionalGeneration
    else:  # Qwen2-VL's vision tower: embed_dim / mlp_ratio, a LayerNorm MLP
        vision = dict(depth=vision["depth"], embed_dim=vision["hidden_size"], num_heads=vision["num_heads"],
                      hidden_size=vision["out_hidden_size"], mlp_ratio=2)
        config = Qwen2VLConfig(text_config=text, vision_config=vision, **token_ids)
        model_cls = Qwen2VLForConditionalGeneration
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    tiny_image_processor(size).save_pretrained(out)
    return save_tiny(model, tokenizer, out, {
        "arch": arch, "size": size, "seed": seed, "chat": chat, "vocab_size": vocab, **token_ids,
        "vision_parameters": sum(p.numel() for p in model.model.visual.parameters())})


def tiny_image_processor(size: str = "tiny"):
    """Qwen2-VL's image processor (PIL backend: no torchvision needed), capped to small images for tiny models."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    pixels = TINY_IMAGE_PIXELS if size == "tiny" else 224 * 224
    return Qwen2VLImageProcessorPil(size={"shortest_edge": 56 * 56, "longest_edge": pixels})


def load_image_processor(*candidates: str | Path | None):
    """The image processor saved with a run or its base model: the first candidate that has one."""
    from transformers import AutoImageProcessor

    tried = []
    for path in candidates:
        if not path:
            continue
        tried.append(str(path))
        try:
            return AutoImageProcessor.from_pretrained(str(path), backend="pil")
        except (OSError, ValueError, TypeError):
            try:
                return AutoImageProcessor.from_pretrained(str(path))
            except (OSError, ValueError, ImportError):
                continue
    raise R1TuneError(f"no image processor (preprocessor_config.json) found in {', '.join(tried) or 'nothing'}")


def image_features(processor, images: list) -> dict[str, torch.Tensor]:
    """pixel_values (patches × features) and image_grid_thw (images × 3) for a list of PIL images."""
    if not images:
        return {}
    out = processor(images=[im.convert("RGB") for im in images], return_tensors="pt")
    return {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}


def image_token_counts(processor, grid_thw: torch.Tensor) -> list[int]:
    """Image-pad tokens per image: its patches over the merge window."""
    merge = getattr(processor, "merge_size", 2)
    return [int(t * h * w) // (merge * merge) for t, h, w in grid_thw.tolist()]


def conversation_images(messages: list[dict]) -> list:
    """Every image of a conversation, in the order of its placeholders."""
    return [im for m in messages for im in (m.get("images") or [])]


def expand_image_slots(pieces: list[Piece], counts: list[int]) -> list[Piece]:
    """Swap each `<image>` placeholder in content pieces for the image's structure tokens, in order.

    Raises when the placeholders and the images differ in number (the readers check that first)."""
    out: list[Piece] = []
    left = list(counts)
    for text, is_content in pieces:
        if not is_content or IMAGE_PLACEHOLDER not in text:
            out.append((text, is_content))
            continue
        parts = text.split(IMAGE_PLACEHOLDER)
        for k, part in enumerate(parts):
            if part:
                out.append((part, True))
            if k < len(parts) - 1:
                if not left:
                    raise R1TuneError("more <image> placeholders than images")
                out.append((VISION_START + IMAGE_PAD * left.pop(0) + VISION_END, False))
    if left:
        raise R1TuneError(f"{len(left)} image(s) without an <image> placeholder")
    return out


def image_prompt_pieces(tokenizer, processor, messages: list[dict], template: str) -> tuple[list[Piece], dict]:
    """Generation-prompt pieces with image slots expanded, and the image features they stand for."""
    features = image_features(processor, conversation_images(messages))
    counts = image_token_counts(processor, features["image_grid_thw"]) if features else []
    pieces = expand_image_slots(generation_pieces(tokenizer, messages, template), counts)
    return pieces, features


def encode_image_prompt(tokenizer, processor, messages: list[dict], template: str) -> tuple[list[int], dict]:
    pieces, features = image_prompt_pieces(tokenizer, processor, messages, template)
    return encode_pieces(tokenizer, pieces), features


def vision_tower_parameters(model) -> tuple[list[tuple[str, torch.nn.Parameter]], list[tuple[str, torch.nn.Parameter]]]:
    """(vision tower, projector) parameters by name; the projector is `visual.merger`."""
    tower, projector = [], []
    for name, p in model.named_parameters():
        if ".visual." not in f".{name}":
            continue
        (projector if ".merger." in name else tower).append((name, p))
    return tower, projector


def vision_lora_targets(linear_names: list[str]) -> str:
    """LoRA on the language model's decoder layers only (the vision tower's MLPs share the names gate/up/down)."""
    return r"^(?!.*\bvisual\b).*\.layers\.\d+\.(.*\.)?(" + "|".join(map(re.escape, linear_names)) + ")$"


def set_vision_trainable(model, method_cfg) -> dict[str, int]:
    """Freeze the vision tower and projector unless `method.vision_lr` / `method.projector_lr` train them.

    Under PEFT, trained vision parts are saved with the adapter through `modules_to_save` (`vision_modules_to_save`),
    so here they are already trainable copies; for full / freeze the base parameters themselves are switched."""
    tower, projector = vision_tower_parameters(model)
    projector_lr = method_cfg.projector_lr if method_cfg.projector_lr is not None else method_cfg.vision_lr
    for params, lr in ((tower, method_cfg.vision_lr), (projector, projector_lr)):
        for name, p in params:
            copy_of_saved = "original_module" in name  # PEFT keeps the frozen original next to the trained copy
            p.requires_grad_(lr is not None and not copy_of_saved)
    return {"vision_tower": sum(p.numel() for _, p in tower if p.requires_grad),
            "projector": sum(p.numel() for _, p in projector if p.requires_grad)}


def vision_modules_to_save(method_cfg) -> list[str] | None:
    """PEFT `modules_to_save` for the vision parts that train (saved whole with the adapter)."""
    if method_cfg.vision_lr is not None:
        return ["visual"]
    if method_cfg.projector_lr is not None:
        return ["merger"]
    return None


def vision_lr(name: str, method_cfg, lr: float) -> float:
    """The learning rate of a parameter: `method.vision_lr` for the tower, `projector_lr` for the merger."""
    dotted = f".{name}"
    if ".visual." not in dotted:
        return lr
    if ".merger." in dotted and method_cfg.projector_lr is not None:
        return method_cfg.projector_lr
    return method_cfg.vision_lr if method_cfg.vision_lr is not None else lr


def image_processor_for(name_or_path: str | Path, revision: str | None = None):
    """The image processor of a vision checkpoint, or None for a text model."""
    return load_image_processor(name_or_path) if is_vision_checkpoint(name_or_path, revision) else None
