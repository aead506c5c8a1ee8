"""Every shipped config (configs/, recursively) starts with the command that runs it and validates against what
that command reads: the config class of the verb, the annotation schema, the convert spec, accelerate's own
config (and the r1tune command it launches)."""

import shlex
from pathlib import Path

import pytest

from r1tune.config import EvaluateConfig, FinetuneConfig, GrpoConfig, PrepareConfig, load_config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def header_command(path: Path) -> list[str]:
    """The command on the file's first comment line(s), joined across trailing backslashes, as argv."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
        if not lines[-1].endswith("\\"):
            break
        lines[-1] = lines[-1][:-1]
    return shlex.split(" ".join(lines).replace("…", ""))


def validate_r1tune(argv: list[str], path: Path) -> None:
    """Validate `path` as the config of `r1tune ARGV`."""
    from r1tune.annotate.schema import load_schema
    from r1tune.data.convert import load_spec

    verb = argv[1]
    if verb == "finetune":
        cfg = load_config(FinetuneConfig, path)
        assert cfg.model.name_or_path and cfg.data.train
    elif verb == "grpo":
        cfg = load_config(GrpoConfig, path)
        assert (cfg.model.name_or_path or cfg.adapter) and cfg.data.train
    elif verb == "evaluate":
        cfg = load_config(EvaluateConfig, path)
        assert cfg.model and cfg.data
    elif verb == "prepare" and argv[2].endswith(".yaml"):
        assert load_config(PrepareConfig, path).input
    elif verb == "prepare" and argv[2] == "convert":
        load_spec(argv[argv.index("--kind") + 1], path)
    elif verb == "search":  # issue 16: a finetune config (the trials' base) plus its search section
        from r1tune.config import SearchConfig

        cfg = load_config(SearchConfig, path)
        assert (cfg.model.name_or_path and cfg.data.train) or cfg.search.base
    elif verb == "annotate":
        schema = load_schema(path)
        assert schema.entities or schema.relations or schema.intents
    elif verb == "board":  # issue 17
        from r1tune.config import BoardConfig

        assert load_config(BoardConfig, path).runs
    else:
        pytest.fail(f"{path.name}: no validation for `r1tune {verb}` configs: add it to tests/test_configs.py")


def test_every_config_is_found():
    assert len(CONFIGS) >= 13
    assert {p.parent.name for p in CONFIGS} >= {"configs", "accelerate", "annotate", "medical-records"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_validates_against_its_command(path):
    argv = header_command(path)
    assert argv[:1] in (["r1tune"], ["accelerate"]), f"{path.name} must start with the command that runs it"
    relative = str(path.relative_to(ROOT))
    assert relative in argv, f"{path.name}: its header command must name the file itself"
    if argv[0] == "accelerate":
        from accelerate.commands.config.config_args import load_config_from_file

        assert argv[1:3] == ["launch", "--config_file"] and argv[3] == relative
        assert load_config_from_file(str(path)).distributed_type is not None
        launched = argv[argv.index("-m") + 1:]
        assert launched[:2] == ["r1tune", "finetune"], launched
        shipped = [a for a in launched if a.endswith(".yaml")]
        for config in shipped:  # a launched config is a shipped one, and valid
            validate_r1tune(["r1tune", "finetune"], ROOT / config)
        return
    validate_r1tune(argv, path)


def test_a_bare_no_from_the_command_line_means_no_mixed_precision():
    from r1tune.config import merge, parse_overrides

    cfg = FinetuneConfig.model_validate(merge({}, parse_overrides(["train.mixed_precision=no"])))
    assert cfg.train.mixed_precision == "no"


def test_typed_flags_reach_the_schema_as_they_are(cli, tmp_path):
    """`--layers 5` and `--out 2024` were read back through YAML as numbers and rejected."""
    from r1tune.config import flag_overrides

    given = flag_overrides({"layers": "method.layers", "out": "out"}, {"layers": "5", "out": "2024", "lr": None})
    cfg = FinetuneConfig.model_validate(given)
    assert cfg.method.layers == "5" and cfg.out == "2024"
    code, _, err = cli("finetune", "--model", tmp_path / "missing", "--data", tmp_path / "x.jsonl",
                       "--layers", "5", "--out", "2024")
    assert code == 2 and "valid string" not in err
