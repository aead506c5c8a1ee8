"""Weight-only INT8 export, with its size and its metric change measured on the run's test set.

    r1tune export quantize runs/quickstart/tuned --int8 --data src/r1tune/resources/datasets/finsent/test.jsonl
    # → runs/quickstart/tuned/int8/ (safetensors + config + tokenizer) and int8/quantize_report.json

These are the parts; the flow (recipes/export.py) merges if needed, quantizes, reloads and measures.

The source is full precision: an adapter run is merged first (`export merge`, kept in RUN/merged). On a
CPU the weights are quantized with torchao (`Int8WeightOnlyConfig`, per-row scales): every linear layer, the
LM head and the input embeddings; norms and biases stay in float. With a CUDA GPU and bitsandbytes
installed, `--backend auto` uses bitsandbytes' LLM.int8() instead. Either way the folder is a standard
transformers checkpoint with a `quantization_config`: `AutoModelForCausalLM.from_pretrained(OUT)` (and
`r1tune serve OUT`) loads it; the export is reloaded that way before it is measured.

quantize_report.json, next to the weights:
- sizes: bytes of the int8 weight files against the same parameters in fp32 and in bf16 (both given: the
  R1-Distill checkpoints ship in bf16, so "75% smaller" holds against fp32, about half against bf16);
- evaluation on the test set (`--data`, else the run's `data.validation` file, else the validation split
  the run held out of its training data), full precision vs int8 on the same samples:
  classification — when every sample carries a `label`: accuracy and macro-F1 of the parsed answers
  (greedy generation), the headline metric being accuracy; token — otherwise: teacher-forced loss and
  next-token accuracy on the reference answers (R1 training rendering), the headline being token accuracy;
  token metrics are reported for classification data too;
- the round trip: logits of the reloaded int8 model against the full-precision source on fixed prompts.
"""

from __future__ import annotations

import gc
import json
import logging
import re
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM, TorchAoConfig

from r1tune.config import DataConfig
from r1tune.data.formats import load_samples
from r1tune.errors import R1TuneError
from r1tune.evaluate.classification import score_generations
from r1tune.evaluate.generate import generate
from r1tune.export.merge import default_merged_dir, merge_run, merged_is_current
from r1tune.model.bitsandbytes_import import import_bitsandbytes
from r1tune.model.load import resolve_dtype
from r1tune.model.runs import Run
from r1tune.model.template import resolve_template
from r1tune.train.data import load_training_data, reasoning_plan, tokenize_samples
from r1tune.train.loss import evaluate_loss

for _name in ("torchao", "torch.utils._pytree"):  # CUDA-kernel warnings of torchao on a CPU torch
    logging.getLogger(_name).setLevel(logging.ERROR)


def default_int8_dir(run: Run) -> Path:
    return run.root / "int8"


def full_precision_source(run: Run) -> Path:
    """A standalone full-precision model folder for RUN: the run itself, or its (re)made merge."""
    folder = run.folder
    if run.kind == "adapter":
        merged = default_merged_dir(run)
        if not merged_is_current(run, merged):
            print(f"merging the adapter first (in full precision) into {merged}", flush=True)
            merge_run(run, merged)
        return merged
    config = folder / "config.json"
    if not config.exists():
        raise R1TuneError(f"{folder}: neither a model (config.json) nor an adapter")
    if "quantization_config" in json.loads(config.read_text(encoding="utf-8")):
        raise R1TuneError(f"{folder} is quantized already: quantize the full-precision model")
    return folder


def count_parameters(folder: Path) -> int:
    """Parameters stored in a folder's safetensors, read from the headers (no weights loaded)."""
    total = 0
    for shard in folder.glob("*.safetensors"):
        with safe_open(str(shard), "pt") as f:
            for key in f.keys():
                n = 1
                for dim in f.get_slice(key).get_shape():
                    n *= dim
                total += n
    return total


def choose_backend(backend: str) -> str:
    if backend != "auto":
        return backend
    if torch.cuda.is_available():
        try:
            import_bitsandbytes()
            return "bitsandbytes"
        except ImportError:
            pass
    return "torchao"


def torchao_int8_config(source: Path):
    """TorchAoConfig quantizing the weight of every Linear and of the input embedding (when not tied)."""
    from torchao.quantization import FqnToConfig, Int8WeightOnlyConfig

    config = AutoConfig.from_pretrained(source)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    tied = bool(getattr(config.get_text_config(decoder=True), "tie_word_embeddings", False))
    names = {name.rsplit(".", 1)[-1] for name, module in skeleton.named_modules()
             if isinstance(module, torch.nn.Linear)}
    embedding = skeleton.get_input_embeddings()
    names |= {name.rsplit(".", 1)[-1] for name, module in skeleton.named_modules() if module is embedding}
    if tied:  # one tensor serves both: keep it in float rather than quantize a shared weight twice
        output = skeleton.get_output_embeddings()
        names -= {name.rsplit(".", 1)[-1] for name, module in skeleton.named_modules()
                  if module is embedding or module is output}
    # a pattern on parameter names (`….weight`), so biases stay in float
    pattern = "re:(?:.*\\.)?(?:" + "|".join(sorted(map(re.escape, names))) + ")\\.weight"
    return TorchAoConfig(FqnToConfig({pattern: Int8WeightOnlyConfig()}), include_input_output_embeddings=not tied,
                         modules_to_not_convert=[])


