"""`r1tune evaluate`: base vs tuned (vs any number of runs) on a test set → OUT/metrics.json + OUT/report.html.

    r1tune evaluate --model runs/x/base-model --adapter runs/x/tuned --data test.jsonl --out runs/x/eval
    r1tune evaluate --data test.jsonl --predictions vllm=vllm.jsonl --predictions human=human.jsonl --out DIR
    r1tune evaluate configs/medical-records/evaluate.yaml

1. test samples: the test file (any training format), or the references in predictions files;
2. each system in turn — the base model, the tuned run on it, every compared run — generates on the test
   set (batched, KV cache, R1 sampling or greedy, several draws per prompt if asked), and the reasoning
   parser splits reasoning from answer; a latency pass generates a few prompts one at a time. A predictions
   file (another system, a vLLM run, a human baseline) stands in for a system without loading a model;
3. metrics on the answers (task metrics, reasoning format, business checks) as per-sample statistics;
4. the same models on the general set (verifiable questions, zh + en): what tuning cost outside the domain;
5. every system against the first on the same prompts: paired bootstrap intervals of each difference, and
   the worst regressions with their prompts and reasoning traces;
6. feedback-log satisfaction, training loss curves; then metrics.json, predictions/<system>.jsonl (what
   `r1tune human-eval export` reads) and the self-contained report.html.
"""

from __future__ import annotations

import gc
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from r1tune.config import EvaluateConfig
from r1tune.errors import R1TuneError
from r1tune.evaluate.bootstrap import MetricStats, confidence_interval, paired_difference, resample_weights
from r1tune.evaluate.business import read_feedback, require_code_allowed, run_checks, satisfaction
from r1tune.evaluate.generate import generate, generation_progress
from r1tune.evaluate.items import load_items, predictions_outputs
from r1tune.evaluate.report import render_report
from r1tune.evaluate.scoring import (
    DEFAULT_METRICS,
    PRIMARY,
    EvalItem,
    Output,
    ScoringOptions,
    detect_task,
    item_score_key,
    score_outputs,
)
from r1tune.evaluate.speed import latency_summary, measure_latency, throughput
from r1tune.evaluate.verifiable import verifiable_match
from r1tune.files import check_outputs, replaced, write_text
from r1tune.model import methods
from r1tune.model.runs import load_for_inference, resolve_run
from r1tune.model.template import RESOURCES

GENERAL_SET = RESOURCES / "datasets" / "general" / "general.jsonl"


@dataclass
class System:
    name: str
    kind: str  # "model" or "predictions"
    path: str
    base: str | None = None  # base model an adapter is loaded on


def plan_systems(cfg: EvaluateConfig) -> list[System]:
    systems: list[System] = []
    if cfg.model:
        systems.append(System("base" if cfg.adapter or cfg.compare else "model", "model", cfg.model))
    if cfg.adapter:
        systems.append(System("tuned", "model", cfg.adapter, base=cfg.model or None))
    for path in cfg.compare:
        systems.append(System(resolve_run(path).name, "model", path, base=cfg.model or None))
    for spec in cfg.predictions:
        name, sep, path = spec.partition("=")
        if not sep or "/" in name or not name:
            name, path = Path(spec).stem, spec
        systems.append(System(name, "predictions", path))
    if not systems:
        raise R1TuneError("nothing to evaluate: give --model (with --adapter / --compare) or --predictions")
    if cfg.names:
        if len(cfg.names) != len(systems):
            raise R1TuneError(f"names: {len(cfg.names)} names for {len(systems)} systems "
                              f"({', '.join(s.name for s in systems)})")
        for system, name in zip(systems, cfg.names):
            system.name = name
    seen: dict[str, int] = {}
    for system in systems:  # two runs both called "final" must not overwrite each other's outputs
        seen[system.name] = seen.get(system.name, 0) + 1
        if seen[system.name] > 1:
            system.name = f"{system.name}-{seen[system.name]}"
    for system in systems:
        system.name = re.sub(r"[^\w.\-@]+", "_", system.name)
    return systems


# ---------------------------------------------------------------- generation


def task_of(items: list[EvalItem], cfg: EvaluateConfig) -> str:
    return cfg.task if cfg.task != "auto" else detect_task(items, cfg.labels)


def new_token_cap(items: list[EvalItem], cfg: EvaluateConfig, tokenizer) -> tuple[int, str]:
    """(max_new_tokens on the test set, how it was chosen) for the start line. Auto for classification: the
    longest label in tokens + the reasoning budget — else a random-init or rambling model writes the full open
    cap for every prompt (500 prompts ran past 15 minutes on a CPU)."""
    g = cfg.generation
    if g.max_new_tokens:
        return g.max_new_tokens, "set by --max-new-tokens / generation.max_new_tokens"
    task = task_of(items, cfg)
    labels = cfg.labels or sorted({item.label for item in items if item.label})
    if task == "classification" and labels:
        longest = max(len(tokenizer(label, add_special_tokens=False)["input_ids"]) for label in labels)
        return longest + g.reasoning_budget, (f"labels ≤ {longest} tokens + {g.reasoning_budget} reasoning budget; "
                                              "set --max-new-tokens to change")
    return g.open_max_new_tokens, f"the {task} default; set --max-new-tokens to change"


def generate_outputs(model, tokenizer, items: list[EvalItem], cfg: EvaluateConfig, max_new_tokens: int,
                     draws: int, label: str) -> tuple[list[list[Output]], float]:
    """Each prompt `draws` times, in one batched pass, with a progress line; (outputs per item, wall seconds)."""
    g = cfg.generation
    conversations = [item.messages for item in items for _ in range(draws)]
    t0 = time.perf_counter()
    with generation_progress(label, len(conversations)) as advance:
        generations = generate(model, tokenizer, conversations, max_new_tokens=max_new_tokens,
                               do_sample=g.sampling == "r1", temperature=g.temperature, top_p=g.top_p,
                               batch_size=g.batch_size, seed=g.seed, on_batch=advance)
    seconds = time.perf_counter() - t0
    outputs = [Output(x.text, x.parsed, x.new_tokens) for x in generations]
    return [outputs[k * draws:(k + 1) * draws] for k in range(len(items))], seconds


def run_model(system: System, items: list[EvalItem], general: list[EvalItem] | None, cfg: EvaluateConfig,
              draws: int, console) -> dict:
    if any(item.messages is None for item in items):
        raise R1TuneError("generating needs the prompts: give --data with the test set")
    console.print(f"  loading {system.name}: {system.path}")
    model, tokenizer = load_for_inference(system.path, dtype=cfg.generation.dtype, base=system.base)
    model, merged = methods.merge_if_possible(model) if cfg.generation.merge_adapter else (model, False)
    g = cfg.generation
    cap, why = new_token_cap(items, cfg, tokenizer)
    console.print(f"  generating up to {cap} new tokens: {why}", soft_wrap=True)
    outputs, seconds = generate_outputs(model, tokenizer, items, cfg, cap, draws, f"  {system.name}")
    speed = throughput([o for outs in outputs for o in outs], seconds)
    latency = {"requests": 0}
    if g.latency_requests:
        timings = measure_latency(model, tokenizer, [i.messages for i in items[:g.latency_requests]],
                                  max_new_tokens=cap, do_sample=g.sampling == "r1",
                                  temperature=g.temperature, top_p=g.top_p, seed=g.seed)
        latency = latency_summary([t["seconds"] for t in timings])
        latency["tokens_per_s"] = sum(t["new_tokens"] for t in timings) / sum(t["seconds"] for t in timings)
        latency["chars_per_s"] = sum(t["chars"] for t in timings) / sum(t["seconds"] for t in timings)
    general_outputs = None
    if general:
        general_outputs, _ = generate_outputs(model, tokenizer, general, cfg, cfg.general.max_new_tokens
                                              or g.max_new_tokens or g.open_max_new_tokens, draws,
                                              f"  {system.name} general set")
    del model
    gc.collect()
    return {"outputs": outputs, "speed": speed, "latency": latency, "general": general_outputs,
            "adapter_merged": merged}


def run_predictions(system: System, items: list[EvalItem] | None, general: list[EvalItem] | None,
                    cfg: EvaluateConfig) -> dict:
    items, outputs, rows = predictions_outputs(system.path, items)
    seconds = [float(r["latency_s"]) if "latency_s" in r else float(r["latency_ms"]) / 1000 for r in rows
               if "latency_s" in r or "latency_ms" in r]
    latency = latency_summary(seconds)
    if seconds and len(seconds) == len(rows):  # per-request timings given: speeds a single stream would see
        total = sum(seconds)
        latency["chars_per_s"] = sum(len(o.text) for outs in outputs for o in outs) / total
        tokens = [o.new_tokens for outs in outputs for o in outs]
        if all(t is not None for t in tokens):
            latency["tokens_per_s"] = sum(tokens) / total
    general_outputs = None
    if general and system.name in cfg.general.predictions:
        _, general_outputs, _ = predictions_outputs(cfg.general.predictions[system.name], general)
    return {"items": items, "outputs": outputs, "speed": {}, "latency": latency, "general": general_outputs}


