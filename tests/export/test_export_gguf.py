"""`r1tune export gguf`: the files, read back by the `gguf` package and transformers, and run by a real llama.cpp.

- the LoRA run (merged in fp32) to f16 / q8_0 / q4_0: every tensor the `gguf` package's reader dequantizes
  equals the merged weights (f16: to f16 rounding; q8_0 / q4_0: within a block's quantization step), the
  metadata llama.cpp and Ollama use, the Modelfile, the sizes and transformers' round trip in gguf_report.json;
- the tiny Llama at f16: the same, with Llama's q/k rows permuted into ggml's RoPE layout;
- llama.cpp (llama-cpp-python built from source in .venv-llamacpp, tests/export/llamacpp_env.py, driven by
  llamacpp_probe.py in a child process) tokenizes rendered R1 prompts into our ids and greedy-generates
  transformers' tokens at f16, for Qwen2 and Llama; q8_0 agreement is printed;
- Go's text/template (as Ollama) renders the Modelfile's TEMPLATE into the R1 prompt, for both R1 templates;
- what cannot become a GGUF is refused with one clear line.

    .venv/bin/python -m pytest tests/export/test_export_gguf.py -q -s
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from llamacpp_env import llamacpp_python
from safetensors.torch import load_file

from r1tune.config import GgufConfig, ModelConfig
from r1tune.errors import R1TuneError
from r1tune.export.gguf import _permute
from r1tune.model.load import load_tokenizer
from r1tune.model.template import encode_generation_prompt, generation_pieces, resolve_template
from r1tune.recipes.export import gguf_run

PROBE = Path(__file__).with_name("llamacpp_probe.py")
CONVERSATIONS = [
    [{"role": "user", "content": "判断这条财经新闻的情感倾向：药明康德一季度净利润同比增长43%"}],
    [{"role": "system", "content": "You are a careful legal assistant."},
     {"role": "user", "content": "Explain the 违约金 clause of a 合同 in one sentence, please!"}],
    [{"role": "user", "content": "患者发热三天，体温 38.5℃，应该做哪些检查？"},
     {"role": "assistant", "content": "<think>\n先问病史。\n</think>\n\n血常规和胸片。"},
     {"role": "user", "content": "What if the cough lasts 3 weeks?  Numbers: 1234567, 3.14…"}],
    [{"role": "user", "content": "  leading spaces,\ttabs and\n\nnew lines — and emoji 🚀 ✅"}],
]
NEW_TOKENS = 12


def export(run, gguf_type: str, out: Path) -> dict:
    report = gguf_run(GgufConfig(run=str(run), type=gguf_type, out=str(out / f"model-{gguf_type}.gguf")))
    report["files"] = sorted(p.name for p in out.iterdir())
    return report


@pytest.fixture(scope="module")
def qwen_files(export_run, tmp_path_factory):
    """The LoRA run (Qwen2) exported to each type, each in its own folder."""
    root = tmp_path_factory.mktemp("gguf-qwen")
    return {t: export(export_run, t, root / t) for t in ("f16", "q8_0", "q4_0")}


@pytest.fixture(scope="module")
def llama_files(tiny_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf-llama")
    return {t: export(tiny_llama_dir, t, root / t) for t in ("f16", "q8_0")}


@pytest.fixture(scope="module")
def llama3_rope_files(tiny_llama_dir, tmp_path_factory):
    """The tiny Llama with R1-Distill-Llama's Llama-3 RoPE scaling (its original context shrunk so that most of
    the tiny head's frequencies are rescaled): llama.cpp gets it from the `rope_freqs` tensor."""
    root = tmp_path_factory.mktemp("gguf-llama3-rope")
    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 256}
    model = copy_model(tiny_llama_dir, root / "model", rope_parameters=rope)
    return {"f16": export(model, "f16", root / "f16")}


def reader_tensors(path: str) -> dict[str, np.ndarray]:
    """Every tensor as the gguf package's reader dequantizes it, in HF's shape (rows × columns)."""
    reader = gguf.GGUFReader(path)
    return {t.name: gguf.quants.dequantize(t.data, t.tensor_type).reshape(tuple(reversed(t.shape.tolist())))
            for t in reader.tensors}


