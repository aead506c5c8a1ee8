"""Image records (issue 19): both layouts read into one shape, and every bad image is a file:line error."""

import base64
import io
import json

import pytest

from r1tune.data.images import IMAGE_PLACEHOLDER, file_has_images, load_image_samples
from r1tune.errors import DataError


def png(colour=(200, 20, 20), size=(16, 12)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(raw: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(raw).decode()


def write(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


ANSWER = {"role": "assistant", "content": "<think>the square is red</think>red"}


def test_both_layouts_read_into_one_shape(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png())
    (tmp_path / "img" / "b.png").write_bytes(png((0, 0, 250), (20, 20)))
    records = [
        # LLaMA-Factory: images listed, <image> placeholders, paths relative to the data file
        {"messages": [{"role": "user", "content": "<image>and<image> which is red?"}, ANSWER],
         "images": ["img/a.png", "img/b.png"], "label": "red"},
        # OpenAI parts: an image_url data URL, and a Qwen-style image part with a path
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(png())}},
                                                   {"type": "text", "text": "colour?"},
                                                   {"type": "image", "image": "img/b.png"}]}, ANSWER]},
        # ShareGPT with images, and a text-only record in the same file
        {"conversations": [{"from": "human", "value": "<image>colour?"}, {"from": "gpt", "value": "red"}],
         "images": ["img/a.png"]},
        {"instruction": "no picture here", "output": "fine"},
    ]
    samples, skipped = load_image_samples(write(tmp_path / "train.jsonl", records))
    assert skipped == []
    first, second, third, fourth = samples
    assert first.messages[0]["content"] == f"{IMAGE_PLACEHOLDER}and{IMAGE_PLACEHOLDER} which is red?"
    assert [im.size for im in first.messages[0]["images"]] == [(16, 12), (20, 20)]
    assert first.reasoning == "the square is red" and first.answer == "red" and first.meta["label"] == "red"
    assert second.messages[0]["content"] == f"{IMAGE_PLACEHOLDER}colour?{IMAGE_PLACEHOLDER}"
    assert [im.mode for im in second.messages[0]["images"]] == ["RGB", "RGB"]
    assert len(third.messages[0]["images"]) == 1
    assert "images" not in fourth.messages[0]
    assert file_has_images(tmp_path / "train.jsonl")
    assert not file_has_images(write(tmp_path / "text.jsonl", [records[-1]]))


@pytest.mark.parametrize("record, field, problem", [
    ({"messages": [{"role": "user", "content": "<image>?"}, ANSWER], "images": ["nope.png"]},
     "images[0]", "image not found"),
    ({"messages": [{"role": "user", "content": "<image>?"}, ANSWER], "images": ["bad.png"]},
     "images[0]", "does not decode"),
    ({"messages": [{"role": "user", "content": "<image><image>?"}, ANSWER], "images": ["ok.png"]},
     "images", "1 image(s) but 2 '<image>' placeholder(s)"),
    ({"messages": [{"role": "user", "content": "?"}, ANSWER], "images": ["ok.png"]},
     "images", "referenced exactly once"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.org/a.png"}}]},
                   ANSWER]}, "messages[0].content[0]", "remote image URLs are not fetched"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}]},
                   ANSWER]}, "messages[0].content[0]", "not valid base64"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url",
                                                 "image_url": {"url": data_url(b"not a picture")}}]}, ANSWER]},
     "messages[0].content[0]", "does not decode"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "<image>"},
                                                {"type": "image", "image": "ok.png"}]}, ANSWER]},
     "messages[0].content[0]", "give each image as a part"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<image>"},
                   {"role": "user", "content": "?"}, ANSWER], "images": ["ok.png"]},
     "images", "images belong in user messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "image": "ok.png"}]}, ANSWER],
      "images": ["ok.png"]}, "images", "use one layout"),
])
def test_bad_images_are_file_line_errors(tmp_path, record, field, problem):
    (tmp_path / "ok.png").write_bytes(png())
    (tmp_path / "bad.png").write_bytes(png()[:40])  # a truncated PNG: the header reads, the pixels do not
    path = write(tmp_path / "train.jsonl", [{"messages": [{"role": "user", "content": "<image>"}, ANSWER],
                                             "images": ["ok.png"]}, record])
    with pytest.raises(DataError) as e:
        load_image_samples(path)
    assert (e.value.file, e.value.line, e.value.field) == (str(path), 2, field), str(e.value)
    assert problem in e.value.problem
    samples, skipped = load_image_samples(path, on_error="skip")  # or listed, and the good record kept
    assert len(samples) == 1 and skipped[0].line == 2
