"""Images in chat requests (issue 19): OpenAI `image_url` parts, decoded and checked before anything runs.

    messages = request_messages(raw_messages, accepts_images=True, limits=cfg.limits)

Only base64 `data:` URLs are accepted: the server never fetches a remote URL (no server-side request forgery,
no waiting on someone else's host) and never reads a local path a client names. Each image is capped in
bytes, in pixels, and in number per request; anything wrong is an `ImageRequestError` that the app answers
with a 400 naming the part. A text-only model answers a request with images with a 400 too, rather than
silently dropping the pictures. The result is the shape every r1tune part reads (`model/vision.py`): text with
one `<image>` placeholder per image, the decoded images in `message["images"]`. A client's text may not hold
`<image>` itself: it would claim an image slot that no picture fills.
"""

from __future__ import annotations

from r1tune.data.images import IMAGE_PLACEHOLDER, ImageRefError, image_bytes, open_image


class ImageRequestError(ValueError):
    def __init__(self, message: str, param: str, code: str = "invalid_image"):
        self.message, self.param, self.code = message, param, code
        super().__init__(message)


def request_messages(messages: list[dict], accepts_images: bool, limits) -> list[dict]:
    """Messages (as the request schema dumps them) → {"role", "content" text, "images"?}; images decoded."""
    out, count = [], 0
    for i, m in enumerate(messages):
        content = m.get("content")
        if not isinstance(content, list):
            text = "" if content is None else content
            if accepts_images and IMAGE_PLACEHOLDER in text:
                raise ImageRequestError(f"text may not contain '{IMAGE_PLACEHOLDER}': send images as image_url "
                                        "parts", f"messages.{i}.content")
            out.append({"role": m["role"], "content": text})
            continue
        texts, images = [], []
        for j, part in enumerate(content):
            where = f"messages.{i}.content.{j}"
            if part["type"] == "text":
                if accepts_images and IMAGE_PLACEHOLDER in part["text"]:
                    raise ImageRequestError(f"text may not contain '{IMAGE_PLACEHOLDER}': send images as "
                                            "image_url parts", where)
                texts.append(part["text"])
                continue
            if not accepts_images:
                raise ImageRequestError("this model does not accept images (not a vision-language model)", where,
                                        "images_not_supported")
            if m["role"] != "user":
                raise ImageRequestError("images are accepted in user messages only", where)
            count += 1
            if count > limits.max_images:
                raise ImageRequestError(f"more than {limits.max_images} images (limits.max_images)", where,
                                        "too_many_images")
            url = part["image_url"]["url"]
            if not url.startswith("data:"):
                raise ImageRequestError("only base64 data: URLs are accepted (the server fetches no URL)",
                                        where + ".image_url.url")
            try:
                images.append(open_image(image_bytes(url, None, allow_paths=False, max_bytes=limits.max_image_bytes),
                                         max_pixels=limits.max_image_pixels))
            except ImageRefError as e:
                raise ImageRequestError(str(e), where + ".image_url.url") from None
            texts.append(IMAGE_PLACEHOLDER)
        message = {"role": m["role"], "content": "".join(texts)}
        if images:
            message["images"] = images
        out.append(message)
    return out
