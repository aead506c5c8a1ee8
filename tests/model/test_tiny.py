"""The tiny models carry every property of the real R1-Distill tokenizer that has broken toolkits."""

import json

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from r1tune.model.template import BOS, EOS, bundled_template
from r1tune.model.tiny import make_tiny_model


def test_special_token_flags_match_r1(tiny_tokenizer):
    flags = {t.content: t.special for t in tiny_tokenizer.added_tokens_decoder.values()}
    assert flags[BOS] and flags[EOS]
    for marker in ("<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"):
        assert flags[marker] is False, marker
    # same order as the real ids 151643…151649: eos, User, Assistant, bos, EOT, think, /think
    ids = tiny_tokenizer.convert_tokens_to_ids([EOS, "<｜User｜>", "<｜Assistant｜>", BOS, "<|EOT|>", "<think>", "</think>"])
    assert ids == list(range(ids[0], ids[0] + 7))


def test_r1_pitfalls_are_reproduced(tiny_tokenizer):
    tok = tiny_tokenizer
    assert tok.pad_token_id == tok.eos_token_id
    assert tok.chat_template == bundled_template("r1")
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert tok(text)["input_ids"][:2] == [tok.bos_token_id] * 2  # double bos with add_special_tokens=True
    ids = tok("<think>x</think>", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "<think>x</think>"  # markers survive skipping
    assert tok.convert_tokens_to_ids("<think>") in ids


def test_model_loads_with_plain_transformers_and_generation_defaults(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "qwen2"
    gen = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert (gen["do_sample"], gen["temperature"], gen["top_p"]) == (True, 0.6, 0.95)
    assert model.config.vocab_size >= len(AutoTokenizer.from_pretrained(tiny_model_dir))


def test_llama_variant(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    assert model.config.model_type == "llama"
    text = "<｜begin▁of▁sentence｜><｜User｜>营收3.5亿元<｜Assistant｜><think>\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text and ids.count(tok.bos_token_id) == 1


def test_deterministic(tmp_path, tiny_model_dir):
    make_tiny_model(tmp_path / "again", arch="qwen2", size="tiny")
    a, b = load_file(tiny_model_dir / "model.safetensors"), load_file(tmp_path / "again" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tiny_model_dir / "tokenizer.json").read_text() == (tmp_path / "again" / "tokenizer.json").read_text()
