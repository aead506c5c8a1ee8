"""Training samples with images, for Qwen2-VL / Qwen2.5-VL: tokens, labels and the images' pixel patches.

    sample = tokenize_vision_sample(tokenizer, processor, chat_sample, "keep", template, data_cfg)
    batch = collate([sample, …], pad_id)      # train/data.py adds pixel_values + image_grid_thw from here

A sample is rendered exactly as a text sample (`model/template.py`: prompt, untrained bridge, trained target),
then each `<image>` placeholder of the prompt becomes `<|vision_start|><|image_pad|>×n<|vision_end|>`, n from the
image processor (`model/vision.py`). The image tokens are structure of the prompt, so they are never labelled:
the target holds the answer only, and its content cannot hold an image token (a typed marker stays text). A
prompt cut by max_length would drop image tokens while their patches stay: that sample is an error, never a
silent mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from r1tune.data.formats import ChatSample
from r1tune.errors import R1TuneError
from r1tune.model.template import TokenizedSample, render_training, tokenize_training
from r1tune.model.vision import IMAGE_PAD, conversation_images, expand_image_slots, image_features, image_token_counts


@dataclass
class VisionSample(TokenizedSample):
    pixel_values: torch.Tensor | None = None  # (patches, channels × temporal × patch²), all images of the sample
    image_grid_thw: torch.Tensor | None = None  # (images, 3)
    image_token_id: int | None = None


def tokenize_vision_sample(tokenizer, processor, sample: ChatSample, mode: str, template: str, cfg) -> VisionSample:
    """`cfg` is a DataConfig (max_length, truncate)."""
    text = render_training(tokenizer, sample.messages, sample.reasoning, mode, template)
    features = image_features(processor, conversation_images(sample.messages))
    counts = image_token_counts(processor, features["image_grid_thw"]) if features else []
    text.prompt_pieces = expand_image_slots(text.prompt_pieces, counts)
    tok = tokenize_training(tokenizer, text, cfg.max_length, source=sample.source, truncate=cfg.truncate)
    pad_id = tokenizer.convert_tokens_to_ids(IMAGE_PAD)
    kept = sum(1 for i in tok.input_ids if i == pad_id)
    if kept != sum(counts):
        raise R1TuneError(f"sample {sample.source}: max_length {cfg.max_length} cuts its images ({sum(counts)} image "
                          f"tokens, {kept} kept): raise data.max_length or shrink the images")
    return VisionSample(tok.input_ids, tok.labels, tok.truncated, tok.prompt_cut,
                        features.get("pixel_values"), features.get("image_grid_thw"), pad_id)


def vision_batch(samples: list, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """pixel_values and image_grid_thw of a batch, in row order (the order of the image tokens in the batch), and
    the token types (1 = image) from which Qwen-VL computes its 3-D (time, height, width) rotary positions."""
    with_images = [s for s in samples if getattr(s, "pixel_values", None) is not None]
    if not with_images:
        return {}
    return {"pixel_values": torch.cat([s.pixel_values for s in with_images]),
            "image_grid_thw": torch.cat([s.image_grid_thw for s in with_images]),
            "mm_token_type_ids": mm_token_types(input_ids, with_images[0].image_token_id)}


def mm_token_types(input_ids: torch.Tensor, image_token_id: int) -> torch.Tensor:
    """1 where a position holds an image token, 0 elsewhere (padding included)."""
    return input_ids.eq(image_token_id).to(torch.int)
