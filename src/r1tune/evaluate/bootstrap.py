"""Metrics as per-sample statistics, and paired bootstrap confidence intervals over samples.

    acc = MetricStats.mean("accuracy", correct)                 # one value per sample, averaged
    bleu = MetricStats("bleu", stats, lambda total, n: bleu_from_stats(total))   # corpus BLEU
    intervals = bootstrap({"accuracy": acc, "bleu": bleu}, resamples=1000, seed=0)
    diff = paired_difference(tuned["bleu"], base["bleu"], weights)

Every metric is written as rows of per-sample statistics plus an `aggregate(total, n)` that turns their sum
into the value: a mean metric has one column (the per-sample value), corpus BLEU has its n-gram counts,
macro-F1 has tp/fp/fn per class. A bootstrap resample is then a vector of counts (how often each sample was
drawn), and the resampled total is one matrix product — exact for corpus metrics, fast for every metric.
Paired: base and tuned are resampled with the same draws, so the interval of the difference accounts for
the prompts they share (Koehn 2004). Fixed seed: the same data gives the same intervals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class MetricStats:
    name: str
    rows: np.ndarray  # (samples, statistics)
    aggregate: Callable[[np.ndarray, int], float]  # (summed statistics, number of samples) → value

    @classmethod
    def mean(cls, name: str, values) -> MetricStats:
        return cls(name, np.asarray(values, dtype=float).reshape(-1, 1), lambda total, n: float(total[0] / n))

    @property
    def value(self) -> float:
        n = len(self.rows)
        return self.aggregate(self.rows.sum(axis=0), n) if n else float("nan")


def resample_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) counts: row r says how often each sample was drawn in resample r."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    weights = np.zeros((resamples, n))
    np.add.at(weights, (np.repeat(np.arange(resamples), n), draws.ravel()), 1.0)
    return weights


def resampled_values(metric: MetricStats, weights: np.ndarray) -> np.ndarray:
    totals = weights @ metric.rows
    n = weights.shape[1]
    if metric.rows.shape[1] == 1:  # a mean metric: vectorised, no Python loop
        return totals[:, 0] / n
    return np.array([metric.aggregate(t, n) for t in totals])


def interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def confidence_interval(metric: MetricStats, weights: np.ndarray, confidence: float = 0.95) -> dict:
    """{"value", "low", "high"}: the point estimate and the percentile bootstrap interval."""
    return {"value": metric.value, **dict(zip(("low", "high"), interval(resampled_values(metric, weights),
                                                                       confidence)))}


def paired_difference(candidate: MetricStats, baseline: MetricStats, weights: np.ndarray,
                      confidence: float = 0.95) -> dict:
    """candidate − baseline on the same samples: {"diff", "low", "high", "p_not_better"}.

    `p_not_better` is the share of resamples where the candidate did not beat the baseline (one-sided
    bootstrap p-value for "candidate is better"); both metrics must be over the same samples in the same order.
    """
    if len(candidate.rows) != len(baseline.rows):
        raise ValueError(f"{candidate.name}: {len(candidate.rows)} vs {len(baseline.rows)} samples: not paired")
    diffs = resampled_values(candidate, weights) - resampled_values(baseline, weights)
    low, high = interval(diffs, confidence)
    return {"diff": candidate.value - baseline.value, "low": low, "high": high,
            "p_not_better": float(np.mean(diffs <= 0))}
