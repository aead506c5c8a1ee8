"""Merge a LoRA run into a standalone model: plain transformers and vLLM load it without peft.

    r1tune export merge runs/quickstart/tuned                # → runs/quickstart/tuned/merged/
    r1tune export merge runs/x --out exports/x --dtype bfloat16

The adapter is merged into a full-precision (fp32) copy of the base — merging into an 8/4-bit base is lossy,
so a quantized base is refused: merge first, then `r1tune export quantize`. The merged weights are saved in
the base's own dtype (bf16 for the R1-Distill checkpoints; `--dtype` to choose) as standard safetensors with
config.json, generation_config.json (R1's sampling defaults), the tokenizer with its chat template, the run's
config.yaml and provenance.json (so `r1tune serve` still checks the template).

The saved folder is then reloaded with plain transformers and compared with the adapter model on a few
Chinese, English and mixed prompts: the largest absolute logit difference, the share of positions whose top
token agrees, and a check of what vLLM needs in the folder go to OUT/merge_report.json.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM

from r1tune.config import ModelConfig
from r1tune.errors import R1TuneError
from r1tune.files import check_outputs, replaced_folder, write_text
from r1tune.model.load import load_model, load_tokenizer
from r1tune.model.methods import merge_adapter
from r1tune.model.runs import Run, read_provenance, resolve_run
from r1tune.model.template import render_prompt

for _name in ("torchao", "torch.utils._pytree"):  # CUDA-kernel warnings of torchao on a CPU torch
    logging.getLogger(_name).setLevel(logging.ERROR)

# Chinese, English and mixed finance / medicine / law questions: the logit check covers both scripts
CHECK_PROMPTS = [
    "判断这条财经新闻的情感倾向，只回答 positive、negative 或 neutral。\n\n药明康德一季度净利润同比增长43%",
    "Is a 10% drop in quarterly revenue good or bad news for shareholders? Answer briefly.",
    "患者发热三天并伴有咳嗽，应该先做哪些检查？",
    "Explain the 违约金 (liquidated damages) clause of a 合同 in one sentence.",
]
VLLM_ARCHITECTURES = {"Qwen2ForCausalLM", "LlamaForCausalLM"}  # the R1-Distill architectures


def default_merged_dir(run: Run) -> Path:
    return run.root / "merged"


def adapter_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        path = folder / name
        if path.exists():
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def merged_is_current(run: Run | str | Path, merged: Path) -> bool:
    """A merge of exactly this adapter already sits in `merged`."""
    run = run if isinstance(run, Run) else resolve_run(run)
    report = merged / "merge_report.json"
    if not report.exists():
        return False
    return json.loads(report.read_text(encoding="utf-8")).get("adapter_hash") == adapter_hash(run.folder)


def check_prompt_ids(tokenizer, template: str | None = None) -> list[list[int]]:
    return [tokenizer(render_prompt(tokenizer, [{"role": "user", "content": p}], template),
                      add_special_tokens=False)["input_ids"] for p in CHECK_PROMPTS]


@torch.no_grad()
def prompt_logits(model, prompts: list[list[int]]) -> list[torch.Tensor]:
    device = next(model.parameters()).device
    return [model(input_ids=torch.tensor([ids], device=device)).logits[0].float().cpu() for ids in prompts]


def compare_logits(reference: list[torch.Tensor], other: list[torch.Tensor]) -> dict:
    diff = max(float((a - b).abs().max()) for a, b in zip(reference, other))
    agree = sum(int((a.argmax(-1) == b.argmax(-1)).sum()) for a, b in zip(reference, other))
    positions = sum(a.shape[0] for a in reference)
    return {"max_abs_logit_diff": diff, "top1_agreement": agree / positions, "positions": positions}


def base_quantization(base: str) -> dict | None:
    """The base's quantization_config (8/4-bit, GPTQ, AWQ, torchao …), when its config has one."""
    config = Path(base) / "config.json"
    if config.exists():
        return json.loads(config.read_text(encoding="utf-8")).get("quantization_config")
    try:
        return getattr(AutoConfig.from_pretrained(base), "quantization_config", None)
    except OSError:
        return None  # loading the model below reports what is wrong


def base_dtype(base: str) -> torch.dtype:
    """The dtype the base checkpoint is stored in (bf16 for the R1-Distill releases)."""
    config = Path(base) / "config.json"
    if config.exists():
        raw = json.loads(config.read_text(encoding="utf-8"))
        name = raw.get("dtype") or raw.get("torch_dtype")
    else:
        name = getattr(AutoConfig.from_pretrained(base), "dtype", None)
    name = str(name or "float32").removeprefix("torch.")
    return getattr(torch, name) if name in ("float32", "bfloat16", "float16") else torch.float32


def weight_files(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(folder.glob("*.safetensors"))}


