"""GGUF writing: a full-precision Qwen2 / Llama model folder → one `.gguf` file for llama.cpp and Ollama.

    written = write_gguf(source_dir, handle, tokenizer, "q8_0", template, name, temperature=0.6, top_p=0.95)
    problems = metadata_problems(read_metadata(path), expected)   # what GGUFReader reads back, checked
    logits = gguf_prompt_logits(path, prompts)                    # transformers' GGUF loader, dequantized to fp32

These are the parts; the flow (merge if needed, write, check, report, Modelfile) is `recipes/export.py`.
Written with the `gguf` package (llama.cpp's gguf-py): no llama.cpp binary and no build is involved.

What llama.cpp needs, and where each piece comes from (checked against llama.cpp's own converter,
convert_hf_to_gguf.py, and its loader, src/llama-vocab.cpp):
- tensors under llama.cpp's names (`gguf.get_tensor_name_map`), norms / biases / 1-D tensors in F32, the
  matrices in the chosen type: f16, bf16, q8_0 (bit-exact with ggml's own), q4_0 (the LM head in q8_0, as
  llama-quantize keeps it finer too). Llama's q_proj / k_proj rows are permuted into ggml's RoPE layout
  (Qwen2's are not); Llama-3 RoPE scaling (R1-Distill-Llama) becomes the `rope_freqs` tensor.
- the vocabulary: every embedding row gets a token (rows past the tokenizer are `[PAD<i>]`, unused), BPE
  merges, token types (added special or `<｜…｜>` tokens → CONTROL, the other added ones such as `<think>` →
  USER_DEFINED, as the official R1 GGUFs have them);
- `tokenizer.ggml.pre`, the pre-tokenizer llama.cpp applies before BPE. llama.cpp's converter identifies
  it by hashing the ids of a fixed text (R1-Distill-Qwen → `deepseek-r1-qwen`, R1-Distill-Llama, whose
  tokenizer hashes as Llama 3's → `llama-bpe`). A fine-tuned run keeps its base's tokenizer, so the hash
  matches; otherwise (the tiny test tokenizers) the name comes from the split regex in tokenizer.json, and a
  tokenizer whose regex llama.cpp has no pre-tokenizer for is refused rather than silently mis-tokenized;
- bos / eos / pad ids, add_bos (the R1 template writes bos itself; llama.cpp and Ollama add it when they
  tokenize a prompt), the run's exact chat template, and R1's sampling defaults (`general.sampling.*`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType, LlamaFileType, TokenType
from safetensors import safe_open

from r1tune.errors import R1TuneError
from r1tune.model.template import TEMPLATE_FILES, bundled_template, resolve_template, template_hash

GGUF_TYPES = ("f16", "bf16", "q8_0", "q4_0")
# HF architecture → (llama.cpp architecture, permute q/k rows for ggml's RoPE)
ARCHITECTURES = {"Qwen2ForCausalLM": (gguf.MODEL_ARCH.QWEN2, False), "LlamaForCausalLM": (gguf.MODEL_ARCH.LLAMA, True)}
_MATRIX_TYPE = {"f16": GGMLQuantizationType.F16, "bf16": GGMLQuantizationType.BF16,
                "q8_0": GGMLQuantizationType.Q8_0, "q4_0": GGMLQuantizationType.Q4_0}
_FILE_TYPE = {"f16": LlamaFileType.MOSTLY_F16, "bf16": LlamaFileType.MOSTLY_BF16,
              "q8_0": LlamaFileType.MOSTLY_Q8_0, "q4_0": LlamaFileType.MOSTLY_Q4_0}

# llama.cpp's pre-tokenizer check (convert_hf_to_gguf.py `get_vocab_base_pre`): this text is encoded with the
# tokenizer's defaults and the sha256 of str(ids) names the pre-tokenizer. The hashes of the R1-Distill bases.
CHECK_TEXT = ('\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis '
              'concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 '
              '?我想在apple工作1314151天～ ------======= нещо на Български \'\'\'\'\'\'```````""""......!!!!!!'
              '?????? I\'ve been \'told he\'s there, \'RE you sure? \'M not sure I\'ll make it, \'D you like some '
              'tea? We\'Ve a\'lL')
