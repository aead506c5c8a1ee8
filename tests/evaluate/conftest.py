"""Fixtures for the evaluation tests: an evaluation built from predictions files (no model loaded), fast."""

import json
import random

import pytest

from helpers import FINSENT, write_jsonl

FINSENT_TEST = FINSENT / "test.jsonl"
LABELS = ["positive", "negative", "neutral"]


@pytest.fixture(scope="session")
def finsent_rows():
    return [json.loads(line) for line in FINSENT_TEST.read_text(encoding="utf-8").splitlines()[:60]]


@pytest.fixture(scope="session")
def classification_eval(tmp_path_factory, finsent_rows):
    """An evaluation of two systems on 60 finsent samples from predictions files: `base` right 40% of the time
    (and never closes its think block), `tuned` right 90% (R1-formatted); plus a fake training log."""
    from r1tune.config import EvaluateConfig
    from r1tune.recipes.evaluate import evaluate

    root = tmp_path_factory.mktemp("classification-eval")
    rng = random.Random(0)
    base, tuned = [], []
    for row in finsent_rows:
        wrong = [label for label in LABELS if label != row["label"]]
        base.append({"id": row["id"], "prediction": row["label"] if rng.random() < 0.4 else rng.choice(wrong)})
        answer = row["label"] if rng.random() < 0.9 else rng.choice(wrong)
        tuned.append({"id": row["id"], "prediction": f"新闻判断。\n</think>\n\n{answer}", "latency_s": 0.2 + rng.random()})
    # one adversarial output, a regression (base right, tuned wrong) so the report lists it: user text must
    # reach the report as text, never as markup
    first_wrong = next(label for label in LABELS if label != finsent_rows[0]["label"])
    base[0]["prediction"] = finsent_rows[0]["label"]
    tuned[0]["prediction"] = f"<script>alert('x')</script><img src=x onerror=alert(1)>\n</think>\n\n<b>{first_wrong}</b>"
    run = root / "run"
    run.mkdir()
    write_jsonl(run / "metrics.jsonl", [{"step": s, "split": "train", "loss": 3.0 / s} for s in range(1, 41)]
                + [{"step": s, "split": "eval", "loss": 3.2 / s} for s in (10, 20, 30, 40)])
    cfg = EvaluateConfig(data=str(FINSENT_TEST), max_samples=60, out=str(root / "eval"),
                         predictions=[f"base={write_jsonl(root / 'base.jsonl', base)}",
                                      f"tuned={write_jsonl(root / 'tuned.jsonl', tuned)}"],
                         train_runs=[str(run)], bootstrap={"resamples": 500})
    results = evaluate(cfg)
    return {"dir": root / "eval", "results": results, "base": base, "tuned": tuned}
