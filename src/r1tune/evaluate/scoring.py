"""Score one system's outputs on a test set: every metric as per-sample statistics, plus the details a
report shows (per-class report and confusion matrix, per-type extraction scores, format checks per sample).

    score = score_outputs(items, outputs, task="generation", metrics=["rougeL", "bleu"], labels=None, options)
    score.stats["rougeL"].value, score.items[0]["rougeL"], score.details["bleu_tokenize"]

`outputs[i]` holds the draws for `items[i]` (one unless several samples per prompt were asked for): mean
metrics average a sample's draws, corpus metrics (BLEU, chrF, macro-F1, entity F1) pool their counts.
Metrics read the *answer* the reasoning parser split off, never the reasoning; an output that never closed
its think block has no answer, and is counted in `details["unclosed_think"]` (and the `unclosed_think` share).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from r1tune.evaluate import text_metrics
from r1tune.evaluate.bootstrap import MetricStats
from r1tune.evaluate.classification import classification_report, confusion_matrix, normalise_label
from r1tune.evaluate.extraction import extraction_report, parse_structure, prf
from r1tune.evaluate.reasoning_format import FORMAT_METRICS, check_format
from r1tune.evaluate.structured import exact_match, json_valid, schema_valid
from r1tune.model.reasoning import ParsedOutput

DEFAULT_METRICS = {
    "classification": ["accuracy", "macro_f1"],
    "generation": ["bleu", "chrf", "rouge1", "rouge2", "rougeL", "bertscore"],
    "extraction": ["entity_f1", "relation_f1", "exact_match"],
    "structured": ["exact_match", "json_valid"],
}
PRIMARY = {"classification": "macro_f1", "generation": "rougeL", "extraction": "entity_f1", "structured": "exact_match"}
PERCENT_SCALE = {"bleu", "chrf"}  # sacrebleu's 0–100 convention; everything else is 0–1


@dataclass
class EvalItem:
    id: str
    messages: list[dict] | None  # the prompt conversation; None when only outputs produced elsewhere are scored
    prompt: str  # the last user message, for reports and sheets
    reference: str
    label: str | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class Output:
    text: str
    parsed: ParsedOutput
    new_tokens: int | None = None

    @property
    def answer(self) -> str:
        return self.parsed.answer


@dataclass
class ScoringOptions:
    labels: list[str] | None = None
    rouge_segmentation: str = "char"
    bleu_tokenize: str = "auto"
    bertscore_model: str | None = None
    bertscore_layers: int | None = None
    bertscore_batch_size: int = 32
    json_schema: dict | None = None


@dataclass
class SystemScore:
    stats: dict[str, MetricStats]
    items: list[dict]  # per sample: each mean metric's value and the format checks
    details: dict


def detect_task(items: list[EvalItem], labels: list[str] | None) -> str:
    if labels or (items and all(i.label for i in items)):
        return "classification"
    if items and sum(json_valid(i.reference) for i in items) >= 0.8 * len(items):

        has_structure = sum(bool(parse_structure(i.reference)[1]) or '"entities"' in i.reference for i in items)
        return "extraction" if has_structure >= 0.5 * len(items) else "structured"
    return "generation"


def _per_item(values: list, draws: int) -> np.ndarray:
    """Flat (sample, draw) rows → one row per sample: draws summed."""
    array = np.asarray(values, dtype=float)
    array = array.reshape(len(array), -1)
    return array.reshape(-1, draws, array.shape[1]).sum(axis=1)


def _mean_metric(name: str, values: list, draws: int) -> MetricStats:
    return MetricStats.mean(name, _per_item(values, draws)[:, 0] / draws)


def _macro_f1(total: np.ndarray, labels: list[str]) -> float:
    counts = total.reshape(len(labels), 3)
    return float(np.mean([prf(*row)["f1"] for row in counts])) if labels else 0.0


def score_outputs(items: list[EvalItem], outputs: list[list[Output]], task: str, metrics: list[str],
                  options: ScoringOptions | None = None) -> SystemScore:
    options = options or ScoringOptions()
    draws = len(outputs[0]) if outputs else 1
    if any(len(o) != draws for o in outputs):
        raise ValueError("every sample needs the same number of draws")
    flat = [(item, out) for item, outs in zip(items, outputs) for out in outs]
    answers = [out.answer for _, out in flat]
    references = [item.reference for item, _ in flat]
    stats: dict[str, MetricStats] = {}
    details: dict = {}

    if "accuracy" in metrics or "macro_f1" in metrics:
        labels = options.labels or sorted({i.label for i in items if i.label})
        predicted = [normalise_label(a, labels) for a in answers]
        gold = [item.label or item.reference for item, _ in flat]
        stats["accuracy"] = _mean_metric("accuracy", [p == g for p, g in zip(predicted, gold)], draws)
        rows = []
        for p, g in zip(predicted, gold):  # tp, fp, fn per declared label
            row = np.zeros((len(labels), 3))
            for k, label in enumerate(labels):
                row[k] = (p == g == label, p == label != g, g == label != p)
            rows.append(row.ravel())
        stats["macro_f1"] = MetricStats("macro_f1", _per_item(rows, draws),
                                        lambda total, n, labels=labels: _macro_f1(total, labels))
        details["classification"] = {**classification_report(predicted, gold, labels),
                                     "confusion": confusion_matrix(predicted, gold, labels)}
    if "bleu" in metrics:
        tokenize = None if options.bleu_tokenize == "auto" else options.bleu_tokenize
        rows, tokenize = text_metrics.bleu_item_stats(answers, references, tokenize)
        stats["bleu"] = MetricStats("bleu", _per_item(rows, draws),
                                    lambda total, n, t=tokenize: text_metrics.bleu_from_stats(total, t))
        details["bleu_tokenize"] = tokenize
    if "chrf" in metrics:
        stats["chrf"] = MetricStats("chrf", _per_item(text_metrics.chrf_item_stats(answers, references), draws),
                                    lambda total, n: text_metrics.chrf_from_stats(total))
    if {"rouge1", "rouge2", "rougeL"} & set(metrics):
        rouge = text_metrics.rouge_scores(answers, references, options.rouge_segmentation)
        for key in ("rouge1", "rouge2", "rougeL"):
            if key in metrics:
                stats[key] = _mean_metric(key, rouge[key], draws)
        details["rouge_segmentation"] = options.rouge_segmentation
    if "bertscore" in metrics:
        model = options.bertscore_model or text_metrics.default_bertscore_model()
        values = text_metrics.bertscore_f1(answers, references, model, options.bertscore_layers,
                                           options.bertscore_batch_size)
        stats["bertscore"] = _mean_metric("bertscore", values, draws)
        details["bertscore_model"] = model
    if "entity_f1" in metrics or "relation_f1" in metrics:
        report = extraction_report(answers, references)
        for key, counts in (("entity_f1", report["entity_counts"]), ("relation_f1", report["relation_counts"])):
            if key in metrics and (key == "entity_f1" or report["has_relations"]):
                stats[key] = MetricStats(key, _per_item(counts, draws), lambda total, n: prf(*total)["f1"])
        details["extraction"] = {"entity": report["entity"], "relation": report["relation"],
                                 "per_type": report["per_type"], "has_relations": report["has_relations"]}
    if "exact_match" in metrics:
        stats["exact_match"] = _mean_metric("exact_match", [exact_match(a, r) for a, r in zip(answers, references)],
                                            draws)
    if "json_valid" in metrics:
        stats["json_valid"] = _mean_metric("json_valid", [json_valid(a) for a in answers], draws)
    if "schema_valid" in metrics and options.json_schema is not None:
        stats["schema_valid"] = _mean_metric("schema_valid", [schema_valid(a, options.json_schema) for a in answers],
                                             draws)

    checks = [check_format(out.parsed, item.prompt, item.reference) for item, out in flat]
    for key in FORMAT_METRICS:
        stats[key] = _mean_metric(key, [c[key] for c in checks], draws)
    # outputs that never closed their think block score as empty answers: their number is shown beside them
    unclosed = sum(c["unclosed_think"] for c in checks)
    details["unclosed_think"] = {"count": unclosed, "outputs": len(checks),
                                 "share": unclosed / len(checks) if checks else 0.0}

    per_item = [{"id": item.id} for item in items]
    for name, metric in stats.items():
        for row, record in zip(metric.rows, per_item):
            record[name] = float(metric.aggregate(row, 1)) if metric.rows.shape[1] > 1 else float(row[0])
    return SystemScore(stats, per_item, details)


def item_score_key(primary: str, stats: dict[str, MetricStats]) -> str:
    """The per-sample score regressions are ranked by: the primary metric itself when it is a per-sample mean,
    accuracy for macro-F1 (per-sample F1 means little), the metric on that sample alone otherwise."""
    if primary == "macro_f1" and "accuracy" in stats:
        return "accuracy"
    return primary