KNOWN_HASHES = {
    "b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5": "deepseek-r1-qwen",  # R1-Distill-Qwen
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Llama 3 / R1-Distill-Llama
}
# The split regexes of those tokenizers (tokenizer.json) → the llama.cpp name whose pre-tokenizer applies it.
# Qwen2's (its digits one by one) is llama.cpp's QWEN2 pre-type, which `deepseek-r1-qwen` selects; Llama 3's
# (digits in groups of up to three) is LLAMA3, selected by `llama-bpe`.
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
KNOWN_REGEXES = {QWEN2_REGEX: "deepseek-r1-qwen", LLAMA3_REGEX: "llama-bpe"}
PROMPT_LEARNING = ("PREFIX_TUNING", "P_TUNING", "PROMPT_TUNING", "MULTITASK_PROMPT_TUNING", "CPT")


# ---------------------------------------------------------------- the model folder


def read_model_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.exists():
        raise R1TuneError(f"{folder}: no config.json — not a model folder")
    return json.loads(path.read_text(encoding="utf-8"))


def check_convertible(config: dict, where: str) -> str:
    """The HF architecture name when a GGUF of it can be written; R1TuneError with the reason otherwise."""
    archs = config.get("architectures") or []
    arch = archs[0] if len(archs) == 1 else None
    if arch not in ARCHITECTURES:
        raise R1TuneError(f"{where}: architecture {archs or config.get('model_type', '?')} is not supported by "
                          f"GGUF export: it writes {' and '.join(ARCHITECTURES)} (R1-Distill-Qwen / -Llama)")
    quant = config.get("quantization_config")
    if quant:
        raise R1TuneError(f"{where} is quantized ({quant.get('quant_method', 'quantization_config')}): GGUF is "
                          "written from full-precision weights — export the full-precision run or model, and "
                          "choose the GGUF type (--type q8_0 / q4_0) for a smaller file")
    if config.get("use_sliding_window"):
        raise R1TuneError(f"{where}: sliding-window attention is on; llama.cpp's qwen2 has none")
    return arch


def check_mergeable_adapter(folder: Path) -> None:
    """A prompt-learning adapter has no weights to fold into the model, so there is nothing a GGUF could hold."""
    path = folder / "adapter_config.json"
    peft_type = json.loads(path.read_text(encoding="utf-8")).get("peft_type") if path.exists() else None
    if peft_type in PROMPT_LEARNING:
        raise R1TuneError(f"{folder}: a {peft_type.lower()} adapter (prompt learning) cannot be merged into the "
                          "weights, and llama.cpp / Ollama load merged weights only: export a LoRA-family run "
                          "(lora, dora, qlora, ia3) or a full fine-tune")


def _tensor_names(folder: Path) -> dict[str, Path]:
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise R1TuneError(f"{folder}: no .safetensors weights")
    names: dict[str, Path] = {}
    for shard in shards:
        with safe_open(str(shard), "pt") as f:
            names.update({k: shard for k in f.keys()})
    return names


