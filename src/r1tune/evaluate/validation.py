"""A run's task metric on its own validation split: what `r1tune search` judges a trial on.

    items = validation_items(cfg.data, cfg.train.seed, limit=200)   # exactly the samples finetune held out
    values = score_run("runs/search/trials/003", items, ["accuracy"], SearchEvaluation())

The split is the one the finetune run validated on: `data.validation` when set, else the share of train it
held out (same seed, same order, `train/data.py`). Generation is greedy, so a trial's score is reproducible.
"""

from __future__ import annotations

from r1tune.config import DataConfig, SearchEvaluation
from r1tune.data.formats import load_samples
from r1tune.errors import R1TuneError
from r1tune.evaluate.generate import generate
from r1tune.evaluate.items import items_from_samples
from r1tune.evaluate.scoring import EvalItem, Output, ScoringOptions, detect_task, score_outputs
from r1tune.model.runs import load_for_inference
from r1tune.train.data import hold_out


def validation_items(data: DataConfig, seed: int, limit: int | None = None) -> list[EvalItem]:
    if data.validation:
        samples, _ = load_samples(data.validation, data.format, data.on_error, data.encoding, data.columns)
    else:  # the same held-out share `load_training_data` validates on
        train, _ = load_samples(data.train, data.format, data.on_error, data.encoding, data.columns)
        samples = hold_out(train, data.val_split, seed, data.train)[1]
    if not samples:
        raise R1TuneError(f"{data.train}: no validation samples to score (set data.validation or data.val_split)")
    return items_from_samples(samples, limit)


def score_run(run: str, items: list[EvalItem], metrics: list[str], settings: SearchEvaluation) -> dict[str, float]:
    """`metrics` of the run's greedy answers on `items` (labels, when every item has one, make it classification)."""
    model, tokenizer = load_for_inference(run)
    task = detect_task(items, None)
    labels = sorted({item.label for item in items if item.label}) if task == "classification" else None
    cap = settings.max_new_tokens
    if cap is None and labels:
        longest = max(len(tokenizer(label, add_special_tokens=False)["input_ids"]) for label in labels)
        cap = longest + settings.reasoning_budget
    generations = generate(model, tokenizer, [item.messages for item in items],
                           max_new_tokens=cap or settings.open_max_new_tokens, batch_size=settings.batch_size)
    outputs = [[Output(g.text, g.parsed, g.new_tokens)] for g in generations]
    score = score_outputs(items, outputs, task, metrics, ScoringOptions(labels=labels))
    missing = [m for m in metrics if m not in score.stats]
    if missing:
        raise R1TuneError(f"search.metric {', '.join(missing)}: not measurable on this validation split (a {task} "
                          "task)")
    return {m: score.stats[m].value for m in metrics}
