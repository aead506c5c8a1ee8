"""The evaluation report: one self-contained HTML file (tables, and plots as inline PNG) from metrics.json.

    render_report(json.load(open("runs/eval/metrics.json")), "runs/eval/report.html")

No scripts, no external files, no network: the file opens in any browser, offline, and can be mailed or
archived as it is. Every piece of user text (prompts, answers, reasoning traces, labels, names) goes through
Jinja's autoescaping, so a model output holding `<script>` shows as text. Plots: metric bars with bootstrap
intervals, differences against the baseline, in-domain gain next to the general set (forgetting), reasoning
format, confusion matrices, length distributions, speed, training loss curves, human ratings.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import jinja2

from r1tune.files import write_text

PERCENT_SCALE = {"bleu", "chrf"}
FORMAT_METRICS = ("well_formed", "think_closed", "answer_present", "language_consistent", "unclosed_think")
METRIC_NAMES = {
    "accuracy": "accuracy", "macro_f1": "macro-F1", "bleu": "BLEU", "chrf": "chrF", "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "bertscore": "BERTScore F1", "entity_f1": "entity F1",
    "relation_f1": "relation F1", "exact_match": "exact match", "json_valid": "valid JSON",
    "schema_valid": "schema-valid JSON", "well_formed": "well-formed think block + answer",
    "think_closed": "think block closed", "answer_present": "answer present",
    "unclosed_think": "think block never closed (lower is better)",
    "language_consistent": "language consistent", "task_completed": "task completed (all checks)",
}
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei",
             "WenQuanYi Micro Hei", "Droid Sans Fallback", "SimHei", "Microsoft YaHei", "PingFang SC", "AR PL UMing CN")
COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]


def metric_name(key: str) -> str:
    if key.startswith("check:"):
        return f"check: {key[6:]}"
    return METRIC_NAMES.get(key, key)


def fmt(value, key: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.1f}" if key in PERCENT_SCALE else f"{value:.3f}"


# ---------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    cjk = next((name for name in CJK_FONTS if name in installed), None)
    plt.rcParams["font.sans-serif"] = [cjk, "DejaVu Sans"] if cjk else ["DejaVu Sans"]
    plt.rcParams["axes.unicode_minus"] = False
    _pyplot.cjk = cjk  # type: ignore[attr-defined]
    return plt


def plot_label(text: str, index: int) -> str:
    """Text a plot can draw: without a CJK font installed, Chinese labels would show as empty boxes, so they
    become '#index' (the tables beside the plot keep the real names)."""
    if getattr(_pyplot, "cjk", None) or all(ord(c) < 0x2E80 for c in text):
        return text
    return f"#{index + 1}"


def data_uri(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def bars_with_intervals(groups: list[str], systems: list[str], values: dict, title: str, ylabel: str = "",
                        ylim: tuple[float, float] | None = None) -> str:
    """Grouped bars: one group per metric, one bar per system; values[system][group] = {"value", "low", "high"}."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(groups) * max(1, len(systems)) ** 0.5 + 2), 3.4))
    width = 0.8 / max(1, len(systems))
    for k, system in enumerate(systems):
        xs, ys, lo, hi = [], [], [], []
        for g, group in enumerate(groups):
            m = values.get(system, {}).get(group)
            if not m:
                continue
            xs.append(g + (k - (len(systems) - 1) / 2) * width)
            ys.append(m["value"])
            lo.append(max(0.0, m["value"] - m.get("low", m["value"])))
            hi.append(max(0.0, m.get("high", m["value"]) - m["value"]))
        ax.bar(xs, ys, width * 0.92, label=plot_label(system, k), color=COLORS[k % len(COLORS)],
               yerr=[lo, hi], capsize=3, error_kw={"elinewidth": 1})
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([metric_name(g) for g in groups], rotation=20 if len(groups) > 4 else 0, ha="right"
                       if len(groups) > 4 else "center")
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return data_uri(fig)


def difference_plot(comparison: dict, metrics: list[str], name: str, baseline: str) -> str:
    """Each metric's difference against the baseline with its interval (a forest plot); 0 = no change."""
    plt = _pyplot()
    keys = [m for m in metrics if m in comparison["metrics"]]
    fig, ax = plt.subplots(figsize=(6, 0.42 * len(keys) + 1.2))
    for row, key in enumerate(keys):
        d = comparison["metrics"][key]
        scale = 0.01 if key in PERCENT_SCALE else 1.0  # BLEU / chrF points → fractions, one axis for all
        color = "#2a9d4b" if d["low"] > 0 else "#c44e52" if d["high"] < 0 else "#777777"
        ax.errorbar(d["diff"] * scale, row, xerr=[[(d["diff"] - d["low"]) * scale], [(d["high"] - d["diff"]) * scale]],
                    fmt="o", color=color, capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(keys)))
    ax.set_yticklabels([metric_name(k) + (" (/100)" if k in PERCENT_SCALE else "") for k in keys])
    ax.invert_yaxis()
    ax.set_xlabel(f"{plot_label(name, 1)} − {plot_label(baseline, 0)}")
    ax.set_title("difference against the baseline, with bootstrap interval")
    ax.grid(axis="x", alpha=0.3)
    return data_uri(fig)


