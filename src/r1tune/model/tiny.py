"""Tiny R1-Distill-architecture models for tests and the offline quickstart.

    r1tune make-tiny-model runs/tiny --arch qwen2 --size tiny

No hub is reachable here, so the models are built from a config: a deterministic random-init Qwen2
(R1-Distill-Qwen) or Llama (R1-Distill-Llama) plus a byte-level BPE tokenizer trained locally on the
bundled sample data. The tokenizer reproduces what matters about the real R1-Distill tokenizer (see
`resources/chat_template.jinja` and the R1 notes): the same special-token strings in the same order after
the regular vocabulary, bos/eos flagged special but `<｜User｜>`, `<｜Assistant｜>`, `<think>`, `</think>`
*not* special, pad == eos, add_bos_token on, and the exact R1 chat template. Every pitfall the real
tokenizer has, this one has too, so tests exercise the code paths users hit.
"""

from __future__ import annotations

import json
from pathlib import Path

from r1tune.errors import R1TuneError
from r1tune.model.template import BOS, EOS, IM_END, IM_START, bundled_template

# In the order of the real R1-Distill-Qwen added tokens (ids 151643… there), with their `special` flags.
R1_ADDED_TOKENS = [
    (EOS, True), ("<｜User｜>", False), ("<｜Assistant｜>", False), (BOS, True), ("<|EOT|>", False),
    ("<think>", False), ("</think>", False),
    ("<｜tool▁calls▁begin｜>", False), ("<｜tool▁calls▁end｜>", False), ("<｜tool▁call▁begin｜>", False),
    ("<｜tool▁call▁end｜>", False), ("<｜tool▁outputs▁begin｜>", False), ("<｜tool▁outputs▁end｜>", False),
    ("<｜tool▁output▁begin｜>", False), ("<｜tool▁output▁end｜>", False), ("<｜tool▁sep｜>", False),
]
# Qwen2-VL / Qwen2.5-VL's text tokens (ids 151643… there, all special; the vision tokens follow), no bos
CHATML_ADDED_TOKENS = ["<|endoftext|>", IM_START, IM_END]
# Qwen2's pre-tokenisation regex (tokenizer.json of Qwen2 / R1-Distill-Qwen).
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

SIZES = {
    # tiny: seconds to train on 2 cores; small: the real 151,936-row vocabulary and an untied LM head,
    # so the LM head and logits cost what they cost on R1-Distill-Qwen-1.5B/7B.
    "tiny": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=None, tie_word_embeddings=False, bpe_vocab=4000),
    "small": dict(hidden_size=512, intermediate_size=2816, num_hidden_layers=6, num_attention_heads=8,
                  num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=False, bpe_vocab=8000),
}


def tokenizer_corpus() -> list[str]:
    """Text the tokenizer learns from: every bundled dataset (Chinese, English and mixed), deterministic."""
    root = Path(__file__).resolve().parent.parent / "resources" / "datasets"
    texts = []
    for path in sorted(root.rglob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.extend(_strings(json.loads(line)))
    return texts


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def train_tokenizer(bpe_vocab: int, chat: str = "r1"):
    """The BPE tokenizer of the tiny models. chat='r1': R1-Distill's added tokens, bos, pad == eos and template;
    chat='chatml': a Qwen2-VL-Instruct checkpoint's layout (no R1 marker, no bos, eos `<|im_end|>`, pad
    `<|endoftext|>`, its ChatML template), as the hub's VLMs ship."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=bpe_vocab, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    if chat == "chatml":
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in CHATML_ADDED_TOKENS])
        tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
        hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=IM_END, pad_token="<|endoftext|>",
                                     model_max_length=16384, clean_up_tokenization_spaces=False, padding_side="left")
        hf.chat_template = bundled_template("qwen2-vl")
        return hf
    if chat != "r1":
        raise R1TuneError(f"chat must be r1 or chatml, not {chat!r}")
    for text, special in R1_ADDED_TOKENS:
        token = AddedToken(text, special=special, normalized=False, single_word=False, lstrip=False, rstrip=False)
        (tok.add_special_tokens if special else tok.add_tokens)([token])
    bos_id = tok.token_to_id(BOS)
    # add_bos_token is on in the real tokenizer: plain encode() prepends bos (the double-bos trap).
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]),
    ])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=EOS,
                                 model_max_length=16384, clean_up_tokenization_spaces=False, padding_side="left")
    hf.chat_template = bundled_template("r1")
    return hf


def make_tiny_model(out: str | Path, arch: str = "qwen2", size: str = "tiny", seed: int = 0) -> dict:
    """Write a random-init model + R1 tokenizer to `out`; returns a summary (also saved as tiny_model.json)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM


    if arch not in ("qwen2", "llama"):
        raise R1TuneError(f"--arch must be qwen2 or llama, not {arch!r}")
    if size not in SIZES:
        raise R1TuneError(f"--size must be one of {', '.join(SIZES)}, not {size!r}")
    spec = dict(SIZES[size])
    tokenizer = train_tokenizer(spec.pop("bpe_vocab"))
    vocab = spec.pop("vocab_size") or ((len(tokenizer) + 63) // 64) * 64
    common = dict(vocab_size=vocab, hidden_act="silu", max_position_embeddings=16384, initializer_range=0.02,
                  rms_norm_eps=1e-6, use_cache=True, attention_dropout=0.0, bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id, **spec)
    if arch == "qwen2":
        config = Qwen2Config(rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                             use_sliding_window=False, max_window_layers=spec["num_hidden_layers"], **common)
        model_cls = Qwen2ForCausalLM
    else:
        config = LlamaConfig(rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
                             attention_bias=False, mlp_bias=False, **common)
        model_cls = LlamaForCausalLM
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    return save_tiny(model, tokenizer, out, {"arch": arch, "size": size, "seed": seed, "vocab_size": vocab})


def save_tiny(model, tokenizer, out: str | Path, summary: dict) -> dict:
    """Save a tiny model folder as a real R1-Distill one looks: R1's recommended sampling in
    generation_config.json, add_bos_token / add_eos_token recorded in tokenizer_config.json; `summary`, with the
    tokenizer's length and the parameter count, in tiny_model.json (returned)."""
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(do_sample=True, temperature=0.6, top_p=0.95,
                                               bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    path = out / "tokenizer_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg.update(add_bos_token=tokenizer.bos_token is not None, add_eos_token=False)
    path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False), encoding="utf-8")
    summary = {**summary, "tokenizer_len": len(tokenizer), "parameters": sum(p.numel() for p in model.parameters())}
    (out / "tiny_model.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary
