"""`r1tune search`: the space, the evaluation of each trial, the study (issue 16)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    model_validator,
)

from r1tune.config.base import Section
from r1tune.config.training import FinetuneConfig

# ---------------------------------------------------------------- search (issue 16)

SearchMetric = Literal["val_loss", "accuracy", "macro_f1", "bleu", "chrf", "rouge1", "rouge2", "rougeL", "bertscore",
                       "entity_f1", "relation_f1", "exact_match", "json_valid", "schema_valid"]
SearchObjective = Literal["memory", "time", "val_loss", "accuracy", "macro_f1", "bleu", "chrf", "rouge1", "rouge2",
                          "rougeL", "bertscore", "entity_f1", "relation_f1", "exact_match", "json_valid",
                          "schema_valid"]
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value):
    """'30m', '2h', '1h30m', '90s', '45' or 45 (seconds) → seconds."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = str(value).strip().lower().replace(" ", "")
    if text.replace(".", "", 1).isdigit():
        return float(text)
    total, number = 0.0, ""
    for char in text:
        if char.isdigit() or char == ".":
            number += char
        elif char in DURATION_UNITS and number and number.count(".") <= 1:
            total, number = total + float(number) * DURATION_UNITS[char], ""
        else:
            number = "?"
            break
    if number or not text:
        raise ValueError(f"cannot read the duration {value!r} (e.g. 30m, 2h, 1h30m, 90s, or seconds)")
    return total


Duration = Annotated[float, BeforeValidator(_duration)]


class SearchDim(Section):
    """One dimension of the search space: a typed range or a list of choices for one finetune key."""

    type: Literal["float", "int", "categorical"] = Field(
        ..., description="float / int: a range from low to high (log-uniform with log); categorical: choices.")
    low: float | None = Field(None, description="float / int: the smallest value.")
    high: float | None = Field(None, description="float / int: the largest value.")
    log: bool = Field(False, description="float / int: sample on a log scale (learning rates); low must be > 0.")
    step: float | None = Field(None, gt=0, description="float / int: only multiples of step above low (not with log).")
    choices: list[bool | int | float | str] | None = Field(None, description="categorical: the values to try.")
    times: str | None = Field(
        None, description="The value is a multiplier of another setting: `advised_lr` (the advisor's learning rate "
        "for the trial's method) or a key sampled earlier in the space (method.lora_r: alpha as a multiple of the "
        "rank).")

    @model_validator(mode="after")
    def _consistent(self):
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical dimension needs a non-empty `choices` list")
            if any(v is not None for v in (self.low, self.high, self.step)) or self.log:
                raise ValueError("a categorical dimension takes `choices`, not low / high / step / log")
            if len({repr(c) for c in self.choices}) != len(self.choices):
                raise ValueError(f"choices {self.choices} name a value twice")
            return self
        if self.choices is not None:
            raise ValueError(f"a {self.type} dimension takes low / high, not choices (use type: categorical)")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} dimension needs both low and high")
        if self.low > self.high:
            raise ValueError(f"low {self.low:g} is above high {self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low:g})")
        if self.log and self.step is not None:
            raise ValueError("a log range cannot have a step")
        if self.type == "int" and not all(float(v).is_integer() for v in (self.low, self.high, self.step or 1)):
            raise ValueError("an int dimension needs whole numbers for low, high and step")
        return self


class SearchEvaluation(Section):
    max_samples: int | None = Field(200, gt=0, description="Task metrics: score each trial on the first N "
                                    "validation samples (None: all).")
    max_new_tokens: int | None = Field(
        None, gt=0, description="Task metrics: generation cap; default: the longest label's tokens + "
        "reasoning_budget for classification, open_max_new_tokens otherwise.")
    reasoning_budget: int = Field(256, gt=0, description="Task metrics, classification: reasoning tokens allowed "
                                  "before the label.")
    open_max_new_tokens: int = Field(512, gt=0, description="Task metrics: the cap for tasks without labels.")
    batch_size: int = Field(16, gt=0, description="Task metrics: prompts generated together (greedy, KV cache).")


class SearchSettings(Section):
    base: str | None = Field(
        None, description="A finetune config (YAML) the trials start from; this file's own finetune keys "
        "(model, data, method, train) are merged over it. Without it, this file is the base.")
    trials: int = Field(20, gt=0, description="Finished trials the study holds when done (complete, pruned or "
                        "failed; an interrupted trial is redone, not counted).")
    timeout: Duration | None = Field(
        None, gt=0, description="Wall-clock budget of this command (30m, 2h, 1h30m, or seconds): no trial starts "
        "after it, and a trial still running then is stopped and redone by the next run of the command.")
    metric: SearchMetric = Field(
        "val_loss", description="What a trial is judged on, on the validation split: val_loss (the finetune run's "
        "own last evaluation), or a task metric from generating on it (accuracy, macro_f1, rougeL, …).")
    direction: Literal["auto", "minimize", "maximize"] = Field(
        "auto", description="auto: minimize val_loss, maximize task metrics.")
    objectives: list[SearchObjective] = Field(
        [], description="More objectives beside `metric`, making the study multi-objective (a Pareto front): "
        "memory (peak training memory, minimised), time (training wall seconds, minimised), or another quality "
        "metric. Optuna cannot prune multi-objective trials: every trial runs to its end.")
    storage: str | None = Field(
        None, description="Optuna storage URL; default sqlite:///OUT/study.db. Several machines share one study "
        "through one PostgreSQL / MySQL URL (postgresql://user:pw@host/db) and the same study_name.")
    study_name: str = Field("r1tune-search", description="The study's name in the storage.")
    jobs: int = Field(1, gt=0, description="Trials run at once, each a child process (one GPU each where there "
                      "are GPUs: CUDA_VISIBLE_DEVICES).")
    seed: int = Field(0, description="Seed of the TPE sampler and of the validation split held out of train.")
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median", description="Stops unpromising trials from their intermediate validation losses: median (worse "
        "than the median of earlier trials at the same step), hyperband, or none.")
    pruner_startup_trials: int = Field(2, ge=0, description="median: trials that finish before any is pruned.")
    pruner_warmup_steps: int = Field(0, ge=0, description="median: steps of a trial before it may be pruned.")
    memory: str | None = Field(None, description="Memory per device the advisor fits methods and micro-batches in, "
                               "e.g. 24GiB (default: the GPU's, or the RAM available now).")
    keep_general_ability: bool = Field(False, description="The advisor prefers light methods and lower rates.")
    advisor_first: bool = Field(True, description="The first trial is the advisor's recommendation.")
    space: dict[str, SearchDim | None] = Field(
        {}, description="Dimensions by finetune key (train.lr, method.lora_r, …, or train.global_batch), merged "
        "over the built-in space; `~` removes a built-in dimension (its base value is then used by every trial).")
    enqueue: list[dict[str, bool | int | float | str]] = Field(
        [], description="Trials to run first (after the advisor's), each a {space key: value} mapping; keys left "
        "out are sampled.")
    evaluation: SearchEvaluation = Field(default_factory=SearchEvaluation)


class SearchConfig(FinetuneConfig):
    """`r1tune search`: a finetune config (the base of every trial) plus its `search` section."""

    out: str = Field("runs/search", description="Study folder: trials/NNN/, study.db, best/, best.yaml, "
                     "report.html.")
    search: SearchSettings = Field(default_factory=SearchSettings)
