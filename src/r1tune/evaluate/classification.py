"""Classification metrics on parsed answers: accuracy, macro-F1, a per-class report and a confusion matrix."""

from __future__ import annotations

from collections import Counter


def normalise_label(answer: str, labels: list[str]) -> str | None:
    """The declared label an answer names: exact match first, then the only label it contains."""
    text = answer.strip().strip("。.!！ \n").lower()
    for label in labels:
        if text == label.lower():
            return label
    found = [label for label in labels if label.lower() in text]
    return found[0] if len(found) == 1 else None


def classification_report(predictions: list[str | None], references: list[str], labels: list[str]) -> dict:
    """Accuracy, macro-F1 over the declared labels (an unparseable prediction counts as wrong)."""
    tp, fp, fn = Counter(), Counter(), Counter()
    for p, r in zip(predictions, references):
        if p == r:
            tp[r] += 1
        else:
            fn[r] += 1
            if p is not None:
                fp[p] += 1
    per_class = {}
    for label in labels:
        prec = tp[label] / (tp[label] + fp[label]) if tp[label] + fp[label] else 0.0
        rec = tp[label] / (tp[label] + fn[label]) if tp[label] + fn[label] else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per_class[label] = {"precision": prec, "recall": rec, "f1": f1, "support": tp[label] + fn[label]}
    n = len(references)
    return {
        "accuracy": sum(tp.values()) / n if n else 0.0,
        "macro_f1": sum(c["f1"] for c in per_class.values()) / len(labels) if labels else 0.0,
        "unparsed": sum(p is None for p in predictions) / n if n else 0.0,
        "per_class": per_class,
    }


def score_generations(generations, references: list[str], labels: list[str]) -> dict:
    """Accuracy / macro-F1 of the parsed answers, plus the share of well-formed reasoning blocks."""
    predictions = [normalise_label(g.answer, labels) for g in generations]
    report = classification_report(predictions, references, labels)
    report["reasoning_well_formed"] = sum(g.parsed.well_formed for g in generations) / max(1, len(generations))
    return report


UNPARSED = "(unparsed)"


def confusion_matrix(predictions: list[str | None], references: list[str], labels: list[str]) -> dict:
    """Counts with a row per reference label and a column per predicted label, plus a column for answers that
    name no declared label: {"labels": [...], "columns": [..., "(unparsed)"], "matrix": [[...], ...]}."""
    columns = [*labels, UNPARSED]
    matrix = [[0] * len(columns) for _ in labels]
    for p, r in zip(predictions, references):
        if r in labels:
            matrix[labels.index(r)][columns.index(p if p in labels else UNPARSED)] += 1
    return {"labels": list(labels), "columns": columns, "matrix": matrix}