# ---------------------------------------------------------------- scoring


def score_general(items: list[EvalItem], outputs: list[list[Output]]) -> dict:
    correct = [[verifiable_match(o.answer, item.reference, item.meta.get("answer_type", "text"),
                                 item.meta.get("aliases"), item.meta.get("distractors")) for o in outs]
               for item, outs in zip(items, outputs)]
    per_item = [sum(c) / len(c) for c in correct]
    groups: dict[str, list[float]] = {}
    for item, value in zip(items, per_item):
        for key in (f"kind:{item.meta.get('kind', 'other')}", f"lang:{item.meta.get('lang', 'unknown')}"):
            groups.setdefault(key, []).append(value)
    return {"stats": MetricStats.mean("general_accuracy", per_item), "per_item": per_item,
            "groups": {k: sum(v) / len(v) for k, v in sorted(groups.items())}}


def business_stats(items: list[EvalItem], outputs: list[list[Output]], cfg: EvaluateConfig) -> dict:
    if not cfg.business.checks:
        return {}
    samples = [{**item.meta, "id": item.id, "prompt": item.prompt, "reference": item.reference, "label": item.label}
               for item in items for _ in outputs[0]]
    verdicts = run_checks([o.answer for outs in outputs for o in outs], samples, cfg.business.checks,
                          cfg.business.allow_code)
    draws = len(outputs[0])
    stats = {}
    for name, passed in verdicts.items():
        key = name if name == "task_completed" else f"check:{name}"
        per_item = [sum(passed[k * draws:(k + 1) * draws]) / draws for k in range(len(items))]
        stats[key] = MetricStats.mean(key, per_item)
    return stats


def training_curves(paths: list[str]) -> dict:
    """Train / eval loss per step from each finetune run's metrics.jsonl (at most ~1000 points per curve)."""
    curves = {}
    for path in paths:
        run = resolve_run(path)
        folder = run.root
        log = folder / "metrics.jsonl"
        if not log.exists() or folder.name in curves:
            continue
        rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
        curve = {}
        for split in ("train", "eval"):
            points = [[r["step"], r["loss"]] for r in rows if r.get("split") == split and r.get("loss") is not None]
            stride = max(1, len(points) // 1000)
            curve[split] = points[::stride]
        curves[run.name] = curve
    return curves


def lengths(outputs: list[list[Output]]) -> dict:
    first = [outs[0] for outs in outputs]
    return {"answer_chars": [len(o.answer) for o in first], "reasoning_chars": [len(o.parsed.reasoning) for o in first],
            "new_tokens": [o.new_tokens for o in first if o.new_tokens is not None]}


def summarise(stats: dict, weights, confidence: float) -> dict:
    return {name: confidence_interval(metric, weights, confidence) for name, metric in stats.items()}


def compare(candidate: dict, baseline: dict, weights, confidence: float) -> dict:
    return {name: paired_difference(candidate[name], baseline[name], weights, confidence)
            for name in candidate if name in baseline}


def worst_regressions(items: list[EvalItem], base: dict, cand: dict, key: str, limit: int) -> tuple[list[dict], dict]:
    """The samples where the candidate lost most on `key` against the baseline, with both outputs."""
    deltas = [c[key] - b[key] for b, c in zip(base["score"].items, cand["score"].items)]
    counts = {"worse": sum(d < 0 for d in deltas), "better": sum(d > 0 for d in deltas),
              "same": sum(d == 0 for d in deltas)}
    order = sorted((k for k, d in enumerate(deltas) if d < 0), key=lambda k: deltas[k])[:limit]

    def side(run: dict, k: int) -> dict:
        out = run["outputs"][k][0]
        return {"answer": out.answer, "reasoning": out.parsed.reasoning, "closed": out.parsed.closed,
                "score": run["score"].items[k][key]}

    listed = [{"id": items[k].id, "prompt": items[k].prompt, "reference": items[k].reference, "delta": deltas[k],
               "baseline": side(base, k), "candidate": side(cand, k)} for k in order]
    return listed, counts


def write_predictions(folder: Path, name: str, items: list[EvalItem], run: dict) -> None:
    with replaced(folder / f"{name}.jsonl") as f:
        for item, outs, scores in zip(items, run["outputs"], run["score"].items):
            record = {"id": item.id, "prompt": item.prompt, "reference": item.reference, "label": item.label,
                      "prediction": outs[0].text, "answer": outs[0].answer, "reasoning": outs[0].parsed.reasoning,
                      "scores": {k: v for k, v in scores.items() if k != "id"}}
            if len(outs) > 1:
                record["draws"] = [o.text for o in outs]
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def _schema(value) -> dict | None:
    if value is None or isinstance(value, dict):
        return value
    try:
        return json.loads(Path(value).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise R1TuneError(f"json_schema '{value}': {e}") from None


# ---------------------------------------------------------------- the flow


def evaluate(cfg: EvaluateConfig) -> dict:
    from rich.console import Console

    console = Console(stderr=False)
    if cfg.generation.threads:
        import torch

        torch.set_num_threads(cfg.generation.threads)
    out = Path(cfg.out)
    require_code_allowed(cfg.business.checks, cfg.business.allow_code)  # before any model loads or generates
    systems = plan_systems(cfg)
    predictions = out / "predictions"
    # refused now, not after an hour of generation: an output that is one of the inputs
    check_outputs([out / "metrics.json", out / "report.html", *predictions.glob("*.jsonl"),
                   *(predictions / f"{s.name}.jsonl" for s in systems)],
                  inputs=[cfg.data or None, cfg.general.data, cfg.business.feedback, *cfg.general.predictions.values(),
                          *(s.path for s in systems if s.kind == "predictions")])
    draws = cfg.generation.num_samples if cfg.generation.sampling == "r1" else 1

    # 1. test samples
    items = load_items(cfg.data, cfg.format, cfg.max_samples, cfg.encoding, cfg.columns) if cfg.data else None
    if items is None and systems[0].kind == "model":
        raise R1TuneError("no test set: give --data")
    general = None
    wants_general = any(s.kind == "model" for s in systems) or bool(cfg.general.predictions)
    if cfg.general.enabled and wants_general:
        general = load_items(cfg.general.data or GENERAL_SET)

    # 2. outputs of every system
    runs: dict[str, dict] = {}
    for system in systems:
        console.print(f"[bold]{system.name}[/]: {'generating' if system.kind == 'model' else 'reading'} "
                      f"({system.path})")
        if system.kind == "model":
            runs[system.name] = run_model(system, items, general, cfg, draws, console)
        else:
            runs[system.name] = run_predictions(system, items, general, cfg)
            if items is None:
                items = runs[system.name]["items"]
        runs[system.name].pop("items", None)
    assert items is not None

    # 3. metrics
    task = task_of(items, cfg)
    metrics = list(cfg.metrics or DEFAULT_METRICS[task])
    if task == "structured" and cfg.json_schema is not None and "schema_valid" not in metrics:
        metrics.append("schema_valid")
    options = ScoringOptions(labels=cfg.labels, rouge_segmentation=cfg.rouge_segmentation,
                             bleu_tokenize=cfg.bleu_tokenize, bertscore_model=cfg.bertscore.model,
                             bertscore_layers=cfg.bertscore.num_layers, bertscore_batch_size=cfg.bertscore.batch_size,
                             json_schema=_schema(cfg.json_schema))
    for name, run in runs.items():
        console.print(f"  scoring {name}")
        run["score"] = score = score_outputs(items, run["outputs"], task, metrics, options)
        score.stats.update(business_stats(items, run["outputs"], cfg))
        if run["general"] is not None:
            run["general_score"] = score_general(general, run["general"])
    first = runs[systems[0].name]
    primary = cfg.primary_metric or PRIMARY[task]
    if primary not in first["score"].stats:
        primary = next(m for m in metrics if m in first["score"].stats)

    # 4–5. intervals, differences against the first system, regressions, forgetting
    b = cfg.bootstrap
    weights = resample_weights(len(items), b.resamples, b.seed)
    general_weights = resample_weights(len(general), b.resamples, b.seed) if general else None
    by_system = {}
    for name, run in runs.items():
        entry = {"source": next(s.path for s in systems if s.name == name), "adapter_merged": run.get("adapter_merged"),
                 "metrics": summarise(run["score"].stats, weights, b.confidence),
                 "speed": run["speed"], "latency": run["latency"], "lengths": lengths(run["outputs"]),
                 **run["score"].details}
        if "general_score" in run:
            g = run["general_score"]
            entry["general"] = {"accuracy": summarise({"accuracy": g["stats"]}, general_weights, b.confidence)
                                ["accuracy"], "groups": g["groups"]}
        by_system[name] = entry
    comparisons, forgetting = {}, {}
    key = item_score_key(primary, first["score"].stats)
    for system in systems[1:]:
        run = runs[system.name]
        regressions, counts = worst_regressions(items, first, run, key, cfg.regressions)
        comparisons[system.name] = {"vs": systems[0].name, "item_score": key, "item_deltas": counts,
                                    "metrics": compare(run["score"].stats, first["score"].stats, weights, b.confidence),
                                    "regressions": regressions}
        if "general_score" in run and "general_score" in first:
            general_diff = compare({"accuracy": run["general_score"]["stats"]},
                                   {"accuracy": first["general_score"]["stats"]}, general_weights,
                                   b.confidence)["accuracy"]
            comparisons[system.name]["general"] = general_diff
            forgetting[system.name] = {"gain": comparisons[system.name]["metrics"][primary], "general": general_diff}

    # 6. feedback, training curves, files
    results = {
        "task": task, "data": cfg.data or None, "samples": len(items), "draws_per_prompt": draws,
        "systems": [s.name for s in systems], "baseline": systems[0].name, "primary_metric": primary,
        "metrics": [m for m in metrics if m in first["score"].stats],
        "sampling": ({"mode": "r1", "temperature": cfg.generation.temperature, "top_p": cfg.generation.top_p}
                     if cfg.generation.sampling == "r1" else {"mode": "greedy"}),
        "bootstrap": {"resamples": b.resamples, "confidence": b.confidence, "seed": b.seed},
        "general_set": {"data": str(cfg.general.data or GENERAL_SET), "questions": len(general)} if general else None,
        "by_system": by_system, "comparisons": comparisons, "forgetting": forgetting,
        "reference_lengths": {"answer_chars": [len(i.reference) for i in items]},
        "training": training_curves(cfg.train_runs if cfg.train_runs is not None
                                    else [p for p in [cfg.adapter, *cfg.compare] if p]),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if cfg.business.feedback:
        results["feedback"] = satisfaction(read_feedback(cfg.business.feedback, cfg.business.feedback_field,
                                                         cfg.business.system_field), b.resamples, b.confidence, b.seed)
    predictions = out / "predictions"
    for name, run in runs.items():
        write_predictions(predictions, name, items, run)
    for stale in predictions.glob("*.jsonl"):  # a rerun with other systems must not leave old outputs
        if stale.stem not in runs:
            stale.unlink()
    write_text(out / "metrics.json", json.dumps(results, ensure_ascii=False, indent=1))
    human = json.loads((out / "human.json").read_text(encoding="utf-8")) if (out / "human.json").exists() else None
    if human and {human.get("baseline"), human.get("candidate")} - set(results["systems"]):
        human = None  # ratings of systems this evaluation no longer has
    render_report(results, out / "report.html", human=human)
    print_summary(results, console)
    console.print(f"metrics: {out / 'metrics.json'}; report: {out / 'report.html'}; outputs: {out / 'predictions'}")
    return results


def print_summary(results: dict, console) -> None:
    from rich.table import Table

    table = Table(title=f"{results['task']} on {results['samples']} samples "
                        f"({results['bootstrap']['confidence']:.0%} bootstrap intervals)")
    table.add_column("metric")
    for name in results["systems"]:
        table.add_column(name, justify="right")
    names = list(results["by_system"][results["baseline"]]["metrics"])
    for metric in names:
        cells = []
        for name in results["systems"]:
            m = results["by_system"][name]["metrics"].get(metric)
            cell = f"{m['value']:.3f} [{m['low']:.3f}, {m['high']:.3f}]" if m else "–"
            diff = results["comparisons"].get(name, {}).get("metrics", {}).get(metric)
            if diff:
                cell += f" Δ{diff['diff']:+.3f}"
            cells.append(cell)
        table.add_row(metric, *cells)
    if all("general" in results["by_system"][n] for n in results["systems"]):
        table.add_row("general set accuracy", *(f"{results['by_system'][n]['general']['accuracy']['value']:.3f}"
                                                for n in results["systems"]))
    speeds = [results["by_system"][n]["speed"].get("tokens_per_s") for n in results["systems"]]
    if any(v is not None for v in speeds):
        table.add_row("tokens/s", *("–" if v is None else f"{v:.1f}" for v in speeds))
    console.print(table)
    unclosed = {n: results["by_system"][n].get("unclosed_think") for n in results["systems"]}
    if any(u and u["count"] for u in unclosed.values()):
        console.print("think block never closed (the output is all reasoning; its answer scores as empty): "
                      + ", ".join(f"{n} {u['count']} of {u['outputs']} ({u['share']:.1%})"
                                  for n, u in unclosed.items() if u)
                      + " — a model tuned on data without traces must learn to close it (data.reasoning: auto or "
                      "empty); a long trace may need a larger generation.max_new_tokens")