def _load(shard: Path, name: str) -> np.ndarray:
    with safe_open(str(shard), "pt") as f:
        return f.get_tensor(name).to(torch.float32).numpy()


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """HF's rotate-half q/k rows → ggml's interleaved RoPE pairs (llama.cpp's LlamaModel.permute)."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _llama3_rope_factors(config: dict) -> np.ndarray | None:
    """Llama-3 RoPE scaling as llama.cpp wants it: one factor per frequency, the `rope_freqs` tensor."""
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if str(rope.get("rope_type", rope.get("type", ""))).lower() != "llama3":
        return None
    base = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    factor, low, high = rope.get("factor", 8.0), rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old_context = rope.get("original_max_position_embeddings", 8192)
    factors = []
    for freq in 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim)):
        wavelen = 2 * math.pi / freq
        if wavelen < old_context / high:
            factors.append(1.0)
        elif wavelen > old_context / low:
            factors.append(factor)
        else:
            smooth = (old_context / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def tensor_plan(folder: Path, config: dict, gguf_type: str) -> list[dict]:
    """Every tensor to write, in order: {gguf name, source (shard, name) or data, shape, type, permute heads}."""
    arch_name = check_convertible(config, str(folder))
    arch, permute = ARCHITECTURES[arch_name]
    n_blocks = config["num_hidden_layers"]
    n_head = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads") or n_head
    names = _tensor_names(folder)
    tied = "lm_head.weight" not in names or bool(config.get("tie_word_embeddings"))
    mapping = gguf.get_tensor_name_map(arch, n_blocks)
    plan = []
    for name, shard in names.items():
        if name.endswith("rotary_emb.inv_freq") or (tied and name == "lm_head.weight"):
            continue  # recomputed by llama.cpp / the same tensor as token_embd
        new = mapping.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise R1TuneError(f"{folder}: tensor {name} has no place in a llama.cpp {arch.name.lower()} model")
        with safe_open(str(shard), "pt") as f:
            shape = tuple(f.get_slice(name).get_shape())
        heads = None
        if permute and name.endswith("q_proj.weight"):
            heads = n_head
        elif permute and name.endswith("k_proj.weight"):
            heads = n_kv
        plan.append({"name": new, "source": (shard, name), "shape": shape, "heads": heads,
                     "type": _tensor_type(new, shape, gguf_type, tied)})
    factors = _llama3_rope_factors(config) if permute else None
    if factors is not None:
        plan.append({"name": gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", "data": factors,
                     "shape": factors.shape, "heads": None, "type": GGMLQuantizationType.F32})
    return plan


def _tensor_type(name: str, shape: tuple, gguf_type: str, tied: bool) -> GGMLQuantizationType:
    if len(shape) <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight"):
        return GGMLQuantizationType.F32  # llama.cpp computes norms, biases and 1-D tensors in F32
    qtype = _MATRIX_TYPE[gguf_type]
    head = name == "output.weight" or (tied and name == "token_embd.weight")
    if qtype == GGMLQuantizationType.Q4_0 and head:
        qtype = GGMLQuantizationType.Q8_0  # the LM head is the most sensitive matrix: llama-quantize keeps it finer
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if shape[-1] % block:
        return GGMLQuantizationType.F16  # rows that do not split into blocks: what llama.cpp's converter does
    return qtype


def _nbytes(shape: tuple, qtype: GGMLQuantizationType) -> int:
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    return int(np.prod(shape)) // block * size


def _tensor_data(item: dict) -> np.ndarray:
    data = item["data"] if "data" in item else _load(*item["source"])
    if item["heads"]:
        data = _permute(data, item["heads"])
    data = gguf.quants.quantize(data, item["type"])
    expected = _nbytes(item["shape"], item["type"])
    if data.nbytes != expected:
        raise R1TuneError(f"{item['name']}: {data.nbytes} bytes after conversion, {expected} expected")
    return data


# ---------------------------------------------------------------- the tokenizer


def exact_template(provenance: dict, tokenizer) -> str:
    """The chat template the run was trained with (its provenance names it and its hash), byte for byte."""
    name = provenance.get("template")
    template = bundled_template(name) if name in TEMPLATE_FILES else resolve_template(tokenizer)
    trained = provenance.get("template_hash")
    if trained and template_hash(template) != trained:
        raise R1TuneError(f"the run was trained with chat template {name or '?'} (hash {trained}), but its tokenizer "
                          f"carries another (hash {template_hash(template)}): the exact template is unknown")
    return template


def pre_tokenizer(folder: Path, tokenizer) -> tuple[str, str]:
    """(llama.cpp pre-tokenizer name, how it was decided): llama.cpp's own hash first, then the split regex."""
    digest = hashlib.sha256(str(tokenizer.encode(CHECK_TEXT)).encode()).hexdigest()
    if digest in KNOWN_HASHES:
        return KNOWN_HASHES[digest], f"llama.cpp tokenizer hash {digest[:12]}…"
    path = folder / "tokenizer.json"
    if not path.exists():
        raise R1TuneError(f"{folder}: no tokenizer.json — GGUF export needs the fast (byte-level BPE) tokenizer")
    spec = json.loads(path.read_text(encoding="utf-8"))
    if (spec.get("model") or {}).get("type") != "BPE":
        raise R1TuneError(f"{folder}: the tokenizer is not byte-level BPE, which is what R1-Distill models use")
    regexes = _split_regexes(spec.get("pre_tokenizer") or {})
    name = KNOWN_REGEXES.get(regexes[0]) if len(regexes) == 1 else None
    # llama.cpp's llama-bpe pre-type skips merges for whole-word vocabulary hits (Llama 3's ignore_merges),
    # its qwen2 one does not: a tokenizer.json that says otherwise would tokenize differently there
    if name and bool(spec["model"].get("ignore_merges")) == (name == "llama-bpe"):
        return name, f"tokenizer.json split regex = the {'Qwen2' if name == 'deepseek-r1-qwen' else 'Llama 3'} one"
    raise R1TuneError(f"{folder}: llama.cpp has no pre-tokenizer for this tokenizer (hash {digest[:12]}…, split "
                      f"regexes {regexes}): it would split text differently from the model's tokenizer. GGUF "
                      "export supports the R1-Distill-Qwen and R1-Distill-Llama tokenizers")