def confusion_plot(confusion: dict, system: str) -> str:
    plt = _pyplot()
    import numpy as np

    matrix = np.asarray(confusion["matrix"], dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 * len(confusion["columns"]) + 2, 0.8 * len(confusion["labels"]) + 1.5))
    ax.imshow(matrix, cmap="Blues")
    for (r, c), v in np.ndenumerate(matrix):
        ax.text(c, r, int(v), ha="center", va="center", color="white" if v > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(confusion["columns"])))
    ax.set_xticklabels([plot_label(c, k) for k, c in enumerate(confusion["columns"])], rotation=20)
    ax.set_yticks(range(len(confusion["labels"])))
    ax.set_yticklabels([plot_label(c, k) for k, c in enumerate(confusion["labels"])])
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(f"confusion matrix: {plot_label(system, 0)}")
    return data_uri(fig)


def length_plot(results: dict) -> str:
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    series = [("reference", results["reference_lengths"]["answer_chars"])]
    series += [(s, results["by_system"][s]["lengths"]["answer_chars"]) for s in results["systems"]]
    top = max([max(v) for _, v in series if v] + [1])
    bins = list(range(0, top + max(1, top // 30) + 1, max(1, top // 30)))
    for k, (name, values) in enumerate(series):
        left.hist(values, bins=bins, histtype="step", linewidth=1.6, label=plot_label(name, k),
                  color="black" if k == 0 else COLORS[(k - 1) % len(COLORS)])
    left.set_title("answer length (characters)")
    left.set_ylabel("samples")
    left.legend(fontsize=8, frameon=False)
    reasoning = [(s, results["by_system"][s]["lengths"]["reasoning_chars"]) for s in results["systems"]]
    top = max([max(v) for _, v in reasoning if v] + [1])
    bins = list(range(0, top + max(1, top // 30) + 1, max(1, top // 30)))
    for k, (name, values) in enumerate(reasoning):
        right.hist(values, bins=bins, histtype="step", linewidth=1.6, label=plot_label(name, k),
                   color=COLORS[k % len(COLORS)])
    right.set_title("reasoning length (characters)")
    right.legend(fontsize=8, frameon=False)
    return data_uri(fig)


def speed_plot(results: dict) -> str | None:
    plt = _pyplot()
    systems = results["systems"]
    # batched throughput where this run generated; a single stream's speed for outputs timed elsewhere
    speeds = [results["by_system"][s]["speed"] or results["by_system"][s]["latency"] for s in systems]
    throughput = [v.get("tokens_per_s") for v in speeds]
    chars = [v.get("chars_per_s") for v in speeds]
    p50 = [results["by_system"][s]["latency"].get("p50_s") for s in systems]
    p95 = [results["by_system"][s]["latency"].get("p95_s") for s in systems]
    if not any(v is not None for v in throughput + chars + p50):
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    xs = range(len(systems))
    left.bar([x - 0.2 for x in xs], [v or 0 for v in throughput], 0.4, label="tokens/s", color=COLORS[0])
    left.bar([x + 0.2 for x in xs], [v or 0 for v in chars], 0.4, label="characters/s", color=COLORS[1])
    left.set_xticks(list(xs))
    left.set_xticklabels([plot_label(s, k) for k, s in enumerate(systems)])
    left.set_title("generation speed")
    left.legend(fontsize=8, frameon=False)
    right.bar([x - 0.2 for x in xs], [v or 0 for v in p50], 0.4, label="p50", color=COLORS[2])
    right.bar([x + 0.2 for x in xs], [v or 0 for v in p95], 0.4, label="p95", color=COLORS[3])
    right.set_xticks(list(xs))
    right.set_xticklabels([plot_label(s, k) for k, s in enumerate(systems)])
    right.set_ylabel("seconds")
    right.set_title("latency per request (batch size 1)")
    right.legend(fontsize=8, frameon=False)
    return data_uri(fig)


def loss_plot(training: dict) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for k, (run, curve) in enumerate(training.items()):
        color = COLORS[k % len(COLORS)]
        if curve.get("train"):
            steps, losses = zip(*curve["train"])
            ax.plot(steps, losses, color=color, alpha=0.6, linewidth=1, label=f"{plot_label(run, k)} train")
        if curve.get("eval"):
            steps, losses = zip(*curve["eval"])
            ax.plot(steps, losses, "o-", color=color, linewidth=1.6, label=f"{plot_label(run, k)} eval")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return data_uri(fig)


# ---------------------------------------------------------------- page


def figures(results: dict, human: dict | None) -> dict:
    systems = results["systems"]
    by = results["by_system"]
    task_metrics = [m for m in results["metrics"] if m not in FORMAT_METRICS]
    unit = [m for m in task_metrics if m not in PERCENT_SCALE]
    percent = [m for m in task_metrics if m in PERCENT_SCALE]
    values = {s: by[s]["metrics"] for s in systems}
    out: dict = {}
    if unit:
        out["task"] = bars_with_intervals(unit, systems, values, "task metrics (0–1)", ylim=(0, 1.05))
    if percent:
        out["percent"] = bars_with_intervals(percent, systems, values, "corpus metrics (0–100)", ylim=(0, 105))
    other = [m for m in by[results["baseline"]]["metrics"] if m in FORMAT_METRICS or m == "task_completed"
             or m.startswith("check:")]
    out["format"] = bars_with_intervals(other, systems, values, "reasoning format and task completion",
                                        ylim=(0, 1.05))
    out["differences"] = {name: difference_plot(c, list(by[results["baseline"]]["metrics"]), name, c["vs"])
                          for name, c in results["comparisons"].items()}
    if all("general" in by[s] for s in systems):
        primary = results["primary_metric"]
        scale = 0.01 if primary in PERCENT_SCALE else 1.0
        domain = {s: {"domain": {k: v * scale for k, v in by[s]["metrics"][primary].items()},
                      "general": by[s]["general"]["accuracy"]} for s in systems}
        out["forgetting"] = bars_with_intervals(["domain", "general"], systems, domain,
                                                f"in the domain ({metric_name(primary)}) vs the general set "
                                                "(accuracy)", ylim=(0, 1.05))
    out["confusion"] = {s: confusion_plot(by[s]["classification"]["confusion"], s) for s in systems
                        if "classification" in by[s]}
    out["lengths"] = length_plot(results)
    out["speed"] = speed_plot(results)
    out["training"] = loss_plot(results["training"]) if results.get("training") else None
    if human and human.get("means"):
        from r1tune.evaluate.human import CRITERIA

        out["human"] = bars_with_intervals(list(CRITERIA), list(human["means"]), human["means"],
                                           "human ratings (1–5)", ylim=(0, 5.3))
    return out


TEMPLATE = Path(__file__).with_name("report.html.j2")  # the page, Jinja with autoescaping


def render_report(results: dict, path: str | Path, human: dict | None = None) -> Path:
    """Write the self-contained HTML report for an evaluation's results (the content of metrics.json)."""
    import statistics

    from r1tune.evaluate.human import CRITERIA

    by = results["by_system"]
    systems = results["systems"]
    base_metrics = list(by[results["baseline"]]["metrics"])
    general_groups = sorted({g for s in systems for g in by[s].get("general", {}).get("groups", {})})
    extraction = [s for s in systems if "extraction" in by[s]]
    sections = [("summary", "Metrics")]
    if results.get("forgetting") or any("general" in by[s] for s in systems):
        sections.append(("general", "Gain vs forgetting"))
    sections.append(("format", "Reasoning format"))
    if any("classification" in by[s] for s in systems):
        sections.append(("classification", "Classification"))
    if extraction:
        sections.append(("extraction", "Extraction"))
    sections += [("lengths", "Lengths"), ("speed", "Speed")]
    if results.get("training"):
        sections.append(("training", "Training"))
    if results["comparisons"]:
        sections.append(("regressions", "Regressions"))
    if human:
        sections.append(("human", "Human evaluation"))
    business_keys = [m for m in base_metrics if m == "task_completed" or m.startswith("check:")]
    if business_keys or results.get("feedback"):
        sections.append(("business", "Business"))
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    page = environment.from_string(TEMPLATE.read_text(encoding="utf-8")).render(
        r=results, figs=figures(results, human), human=human, sections=sections, metric_keys=base_metrics,
        metric_name=metric_name, fmt=fmt, percent=PERCENT_SCALE, criteria=CRITERIA,
        general_rows=any("general" in by[s] for s in systems), general_groups=general_groups,
        classification=[s for s in systems if "classification" in by[s]], extraction=extraction,
        extraction_types=sorted({t for s in extraction for t in by[s]["extraction"]["per_type"]}),
        has_relations=any(by[s]["extraction"]["has_relations"] for s in extraction), business_keys=business_keys,
        median=lambda v: f"{statistics.median(v):.0f}" if v else "–",
        mean=lambda v: f"{statistics.fmean(v):.1f}" if v else "–",
        num=lambda v, digits=1: f"{v:.{digits}f}" if isinstance(v, (int, float)) else "–",
    )
    return write_text(path, page)
