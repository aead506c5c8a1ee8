"""report.html of `r1tune search`: the trials table, optimisation history, intermediate losses, parameter
importances and, for a multi-objective study, the Pareto front — one self-contained file (PNG figures inlined).

    write_search_report(study, OUT / "report.html", metric_names=["val_loss", "memory"], best_number=3)

Figures come from Optuna's own matplotlib backend (`optuna.visualization.matplotlib`): its plotly backend
would need plotly installed and its JavaScript fetched from a CDN, and these reports must open offline.
"""

from __future__ import annotations

import html
import warnings
from pathlib import Path

from r1tune.evaluate.report import _pyplot, data_uri
from r1tune.files import write_text

STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:13px}"
         "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}tr.best{background:#e6f4e6}"
         "tr.PRUNED{color:#777}tr.FAIL{color:#a33}img{max-width:100%}")


def _value(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trials_table(study, metric_names: list[str], best_number: int | None) -> str:
    trials = study.get_trials(deepcopy=False)
    keys = sorted({k for t in trials for k in t.params})
    head = ["#", "state", *metric_names, *keys, "seconds", "note"]
    rows = []
    for t in trials:
        values = t.values or ([None] * len(metric_names))
        if t.state.name == "PRUNED" and t.intermediate_values:  # Optuna keeps the last reported value
            values = [None] * len(metric_names)
        note = t.user_attrs.get("fail_reason") or t.user_attrs.get("prune_reason") or ""
        if t.user_attrs.get("advisor"):
            note = ("advisor's recommendation; " + note).rstrip("; ")
        if t.user_attrs.get("redo_of") is not None:
            note = (f"redoes trial {t.user_attrs['redo_of']}; " + note).rstrip("; ")
        cells = [t.number, t.state.name, *values, *(t.params.get(k) for k in keys), t.user_attrs.get("seconds"),
                 note]
        cls = "best" if t.number == best_number else t.state.name
        rows.append(f"<tr class='{cls}'>" + "".join(f"<td>{html.escape(_value(c))}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>"


def figures(study, metric_names: list[str]) -> list[tuple[str, str]]:
    """(title, data URI) of each figure that the study has enough trials for."""
    from optuna.visualization import matplotlib as ovm

    _pyplot()
    multi = len(metric_names) > 1
    plots = []
    if multi:
        plots.append(("Pareto front", lambda: ovm.plot_pareto_front(study, target_names=metric_names[:3])))
        for k, name in enumerate(metric_names):
            plots.append((f"history of {name}", lambda k=k, name=name: ovm.plot_optimization_history(
                study, target=lambda t, k=k: t.values[k], target_name=name)))
    else:
        plots.append(("optimisation history", lambda: ovm.plot_optimization_history(study,
                                                                                   target_name=metric_names[0])))
        negated = study.direction.name == "MAXIMIZE"  # the pruner sees −loss when the metric is maximised
        plots.append((f"validation loss during training{' (negated)' if negated else ''}, as the pruner saw it",
                      lambda: ovm.plot_intermediate_values(study)))
    plots.append(("parameter importances", lambda: ovm.plot_param_importances(
        study, target=(lambda t: t.values[0]) if multi else None, target_name=metric_names[0])))
    out = []
    for title, make in plots:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the matplotlib backend is marked experimental
                axes = make()
        except (ValueError, RuntimeError, ZeroDivisionError, IndexError):
            continue  # too few finished trials (importances need two, with differing parameters)
        fig = axes.flatten()[0].figure if hasattr(axes, "flatten") else axes.figure
        out.append((title, data_uri(fig)))
    return out


def write_search_report(study, path: str | Path, metric_names: list[str], best_number: int | None,
                        summary: list[str]) -> Path:
    body = [f"<h1>r1tune search: {html.escape(study.study_name)}</h1>",
            "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in summary) + "</ul>",
            "<h2>trials</h2>", trials_table(study, metric_names, best_number)]
    for title, uri in figures(study, metric_names):
        body.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='{uri}'>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>r1tune search</title><style>{STYLE}</style>"
            f"</head><body>{''.join(body)}</body></html>")
    return write_text(path, page)