def _split_regexes(node: dict) -> list[str]:
    if node.get("type") == "Sequence":
        return [r for child in node.get("pretokenizers", []) for r in _split_regexes(child)]
    if node.get("type") == "Split":
        return [node.get("pattern", {}).get("Regex") or node.get("pattern", {}).get("String")]
    return []


def adds_bos(tokenizer) -> bool:
    """Whether encoding plain text prepends bos, read from what the tokenizer does (transformers 5's
    `add_bos_token` attribute says False for R1's tokenizer, whose post-processor adds it all the same)."""
    return tokenizer("a").input_ids[:1] == [tokenizer.bos_token_id]


def _looks_special(token: str) -> bool:
    """llama.cpp's converter marks these CONTROL even when the tokenizer does not flag them special."""
    return (token.startswith("<｜") and token.endswith("｜>")) or (token.startswith("<|") and token.endswith("|>"))


def vocabulary(tokenizer, n_vocab: int) -> tuple[list[str], list[int], dict[str, int]]:
    """(tokens, token types, counts): one entry per embedding row, as llama.cpp's gpt2 vocabulary wants it."""
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    if max(by_id) >= n_vocab:
        raise R1TuneError(f"the tokenizer has ids up to {max(by_id)} but the model has {n_vocab} embedding rows")
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(TokenType.CONTROL if added[i].special or _looks_special(by_id[i]) else TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(TokenType.NORMAL)
    counts = {kind.name.lower(): sum(1 for t in types if t == kind) for kind in
              (TokenType.NORMAL, TokenType.CONTROL, TokenType.USER_DEFINED, TokenType.UNUSED)}
    return tokens, [int(t) for t in types], counts


def merges(folder: Path) -> list[str]:
    """BPE merges as `a b` strings, as llama.cpp stores them (tokenizer.json has pairs since tokenizers 0.20)."""
    path = folder / "tokenizer.json"
    spec = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    pairs = [m if isinstance(m, str) else " ".join(m) for m in (spec.get("model") or {}).get("merges") or []]
    if not pairs:
        raise R1TuneError(f"{folder}: the tokenizer has no BPE merges")
    return pairs


# ---------------------------------------------------------------- writing


def write_gguf(folder: Path, out, tokenizer, gguf_type: str, template: str, name: str,
               temperature: float, top_p: float) -> dict:
    """Write the GGUF of the model in `folder` to the open binary file `out`; returns what was written."""
    if gguf_type not in GGUF_TYPES:
        raise R1TuneError(f"--type must be one of {', '.join(GGUF_TYPES)}, not {gguf_type!r}")
    config = read_model_config(folder)
    plan = tensor_plan(folder, config, gguf_type)
    arch, _ = ARCHITECTURES[config["architectures"][0]]
    n_vocab = config["vocab_size"]
    tokens, types, counts = vocabulary(tokenizer, n_vocab)
    pre, pre_how = pre_tokenizer(folder, tokenizer)

    writer = gguf.GGUFWriter(None, gguf.MODEL_ARCH_NAMES[arch])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_file_type(_FILE_TYPE[gguf_type])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_hyperparameters(writer, config, arch)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges(folder))
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    writer.add_add_bos_token(adds_bos(tokenizer))
    writer.add_add_eos_token(False)
    writer.add_chat_template(template)
    writer.add_sampling_temp(temperature)
    writer.add_sampling_top_p(top_p)
    for item in plan:
        writer.add_tensor_info(item["name"], item["shape"], np.dtype(np.float32), _nbytes(item["shape"], item["type"]),
                               raw_dtype=item["type"])

    # the writer's own layout (header, key-values, tensor infos, aligned data), streamed one tensor at a time
    # into `out` (a temporary file renamed when complete) so no more than one tensor is in memory
    writer.fout = [out]
    writer.state = gguf.WriterState.EMPTY
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.write_padding(out, out.tell())
    tensor_types: dict[str, int] = {}
    for item in plan:
        data = _tensor_data(item)
        out.write(memoryview(np.ascontiguousarray(data)).cast("B"))
        writer.write_padding(out, data.nbytes)
        tensor_types[item["type"].name] = tensor_types.get(item["type"].name, 0) + 1
        del data
    out.flush()
    return {"architecture": gguf.MODEL_ARCH_NAMES[arch], "tokenizer_pre": pre, "tokenizer_pre_from": pre_how,
            "n_vocab": n_vocab, "token_types": counts, "tensors": len(plan), "tensor_types": tensor_types,
            "parameters": sum(int(np.prod(item["shape"])) for item in plan if "source" in item)}