def check_tensors(report: dict, permuted: bool) -> dict[str, float]:
    """Differential check against gguf's reader: each GGUF tensor against the source weight it came from."""
    source = {k: v.float() for k, v in load_file(str(Path(report["source"]) / "model.safetensors")).items()}
    config = json.loads((Path(report["source"]) / "config.json").read_text())
    arch = gguf.MODEL_ARCH.LLAMA if permuted else gguf.MODEL_ARCH.QWEN2
    names = gguf.get_tensor_name_map(arch, config["num_hidden_layers"])
    tensors = reader_tensors(report["gguf"])
    assert len(tensors) == report["written"]["tensors"]
    worst = {}
    for hf_name, weight in source.items():
        expected = weight.numpy()
        if permuted and hf_name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = config["num_attention_heads" if "q_proj" in hf_name else "num_key_value_heads"]
            expected = _permute(expected, heads)
        got = tensors.pop(names.get_name(hf_name, try_suffixes=(".weight", ".bias")))
        assert got.shape == expected.shape, hf_name
        if report["type"] == "f16" or got.ndim == 1:
            exact = expected.astype(np.float16).astype(np.float32) if got.ndim == 2 else expected
            assert np.array_equal(got, exact), hf_name  # norms stay F32, matrices are exactly their f16 rounding
            continue
        # q8_0 / q4_0: blocks of 32 along a row share one scale d (max |w| / 127, or / 8 for q4_0, whose top
        # value clamps at +7), d stored as f16; an error is within ~d / 2 for q8_0, d for q4_0 (LM head: q8_0)
        q8 = report["type"] == "q8_0" or hf_name == "lm_head.weight"
        blocks = expected.reshape(expected.shape[0], -1, 32)
        step = np.abs(blocks).max(axis=-1, keepdims=True) / (127 if q8 else 8)
        error = np.abs(got.reshape(blocks.shape) - blocks)
        assert (error <= step * (0.57 if q8 else 1.01) + 1e-7).all(), hf_name
        worst[hf_name] = float(error.max())
    assert not tensors, f"tensors from nowhere: {list(tensors)}"
    return worst


def check_metadata(report: dict, source_tokenizer_dir: str) -> None:
    tokenizer = load_tokenizer(ModelConfig(name_or_path=source_tokenizer_dir))
    meta = report["metadata"]
    assert meta["tokenizer_model"] == "gpt2" and meta["tokenizer_pre"] == "deepseek-r1-qwen"
    assert meta["bos_token_id"] == tokenizer.bos_token_id and meta["eos_token_id"] == tokenizer.eos_token_id
    assert meta["padding_token_id"] == tokenizer.pad_token_id and meta["add_bos_token"] is True
    assert meta["n_tokens"] == meta["embedding_rows"] == json.loads(
        (Path(report["source"]) / "config.json").read_text())["vocab_size"]
    assert meta["temperature"] == pytest.approx(0.6) and meta["top_p"] == pytest.approx(0.95)
    reader = gguf.GGUFReader(report["gguf"])
    assert reader.get_field("tokenizer.chat_template").contents() == resolve_template(tokenizer)
    tokens = reader.get_field("tokenizer.ggml.tokens").contents()
    types = reader.get_field("tokenizer.ggml.token_type").contents()
    kinds = {tokens[i]: gguf.TokenType(types[i]).name for i in range(len(tokens))}
    # as in DeepSeek's own GGUFs: the <｜…｜> markers are control tokens, <think> a user-defined one
    assert kinds["<｜User｜>"] == kinds["<｜end▁of▁sentence｜>"] == "CONTROL"
    assert kinds["<think>"] == kinds["</think>"] == "USER_DEFINED"
    assert report["files"] == sorted(["Modelfile", "gguf_report.json", Path(report["gguf"]).name])


def test_gguf_files_read_back_by_gguf_and_transformers(qwen_files, llama_files, export_run):
    sizes = {t: r["sizes"]["gguf_bytes"] for t, r in qwen_files.items()}
    assert sizes["q4_0"] < sizes["q8_0"] < sizes["f16"]
    for files, permuted in ((qwen_files, False), (llama_files, True)):
        for gguf_type, report in files.items():
            worst = check_tensors(report, permuted)
            check_metadata(report, report["source"])
            trip = report["round_trip"]
            print(f"\n{report['written']['architecture']} {gguf_type}: {report['sizes']['gguf_bytes']:,} bytes "
                  f"({report['sizes']['ratio_vs_bf16']:.2f}x bf16), transformers top-1 {trip['top1_agreement']:.3f}"
                  f", max |logit diff| {trip['max_abs_logit_diff']:.4f}, worst weight error "
                  f"{max(worst.values(), default=0):.2g}")
            if gguf_type == "f16":
                assert trip["top1_agreement"] == 1.0 and trip["max_abs_logit_diff"] < 1e-2
            else:
                assert 0.0 <= trip["top1_agreement"] <= 1.0 and trip["positions"] > 50
            saved = json.loads(Path(report["report"]).read_text(encoding="utf-8"))
            assert saved["round_trip"] == json.loads(json.dumps(trip)) and saved["sizes"]["gguf_bytes"] == Path(
                report["gguf"]).stat().st_size
    assert qwen_files["f16"]["merged_adapter"] and qwen_files["f16"]["written"]["architecture"] == "qwen2"
    assert llama_files["f16"]["written"]["architecture"] == "llama"
    modelfile = (Path(qwen_files["q8_0"]["gguf"]).parent / "Modelfile").read_text(encoding="utf-8")
    assert "FROM ./model-q8_0.gguf" in modelfile and 'PARAMETER stop "<｜User｜>"' in modelfile
    assert 'PARAMETER stop "<｜end▁of▁sentence｜>"' in modelfile and "PARAMETER temperature 0.6" in modelfile
    assert "PARAMETER top_p 0.95" in modelfile and "<｜Assistant｜><think>\n" in modelfile


# ---------------------------------------------------------------- llama.cpp


def greedy_transformers(source: str, prompts: list[list[int]]) -> list[list[int]]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    eos = model.config.eos_token_id
    out = []
    with torch.no_grad():
        for ids in prompts:
            ids, generated = list(ids), []
            for _ in range(NEW_TOKENS):
                token = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
                generated.append(token)
                ids.append(token)
                if token == eos:
                    break
            out.append(generated)
    return out


def run_llamacpp(gguf_path: str, texts: list[str], tmp_path: Path) -> dict:
    request = tmp_path / f"request-{Path(gguf_path).stem}.json"
    request.write_text(json.dumps({"gguf": gguf_path, "prompts": texts, "max_new_tokens": NEW_TOKENS}))
    probe = subprocess.run([str(llamacpp_python()), str(PROBE), str(request)], capture_output=True, text=True,
                           timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    return json.loads(probe.stdout)


def agreement(a: list[list[int]], b: list[list[int]]) -> float:
    pairs = [(x, y) for p, q in zip(a, b) for x, y in zip(p, q)]
    return sum(x == y for x, y in pairs) / len(pairs)


@pytest.mark.slow
def test_llamacpp_tokenizes_and_generates_like_transformers(qwen_files, llama_files, llama3_rope_files, tmp_path):
    llamacpp_python()  # built once (minutes) before anything is timed below
    for files in (qwen_files, llama_files, llama3_rope_files):
        source = files["f16"]["source"]
        tokenizer = load_tokenizer(ModelConfig(name_or_path=source))
        template = resolve_template(tokenizer)
        ours = [encode_generation_prompt(tokenizer, c, template) for c in CONVERSATIONS]
        texts = ["".join(text for text, _ in generation_pieces(tokenizer, c, template)) for c in CONVERSATIONS]
        reference = greedy_transformers(source, ours)
        f16 = run_llamacpp(files["f16"]["gguf"], texts, tmp_path)
        meta = f16["metadata"]
        assert meta["tokenizer.ggml.pre"] == "deepseek-r1-qwen" and meta["tokenizer.chat_template"] == template
        assert (f16["bos"], f16["eos"], f16["add_bos"]) == (tokenizer.bos_token_id, tokenizer.eos_token_id, True)
        for text, ids, seen in zip(texts, ours, f16["prompts"]):
            assert seen["ids"] == ids, f"llama.cpp tokenizes {text!r} differently"
        # greedy at f16: the same tokens as transformers, prompt by prompt
        assert [p["generated"] for p in f16["prompts"]] == reference, meta["general.architecture"]
        logit_diff = max(float(np.abs(np.array(p["logits"][0]) - np.array(r)).max()) for p, r in
                         zip(f16["prompts"], first_logits(source, ours)))
        assert logit_diff < 1e-2
        line = (f"\nllama.cpp {Path(files['f16']['gguf']).parent.parent.name}: f16 greedy = transformers on "
                f"{len(texts)} prompts × {NEW_TOKENS} tokens, first-token max |logit diff| {logit_diff:.2g} "
                f"(transformers' GGUF loader: {files['f16']['round_trip']['max_abs_logit_diff']:.2g})")
        if "q8_0" in files:
            q8 = run_llamacpp(files["q8_0"]["gguf"], texts, tmp_path)
            assert [p["ids"] for p in q8["prompts"]] == ours
            line += f"; q8_0 greedy agreement {agreement([p['generated'] for p in q8['prompts']], reference):.3f}"
        print(line)


def first_logits(source: str, prompts: list[list[int]]) -> list[np.ndarray]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    with torch.no_grad():
        return [model(input_ids=torch.tensor([ids])).logits[0, -1].numpy() for ids in prompts]


# ---------------------------------------------------------------- refused inputs


def copy_model(folder: Path, out: Path, **config_changes) -> Path:
    shutil.copytree(folder, out)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, **config_changes}))
    return out


