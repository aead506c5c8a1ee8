"""The export flows: merge a LoRA run into a standalone model; quantize to INT8 and measure what it costs;
write a GGUF for llama.cpp / Ollama.

    r1tune export merge runs/quickstart/tuned
    r1tune export quantize runs/quickstart/tuned --int8 --data src/r1tune/resources/datasets/finsent/test.jsonl
    r1tune export gguf runs/quickstart/tuned --type q8_0

Each prints a short summary; the full figures are in merge_report.json / quantize_report.json /
gguf_report.json next to the weights. The parts are in r1tune/export/merge.py, quantize.py, gguf.py and
ollama.py.

quantize: resolve the run → its full-precision source (the model, or the adapter merged in fp32) → the test
set (fail on bad data before the slow part) → quantize and save into a temporary folder beside OUT → sizes →
full precision on the check prompts and the test set → the written folder reloaded by plain transformers, on
the same prompts and test set → quantize_report.json → the folder renamed into place.

gguf: resolve the run → refuse what cannot become a GGUF before anything slow (a checkpoint, a prompt-learning
adapter, a quantized model or base, an architecture other than Qwen2 / Llama) → its full-precision source
(the adapter merged in fp32, reused when current) → the run's exact chat template → the GGUF streamed into a
temporary file beside OUT → its metadata read back and checked (a wrong key is an error: nothing is written)
→ transformers' GGUF loader on the temporary file against the source model on the check prompts → Modelfile
and gguf_report.json → all three renamed into place together.
"""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM

from r1tune.config import GgufConfig, MergeConfig, ModelConfig, QuantizeConfig
from r1tune.errors import R1TuneError
from r1tune.export.gguf import (
    adds_bos,
    check_convertible,
    check_mergeable_adapter,
    exact_template,
    gguf_prompt_logits,
    metadata_problems,
    pre_tokenizer,
    read_metadata,
    read_model_config,
    temporary_path,
    write_gguf,
)
from r1tune.export.merge import (
    CHECK_PROMPTS,
    check_prompt_ids,
    check_replaceable,
    compare_logits,
    copy_run_files,
    merge_run,
    prompt_logits,
    vllm_layout_problems,
    weight_files,
)
from r1tune.export.ollama import STOP, modelfile
from r1tune.export.quantize import (
    choose_backend,
    count_parameters,
    default_int8_dir,
    evaluation_set,
    full_precision_source,
    load_full,
    load_int8,
    measure,
    metric_change,
    quantize_and_save,
)
from r1tune.files import OutputSet, check_outputs, replaced_folder, write_text
from r1tune.model.load import load_tokenizer
from r1tune.model.methods import MERGEABLE_METHODS
from r1tune.model.runs import Run, read_provenance, resolve_run
from r1tune.model.template import encode_generation_prompt, template_hash, template_name


def merge_adapter(cfg: MergeConfig) -> dict:
    report = merge_run(cfg.run, cfg.out, base=cfg.base, dtype=cfg.dtype)
    problems = report["vllm_layout_problems"]
    print(f"merged {report['run']} into {report['out']} ({report['saved_dtype']}); max |logit diff| vs the adapter "
          f"model {report['max_abs_logit_diff']:.3g}, top-1 agreement {report['top1_agreement']:.3f}; "
          + ("vLLM layout ok" if not problems else "vLLM layout problems: " + "; ".join(problems)))
    return report


def quantize(cfg: QuantizeConfig) -> dict:
    if not cfg.int8:
        raise R1TuneError("choose the format: --int8 (weight-only INT8 is the one offered)")
    report = quantize_run(cfg)
    sizes, ev = report["sizes"], report["evaluation"]
    relative = ev["relative_change"]
    print(f"int8 ({report['backend']}) in {report['out']}: {sizes['int8_bytes']:,} bytes = "
          f"{sizes['smaller_than_fp32_pct']:.1f}% smaller than fp32, {sizes['smaller_than_bf16_pct']:.1f}% smaller "
          f"than bf16; {ev['metric']} on {ev['samples']} samples of {ev['data']}: {ev['full_precision']:.4f} → "
          f"{ev['int8']:.4f} (change {ev['change']:+.4f}"
          + (f", {100 * relative:+.2f}% relative)" if relative is not None else ")")
          + f"; report {Path(report['out']) / 'quantize_report.json'}")
    return report


