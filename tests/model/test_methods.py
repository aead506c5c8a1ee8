"""Every fine-tuning method through the same checks: trains (loss falls, only intended parameters change),
saves, reloads, generates (cached generation equals a no-cache recompute), and merges where it can."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from r1tune.config import FinetuneConfig, MethodConfig
from r1tune.errors import R1TuneError
from r1tune.model import runs as run_folders
from r1tune.model.methods import MERGEABLE_METHODS, PEFT_METHODS, apply_method, merge_adapter, resolve_layers
from r1tune.model.runs import load_for_inference
from r1tune.model.template import render_prompt
from r1tune.recipes import finetune as recipe

METHODS = {  # method → (extra method settings, lr)
    "lora": ({}, 5e-3),
    "dora": ({}, 5e-3),
    "qlora": ({}, 5e-3),
    "ia3": ({}, 3e-2),
    "prefix": ({"num_virtual_tokens": 8}, 3e-2),
    "prompt": ({"num_virtual_tokens": 8}, 3e-2),
    "ptuning": ({"num_virtual_tokens": 8, "encoder_hidden_size": 32}, 3e-3),
    "full": ({}, 1e-3),
    "freeze": ({"trainable_layers": 1}, 2e-3),
}


@pytest.fixture(scope="module")
def data_file(finsent_file):
    return finsent_file(64)


@pytest.fixture(scope="module")
def trained(tiny_model_dir, data_file, tmp_path_factory):
    """Train each method once (lazily); record every parameter when the model is wrapped and when it is saved."""
    runs = {}

    def run(name):
        if name not in runs:
            extra, lr = METHODS[name]
            out = tmp_path_factory.mktemp(name)
            seen = {}
            real_apply, real_save = recipe.apply_method, run_folders.save_trained

            def recording_apply(model, cfg, *a, **k):
                wrapped = real_apply(model, cfg, *a, **k)
                seen["trainable"] = {n for n, p in wrapped.named_parameters() if p.requires_grad}
                seen["before"] = {n: p.detach().clone() for n, p in wrapped.named_parameters()}
                return wrapped

            def recording_save(model, folder):
                seen["after"] = {n: p.detach().clone() for n, p in model.named_parameters()}
                return real_save(model, folder)

            recipe.apply_method, run_folders.save_trained = recording_apply, recording_save
            try:
                recipe.finetune(FinetuneConfig(
                    model={"name_or_path": str(tiny_model_dir)},
                    data={"train": str(data_file), "val_split": 0.0, "max_length": 96},
                    method={"name": name, **extra},
                    train={"max_steps": 14, "batch_size": 8, "lr": lr, "warmup_steps": 0, "save_every": 100,
                           "seed": 5, "threads": 2},
                    out=str(out)))
            finally:
                recipe.apply_method, run_folders.save_trained = real_apply, real_save
            runs[name] = (out, seen)
        return runs[name]

    return run


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_trains_only_what_it_should(name, trained, tiny_model_dir):
    out, seen = trained(name)
    loss = losses(out)
    assert sum(loss[-3:]) / 3 < loss[0] - 0.05, (name, loss)
    before, after, trainable = seen["before"], seen["after"], seen["trainable"]
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert moved <= trainable, f"{name}: frozen parameters moved: {sorted(moved - trainable)[:3]}"
    assert len(moved) >= max(1, len(trainable) // 2), f"{name}: only {len(moved)} of {len(trainable)} moved"
    final = out / "final"
    if name in PEFT_METHODS:
        assert (final / "adapter_model.safetensors").exists() and not (final / "model.safetensors").exists()
        assert all("lora_" in n or "ia3_" in n or "prompt_encoder" in n or "magnitude" in n for n in trainable)
    else:
        original, saved = load_file(tiny_model_dir / "model.safetensors"), load_file(final / "model.safetensors")
        changed = {k for k in original if not torch.equal(original[k], saved[k])}
        if name == "freeze":
            assert changed and all(k.startswith("model.layers.1.") for k in changed), sorted(changed)
        else:
            assert "model.embed_tokens.weight" in changed and "model.layers.0.mlp.up_proj.weight" in changed


@pytest.mark.parametrize("name", sorted(METHODS))
def test_reloads_and_cached_generation_equals_no_cache_recompute(name, trained):
    out, _ = trained(name)
    model, tok = load_for_inference(out)
    if name in PEFT_METHODS:
        assert hasattr(model, "peft_config")
    prompt = render_prompt(tok, [{"role": "user", "content": "判断情感：宁德时代净利润同比增长35%"}])
    ids = torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        cached = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                                do_sample=False, use_cache=True, pad_token_id=tok.pad_token_id)[0, ids.shape[1]:]
        seq = ids
        for _ in range(len(cached)):
            logits = model(input_ids=seq, attention_mask=torch.ones_like(seq), use_cache=False).logits[:, -1]
            seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], dim=1)
    assert cached.tolist() == seq[0, ids.shape[1]:].tolist(), name


@pytest.mark.parametrize("name", sorted(METHODS))
def test_merge_where_the_method_allows_it(name, trained):
    out, _ = trained(name)
    model, tok = load_for_inference(out)
    if name not in PEFT_METHODS:  # full / freeze save a plain model: standalone already, nothing to merge
        assert not (out / "final" / "adapter_config.json").exists() and (out / "final" / "config.json").exists()
        assert not hasattr(model, "peft_config")
        with pytest.raises(R1TuneError, match="nothing to merge"):
            merge_adapter(model)
        return
    ids = torch.tensor([tok("营收3.5亿元，同比增长12.3%", add_special_tokens=False)["input_ids"]])
    if name not in MERGEABLE_METHODS:
        with pytest.raises(R1TuneError, match="cannot be merged"):
            merge_adapter(model)
        return
    if name == "qlora":
        with pytest.raises(R1TuneError, match="lossy merge into an 8/4-bit base"):
            merge_adapter(model)
        return
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        merged = merge_adapter(model)
        assert not hasattr(merged, "peft_config")
        torch.testing.assert_close(merged(input_ids=ids).logits, expected, rtol=1e-4, atol=1e-4)


def test_resolve_layers():
    assert resolve_layers("top:3", 28) == [25, 26, 27]
    assert resolve_layers("8-11", 28) == [8, 9, 10, 11]
    assert resolve_layers("0, 5,7", 28) == [0, 5, 7]
    for bad in ("top:x", "30-31", ""):
        with pytest.raises(R1TuneError):
            resolve_layers(bad, 28)


def test_lora_on_selected_layers_only(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = apply_method(AutoModelForCausalLM.from_pretrained(tiny_model_dir), MethodConfig(name="lora", layers="top:1"))
    adapted = {n.split(".layers.")[1].split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert adapted == {"1"}


def test_prefix_with_gradient_checkpointing_is_a_clear_error(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    with pytest.raises(R1TuneError, match="prefix tuning cannot run with gradient checkpointing"):
        apply_method(AutoModelForCausalLM.from_pretrained(tiny_model_dir), MethodConfig(name="prefix"), True)


def test_layerwise_lr_decay_and_dropout_settings(tiny_model_dir, data_file, tmp_path):
    from transformers import AutoModelForCausalLM

    from r1tune.train.optim import param_groups

    model = apply_method(AutoModelForCausalLM.from_pretrained(tiny_model_dir), MethodConfig(name="full"))
    groups = param_groups(model, lr=1.0, weight_decay=0.01, n_layers=2, layerwise_lr_decay=0.5)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["model.layers.1.mlp.up_proj.weight"])] == 1.0
    assert lr_of[id(named["model.layers.0.mlp.up_proj.weight"])] == 0.5
    assert lr_of[id(named["lm_head.weight"])] == 1.0
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert decay_of[id(named["model.norm.weight"])] == 0.0
    # dropout settings reach the model: with hidden dropout 0.5 two training forwards differ, eval ones do not
    from r1tune.model.methods import add_hidden_dropout

    add_hidden_dropout(model, 0.5)
    ids = torch.arange(5, 25).unsqueeze(0)
    model.train()
    assert not torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)
    model.eval()
    assert torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)
    cfg = FinetuneConfig(model={"name_or_path": str(tiny_model_dir), "attention_dropout": 0.3, "hidden_dropout": 0.3},
                         data={"train": str(data_file), "val_split": 0.0, "max_length": 96},
                         method={"name": "lora", "lora_dropout": 0.3}, train={"max_steps": 3, "batch_size": 8},
                         out=str(tmp_path / "drop"))
    recipe.finetune(cfg)
    assert json.loads((tmp_path / "drop" / "final" / "adapter_config.json").read_text())["lora_dropout"] == 0.3
