"""The typed schema of every r1tune run. Defaults live here (this package) and nowhere else.

A run is a YAML file validated against one of the `*Config` classes below; unknown keys are rejected
(a typo must not be silently ignored), and any key can be overridden from the command line:

    r1tune finetune configs/quickstart.yaml --set train.lr=1e-4 --set data.reasoning=empty

The sections are grouped by command: base.py (what every section shares), training.py (finetune, grpo),
prepare.py, serve.py (serve, board, exports), evaluate.py, search.py; this module loads and dumps them, and is
where every caller imports them from.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from r1tune.config.base import (  # noqa: F401 - re-exported: callers import from r1tune.config
    Section,
)
from r1tune.config.evaluate import (  # noqa: F401 - re-exported: callers import from r1tune.config
    BusinessCheck,
    EvaluateConfig,
)
from r1tune.config.prepare import (  # noqa: F401 - re-exported: callers import from r1tune.config
    AugmentConfig,
    CheckConfig,
    CleanConfig,
    DedupeConfig,
    DialogueSpec,
    PiiConfig,
    PiiPattern,
    PrepareConfig,
    SemiSpec,
    SplitConfig,
    StructuredSpec,
    TemplateSpec,
    UserCheck,
)
from r1tune.config.search import (  # noqa: F401 - re-exported: callers import from r1tune.config
    SearchConfig,
    SearchDim,
    SearchEvaluation,
)
from r1tune.config.serve import (  # noqa: F401 - re-exported: callers import from r1tune.config
    BoardConfig,
    GgufConfig,
    MergeConfig,
    QuantizeConfig,
    ServeConfig,
    ServeLimits,
)
from r1tune.config.training import (  # noqa: F401 - re-exported: callers import from r1tune.config
    CPU_MICRO_BATCH_TOKENS,
    DataConfig,
    FinetuneConfig,
    GrpoConfig,
    GrpoDataConfig,
    GrpoSettings,
    MethodConfig,
    MixSource,
    ModelConfig,
    RewardsConfig,
    TrainConfig,
)
from r1tune.errors import R1TuneError
from r1tune.files import write_text


def load_section(cls: type[Section], raw: dict, where: str = "config"):
    """Validate one section read from its own file (e.g. `--rules`, `--spec`); errors name the key."""
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise R1TuneError(f"{where}: {problems}") from None


def set_key(tree: dict, key: str, value) -> dict:
    """tree["a"]["b"] = value for key "a.b" (creating the levels)."""
    node = tree
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return tree


def parse_overrides(pairs: list[str]) -> dict:
    """["train.lr=1e-4", "method.name=full"] → nested dict, values parsed as YAML scalars/lists (`--set`)."""
    tree: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise R1TuneError(f"--set expects key=value, got '{pair}'")
        key, value = pair.split("=", 1)
        try:
            set_key(tree, key, yaml.safe_load(value) if value != "" else None)
        except yaml.YAMLError as e:
            raise R1TuneError(f"--set {pair}: cannot read the value ({e})") from None
    return tree


def flag_overrides(keys: dict[str, str], given: dict) -> dict:
    """Typed command-line values → nested overrides, as they are (no YAML round trip: `--layers 5` stays the
    string '5', `--out 2024` the folder '2024'). `keys` maps flag name → config key; None means not given."""
    tree: dict = {}
    for flag, value in given.items():
        if value is not None:
            set_key(tree, keys.get(flag, flag), value)
    return tree


def merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: str | Path, what: str = "config"):
    """A YAML file's content ({} when empty); a missing file or bad YAML is one clear R1TuneError."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise R1TuneError(f"{what} file not found: {path}") from None
    except yaml.YAMLError as e:
        raise R1TuneError(f"{path}: invalid YAML: {e}") from None


def load_config(cls: type[Section], path: str | Path | None = None, overrides: dict | None = None):
    """Read YAML (optional), apply overrides, validate. Errors name the key that is wrong."""
    raw: dict = {}
    if path is not None:
        raw = read_yaml(path)
        if not isinstance(raw, dict):
            raise R1TuneError(f"{path}: a config must be a mapping of sections")
    raw = merge(raw, overrides or {})
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise R1TuneError(f"{path or 'config'}: {problems}") from None


def dump_config(config: Section, path: str | Path) -> None:
    """The config as YAML, replacing `path` only once complete (see r1tune.files)."""
    write_text(path, yaml.safe_dump(config.model_dump(mode="json"), allow_unicode=True, sort_keys=False))

