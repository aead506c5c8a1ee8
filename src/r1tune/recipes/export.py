"""The export flows: merge a LoRA run into a standalone model; quantize to INT8 and measure what it costs.

    r1tune export merge runs/quickstart/tuned
    r1tune export quantize runs/quickstart/tuned --int8 --data src/r1tune/resources/datasets/finsent/test.jsonl

Each prints a short summary; the full figures are in merge_report.json / quantize_report.json next to the
weights (see r1tune/export/merge.py and quantize.py).
"""

from __future__ import annotations

from pathlib import Path

from r1tune.errors import R1TuneError


def merge(run: str, out: Path | None = None, base: str | None = None, dtype: str = "auto") -> dict:
    from r1tune.export.merge import merge_run

    report = merge_run(run, out, base=base, dtype=dtype)
    problems = report["vllm_layout_problems"]
    print(f"merged {report['run']} into {report['out']} ({report['saved_dtype']}); max |logit diff| vs the adapter "
          f"model {report['max_abs_logit_diff']:.3g}, top-1 agreement {report['top1_agreement']:.3f}; "
          + ("vLLM layout ok" if not problems else "vLLM layout problems: " + "; ".join(problems)))
    return report


def quantize(run: str, int8: bool = False, out: Path | None = None, data: str | None = None, backend: str = "auto",
             max_samples: int | None = None, max_new_tokens: int = 256, batch_size: int = 16) -> dict:
    if not int8:
        raise R1TuneError("choose the format: --int8 (weight-only INT8 is the one offered)")
    from r1tune.export.quantize import quantize_run

    report = quantize_run(run, out, data=data, backend=backend, max_samples=max_samples,
                          max_new_tokens=max_new_tokens, batch_size=batch_size)
    sizes, ev = report["sizes"], report["evaluation"]
    relative = ev["relative_change"]
    print(f"int8 ({report['backend']}) in {report['out']}: {sizes['int8_bytes']:,} bytes = "
          f"{sizes['smaller_than_fp32_pct']:.1f}% smaller than fp32, {sizes['smaller_than_bf16_pct']:.1f}% smaller "
          f"than bf16; {ev['metric']} on {ev['samples']} samples of {ev['data']}: {ev['full_precision']:.4f} → "
          f"{ev['int8']:.4f} (change {ev['change']:+.4f}"
          + (f", {100 * relative:+.2f}% relative)" if relative is not None else ")")
          + f"; report {Path(report['out']) / 'quantize_report.json'}")
    return report
