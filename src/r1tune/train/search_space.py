"""The search space of `r1tune search`: which finetune keys a trial varies, and the config a trial runs.

    space = build_space(advice, base_cfg, settings.space)         # {key: SearchDim}, built-in merged with the user's
    first = advisor_values(advice, base_cfg, space)                # the advisor's own choice, as space values
    values = sample(trial, space, advice, fixed=first)             # one trial's values (Optuna define-by-run)
    cfg = trial_config(base_cfg, values, advice, out)              # a normal FinetuneConfig for trials/NNN/

Keys are finetune config keys (`train.lr`, `method.lora_r`, …) plus one derived key, `train.global_batch`:
samples per optimizer step, split into the largest micro-batch the advisor fits in memory for the trial's
method and max_length, and gradient accumulation for the rest. A dimension with `times` samples a multiplier:
`train.lr` times `advised_lr` (the advisor's rate for the trial's method: LoRA's 2e-4 and prompt tuning's 3e-2
need different ranges), `method.lora_alpha` times `method.lora_r`. LoRA-family keys are only sampled when the
trial's method is one (Optuna's conditional, define-by-run spaces).
"""

from __future__ import annotations

import math

from r1tune.config import FinetuneConfig, MethodConfig, SearchDim, set_key
from r1tune.errors import R1TuneError
from r1tune.train.advice import LEARNING_RATES, LORA_FAMILY, Advice, fit_setting

LORA_KEYS = ("method.lora_r", "method.lora_alpha", "method.lora_dropout")
DERIVED_KEYS = ("train.global_batch",)