def quantize_and_save(source: Path, tmp: Path, backend: str) -> str:
    """Write the int8 checkpoint of `source` into `tmp`; returns a description of the backend."""
    if backend == "torchao":
        import torchao

        model = AutoModelForCausalLM.from_pretrained(source, dtype=compute_dtype(),
                                                     quantization_config=torchao_int8_config(source))
        described = f"torchao {torchao.__version__} Int8WeightOnlyConfig (per-row scales)"
    elif backend == "bitsandbytes":
        if not torch.cuda.is_available():
            raise R1TuneError("--backend bitsandbytes needs a CUDA GPU; on a CPU use --backend torchao")
        from transformers import BitsAndBytesConfig

        bitsandbytes = import_bitsandbytes()

        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float16, device_map={"": 0},
                                                     quantization_config=BitsAndBytesConfig(load_in_8bit=True))
        described = f"bitsandbytes {bitsandbytes.__version__} LLM.int8()"
    else:
        raise R1TuneError(f"unknown backend {backend!r}: auto, torchao or bitsandbytes")
    model.save_pretrained(tmp, safe_serialization=True)
    del model
    gc.collect()
    return described


def compute_dtype() -> torch.dtype:
    """Activations: bf16 on GPUs that have it, fp32 on CPUs (bf16 matmuls are slow on most CPUs)."""
    return resolve_dtype("auto")


def load_int8(folder: Path):
    kwargs = {"device_map": {"": 0}} if torch.cuda.is_available() else {}
    return AutoModelForCausalLM.from_pretrained(folder, dtype=compute_dtype(), **kwargs).eval()


def load_full(folder: Path):
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=compute_dtype(), use_safetensors=True).eval()
    return model.to("cuda") if torch.cuda.is_available() else model


# ---------------------------------------------------------------- the test-set metric


def evaluation_set(run: Run, data: str | None, tokenizer, limit: int | None) -> dict:
    """The samples to measure on: {"source", "chat": ChatSamples or None, "tokenized": TokenizedSamples}."""
    cfg = run.config()
    data_cfg = cfg.data if cfg else None
    template = resolve_template(tokenizer, data_cfg.chat_template if data_cfg else "model")
    path = data or (data_cfg.validation if data_cfg else None)
    if path is None:
        if data_cfg is None or not data_cfg.train:
            raise R1TuneError(f"{run.folder}: no run config with data to measure on: pass --data TEST.jsonl")
        held_out = load_training_data(data_cfg, tokenizer, template, cfg.train.seed).validation
        if not held_out:
            raise R1TuneError("the run held out no validation split: pass --data TEST.jsonl")
        return {"source": f"validation split held out of {data_cfg.train} (val_split {data_cfg.val_split}, "
                          f"seed {cfg.train.seed})", "chat": None, "tokenized": held_out[:limit]}
    samples, _ = load_samples(path)
    samples = samples[:limit]
    # rendered as the run trained: its reasoning plan, max_length and truncation (long prompts skipped or cut)
    data_cfg = (data_cfg or DataConfig()).model_copy(update={"on_error": "stop"})
    tokenized, _ = tokenize_samples(samples, tokenizer, template, data_cfg, [],
                                    reasoning_plan(data_cfg.reasoning, samples))
    return {"source": str(path), "chat": samples, "tokenized": tokenized}


def measure(model, tokenizer, eval_set: dict, max_new_tokens: int, batch_size: int) -> dict:
    device = next(model.parameters()).device
    token = evaluate_loss(model, eval_set["tokenized"], batch_size, tokenizer.pad_token_id, device)
    result = {"token_loss": token["loss"], "token_accuracy": token["token_accuracy"]}
    chat = eval_set["chat"]
    if chat and all(isinstance(s.meta.get("label"), str) for s in chat):
        labels = sorted({s.meta["label"] for s in chat})
        outputs = generate(model, tokenizer, [s.prompt_messages for s in chat], max_new_tokens=max_new_tokens,
                           batch_size=batch_size)
        scores = score_generations(outputs, [s.meta["label"] for s in chat], labels)
        result.update({k: scores[k] for k in ("accuracy", "macro_f1", "unparsed", "reasoning_well_formed")})
    return result


def metric_change(full: dict, int8: dict) -> dict:
    metric = "accuracy" if "accuracy" in full else "token_accuracy"
    a, b = full[metric], int8[metric]
    return {"metric": metric, "full_precision": a, "int8": b, "change": b - a,
            "relative_change": (b - a) / a if a else None}
