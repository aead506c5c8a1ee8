"""Every shipped config validates against the schema, and starts with the command that runs it."""

from pathlib import Path

import pytest

from r1tune.config import FinetuneConfig, load_config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml"))


def test_there_are_configs():
    assert len(CONFIGS) >= 2


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_finetune_configs_validate(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# r1tune "), f"{path.name} must start with the command that runs it"
    if first.startswith("# r1tune finetune"):
        cfg = load_config(FinetuneConfig, path)
        assert cfg.model.name_or_path and cfg.data.train


def test_a_bare_no_from_the_command_line_means_no_mixed_precision():
    from r1tune.config import merge, parse_overrides

    cfg = FinetuneConfig.model_validate(merge({}, parse_overrides(["train.mixed_precision=no"])))
    assert cfg.train.mixed_precision == "no"