def vllm_layout_problems(folder: Path, quantized: bool = False) -> list[str]:
    """What vLLM would miss or trip over in a model folder ([] = nothing)."""
    problems = []
    config_path = folder / "config.json"
    if not config_path.exists():
        return ["no config.json"]
    config = json.loads(config_path.read_text(encoding="utf-8"))
    archs = config.get("architectures") or []
    if not archs:
        problems.append("config.json has no 'architectures'")
    elif not set(archs) <= VLLM_ARCHITECTURES:
        problems.append(f"architecture {archs} is not an R1-Distill one ({', '.join(sorted(VLLM_ARCHITECTURES))})")
    for key in ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "max_position_embeddings"):
        if key not in config:
            problems.append(f"config.json lacks {key}")
    if not (config.get("dtype") or config.get("torch_dtype")):
        problems.append("config.json names no dtype")
    if "quantization_config" in config and not quantized:
        problems.append("config.json carries a quantization_config")
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        problems.append("no .safetensors weights")
    if len(shards) > 1 and not (folder / "model.safetensors.index.json").exists():
        problems.append("sharded weights without model.safetensors.index.json")
    if list(folder.glob("*.bin")) or list(folder.glob("*.pt")):
        problems.append("pickle weights (.bin/.pt) present")
    if (folder / "adapter_config.json").exists():
        problems.append("an adapter_config.json: loaders would take the folder for an adapter")
    for shard in shards:
        with safe_open(str(shard), "pt") as f:
            leftovers = [k for k in f.keys() if "lora_" in k or ".base_layer." in k]
        if leftovers:
            problems.append(f"{shard.name}: PEFT leftovers such as {leftovers[0]}")
    if not ((folder / "tokenizer.json").exists() or (folder / "tokenizer.model").exists()):
        problems.append("no tokenizer.json")
    tok_cfg = folder / "tokenizer_config.json"
    has_template = (folder / "chat_template.jinja").exists() or (
        tok_cfg.exists() and "chat_template" in json.loads(tok_cfg.read_text(encoding="utf-8")))
    if not has_template:
        problems.append("no chat template")
    if not (folder / "generation_config.json").exists():
        problems.append("no generation_config.json (R1's sampling defaults would be lost)")
    return problems


def check_replaceable(out: Path, marker: str, inputs: list) -> None:
    """Before the slow part: `out` is replaced whole (built in OUT.partial, swapped in at the end, see
    r1tune.files.replaced_folder), so it may only be a folder r1tune export wrote (has `marker`) and may hold
    none of the `inputs` (the run, the base, the test data)."""
    if out.exists() and not out.is_dir():
        raise R1TuneError(f"{out}: is a file, expected a folder: choose another --out")
    if out.exists() and any(out.iterdir()) and not (out / marker).exists():
        raise R1TuneError(f"{out} exists and was not written by r1tune export: choose another --out")
    check_outputs([], inputs=[p for p in inputs if p is not None and Path(p).exists()], folders=[out])


def copy_run_files(folder: Path, out: Path, export: dict) -> None:
    """config.yaml as is; provenance.json with what this export did added."""
    if (folder / "config.yaml").exists():
        shutil.copy2(folder / "config.yaml", out / "config.yaml")
    provenance = read_provenance(folder)
    provenance["export"] = provenance.get("export", []) + [export]
    write_text(out / "provenance.json", json.dumps(provenance, indent=1, ensure_ascii=False))


def merge_run(run: Run | str | Path, out: str | Path | None = None, base: str | None = None,
              dtype: str = "auto") -> dict:
    """Merge RUN's LoRA adapter into its base in fp32, save, reload and compare; returns the report."""
    t0 = time.perf_counter()
    run = run if isinstance(run, Run) else resolve_run(run)
    folder = run.folder
    if run.kind != "adapter":
        if (folder / "config.json").exists():
            raise R1TuneError(f"{folder} holds a full model (method full or freeze), not an adapter: it is standalone "
                              "already — serve or quantize it as it is")
        raise R1TuneError(f"{folder}: no adapter (adapter_config.json) to merge")
    out = Path(out) if out else default_merged_dir(run)
    base = run.base_model(base)
    check_replaceable(out, "merge_report.json", [folder, base])
    quant = base_quantization(base)
    if quant:
        raise R1TuneError(f"the base {base} is quantized ({quant.get('quant_method', quant)}): merging LoRA into "
                          "8/4-bit weights is lossy. Merge into the full-precision base (--base), then quantize")

    save_dtype = base_dtype(base) if dtype == "auto" else getattr(torch, dtype)
    base_model = load_model(ModelConfig(name_or_path=base), dtype=torch.float32)
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(folder)))
    model = PeftModel.from_pretrained(base_model, str(folder)).eval()
    prompts = check_prompt_ids(tokenizer)
    adapter_logits = prompt_logits(model, prompts)

    merged = merge_adapter(model)  # refuses prompt-learning adapters and 8/4-bit bases, with the reason
    in_memory = compare_logits(adapter_logits, prompt_logits(merged, prompts))
    with replaced_folder(out) as tmp:
        merged.to(save_dtype).save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        copy_run_files(folder, tmp, {"kind": "merged", "from": str(folder), "adapter_hash": adapter_hash(folder),
                                     "dtype": str(save_dtype).removeprefix("torch.")})
        del model, merged, base_model
        gc.collect()

        # the proof: the saved folder, loaded by plain transformers (no peft), against the adapter model
        reloaded = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32, use_safetensors=True).eval()
        saved = compare_logits(adapter_logits, prompt_logits(reloaded, prompts))
        del reloaded
        report = {
            "run": str(folder), "base_model": base, "adapter_hash": adapter_hash(folder), "merged_in": "float32",
            "saved_dtype": str(save_dtype).removeprefix("torch."),
            "max_abs_logit_diff": saved["max_abs_logit_diff"], "top1_agreement": saved["top1_agreement"],
            "max_abs_logit_diff_before_saving": in_memory["max_abs_logit_diff"],
            "compared": f"adapter model (fp32) vs the saved folder reloaded by plain transformers (fp32), every "
                        f"position of {len(prompts)} prompts ({saved['positions']} positions)",
            "vllm_layout_problems": vllm_layout_problems(tmp), "files": weight_files(tmp),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        write_text(tmp / "merge_report.json", json.dumps(report, indent=1, ensure_ascii=False))
    report["out"] = str(out)
    return report