def builtin_space(advice: Advice, base: FinetuneConfig) -> dict[str, SearchDim]:
    """The default dimensions: method among those the advisor says fit, LoRA shape, rate, length of training,
    warmup, global batch, max length, what to do with reasoning traces, and the replay share of a continued run."""
    methods = advice.fitting_methods() or [advice.settings[0].method]
    length = advice.settings[0].max_length
    space = {
        "method.name": SearchDim(type="categorical", choices=methods),
        "method.lora_r": SearchDim(type="categorical", choices=[4, 8, 16, 32, 64]),
        "method.lora_alpha": SearchDim(type="categorical", choices=[1, 2, 4], times="method.lora_r"),
        "method.lora_dropout": SearchDim(type="float", low=0.0, high=0.3),
        "train.lr": SearchDim(type="float", low=0.1, high=10.0, log=True, times="advised_lr"),
        "train.warmup_steps": SearchDim(type="int", low=0, high=500, step=50),
        "train.global_batch": SearchDim(type="categorical", choices=[8, 16, 32, 64]),
        "data.max_length": SearchDim(type="categorical", choices=sorted({max(64, length // 2), length})),
        "data.reasoning": SearchDim(type="categorical", choices=["keep", "drop"]),
    }
    continual = getattr(base, "continual", None)
    if continual is not None and continual.continue_from:  # a continued run: how much earlier data to replay
        space["continual.replay"] = SearchDim(type="float", low=0.0, high=0.5, step=0.05)
    # a run bounded by max_steps ignores epochs: search the one that decides the length of training
    if base.train.max_steps:
        top = base.train.max_steps
        space["train.max_steps"] = SearchDim(type="int", low=max(1, top // 4), high=top * 2, log=True)
    else:
        space["train.epochs"] = SearchDim(type="float", low=1.0, high=3.0, step=0.5)
    return space


def build_space(advice: Advice, base: FinetuneConfig, overrides: dict[str, SearchDim | None]) -> dict[str, SearchDim]:
    """The built-in space with the user's `search.space` merged over it (`~` removes a dimension)."""
    space = builtin_space(advice, base)
    for key, dim in overrides.items():
        check_key(key)
        if dim is None:
            space.pop(key, None)
        else:
            space[key] = dim
    if "method.name" in space and not space["method.name"].choices:
        raise R1TuneError("search.space.method.name: no method to try")
    return space


def check_key(key: str) -> None:
    """A space key must name a finetune key (or a derived one): a typo would otherwise search nothing."""
    if key in DERIVED_KEYS:
        return
    section, _, name = key.partition(".")
    fields = FinetuneConfig.model_fields
    if section not in fields or section == "out" or name not in fields[section].annotation.model_fields:
        raise R1TuneError(f"search.space.{key}: not a finetune key (e.g. train.lr, method.lora_r, "
                          "data.max_length, or train.global_batch)")


def advised_lr(advice: Advice, method: str, keep_general_ability: bool) -> float:
    return LEARNING_RATES[method] * (0.5 if keep_general_ability else 1.0)


def advisor_values(advice: Advice, base: FinetuneConfig, space: dict[str, SearchDim]) -> dict:
    """The advisor's top recommendation, as space values (multipliers where a dimension has `times`); the keys
    the advisor does not decide keep the base config's values. Only the values a dimension contains can be
    enqueued in Optuna (`enqueueable`); the others still apply to the advisor's trial, outside the search."""
    top = advice.settings[0]
    relative = {key: bool(dim.times) for key, dim in space.items()}
    chosen = {"method.name": top.method, "train.lr": 1.0 if relative.get("train.lr") else top.lr,
              "train.global_batch": top.batch_size * top.grad_accum, "data.max_length": top.max_length}
    if top.method in LORA_FAMILY:
        chosen.update({"method.lora_r": top.lora_r, "method.lora_dropout": base.method.lora_dropout,
                       "method.lora_alpha": 2 if relative.get("method.lora_alpha") else 2 * top.lora_r})
    for key in ("train.warmup_steps", "train.epochs", "train.max_steps", "data.reasoning", "continual.replay"):
        if key in space:
            chosen[key] = _base_value(base, key)
    return {k: v for k, v in chosen.items() if k in space}


def enqueueable(values: dict, space: dict[str, SearchDim]) -> dict:
    return {k: v for k, v in values.items() if contains(space[k], v)}


def contains(dim: SearchDim, value) -> bool:
    if dim.type == "categorical":
        return value in dim.choices
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    return dim.low <= value <= dim.high


def sample(trial, space: dict[str, SearchDim], only: list[str] | None = None) -> dict:
    """One trial's values, define-by-run: the LoRA keys only for a LoRA-family method. With `only` (the keys
    enqueued for the advisor's trial) every other dimension is left to the base config, not sampled."""
    fixed = set(only) if only is not None else None
    values: dict = {}
    for key, dim in space.items():
        if key in LORA_KEYS and values.get("method.name", "lora") not in LORA_FAMILY:
            continue
        if fixed is not None and key not in fixed:
            continue
        if dim.type == "categorical":
            values[key] = trial.suggest_categorical(key, dim.choices)
        elif dim.type == "int":
            values[key] = trial.suggest_int(key, int(dim.low), int(dim.high), step=int(dim.step or 1), log=dim.log)
        else:
            values[key] = trial.suggest_float(key, dim.low, dim.high, step=dim.step, log=dim.log)
    return values


def trial_config(base: FinetuneConfig, values: dict, space: dict[str, SearchDim], advice: Advice, out: str,
                 keep_general_ability: bool = False) -> FinetuneConfig:
    """The finetune config one trial runs: the base with the trial's values, multipliers resolved and the
    global batch split into micro-batch × accumulation."""
    raw = base.model_dump(mode="json")
    raw["out"] = out
    method = values.get("method.name", base.method.name)
    resolved = {}
    for key, value in values.items():
        times = space[key].times if key in space else None
        if times == "advised_lr":
            value = value * advised_lr(advice, method, keep_general_ability)
        elif times:
            value = value * values.get(times, _base_value(base, times))
        resolved[key] = value
    global_batch = resolved.pop("train.global_batch", None)
    for key, value in resolved.items():
        if key == "method.lora_alpha":
            value = max(1, int(round(value)))
        set_key(raw, key, value)
    if global_batch is not None:
        cfg = FinetuneConfig.model_validate(raw)
        micro, checkpointing, _, _ = fit_setting(advice, MethodConfig(**raw["method"]), cfg.data.max_length)
        micro = max(1, min(micro, int(global_batch)))
        raw["train"].update(batch_size=micro, grad_accum=max(1, math.ceil(global_batch / micro)),
                            gradient_checkpointing=checkpointing, auto_batch_size=False)
    return FinetuneConfig.model_validate(raw)


def _base_value(base: FinetuneConfig, key: str):
    section, name = key.split(".", 1)
    return getattr(getattr(base, section), name)