def test_gguf_refuses_what_it_cannot_write(tiny_model_dir, tmp_path, cli):
    from peft import LoraConfig, PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    quantized = copy_model(tiny_model_dir, tmp_path / "nf4",
                           quantization_config={"quant_method": "bitsandbytes", "load_in_4bit": True})
    mistral = copy_model(tiny_model_dir, tmp_path / "mistral", architectures=["MistralForCausalLM"],
                         model_type="mistral")
    for peft_config, name in ((PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4), "prompt"),
                              (LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj"]), "lora-on-nf4")):
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        get_peft_model(base, peft_config).save_pretrained(tmp_path / name)
    gpt2_split = copy_model(tiny_model_dir, tmp_path / "gpt2-split")  # GPT-2's regex: no llama.cpp pre-tokenizer
    spec = json.loads((gpt2_split / "tokenizer.json").read_text(encoding="utf-8"))
    spec["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = (
        r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")
    (gpt2_split / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    adapter_config = tmp_path / "lora-on-nf4" / "adapter_config.json"
    adapter_config.write_text(json.dumps({**json.loads(adapter_config.read_text()),
                                          "base_model_name_or_path": str(quantized)}))
    cases = {quantized: "is quantized (bitsandbytes)", mistral: "architecture ['MistralForCausalLM'] is not "
             "supported", tmp_path / "prompt": "prompt_tuning adapter (prompt learning) cannot be merged",
             tmp_path / "lora-on-nf4": f"the base model {quantized} is quantized (bitsandbytes)",
             gpt2_split: "llama.cpp has no pre-tokenizer for this tokenizer"}
    for run, problem in cases.items():
        with pytest.raises(R1TuneError, match=re.escape(problem)):
            gguf_run(GgufConfig(run=str(run), type="f16", out=str(tmp_path / "out" / "x.gguf")))
    assert not (tmp_path / "out").exists()
    code, _, err = cli("export", "gguf", tmp_path / "prompt", "--type", "f16")
    assert code == 2 and "error: " in err and "cannot be merged" in err, err
    code, _, err = cli("export", "gguf", tiny_model_dir, "--type", "q2_k")
    assert code == 2 and "type: Input should be 'f16', 'bf16', 'q8_0' or 'q4_0'" in err, err
    assert not list(tiny_model_dir.glob("gguf-*"))


# ---------------------------------------------------------------- the Modelfile's TEMPLATE, rendered by Go

GO_RENDER = """package main

import (
	"encoding/json"
	"os"
	"strings"
	"text/template"
)

type Message struct{ Role, Content, Thinking string }

func main() {
	var request struct {
		Template      string
		Conversations [][]Message
	}
	if err := json.NewDecoder(os.Stdin).Decode(&request); err != nil {
		panic(err)
	}
	tmpl := template.Must(template.New("modelfile").Parse(request.Template))
	var out []string
	for _, messages := range request.Conversations {
		var b strings.Builder
		if err := tmpl.Execute(&b, map[string]any{"Messages": messages}); err != nil {
			panic(err)
		}
		out = append(out, b.String())
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
"""


def test_modelfile_template_renders_the_r1_prompt(tiny_tokenizer, tmp_path):
    """Ollama renders the Modelfile's TEMPLATE with Go's text/template, not the GGUF's Jinja template: Go renders
    it here for each conversation (history answers as Ollama passes them, reasoning apart) and, after the bos
    Ollama adds, it must be the prompt r1tune trains and serves with, for both R1 templates."""
    from r1tune.export.ollama import go_template
    from r1tune.model.template import BOS, bundled_template, template_visible_content

    go = shutil.which("go")
    assert go, "Go is needed to render the Modelfile template: sh scripts/install-test-deps.sh installs golang-go"
    (tmp_path / "render.go").write_text(GO_RENDER)
    conversations = [[{"Role": m["role"], "Content": template_visible_content(m) if m["role"] == "assistant"
                       else m["content"], "Thinking": ""} for m in c] for c in CONVERSATIONS]
    rendered = subprocess.run([go, "run", str(tmp_path / "render.go")], input=json.dumps(
        {"Template": go_template(), "Conversations": conversations}), capture_output=True, text=True, timeout=300,
        env={**os.environ, "GO111MODULE": "off", "GOPROXY": "off"})  # the standard library only: no module
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    for name in ("r1", "r1-2025-01"):
        template = bundled_template(name)
        expected = ["".join(text for text, _ in generation_pieces(tiny_tokenizer, c, template)) for c in CONVERSATIONS]
        assert [BOS + text for text in json.loads(rendered.stdout)] == expected, name
