"""The forgetting gate of a continual run, and the lineage's report page (issue 15).

    row = evaluate_sets(model, tokenizer, {"runA": "a/test.jsonl", "general": GENERAL}, max_new_tokens=64)
    verdict = gate_verdict(parent_row, row, tasks=["runA"], previous=0.05, general=0.02)
    write_lineage_report(lineage, "RUN/lineage.html")          # table + plot of every increment on every task

A set's metric: accuracy for a labelled set (the parsed answer names the sample's label among the set's
labels, as evaluate scores classification), the verifiable check for general-set samples (number / text
with aliases and distractors, as evaluate's general set), exact match of the normalised answer otherwise.
Generation is greedy with the R1 prompt serving uses, so the numbers are those of the served model.
The gate compares the new run with its parent on every earlier task and on the general set; a drop larger
than allowed on any of them means "not promoted", and the verdict says which metric fell by how much.
"""

from __future__ import annotations

import html
from pathlib import Path

from r1tune.evaluate.classification import normalise_label
from r1tune.evaluate.generate import generate
from r1tune.evaluate.items import load_items
from r1tune.evaluate.report import COLORS, _pyplot, data_uri
from r1tune.evaluate.scoring import EvalItem
from r1tune.evaluate.structured import exact_match
from r1tune.evaluate.verifiable import verifiable_match
from r1tune.files import write_text

GENERAL = "general"


def item_correct(item: EvalItem, answer: str, labels: list[str]) -> bool:
    if item.label is not None:
        return normalise_label(answer, labels) == item.label
    if "answer_type" in item.meta:
        return verifiable_match(answer, item.reference, item.meta["answer_type"], item.meta.get("aliases"),
                                item.meta.get("distractors"))
    return exact_match(answer, item.reference)


def set_metric(model, tokenizer, items: list[EvalItem], max_new_tokens: int) -> float:
    outputs = generate(model, tokenizer, [item.messages for item in items], max_new_tokens=max_new_tokens,
                       batch_size=32)
    labels = sorted({item.label for item in items if item.label is not None})
    return sum(item_correct(item, o.answer, labels) for item, o in zip(items, outputs)) / max(1, len(items))


def evaluate_sets(model, tokenizer, sets: dict[str, str | Path], max_new_tokens: int,
                  limit: int | None = None) -> dict[str, float]:
    """{set name: metric} for each named test file."""
    return {name: round(set_metric(model, tokenizer, load_items(path, limit=limit), max_new_tokens), 6)
            for name, path in sets.items()}


def gate_verdict(parent_row: dict[str, float], row: dict[str, float], tasks: list[str], previous: float,
                 general: float) -> dict:
    """{"promoted", "drops": {metric: parent − new}, "failed": [why]} over the earlier tasks and the general set."""
    drops, failed = {}, []
    for name in [*tasks, GENERAL]:
        if name not in row or name not in parent_row:
            continue
        allowed = general if name == GENERAL else previous
        drop = round(parent_row[name] - row[name], 6)
        drops[name] = drop
        if drop > allowed + 1e-9:
            what = "general set accuracy" if name == GENERAL else f"task {name}"
            failed.append(f"{what} fell by {drop:.3f} ({parent_row[name]:.3f} → {row[name]:.3f}; "
                          f"gate {'general' if name == GENERAL else 'previous'}: {allowed:g})")
    return {"promoted": not failed, "drops": drops, "failed": failed}


def forgetting_plot(lineage: dict) -> str | None:
    increments = lineage["increments"]
    columns = [inc["name"] for inc in increments if inc.get("test")] + [GENERAL]
    if not any(inc.get("metrics") for inc in increments):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 * len(increments) + 2), 3.4))
    xs = list(range(len(increments)))
    for i, column in enumerate(columns):
        points = [(x, inc["metrics"][column]) for x, inc in zip(xs, increments) if column in inc.get("metrics", {})]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=COLORS[i % len(COLORS)],
                    label=column if column.isascii() else f"#{i + 1}")
    ax.set_xticks(xs, [inc["name"] if inc["name"].isascii() else f"#{x + 1}" for x, inc in zip(xs, increments)])
    ax.set_xlabel("increment (run)")
    ax.set_ylabel("metric")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("every increment on every task")
    ax.legend(fontsize=8)
    return data_uri(fig)


def write_lineage_report(lineage: dict, path: str | Path) -> Path:
    """A self-contained HTML page: the increments (data, settings, gate verdict) and their metrics per task."""
    e = html.escape
    increments = lineage["increments"]
    columns = [inc["name"] for inc in increments if inc.get("test")] + [GENERAL]
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    rows = []
    for inc in increments:
        cells = "".join(f"<td>{inc.get('metrics', {}).get(c, float('nan')):.3f}</td>"
                        if c in inc.get("metrics", {}) else "<td>–</td>" for c in columns)
        verdict = inc.get("gate") or {}
        status = "promoted" if inc.get("promoted") else "not promoted"
        why = "; ".join(verdict.get("failed", []))
        settings = f"replay {inc.get('replay', 0):g}, l2 {inc.get('l2', 0):g}, ewc {inc.get('ewc', 0):g}"
        data = ", ".join(Path(t["path"]).name for t in inc.get("train", []))
        rows.append(f"<tr><td>{e(inc['name'])}</td>{cells}<td>{e(status)}</td><td>{e(why)}</td>"
                    f"<td>{e(data)}</td><td>{e(settings)}</td></tr>")
    plot = forgetting_plot(lineage)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>r1tune lineage</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:4px 8px;text-align:right}td:first-child{text-align:left}</style></head><body>"
        "<h1>Lineage: every increment on every task</h1>"
        "<p>Rows: runs in order; columns: each increment's test set and the general set (accuracy, or exact match "
        "for unlabelled sets). A run is promoted when no earlier task and not the general set fell by more than "
        "the gate allows against its parent.</p>"
        f"<table><tr><th>run</th>{head}<th>status</th><th>why</th><th>training data</th><th>settings</th></tr>"
        + "".join(rows) + "</table>"
        + (f"<p><img alt='forgetting plot' src='{plot}'></p>" if plot else "")
        + "</body></html>\n")
    return write_text(path, page)