def _add_hyperparameters(writer, config: dict, arch) -> None:
    n_head = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    rope = config.get("rope_parameters") or {}
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(config.get("num_key_value_heads") or n_head)
    writer.add_rope_freq_base(float(rope.get("rope_theta", config.get("rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    if arch == gguf.MODEL_ARCH.LLAMA:
        writer.add_rope_dimension_count(head_dim)
    if config.get("head_dim") and config["head_dim"] != config["hidden_size"] // n_head:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)


def temporary_path(handle) -> Path:
    """The hidden temporary file behind an r1tune.files output handle (found by its inode), so the GGUF can
    be read back and checked before it is renamed into place."""
    ino = os.fstat(handle.fileno()).st_ino
    target = Path(handle.raw.target)
    for candidate in target.parent.glob(f".{target.name}.tmp-*"):
        if candidate.stat().st_ino == ino:
            return candidate
    raise R1TuneError(f"{target}: its temporary file vanished while being written")


# ---------------------------------------------------------------- reading back


def read_metadata(path: Path) -> dict:
    """The key-values that matter to llama.cpp and Ollama, as GGUFReader reads them from the file."""
    reader = gguf.GGUFReader(path)

    def value(key):
        field = reader.get_field(key)
        return None if field is None else field.contents()

    arch = value("general.architecture")
    tokens = reader.get_field("tokenizer.ggml.tokens")
    return {"architecture": arch, "file_type": value("general.file_type"),
            "tokenizer_model": value("tokenizer.ggml.model"), "tokenizer_pre": value("tokenizer.ggml.pre"),
            "n_tokens": len(tokens.data) if tokens else 0,
            "embedding_rows": next((int(t.shape[1]) for t in reader.tensors if t.name == "token_embd.weight"), None),
            "bos_token_id": value("tokenizer.ggml.bos_token_id"), "eos_token_id": value("tokenizer.ggml.eos_token_id"),
            "padding_token_id": value("tokenizer.ggml.padding_token_id"),
            "add_bos_token": value("tokenizer.ggml.add_bos_token"), "chat_template": value("tokenizer.chat_template"),
            "temperature": value("general.sampling.temp"), "top_p": value("general.sampling.top_p"),
            "tensor_types": sorted({t.tensor_type.name for t in reader.tensors})}


def metadata_problems(meta: dict, expected: dict) -> list[str]:
    """Differences between what the file says and what it should say ([] = none)."""
    problems = [f"{key}: the file says {meta.get(key)!r}, expected {want!r}"
                for key, want in expected.items() if key != "chat_template" and meta.get(key) != want]
    if meta.get("chat_template") != expected.get("chat_template"):
        problems.append("tokenizer.chat_template is not the run's chat template")
    if meta["n_tokens"] != meta["embedding_rows"]:
        problems.append(f"{meta['n_tokens']} tokens for {meta['embedding_rows']} embedding rows")
    return problems


@torch.no_grad()
def gguf_prompt_logits(path: Path, prompts: list[list[int]]) -> list[torch.Tensor]:
    """Logits of the GGUF loaded by transformers' own GGUF reader (dequantized to fp32), for each prompt."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    logits = [model(input_ids=torch.tensor([ids])).logits[0].float() for ids in prompts]
    del model
    return logits
