"""Paired bootstrap over samples: intervals hold the estimate, are exact for corpus metrics, and are seeded."""

import numpy as np
import sacrebleu

from r1tune.evaluate import text_metrics as tm
from r1tune.evaluate.bootstrap import (
    MetricStats,
    confidence_interval,
    paired_difference,
    resample_weights,
    resampled_values,
)


def test_interval_contains_the_estimate_and_shrinks_with_more_samples():
    rng = np.random.default_rng(1)
    small = MetricStats.mean("accuracy", rng.random(40) < 0.7)
    large = MetricStats.mean("accuracy", rng.random(4000) < 0.7)
    ci_small = confidence_interval(small, resample_weights(40, 1000, 0))
    ci_large = confidence_interval(large, resample_weights(4000, 1000, 0))
    for ci in (ci_small, ci_large):
        assert ci["low"] <= ci["value"] <= ci["high"]
    assert ci_large["high"] - ci_large["low"] < (ci_small["high"] - ci_small["low"]) / 4
    assert abs(ci_large["value"] - 0.7) < 0.03


def test_same_seed_same_interval():
    metric = MetricStats.mean("x", np.arange(30) % 3 == 0)
    a = resampled_values(metric, resample_weights(30, 200, 7))
    b = resampled_values(metric, resample_weights(30, 200, 7))
    c = resampled_values(metric, resample_weights(30, 200, 8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert resample_weights(30, 200, 7).sum(axis=1).tolist() == [30] * 200  # each resample draws n samples


def test_resampled_corpus_bleu_is_the_bleu_of_the_resampled_corpus():
    hyps = ["患者头痛三天", "病人发热两天", "右膝肿胀", "咳嗽一周伴发热"]
    refs = ["患者头痛三天了", "病人发烧两天", "右膝肿胀疼痛", "咳嗽一周，伴有发热"]
    stats, tokenize = tm.bleu_item_stats(hyps, refs)
    metric = MetricStats("bleu", stats, lambda total, n: tm.bleu_from_stats(total, tokenize))
    weights = resample_weights(4, 5, 3)
    for row, value in zip(weights, resampled_values(metric, weights)):
        drawn = [k for k in range(4) for _ in range(int(row[k]))]
        expected = sacrebleu.corpus_bleu([hyps[k] for k in drawn], [[refs[k] for k in drawn]], tokenize="zh").score
        assert abs(value - expected) < 1e-9


def test_paired_difference_sees_a_consistent_gain_that_unpaired_noise_would_hide():
    rng = np.random.default_rng(0)
    difficulty = rng.random(50)  # samples differ a lot; the candidate is a little better on every one
    base = MetricStats.mean("score", difficulty)
    cand = MetricStats.mean("score", difficulty + 0.02)
    weights = resample_weights(50, 1000, 0)
    diff = paired_difference(cand, base, weights)
    assert abs(diff["diff"] - 0.02) < 1e-9
    assert diff["low"] > 0 and diff["p_not_better"] == 0.0
    # the two separate intervals overlap almost entirely: only pairing shows the gain
    a, b = confidence_interval(base, weights), confidence_interval(cand, weights)
    assert b["low"] < a["high"]
    same = paired_difference(base, base, weights)
    assert same["diff"] == 0 and same["low"] == same["high"] == 0 and same["p_not_better"] == 1.0
