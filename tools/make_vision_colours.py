"""A small generated image task for vision fine-tuning: which colour is the shape in the picture?

    python tools/make_vision_colours.py OUT --train 96 --test 24 --size 56

Writes OUT/images/*.png and three files with the same samples in the two image layouts r1tune reads:
OUT/train.jsonl (LLaMA-Factory: `messages` + `images` paths + `<image>` placeholders), OUT/test.jsonl
(OpenAI: `image_url` parts holding base64 data URLs) with a `label` field for `r1tune evaluate`. Each picture
is a square or a disc of one of four colours, at a random place and size, on a light noisy background; answers
carry a short reasoning trace. Deterministic for a seed.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import random
from pathlib import Path

# names of one token length in the tiny tokenizer: the finetune recipe groups batches by length, and names of
# different lengths would put one colour per batch (a batch that teaches "always answer X", not "look")
COLOURS = {"green": (30, 170, 40), "blue": (30, 60, 220), "black": (20, 20, 20), "pink": (240, 120, 180)}
QUESTION = "What colour is the shape?"


def draw(colour: str, size: int, rng: random.Random):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), tuple(rng.randint(215, 255) for _ in range(3)))
    pen = ImageDraw.Draw(image)
    side = rng.randint(size // 2, size - 1)
    x, y = rng.randint(0, size - side), rng.randint(0, size - side)
    fill = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in COLOURS[colour])
    (pen.rectangle if rng.random() < 0.5 else pen.ellipse)([x, y, x + side, y + side], fill=fill)
    return image


def record(colour: str, image_ref: str, layout: str) -> dict:
    answer = {"role": "assistant", "content": colour,
              "reasoning_content": f"The shape is {colour}."}
    if layout == "llamafactory":
        return {"messages": [{"role": "user", "content": f"<image>{QUESTION}"}, answer], "images": [image_ref],
                "label": colour}
    return {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image_ref}},
                                                      {"type": "text", "text": QUESTION}]}, answer], "label": colour}


def make(out: str | Path, n_train: int = 96, n_test: int = 24, size: int = 56, seed: int = 0) -> dict[str, Path]:
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    names = list(COLOURS)
    files = {}
    for split, n, layout in (("train", n_train, "llamafactory"), ("test", n_test, "openai")):
        rows = []
        for k in range(n):
            colour = names[k % len(names)]
            image = draw(colour, size, rng)
            if layout == "llamafactory":
                rel = f"images/{split}-{k:04d}.png"
                image.save(out / rel)
                ref = rel
            else:
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                ref = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
            rows.append(record(colour, ref, layout))
        files[split] = out / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--train", type=int, default=96)
    parser.add_argument("--test", type=int, default=24)
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    files = make(args.out, args.train, args.test, args.size, args.seed)
    print(" ".join(str(p) for p in files.values()))


if __name__ == "__main__":
    main()