def quantize_run(cfg: QuantizeConfig) -> dict:
    """INT8 export of the run into cfg.out (default RUN/int8) with quantize_report.json; returns the report."""
    t0 = time.perf_counter()
    run = resolve_run(cfg.run)
    source = full_precision_source(run)
    out = Path(cfg.out) if cfg.out else default_int8_dir(run)
    backend = choose_backend(cfg.backend)
    check_replaceable(out, "quantize_report.json", [run.folder, source, cfg.data])
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(source)))
    eval_set = evaluation_set(run, cfg.data, tokenizer, cfg.max_samples)  # fail on bad data before the slow part

    with replaced_folder(out) as tmp:
        described = quantize_and_save(source, tmp, backend)
        tokenizer.save_pretrained(tmp)
        copy_run_files(source if (source / "provenance.json").exists() else run.folder, tmp,
                       {"kind": "int8", "from": str(source), "backend": described})

        parameters = count_parameters(source)
        int8_bytes = sum(weight_files(tmp).values())
        sizes = {"int8_bytes": int8_bytes, "parameters": parameters, "fp32_bytes": parameters * 4,
                 "bf16_bytes": parameters * 2, "source_bytes": sum(weight_files(source).values()),
                 "ratio_vs_fp32": int8_bytes / (parameters * 4), "ratio_vs_bf16": int8_bytes / (parameters * 2)}
        sizes["smaller_than_fp32_pct"] = 100 * (1 - sizes["ratio_vs_fp32"])
        sizes["smaller_than_bf16_pct"] = 100 * (1 - sizes["ratio_vs_bf16"])

        prompts = check_prompt_ids(tokenizer)
        full_model = load_full(source)
        full_logits = prompt_logits(full_model, prompts)
        full_metrics = measure(full_model, tokenizer, eval_set, cfg.max_new_tokens, cfg.batch_size)
        del full_model
        gc.collect()
        int8_model = load_int8(tmp)  # the round trip: what was written, loaded by plain transformers
        round_trip = compare_logits(full_logits, prompt_logits(int8_model, prompts))
        int8_metrics = measure(int8_model, tokenizer, eval_set, cfg.max_new_tokens, cfg.batch_size)
        quantized = sorted({type(p).__name__ for p in int8_model.parameters()} - {"Parameter"})
        kept_float = sorted(n for n, p in int8_model.named_parameters() if type(p).__name__ == "Parameter")
        del int8_model

        change = metric_change(full_metrics, int8_metrics)
        classification = "accuracy" in full_metrics
        report = {
            "scheme": "int8 weight-only", "backend": described, "source": str(source),
            "sizes": sizes,
            "evaluation": {"data": eval_set["source"], "samples": len(eval_set["tokenized"]),
                           "kind": "classification" if classification else "token",
                           "generation": f"greedy, max_new_tokens {cfg.max_new_tokens}" if classification else None,
                           **change, "metrics": {"full_precision": full_metrics, "int8": int8_metrics}},
            "round_trip": {"reloaded_with": "transformers AutoModelForCausalLM.from_pretrained", **round_trip,
                           "quantized_tensor_types": quantized, "kept_in_float": len(kept_float)},
            "vllm_layout_problems": vllm_layout_problems(tmp, quantized=True),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        write_text(tmp / "quantize_report.json", json.dumps(report, indent=1, ensure_ascii=False))
    report["out"] = str(out)
    return report


# ---------------------------------------------------------------- gguf (issue 18)


def gguf_export(cfg: GgufConfig) -> dict:
    report = gguf_run(cfg)
    sizes, check = report["sizes"], report["round_trip"]
    checked = ("not checked (--no-check)" if "skipped" in check else
               f"transformers round trip: max |logit diff| {check['max_abs_logit_diff']:.3g}, top-1 agreement "
               f"{check['top1_agreement']:.3f} over {check['positions']} positions")
    print(f"gguf {report['type']} in {report['gguf']}: {sizes['gguf_bytes']:,} bytes = "
          f"{sizes['ratio_vs_fp32']:.2f}x fp32, {sizes['ratio_vs_bf16']:.2f}x bf16; pre-tokenizer "
          f"{report['written']['tokenizer_pre']}; {checked}; Ollama: "
          f"{report['ollama']['create']}; report {report['report']}")
    return report


def default_gguf_path(run: Run, gguf_type: str) -> Path:
    return run.root / f"gguf-{gguf_type}" / f"{run.name}-{gguf_type}.gguf"


def gguf_source(run: Run) -> Path:
    """The full-precision model folder the GGUF is written from; refuses, before anything slow, what cannot be."""
    if run.kind == "checkpoint":
        raise R1TuneError(f"{run.folder} is a training checkpoint: export the finished run ({run.root}) — or "
                          "resume it to the end first")
    if run.kind == "hub":
        raise R1TuneError(f"{run.path}: no such run or model folder")
    if run.kind == "adapter":
        check_mergeable_adapter(run.folder)
        method = run.provenance.get("method")
        if method and method not in MERGEABLE_METHODS:
            raise R1TuneError(f"{run.folder}: a {method} run cannot be merged into the weights, and a GGUF holds "
                              f"merged weights only: export a {' / '.join(MERGEABLE_METHODS)} run or a full "
                              "fine-tune")
        base = run.base_model()
        if Path(base, "config.json").exists():
            check_convertible(read_model_config(Path(base)), f"the base model {base}")
    else:
        check_convertible(read_model_config(run.folder), str(run.folder))
    return full_precision_source(run)  # an adapter is merged in fp32 (reused when the merge is current)


def gguf_run(cfg: GgufConfig) -> dict:
    """The GGUF of cfg.run with its Modelfile and gguf_report.json, checked; returns the report."""
    t0 = time.perf_counter()
    run = resolve_run(cfg.run)
    out = Path(cfg.out) if cfg.out else default_gguf_path(run, cfg.type)
    if out.suffix != ".gguf":
        raise R1TuneError(f"{out}: --out names the GGUF file itself and ends in .gguf")
    modelfile_path, report_path = out.parent / "Modelfile", out.parent / "gguf_report.json"
    check_outputs([out, modelfile_path, report_path], inputs=[run.folder])
    source = gguf_source(run)
    check_outputs([out, modelfile_path, report_path], inputs=[run.folder, source])
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(source)))
    pre_tokenizer(source, tokenizer)  # a tokenizer llama.cpp would split differently: refused before any output
    template = exact_template(read_provenance(source) or run.provenance, tokenizer)
    prompts = [encode_generation_prompt(tokenizer, [{"role": "user", "content": p}], template) for p in CHECK_PROMPTS]

    with OutputSet() as outputs:
        handle = outputs.open(out, "wb")
        written = write_gguf(source, handle, tokenizer, cfg.type, template, run.name, cfg.temperature, cfg.top_p)
        written_path = temporary_path(handle)
        meta = read_metadata(written_path)
        expected = {"architecture": written["architecture"], "tokenizer_model": "gpt2",
                    "tokenizer_pre": written["tokenizer_pre"], "bos_token_id": tokenizer.bos_token_id,
                    "eos_token_id": tokenizer.eos_token_id, "add_bos_token": adds_bos(tokenizer),
                    "chat_template": template}
        problems = metadata_problems(meta, expected)
        if problems:
            raise R1TuneError(f"{out}: the written GGUF reads back wrong: {'; '.join(problems)}")
        gguf_bytes = written_path.stat().st_size
        parameters = count_parameters(source)
        sizes = {"gguf_bytes": gguf_bytes, "parameters": parameters, "fp32_bytes": parameters * 4,
                 "bf16_bytes": parameters * 2, "ratio_vs_fp32": gguf_bytes / (parameters * 4),
                 "ratio_vs_bf16": gguf_bytes / (parameters * 2)}
        sizes["smaller_than_fp32_pct"] = 100 * (1 - sizes["ratio_vs_fp32"])
        sizes["smaller_than_bf16_pct"] = 100 * (1 - sizes["ratio_vs_bf16"])
        round_trip = gguf_round_trip(source, written_path, prompts) if cfg.check else {"skipped": "--no-check"}

        create = f"ollama create {run.name} -f {modelfile_path}"
        report = {
            "gguf": str(out), "type": cfg.type, "run": str(run.folder), "source": str(source),
            "merged_adapter": run.kind == "adapter", "sizes": sizes, "written": written,
            "metadata": {**{k: v for k, v in meta.items() if k != "chat_template"},
                         "chat_template": template_name(template), "chat_template_hash": template_hash(template)},
            "round_trip": round_trip,
            "ollama": {"modelfile": str(modelfile_path), "create": create, "stop": list(STOP),
                       "temperature": cfg.temperature, "top_p": cfg.top_p, "num_ctx": cfg.num_ctx},
            "seconds": round(time.perf_counter() - t0, 2), "report": str(report_path),
        }
        outputs.open(modelfile_path).write(modelfile(out.name, template, cfg.temperature, cfg.top_p, cfg.num_ctx))
        outputs.open(report_path).write(json.dumps(report, indent=1, ensure_ascii=False))
    return report


def gguf_round_trip(source: Path, gguf_path: Path, prompts: list[list[int]]) -> dict:
    """The source model (fp32) against the GGUF as transformers' own GGUF loader reads it, on the check prompts."""
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, use_safetensors=True).eval()
    reference = prompt_logits(model, prompts)
    del model
    gc.collect()
    compared = compare_logits(reference, gguf_prompt_logits(gguf_path, prompts))
    return {"loaded_with": f"transformers {transformers.__version__} AutoModelForCausalLM.from_pretrained("
                           "gguf_file=…), weights dequantized to fp32",
            "reference": "the source model in fp32", "prompts": len(prompts), **compared}
