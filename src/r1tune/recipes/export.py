"""The export flows: merge a LoRA run into a standalone model; quantize to INT8 and measure what it costs.

    r1tune export merge runs/quickstart/tuned
    r1tune export quantize runs/quickstart/tuned --int8 --data src/r1tune/resources/datasets/finsent/test.jsonl

Each prints a short summary; the full figures are in merge_report.json / quantize_report.json next to the
weights. The parts are in r1tune/export/merge.py and quantize.py.

quantize: resolve the run → its full-precision source (the model, or the adapter merged in fp32) → the test
set (fail on bad data before the slow part) → quantize and save into a temporary folder beside OUT → sizes →
full precision on the check prompts and the test set → the written folder reloaded by plain transformers, on
the same prompts and test set → quantize_report.json → the folder renamed into place.
"""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path

from r1tune.config import MergeConfig, ModelConfig, QuantizeConfig
from r1tune.errors import R1TuneError
from r1tune.export.merge import (
    check_prompt_ids,
    check_replaceable,
    compare_logits,
    copy_run_files,
    merge_run,
    prompt_logits,
    vllm_layout_problems,
    weight_files,
)
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
from r1tune.files import replaced_folder, write_text
from r1tune.model.load import load_tokenizer
from r1tune.model.runs import resolve_run


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
