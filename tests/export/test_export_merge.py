"""`r1tune export merge`: the merged folder loads with plain transformers (no peft), gives the adapter model's
outputs, has what vLLM needs, and the report says how close it is. Lossy or pointless merges are refused."""

import json

import pytest
import torch
from safetensors import safe_open

from r1tune.errors import R1TuneError
from r1tune.export.merge import CHECK_PROMPTS, merge_run, merged_is_current, vllm_layout_problems
from r1tune.model.runs import load_for_inference


@pytest.fixture(scope="module")
def merged(export_run):
    return merge_run(export_run)


def test_merged_model_equals_the_adapter_model(merged, export_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = export_run / "merged"
    assert merged["out"] == str(out) and (out / "merge_report.json").exists()
    report = json.loads((out / "merge_report.json").read_text())
    assert report["max_abs_logit_diff"] < 1e-4 and report["top1_agreement"] == 1.0
    assert report["saved_dtype"] == "float32" and report["merged_in"] == "float32"

    plain = AutoModelForCausalLM.from_pretrained(out).eval()  # transformers alone, no peft involved
    assert not any("lora" in name for name, _ in plain.named_parameters())
    adapter_model, tokenizer = load_for_inference(export_run)
    assert AutoTokenizer.from_pretrained(out).chat_template == tokenizer.chat_template
    prompt = tokenizer(CHECK_PROMPTS[0], return_tensors="pt")
    with torch.no_grad():
        a = adapter_model(**prompt).logits
        b = plain(**prompt).logits
        assert float((a - b).abs().max()) < 1e-4
        kw = dict(max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        assert torch.equal(adapter_model.generate(**prompt, **kw), plain.generate(**prompt, **kw))


def test_merged_folder_has_what_vllm_needs(merged, export_run):
    out = export_run / "merged"
    assert merged["vllm_layout_problems"] == [] and vllm_layout_problems(out) == []
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"] and "quantization_config" not in config
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["temperature"] == 0.6 and generation["top_p"] == 0.95  # R1's sampling defaults kept
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "lora" in k or "base_layer" in k]
    provenance = json.loads((out / "provenance.json").read_text())
    original = json.loads((export_run / "final" / "provenance.json").read_text())
    assert provenance["template_hash"] == original["template_hash"]  # `serve` still checks the template
    assert provenance["export"][-1]["kind"] == "merged"
    assert merged_is_current(export_run, out)
    assert vllm_layout_problems(export_run / "final")  # the adapter folder itself is not loadable by vLLM


def test_bf16_merge_reports_the_rounding_honestly(export_run, tmp_path):
    report = merge_run(export_run, tmp_path / "bf16", dtype="bfloat16")
    assert report["saved_dtype"] == "bfloat16"
    assert report["max_abs_logit_diff_before_saving"] < 1e-4  # the merge itself is exact in fp32
    assert 1e-4 < report["max_abs_logit_diff"] < 1.0 and report["top1_agreement"] > 0.9
    with safe_open(str(tmp_path / "bf16" / "model.safetensors"), "pt") as f:
        assert f.get_slice("lm_head.weight").get_dtype() == "BF16"


def test_refuses_quantized_base_full_runs_and_foreign_folders(export_run, tiny_model_dir, tmp_path):
    fake_base = tmp_path / "int8-base"
    fake_base.mkdir()
    config = json.loads((tiny_model_dir / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_8bit": True}
    (fake_base / "config.json").write_text(json.dumps(config))
    with pytest.raises(R1TuneError, match="lossy"):
        merge_run(export_run, tmp_path / "m", base=str(fake_base))
    with pytest.raises(R1TuneError, match="standalone already"):
        merge_run(tiny_model_dir, tmp_path / "m")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(R1TuneError, match="not written by r1tune"):
        merge_run(export_run, foreign)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_merge_command(export_run, tmp_path, cli):
    code, out, err = cli("export", "merge", export_run, "--out", tmp_path / "m", "--dtype", "float32")
    assert code == 0, err
    assert "max |logit diff|" in out and "vLLM layout ok" in out
    assert (tmp_path / "m" / "model.safetensors").exists() and not (tmp_path / "m.partial").exists()
    code, _, err = cli("export", "merge", tmp_path / "m")
    assert code == 2 and "standalone already" in err
