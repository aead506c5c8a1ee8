"""Records with images: OpenAI `image_url` / `image` content parts and LLaMA-Factory's `images` + `<image>` layout.

    samples, skipped = load_image_samples("train.jsonl")      # ChatSample, messages carry their "images"
    image = decode_image("data:image/png;base64,…", loc, "messages[0].content[1]")

Both layouts become one shape: each message's text holds one `<image>` placeholder where an image stands, and the
decoded images (PIL, RGB) ride in `message["images"]`, in placeholder order; the rest is the text reader's
(`data/formats.py`: alpaca, ShareGPT or OpenAI messages, reasoning traces as for text). Every image is checked
before training starts: it exists, it decodes, and it is referenced exactly once — the placeholders and the
`images` list agree in number — otherwise a `file:line: field: problem` error names it.

An image is a path (relative to the data file's folder, or absolute) or a base64 `data:` URL; remote URLs are
never fetched (download them first). Images sit in user messages only.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from pathlib import Path

from r1tune.data.formats import ChatSample, to_sample
from r1tune.data.io import Location, read_records
from r1tune.errors import DataError

IMAGE_PLACEHOLDER = "<image>"
IMAGE_PART_TYPES = ("image_url", "image")
DATA_URL = re.compile(r"data:(image/[\w.+-]+)?(;[\w=-]+)*;base64,(.*)", re.S)
MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # a decompression bomb is an error, not an out-of-memory


class ImageRefError(ValueError):
    """Why an image reference cannot be read (the caller adds file, line and field)."""


def image_bytes(ref: str, base_dir: Path | None, allow_paths: bool = True, max_bytes: int | None = None) -> bytes:
    """The encoded bytes of a data URL or a local file; raises ImageRefError saying what is wrong."""
    if not isinstance(ref, str) or not ref.strip():
        raise ImageRefError("an image must be a path or a data: URL")
    if ref.startswith("data:"):
        m = DATA_URL.fullmatch(ref)
        if not m:
            raise ImageRefError("a data URL must be data:image/…;base64,…")
        if max_bytes is not None and len(m.group(3)) * 3 // 4 > max_bytes:
            raise ImageRefError(f"image larger than {max_bytes:,} bytes")
        try:
            return base64.b64decode(m.group(3), validate=True)
        except (binascii.Error, ValueError):
            raise ImageRefError("the data URL is not valid base64") from None
    if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://", ref):
        raise ImageRefError(f"remote image URLs are not fetched ({ref[:60]}): download the image and give its path, "
                            "or a data: URL")
    if not allow_paths:
        raise ImageRefError("only data: URLs are accepted here")
    path = Path(ref)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise ImageRefError(f"image not found: {path}")
    if max_bytes is not None and path.stat().st_size > max_bytes:
        raise ImageRefError(f"image {path} larger than {max_bytes:,} bytes")
    return path.read_bytes()


def open_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS):
    """Decode image bytes fully into an RGB PIL image; raises ImageRefError when they are not an image."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > max_pixels:
                raise ImageRefError(f"image of {im.width}×{im.height} pixels, over the cap of {max_pixels:,}")
            im.load()  # a truncated file fails here, not in the middle of training
            return im.convert("RGB")
    except ImageRefError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageRefError(f"does not decode as an image ({why})") from None


def decode_image(ref: str, loc: Location, field: str, base_dir: Path | None = None):
    try:
        return open_image(image_bytes(ref, base_dir))
    except ImageRefError as e:
        raise loc.error(field, str(e)) from None


def part_image_ref(part: dict, loc: Location, field: str) -> str:
    """The reference of an OpenAI `image_url` part ({"image_url": {"url": …}}) or a Qwen-style `image` part."""
    if part.get("type") == "image_url":
        value = part.get("image_url")
        ref = value.get("url") if isinstance(value, dict) else value
    else:
        ref = part.get("image", part.get("url", part.get("path")))
    if not isinstance(ref, str):
        raise loc.error(field, "an image part needs its image as a path or data: URL string")
    return ref


def has_images(record: dict) -> bool:
    """Whether a record shows images (either layout)."""
    if record.get("images"):
        return True
    turns = record.get("messages") or record.get("conversations") or []
    return isinstance(turns, list) and any(
        isinstance(t, dict) and isinstance(t.get("content"), list)
        and any(isinstance(p, dict) and p.get("type") in IMAGE_PART_TYPES for p in t["content"]) for t in turns)


