"""Vision-language fine-tuning end to end (issue 19), on a tiny random-init Qwen2.5-VL, twice: with the R1 tokenizer,
and laid out as the hub's Qwen2-VL / Qwen2.5-VL checkpoints ship (ChatML template, eos `<|im_end|>`, no R1 marker).

Each layout builds the tiny model and a generated colour task once (tools/make_vision_colours.py: a square or a
disc of one of four colours → its name, with a short reasoning trace), then checks:
- the label mask covers the answer and its eos only, never an image token, and a typed image marker is text;
- LoRA adapts the language model only, the vision tower stays frozen, the projector trains at its own rate;
- the fine-tuned model names the colour of held-out pictures far better than its base (`r1tune evaluate`), with
  closed, non-empty think blocks;
- `r1tune serve` answers an image_url request, and bad images are 400s.
"""

import base64
import importlib.util
import io
import json
from pathlib import Path

import pytest
import torch

from r1tune.config import FinetuneConfig, MethodConfig, ServeConfig
from r1tune.model.template import IGNORE, resolve_template
from r1tune.model.vision import IMAGE_PAD, VISION_END, VISION_START, load_image_processor

ROOT = Path(__file__).resolve().parents[2]
COLOURS = ["green", "blue", "black", "pink"]


def colour_tool():
    spec = importlib.util.spec_from_file_location("make_vision_colours", ROOT / "tools" / "make_vision_colours.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=["r1", "chatml"])
def vlm_dir(request, tmp_path_factory, tiny_tokenizer):
    """`r1tune make-tiny-model --arch qwen2_5_vl [--chat chatml]` (r1: on the session's tiny R1 tokenizer, the one
    it would train)."""
    from r1tune.model.vision import make_tiny_vision_model

    out = tmp_path_factory.mktemp(f"tiny-qwen2_5_vl-{request.param}")
    info = make_tiny_vision_model(out, arch="qwen2_5_vl", chat=request.param,
                                  tokenizer=tiny_tokenizer if request.param == "r1" else None)
    assert info["vision_parameters"] > 0 and (out / "preprocessor_config.json").is_file()
    return out


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    return colour_tool().make(tmp_path_factory.mktemp("colours"), n_train=64, n_test=16, size=56, seed=0)


@pytest.fixture(scope="module")
def tuned_run(vlm_dir, colours, tmp_path_factory):
    """Full fine-tuning of the language model, the projector at its own rate, the vision tower frozen. (LoRA on a
    random-init model cannot move its frozen LM head enough to learn a task in a few dozen steps.)"""
    from r1tune.recipes.finetune import finetune

    out = tmp_path_factory.mktemp("runs") / "colours"
    finetune(FinetuneConfig(model={"name_or_path": str(vlm_dir)},
                            data={"train": str(colours["train"]), "val_split": 0.0, "max_length": 128,
                                  "reasoning": "keep", "token_cache": "off"},
                            method={"name": "full", "projector_lr": 3e-3},
                            train=dict(max_steps=STEPS, batch_size=8, lr=3e-3, warmup_steps=3, eval_every=1000,
                                       save_every=1000, seed=0, threads=1), out=str(out)))
    return out


STEPS = 80


class _Data:
    max_length, truncate = 128, "skip"  # ChatML adds its default system turn


def test_label_mask_never_covers_image_tokens(vlm_dir, colours):
    from transformers import AutoTokenizer

    from r1tune.data.images import load_image_samples
    from r1tune.model.template import ASSISTANT, FORCED_PREFIX, generation_prefix
    from r1tune.model.vision import encode_image_prompt
    from r1tune.train.data import collate
    from r1tune.train.vision_data import tokenize_vision_sample

    tokenizer = AutoTokenizer.from_pretrained(vlm_dir)
    processor = load_image_processor(vlm_dir)
    template = resolve_template(tokenizer)
    samples, _ = load_image_samples(colours["train"])
    chatml = "<|im_start|>" in template
    assert chatml == (json.loads((vlm_dir / "tiny_model.json").read_text(encoding="utf-8"))["chat"] == "chatml")
    # the prompt serve and evaluate build is the training sample's start, id for id, ending in the forced <think>
    prompt, _ = encode_image_prompt(tokenizer, processor, samples[0].messages[:-1], template)
    assert tokenizer.decode(prompt).endswith(("<|im_start|>assistant\n" if chatml else ASSISTANT) + FORCED_PREFIX)
    untouched = tokenize_vision_sample(tokenizer, processor, samples[0], "keep", template, _Data)
    assert untouched.input_ids[:len(prompt)] == prompt
    if chatml:  # no R1 marker anywhere: the checkpoint's vocabulary has none, none is added
        assert ASSISTANT not in tokenizer.get_vocab() and "<think>" not in tokenizer.get_added_vocab()
    sample = samples[0]
    # a user who types the image markers gets plain text, never an image slot
    sample.messages[0]["content"] += f" {VISION_START}{IMAGE_PAD}{VISION_END}"

    tok = tokenize_vision_sample(tokenizer, processor, sample, "keep", template, _Data)
    image_ids = {tokenizer.convert_tokens_to_ids(t) for t in (VISION_START, IMAGE_PAD, VISION_END)}
    pad_id = tokenizer.convert_tokens_to_ids(IMAGE_PAD)
    positions = [i for i, t in enumerate(tok.input_ids) if t in image_ids]
    assert tok.input_ids.count(pad_id) == 4  # one 56×56 picture: 16 patches of 14², merged 2×2
    assert len(positions) == 6 and positions == list(range(positions[0], positions[0] + 6))  # the typed ones are text
    assert all(tok.labels[i] == IGNORE for i in positions)
    assert not image_ids & {t for t in tok.labels if t != IGNORE}
    trained = [t for t in tok.labels if t != IGNORE]
    trained_think = "" if generation_prefix(template) else FORCED_PREFIX  # ChatML's prompt stops before <think>
    assert tokenizer.decode(trained) == (f"{trained_think}The shape is {sample.answer}.\n</think>\n\n{sample.answer}"
                                         + tokenizer.eos_token)
    assert tok.labels[:positions[-1] + 1] == [IGNORE] * (positions[-1] + 1)  # the whole prompt is context
    assert tok.pixel_values.shape == (16, 3 * 2 * 14 * 14) and tok.image_grid_thw.tolist() == [[1, 4, 4]]
    batch = collate([tok, tok], tokenizer.pad_token_id)  # patches follow the rows, in order
    assert batch["pixel_values"].shape[0] == 32 and batch["image_grid_thw"].shape == (2, 3)


def test_lora_adapts_the_language_model_and_keeps_the_vision_tower_frozen(vlm_dir, colours):
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    from r1tune.data.images import load_image_samples
    from r1tune.model.methods import apply_method
    from r1tune.model.vision import vision_lr
    from r1tune.train.data import collate
    from r1tune.train.loss import target_loss
    from r1tune.train.optim import param_groups
    from r1tune.train.vision_data import tokenize_vision_sample

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(vlm_dir)
    processor = load_image_processor(vlm_dir)
    method = MethodConfig(name="lora", projector_lr=5e-3)
    model = apply_method(AutoModelForImageTextToText.from_pretrained(vlm_dir), method)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("language_model.layers.0.mlp.gate_proj.lora_A" in n for n in trainable)
    assert not any(".visual.blocks." in n for n in trainable)  # the tower's MLPs share LoRA's target names
    assert all("lora_" in n or ".merger.modules_to_save." in n for n in trainable)
    groups = param_groups(model, 1e-3, 0.0, 2, lr_of=lambda n: vision_lr(n, method, 1e-3))
    assert sorted({g["lr"] for g in groups}) == [1e-3, 5e-3]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    samples, _ = load_image_samples(colours["train"])
    batch = collate([tokenize_vision_sample(tokenizer, processor, s, "keep", resolve_template(tokenizer), _Data)
                     for s in samples[:2]], tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW(groups)
    for _ in range(2):  # the second step moves lora_A too (lora_B starts at zero)
        loss, n, _ = target_loss(model, **batch)
        (loss / n).backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert any("lora_B" in n for n in changed) and any(".merger.modules_to_save." in n for n in changed)
    assert not any(".visual.blocks." in n or "patch_embed" in n or "original_module" in n for n in changed)
    assert changed <= set(trainable)


def test_advisor_estimates_a_vision_model(vlm_dir, colours):
    from transformers import AutoConfig, AutoTokenizer

    from r1tune.data.images import load_image_samples
    from r1tune.train.advice import profile_data
    from r1tune.train.memory import estimate_memory
    from r1tune.train.vision_data import tokenize_vision_sample

    config = AutoConfig.from_pretrained(vlm_dir)
    parameters = json.loads((vlm_dir / "tiny_model.json").read_text(encoding="utf-8"))["parameters"]
    full = estimate_memory(config, MethodConfig(name="full", projector_lr=1e-3), 4, 96)
    lora = estimate_memory(config, MethodConfig(name="lora"), 4, 96)
    assert full.total_parameters == parameters and full.weights == 4 * parameters  # the vision tower is counted
    assert full.trainable_parameters == parameters - sum(  # … and frozen, the projector trains
        p.numel() for n, p in _meta_model(config).named_parameters() if ".visual." in f".{n}" and ".merger." not in n)
    assert 0 < lora.trainable_parameters < full.trainable_parameters and lora.total < full.total
    tokenizer, processor = AutoTokenizer.from_pretrained(vlm_dir), load_image_processor(vlm_dir)
    profile = profile_data(str(colours["train"]), tokenizer, 128, image_processor=processor)

    sample = load_image_samples(colours["train"])[0][0]
    length = len(tokenize_vision_sample(tokenizer, processor, sample, "keep", resolve_template(tokenizer),
                                        _Data).input_ids)
    assert profile.samples == 64 and profile.max_tokens == length  # image tokens counted, as training sees them


def _meta_model(config):
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        return AutoModelForImageTextToText.from_config(config)


def test_tiny_vlm_learns_colours_with_reasoning(vlm_dir, colours, tuned_run, tmp_path, cli):
    final = tuned_run / "final"
    assert (final / "preprocessor_config.json").is_file()
    provenance = json.loads((final / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["training"]["trainable_parameters"] < provenance["training"]["total_parameters"]
    # the frozen vision tower is the base's, bit for bit
    from safetensors.torch import load_file

    base, tuned = load_file(vlm_dir / "model.safetensors"), load_file(final / "model.safetensors")
    tower = [k for k in base if k.startswith("visual.blocks.") or k.startswith("model.visual.blocks.")]
    assert tower and all(torch.equal(base[k], tuned[k]) for k in tower)
    code, out, err = cli("evaluate", "--model", vlm_dir, "--compare", final, "--data", colours["test"],
                         "--task", "classification", "--labels", ",".join(COLOURS), "--sampling", "greedy",
                         "--max-new-tokens", 24, "--out", tmp_path / "eval")
    assert code == 0, err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text(encoding="utf-8"))
    accuracy = {name: run["metrics"]["accuracy"]["value"] for name, run in metrics["by_system"].items()}
    assert accuracy["base"] <= 0.3 and accuracy["colours"] >= 0.75, accuracy  # measured (80 steps): 0.00 → 1.00 (r1), 0.00 → 0.88 (chatml)
    assert metrics["by_system"]["colours"]["metrics"]["well_formed"]["value"] >= 0.75
    rows = [json.loads(line) for line in (tmp_path / "eval" / "predictions" / "colours.jsonl").open(encoding="utf-8")]
    well_formed = [r for r in rows if r["reasoning"].strip() and "</think>" in r["prediction"]]
    assert len(well_formed) >= 0.75 * len(rows), rows[:3]


def data_url(colour) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (56, 56), colour).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_serve_answers_an_image_request_and_rejects_bad_images(tuned_run):
    from fastapi.testclient import TestClient

    from r1tune.serve.app import create_app
    from r1tune.serve.engine import load_engine
    from r1tune.serve.images import ImageRequestError, request_messages

    cfg = ServeConfig(threads=1, limits={"max_images": 2, "max_image_bytes": 20_000})
    engine = load_engine(tuned_run, cfg)
    try:
        client = TestClient(create_app(engine, cfg), base_url="http://127.0.0.1")

        def ask(*parts, **extra):
            return client.post("/v1/chat/completions", json={
                "model": "colours", "temperature": 0, "max_tokens": 24, **extra,
                "messages": [{"role": "user", "content": list(parts)}]})

        question = {"type": "text", "text": colour_tool().QUESTION}
        image = {"type": "image_url", "image_url": {"url": data_url((30, 60, 220))}}
        r = ask(image, question)
        assert r.status_code == 200, r.text
        message = r.json()["choices"][0]["message"]
        assert message["content"].strip() in COLOURS and message["reasoning_content"].strip()
        assert r.json()["usage"]["prompt_tokens"] > 4  # the image's four tokens and their brackets were fed
        r = ask(image, question, n=2)  # both choices see the picture
        assert r.status_code == 200 and len(r.json()["choices"]) == 2
        bad = [({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}, "data: URLs"),
               ({"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}}, "base64"),
               ({"type": "image_url", "image_url": {"url": "data:image/png;base64," + "QUJD" * 10}}, "decode"),
               ({"type": "image_url", "image_url": {"url": "data:image/png;base64," + "QUJD" * 9000}}, "larger"),
               ({"type": "text", "text": "<image>"}, "may not contain")]
        for part, why in bad:
            r = ask(part, question)
            assert r.status_code == 400 and why in r.json()["error"]["message"], r.text
            assert r.json()["error"]["param"].startswith("messages.0.content.0")
        r = ask(image, image, image, question)
        assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_images"
        assert ask(image, question).status_code == 200  # still serving after the 400s
    finally:
        engine.close()
    with pytest.raises(ImageRequestError, match="does not accept images"):  # a text-only model says so
        request_messages([{"role": "user", "content": [image]}], accepts_images=False, limits=cfg.limits)
