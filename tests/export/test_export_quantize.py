"""`r1tune export quantize --int8`: an int8 checkpoint that plain transformers reloads and generates with,
about a quarter of the fp32 bytes, and a report of the metric change on the test set next to the weights."""

import json

import pytest
import torch

from r1tune.config import QuantizeConfig, ServeConfig
from r1tune.recipes.export import quantize_run


@pytest.fixture(scope="module")
def int8(export_run, finsent_test):
    return quantize_run(QuantizeConfig(run=str(export_run), int8=True, data=str(finsent_test), max_new_tokens=16))


def test_int8_round_trip_loads_and_generates(int8, export_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = export_run / "int8"
    assert int8["out"] == str(out) and int8["source"] == str(export_run / "merged")  # merged first, in fp32
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    kinds = {name: type(p).__name__ for name, p in model.named_parameters()}
    assert kinds["model.layers.0.mlp.down_proj.weight"] == "Int8Tensor"
    assert kinds["lm_head.weight"] == "Int8Tensor" and kinds["model.embed_tokens.weight"] == "Int8Tensor"
    assert kinds["model.norm.weight"] == "Parameter" and kinds["model.layers.0.self_attn.q_proj.bias"] == "Parameter"
    tokenizer = AutoTokenizer.from_pretrained(out)
    prompt = tokenizer("营收增长", return_tensors="pt")
    generated = model.generate(**prompt, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    assert generated.shape[1] == prompt["input_ids"].shape[1] + 6 or tokenizer.eos_token_id in generated[0]
    full = AutoModelForCausalLM.from_pretrained(export_run / "merged").eval()
    with torch.no_grad():
        diff = (model(**prompt).logits - full(**prompt).logits).abs().max()
    assert float(diff) < 0.5  # int8 noise, not a different model
    rt = int8["round_trip"]
    assert rt["top1_agreement"] > 0.9 and rt["max_abs_logit_diff"] < 0.5 and rt["quantized_tensor_types"] == ["Int8Tensor"]


def test_report_next_to_the_weights_has_sizes_and_metric_change(int8, export_run, finsent_test):
    report = json.loads((export_run / "int8" / "quantize_report.json").read_text())
    sizes = report["sizes"]
    on_disk = sum(p.stat().st_size for p in (export_run / "int8").glob("*.safetensors"))
    assert sizes["int8_bytes"] == on_disk
    assert sizes["fp32_bytes"] == 4 * sizes["parameters"] and sizes["bf16_bytes"] == 2 * sizes["parameters"]
    assert 0.25 < sizes["ratio_vs_fp32"] < 0.30  # 1 byte a weight + per-row scales; norms and biases in fp32
    assert sizes["smaller_than_fp32_pct"] > 70 and 40 < sizes["smaller_than_bf16_pct"] < 50
    ev = report["evaluation"]
    assert ev["data"] == str(finsent_test) and ev["samples"] == 40 and ev["kind"] == "classification"
    assert ev["metric"] == "accuracy"
    assert ev["full_precision"] == ev["metrics"]["full_precision"]["accuracy"]
    assert ev["change"] == pytest.approx(ev["int8"] - ev["full_precision"])
    for side in ("full_precision", "int8"):
        assert set(ev["metrics"][side]) >= {"accuracy", "macro_f1", "token_loss", "token_accuracy"}
    assert abs(ev["metrics"]["int8"]["token_loss"] - ev["metrics"]["full_precision"]["token_loss"]) < 0.1
    assert report["backend"].startswith("torchao")


def test_without_data_the_runs_held_out_split_and_token_metrics_are_used(export_run, tmp_path):
    report = quantize_run(QuantizeConfig(run=str(export_run), int8=True, out=str(tmp_path / "q"), max_samples=8))
    ev = report["evaluation"]
    assert ev["kind"] == "token" and ev["metric"] == "token_accuracy" and ev["samples"] == 8
    assert ev["data"].startswith("validation split held out of")


def test_the_int8_export_can_be_served(int8, export_run):
    from r1tune.serve.engine import Sampling, load_engine

    engine = load_engine(export_run / "int8", ServeConfig())
    try:
        pieces = list(engine.stream_chat([{"role": "user", "content": "营收增长"}], Sampling(6, temperature=0)))
        assert pieces[-1][0] == "finish" and list(engine.models) == ["int8"]
    finally:
        engine.close()


def test_quantize_command_and_its_errors(export_run, finsent_test, tmp_path, cli):
    code, _, err = cli("export", "quantize", export_run, "--out", tmp_path / "q")
    assert code == 2 and "--int8" in err
    code, out, err = cli("export", "quantize", export_run, "--int8", "--out", tmp_path / "q", "--data",
                         finsent_test, "--max-samples", 10, "--max-new-tokens", 8)
    assert code == 0, err
    assert "smaller than fp32" in out and "accuracy on 10 samples" in out
    code, _, err = cli("export", "quantize", tmp_path / "q", "--int8", "--out", tmp_path / "again")
    assert code == 2 and "quantized already" in err