def file_has_images(path: str | Path, encoding: str | None = None, columns: dict | None = None,
                    probe: int = 20) -> bool:
    """Whether the first records of a data file show images (a text-only file is read as text)."""
    for k, (_, record) in enumerate(read_records(path, on_error="skip", skipped=[], encoding=encoding,
                                                 columns=columns)):
        if has_images(record):
            return True
        if k + 1 >= probe:
            break
    return False


def _placeholders_in(value) -> int:
    if isinstance(value, str):
        return value.count(IMAGE_PLACEHOLDER)
    if isinstance(value, dict):
        return sum(_placeholders_in(v) for v in value.values())
    if isinstance(value, list):
        return sum(_placeholders_in(v) for v in value)
    return 0


def text_record(record: dict, loc: Location) -> tuple[dict, list[tuple[str, str]]]:
    """The record with image parts turned into `<image>` text, and every image reference with its field name,
    in placeholder order. The `images` list and image parts cannot be mixed in one record."""
    listed = record.get("images")
    refs: list[tuple[str, str]] = []
    turns_key = "messages" if "messages" in record else "conversations" if "conversations" in record else None
    parts_seen = False
    record = dict(record)
    if turns_key and isinstance(record[turns_key], list):
        turns = []
        for i, turn in enumerate(record[turns_key]):
            content = turn.get("content") if isinstance(turn, dict) else None
            if not isinstance(content, list):
                turns.append(turn)
                continue
            parts = []
            for j, part in enumerate(content):
                field = f"{turns_key}[{i}].content[{j}]"
                if isinstance(part, dict) and part.get("type") in IMAGE_PART_TYPES:
                    parts_seen = True
                    refs.append((part_image_ref(part, loc, field), field))
                    parts.append({"type": "text", "text": IMAGE_PLACEHOLDER})
                else:
                    if _placeholders_in(part):
                        raise loc.error(field, f"text holds '{IMAGE_PLACEHOLDER}' in a record with image parts: "
                                               "give each image as a part, not as a placeholder")
                    parts.append(part)
            turns.append({**turn, "content": parts})
        record[turns_key] = turns
    if listed is not None:
        if parts_seen:
            raise loc.error("images", "both an images list and image content parts: use one layout")
        if not isinstance(listed, list) or not all(isinstance(x, str) for x in listed):
            raise loc.error("images", "expected a list of image paths or data: URLs")
        used = _placeholders_in({k: v for k, v in record.items() if k != "images"})
        if used != len(listed):
            raise loc.error("images", f"{len(listed)} image(s) but {used} '{IMAGE_PLACEHOLDER}' placeholder(s): "
                                      "each image must be referenced exactly once")
        refs = [(ref, f"images[{k}]") for k, ref in enumerate(listed)]
        del record["images"]
    return record, refs


def image_sample(record: dict, loc: Location, fmt: str = "auto", base_dir: Path | None = None) -> ChatSample:
    """One record with images → a ChatSample whose messages carry their decoded images; DataError otherwise."""
    text, refs = text_record(record, loc)
    sample = to_sample(text, loc, fmt)
    images = [decode_image(ref, loc, field, base_dir) for ref, field in refs]
    messages = []
    for m in sample.messages:
        n = m["content"].count(IMAGE_PLACEHOLDER)
        if n and m["role"] != "user":
            raise loc.error("images", f"an image in a {m['role']} message: images belong in user messages")
        messages.append({**m, "images": images[:n]} if n else m)
        images = images[n:]
    if images:  # a placeholder lost by the text reader (e.g. in a field it does not read)
        raise loc.error("images", f"{len(images)} image(s) not referenced by any message")
    sample.messages = messages
    return sample


def load_image_samples(path: str | Path, fmt: str = "auto", on_error: str = "stop", encoding: str | None = None,
                       columns: dict[str, str] | None = None) -> tuple[list[ChatSample], list[DataError]]:
    """Read a data file whose records may show images; relative image paths are relative to the file's folder."""
    skipped: list[DataError] = []
    samples = []
    base_dir = Path(path).resolve().parent
    for loc, record in read_records(path, on_error=on_error, skipped=skipped, encoding=encoding, columns=columns):
        try:
            samples.append(image_sample(record, loc, fmt, base_dir))
        except DataError as e:
            if on_error == "stop":
                raise
            skipped.append(e)
    if not samples:
        raise DataError(str(path), None, None, f"no usable records ({len(skipped)} skipped; first: {skipped[0]})"
                        if skipped else "file is empty: no records found")
    return samples, skipped
