"""The search space: built from the advisor's advice, overridden by the user, sampled define-by-run, and turned
into the finetune config a trial runs (multipliers resolved, global batch split into micro-batch × accumulation)."""

import optuna
import pytest

from r1tune.config import FinetuneConfig, SearchConfig, SearchDim, load_config
from r1tune.errors import R1TuneError
from r1tune.train.advice import LEARNING_RATES, recommend
from r1tune.train.search_space import advisor_values, build_space, enqueueable, sample, trial_config


@pytest.fixture(scope="module")
def advice(tiny_model_dir, finsent_file):
    return recommend(str(tiny_model_dir), str(finsent_file(60)), memory="4GiB")


@pytest.fixture(scope="module")
def base(tiny_model_dir, finsent_file):
    return FinetuneConfig.model_validate({"model": {"name_or_path": str(tiny_model_dir)},
                                          "data": {"train": str(finsent_file(60))}})


def test_space_offers_what_fits_and_takes_overrides(advice, base):
    space = build_space(advice, base, {})
    assert space["method.name"].choices == advice.fitting_methods() and "lora" in space["method.name"].choices
    assert "train.epochs" in space and "train.max_steps" not in space  # the base trains by epochs
    mine = build_space(advice, base, {"data.reasoning": None, "train.lr": SearchDim(type="float", low=1e-4,
                                                                                   high=1e-2, log=True)})
    assert "data.reasoning" not in mine and mine["train.lr"].times is None
    with pytest.raises(R1TuneError, match="search.space.train.lrr: not a finetune key"):
        build_space(advice, base, {"train.lrr": SearchDim(type="float", low=0, high=1)})


def test_advisor_trial_values_are_the_advisors_in_the_space_units(advice, base):
    top = advice.settings[0]
    space = build_space(advice, base, {})
    first = advisor_values(advice, base, space)
    assert first["method.name"] == top.method and first["train.lr"] == 1.0  # a multiplier of the advised rate
    assert first["train.global_batch"] == top.batch_size * top.grad_accum
    absolute = build_space(advice, base, {"train.lr": SearchDim(type="float", low=1e-5, high=1e-1, log=True)})
    assert advisor_values(advice, base, absolute)["train.lr"] == top.lr
    narrow = build_space(advice, base, {"train.global_batch": SearchDim(type="categorical", choices=[7])})
    outside = advisor_values(advice, base, narrow)
    assert outside["train.global_batch"] == top.batch_size * top.grad_accum  # still the advisor's trial's value
    assert "train.global_batch" not in enqueueable(outside, narrow)  # but Optuna cannot be given it


def test_trial_config_resolves_multipliers_and_splits_the_global_batch(advice, base):
    space = build_space(advice, base, {})
    trial = optuna.trial.FixedTrial({"method.name": "lora", "method.lora_r": 16, "method.lora_alpha": 4,
                                     "method.lora_dropout": 0.1, "train.lr": 0.5, "train.warmup_steps": 50,
                                     "train.global_batch": 64, "data.max_length": space["data.max_length"].choices[0],
                                     "data.reasoning": "drop", "train.epochs": 2.0})
    values = sample(trial, space)
    cfg = trial_config(base, values, space, advice, "runs/s/trials/000")
    assert cfg.out == "runs/s/trials/000" and cfg.method.lora_r == 16 and cfg.method.lora_alpha == 64
    assert cfg.train.lr == pytest.approx(0.5 * LEARNING_RATES["lora"]) and cfg.data.reasoning == "drop"
    assert cfg.train.batch_size * cfg.train.grad_accum >= 64 and cfg.train.batch_size <= 64
    assert cfg.train.epochs == 2.0 and cfg.model.name_or_path == base.model.name_or_path

    # a method outside the LoRA family: its LoRA keys are never asked for (FixedTrial would raise)
    prompt = optuna.trial.FixedTrial({"method.name": "prompt", "train.lr": 1.0, "train.warmup_steps": 0,
                                      "train.global_batch": 8, "data.max_length": space["data.max_length"].choices[0],
                                      "data.reasoning": "keep", "train.epochs": 1.0})
    cfg = trial_config(base, sample(prompt, space), space, advice, "x")
    assert cfg.method.name == "prompt" and cfg.train.lr == pytest.approx(LEARNING_RATES["prompt"])


def test_search_config_validation(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("search:\n  timeout: 1h30m\n  space:\n    train.lr: {type: float, low: 0.1, high: 1, log: true}\n")
    cfg = load_config(SearchConfig, path)
    assert cfg.search.timeout == 5400 and cfg.search.space["train.lr"].log
    for bad, message in (("timeout: soon", "cannot read the duration"),
                         ("space: {x.y: {type: float, low: 0}}", "needs both low and high"),
                         ("space: {x.y: {type: categorical, choices: []}}", "non-empty"),
                         ("space: {x.y: {type: float, low: 0, high: 1, log: true}}", "log range needs low > 0")):
        path.write_text(f"search:\n  {bad}\n")
        with pytest.raises(R1TuneError, match=message):
            load_config(SearchConfig, path)
