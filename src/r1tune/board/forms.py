"""What the board's forms send, turned into validated run configs and the commands that run them.

    plan = train_plan(runs, board_cfg, {"name": "fin-lora", "model": "…", "data": "uploads/train.jsonl",
                                        "method": "lora", "max_steps": 60, "extra": "train.warmup_steps=0"})
    plan.folder, plan.kind, plan.args, plan.yaml     # → jobs.launch(plan.folder, plan.kind, plan.args)

Each form becomes the same schema class the command line validates (r1tune.config) — a bad value is the same
one-line error — and a run's config is written as YAML into its folder before its child starts with it.
Every path a form names is resolved inside the runs folder (paths.inside); a base model may also be one of
the folders the operator offered (`--model`) or a hub id. "More settings" take `key=value` lines for any
config key, except the keys that name files or run code (those come from the form's checked fields).
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from r1tune.board.jobs import LAUNCH_FILE, chat_folder
from r1tune.board.paths import CONFIG_SUFFIXES, DATA_SUFFIXES, OutsideError, inside, new_name
from r1tune.config import (
    BoardConfig,
    EvaluateConfig,
    FinetuneConfig,
    GrpoConfig,
    MergeConfig,
    PrepareConfig,
    QuantizeConfig,
    Section,
    dump_config,
    load_config,
    merge,
    parse_overrides,
    read_yaml,
)
from r1tune.errors import R1TuneError

HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+")
METHODS = ("lora", "dora", "qlora", "ia3", "prefix", "prompt", "ptuning", "full", "freeze")
# what "more settings" may set, by job kind: config sections (and top-level keys) ...
EXTRA_SECTIONS = {"finetune": ("train", "method", "data", "model"),
                  "grpo": ("train", "method", "data", "model", "grpo", "rewards"),
                  "evaluate": ("generation", "bootstrap", "general", "task", "labels", "metrics", "max_samples",
                               "primary_metric", "regressions", "names")}
# ... except the keys that name files (the form's checked fields do) or run code the config names
DENIED_KEYS = ("model.name_or_path", "model.trust_remote_code", "data.train", "data.validation", "data.mix",
               "rewards.allow_code", "rewards.json_schema", "general.data", "general.predictions")


class Conflict(R1TuneError):
    """The folder a launch would write to exists already (answered 409)."""


@dataclass
class Plan:
    """A checked launch: the job's folder and kind, its `r1tune` arguments, the config written for it."""

    folder: Path
    kind: str
    args: list[str]
    config: Section | None = None
    summary: dict = field(default_factory=dict)

    @property
    def yaml(self) -> str:
        return "" if self.config is None else yaml.safe_dump(self.config.model_dump(mode="json"), allow_unicode=True,
                                                             sort_keys=False)

    def write_config(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=False)
        dump_config(self.config, self.folder / LAUNCH_FILE)
        return self.folder / LAUNCH_FILE


# ---------------------------------------------------------------- fields


def text(form: dict, key: str, default: str = "") -> str:
    value = form.get(key, default)
    if value is None:
        return default
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise R1TuneError(f"{key}: expected text")
    return str(value).strip()


def number(form: dict, key: str, kind=float):
    """A number field; None when left empty. A wrong value is one line naming the field."""
    raw = form.get(key)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool):
        raise R1TuneError(f"{key}: expected a number")
    try:
        value = kind(raw) if kind is float else int(str(raw).strip()) if isinstance(raw, str) else raw
    except ValueError:
        raise R1TuneError(f"{key}: expected {'a whole number' if kind is int else 'a number'}, got {raw!r}") from None
    if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise R1TuneError(f"{key}: expected a whole number, got {raw!r}")
    return value


def flag(form: dict, key: str) -> bool:
    value = form.get(key, False)
    return value is True or (isinstance(value, str) and value.lower() in ("1", "true", "on", "yes"))


def folder_for(root: Path, form: dict, default: str) -> Path:
    """runs/NAME for a new job; Conflict when NAME is taken."""
    name = new_name(text(form, "name") or default)
    folder = inside(root, name)
    if folder.exists():
        raise Conflict(f"{name} exists already in the runs folder: choose another name")
    return folder


def data_file(root: Path, given: str, what: str = "data", suffixes=DATA_SUFFIXES) -> Path:
    if not given:
        raise R1TuneError(f"{what}: pick a file")
    path = inside(root, given)
    if path.suffix.lower() not in suffixes:
        raise R1TuneError(f"{what}: {given} is not a {' / '.join(suffixes)} file")
    if not path.is_file():
        raise R1TuneError(f"{what}: {given} not found in the runs folder")
    return path


def run_folder(root: Path, given: str, what: str = "run") -> Path:
    if not given:
        raise R1TuneError(f"{what}: pick a run")
    folder = inside(root, given)
    if not folder.is_dir():
        raise R1TuneError(f"{what}: {given} not found in the runs folder")
    return folder


def resolve_model(root: Path, board: BoardConfig, given: str) -> str:
    """A base model the board may use: one the operator offered, a model folder inside runs, or a hub id."""
    if not given:
        raise R1TuneError("model: pick a model")
    if given in board.models:
        return str(Path(given).resolve()) if Path(given).exists() else given
    try:
        folder = inside(root, given)
    except OutsideError:
        folder = None
    if folder is not None and folder.is_dir():
        if not (folder / "config.json").is_file():
            raise R1TuneError(f"model: {given} holds no model (config.json)")
        return str(folder)
    if HUB_ID.fullmatch(given) and not Path(given).exists():
        return given
    raise OutsideError(f"model {given!r}: not one of the offered models (r1tune board --model DIR), a model folder "
                       "inside the runs folder, or a hub id")


def extra_overrides(source: str, kind: str) -> dict:
    """`key=value` lines (any config key the form has no field for) as nested overrides."""
    lines = [line.strip() for line in (source or "").splitlines()]
    tree = parse_overrides([line for line in lines if line and not line.startswith("#")])
    for key in _dotted_keys(tree):
        if key.split(".")[0] not in EXTRA_SECTIONS[kind] or any(key == d or key.startswith(d + ".")
                                                                 for d in DENIED_KEYS):
            raise R1TuneError(f"more settings: {key} cannot be set here (files come from the form's own fields, and "
                              f"the board runs no code a config names); settable: "
                              f"{', '.join(EXTRA_SECTIONS[kind])}")
    rewards = tree.get("rewards", {}).get("use") if isinstance(tree.get("rewards"), dict) else None
    if rewards and any(":" in name for name in (rewards.split(",") if isinstance(rewards, str) else rewards)):
        raise R1TuneError("more settings: rewards.use: the board runs only the built-in rewards")
    return tree


def _dotted_keys(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        keys.extend(_dotted_keys(value, name + ".") if isinstance(value, dict) and value else [name])
    return keys


def _drop_empty(tree: dict) -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            value = _drop_empty(value)
            if value:
                out[key] = value
        elif value is not None and value != "":
            out[key] = value
    return out


def validated(cls: type[Section], overrides: dict, what: str) -> Section:
    try:
        return load_config(cls, None, overrides)
    except R1TuneError as e:
        raise R1TuneError(str(e).replace("config:", f"{what}:", 1)) from None


# ---------------------------------------------------------------- train


def train_plan(root: Path, board: BoardConfig, form: dict) -> Plan:
    """finetune or grpo from the Train form."""
    kind = text(form, "kind", "finetune")
    if kind not in ("finetune", "grpo"):
        raise R1TuneError(f"kind: finetune or grpo, got {kind!r}")
    folder = folder_for(root, form, f"{kind}-run")
    method = text(form, "method", "lora")
    rank = number(form, "lora_r", int)
    tree = {
        "model": {"name_or_path": resolve_model(root, board, text(form, "model"))},
        "data": {"train": str(data_file(root, text(form, "data"))), "max_length": number(form, "max_length", int)},
        "method": {"name": method, "lora_r": rank, "lora_alpha": 2 * rank if rank else None},
        "train": {"max_steps": number(form, "max_steps", int), "batch_size": number(form, "batch_size", int),
                  "lr": number(form, "lr"), "save_every": number(form, "save_every", int)},
        "out": str(folder),
    }
    if text(form, "validation"):
        tree["data"]["validation"] = str(data_file(root, text(form, "validation"), "validation"))
    if kind == "finetune":
        tree["train"].update(grad_accum=number(form, "grad_accum", int), eval_every=number(form, "eval_every", int),
                             epochs=number(form, "epochs"))
        tree["data"]["reasoning"] = text(form, "reasoning") or None
        if text(form, "continue_from") and "continue_from" in FinetuneConfig.model_fields:
            tree["continue_from"] = str(run_folder(root, text(form, "continue_from"), "continue from"))
        cls = FinetuneConfig
    else:
        tree["data"]["max_prompt_length"] = tree["data"].pop("max_length")
        if ":" in text(form, "rewards"):
            raise R1TuneError("rewards: the board runs only the built-in rewards (no module:function)")
        tree["rewards"] = {"use": text(form, "rewards") or None}
        tree["grpo"] = {"num_generations": number(form, "num_generations", int),
                        "max_completion_length": number(form, "max_completion_length", int)}
        if text(form, "adapter"):
            adapter = run_folder(root, text(form, "adapter"), "adapter")
            if not (adapter / "final" / "adapter_config.json").is_file():
                raise R1TuneError(f"adapter: {text(form, 'adapter')} has no trained adapter (final/)")
            tree["adapter"] = str(adapter)
        cls = GrpoConfig
    tree = merge(_drop_empty(tree), extra_overrides(text(form, "extra"), kind))
    config = validated(cls, tree, "train")
    summary = {"model": text(form, "model"), "data": text(form, "data"), "method": config.method.name,
               "max_steps": config.train.max_steps}
    return Plan(folder, kind, [kind, str(folder / LAUNCH_FILE)], config, summary)


def advise_args(root: Path, board: BoardConfig, form: dict) -> list[str]:
    """`r1tune advise … --json` for the Train form's model and data (and its setting, to estimate that one)."""
    args = ["advise", "--model", resolve_model(root, board, text(form, "model")),
            "--data", str(data_file(root, text(form, "data"))), "--json", "--no-measure"]
    method = text(form, "method")
    if flag(form, "estimate_only") and method:
        if method not in METHODS:
            raise R1TuneError(f"method: one of {', '.join(METHODS)}")
        args += ["--method", method]
        for key, option in (("batch_size", "--batch-size"), ("max_length", "--max-length")):
            value = number(form, key, int)
            if value is not None:
                if value <= 0:
                    raise R1TuneError(f"{key}: must be positive")
                args += [option, str(value)]
    memory = text(form, "memory")
    if memory:
        if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", memory, re.I):
            raise R1TuneError(f"memory: like 24GiB, got {memory!r}")
        args += ["--memory", memory]
    return args


# ---------------------------------------------------------------- evaluate and export


def evaluate_plan(root: Path, board: BoardConfig, form: dict) -> Plan:
    run = run_folder(root, text(form, "run"))
    if chat_folder(run) is None:
        raise R1TuneError(f"run: {text(form, 'run')} has no trained model yet (final/)")
    folder = folder_for(root, form, f"eval-{run.name}")
    tree = {"adapter": str(run), "data": str(data_file(root, text(form, "data"))), "out": str(folder),
            "max_samples": number(form, "max_samples", int),
            "generation": {"max_new_tokens": number(form, "max_new_tokens", int)}}
    if flag(form, "compare_base"):
        base = _provenance(run).get("base_model")
        if not base:
            raise R1TuneError(f"run: {text(form, 'run')} does not record its base model; untick 'compare with base'")
        tree["model"] = base
    tree = merge(_drop_empty(tree), extra_overrides(text(form, "extra"), "evaluate"))
    config = validated(EvaluateConfig, tree, "evaluate")
    return Plan(folder, "evaluate", ["evaluate", str(folder / LAUNCH_FILE)], config,
                {"run": text(form, "run"), "data": text(form, "data")})


def _provenance(run: Path) -> dict:
    try:
        value = json.loads((run / "final" / "provenance.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def gguf_available() -> bool:
    """Whether this install has `r1tune export gguf` (issue 18)."""
    return importlib.util.find_spec("r1tune.export.gguf") is not None


def export_plan(root: Path, board: BoardConfig, form: dict) -> Plan:
    run = run_folder(root, text(form, "run"))
    if chat_folder(run) is None:
        raise R1TuneError(f"run: {text(form, 'run')} has no trained model yet (final/)")
    kind = text(form, "format", "merge")
    folder = folder_for(root, form, f"{run.name}-{kind}")
    summary = {"run": text(form, "run"), "format": kind}
    if kind == "merge":
        config = validated(MergeConfig, _drop_empty({"run": str(run), "out": str(folder / "model"),
                                                     "dtype": text(form, "dtype") or None}), "export")
        args = ["export", "merge", config.run, "--out", config.out, "--dtype", config.dtype]
    elif kind == "int8":
        data = text(form, "data")
        config = validated(QuantizeConfig, _drop_empty({
            "run": str(run), "int8": True, "out": str(folder / "model"),
            "data": str(data_file(root, data)) if data else None,
            "max_samples": number(form, "max_samples", int)}), "export")
        args = ["export", "quantize", config.run, "--int8", "--out", config.out]
        if config.data:
            args += ["--data", config.data]
        if config.max_samples:
            args += ["--max-samples", str(config.max_samples)]
    elif kind == "gguf" and gguf_available():
        gguf_type = text(form, "gguf_type", "q8_0")
        if gguf_type not in ("f16", "bf16", "q8_0", "q4_0"):
            raise R1TuneError("gguf type: f16, bf16, q8_0 or q4_0")
        config = None
        args = ["export", "gguf", str(run), "--type", gguf_type, "--out", str(folder / "gguf" / f"{run.name}.gguf")]
    else:
        raise R1TuneError(f"format: merge, int8{', gguf' if gguf_available() else ''}; got {kind!r}")
    return Plan(folder, kind, args, config, summary)


# ---------------------------------------------------------------- data


def check_plan(root: Path, form: dict) -> Plan:
    source = data_file(root, text(form, "file"), "file")
    folder = folder_for(root, form, f"check-{source.stem}")
    args = ["prepare", "check", str(source), "--out", str(folder)]
    labels = text(form, "labels")
    if labels:
        args += ["--labels", labels]
    return Plan(folder, "check", args, None, {"file": text(form, "file")})


def _config_path(root: Path, config_dir: Path, value: str | None, what: str) -> str | None:
    """A path written in a prepare config, relative to that config's folder, checked to stay in the runs folder."""
    if not value:
        return value
    path = Path(value)
    target = (path if path.is_absolute() else config_dir / path).resolve()
    base = root.resolve()
    if target != base and base not in target.parents:
        raise OutsideError(f"{what}: {value} is outside the runs folder")
    return str(target)


def prepare_plan(root: Path, board: BoardConfig, form: dict) -> Plan:
    source = data_file(root, text(form, "config"), "prepare config", CONFIG_SUFFIXES)
    raw = read_yaml(source)
    if not isinstance(raw, dict):
        raise R1TuneError(f"{text(form, 'config')}: a prepare config must be a mapping of sections")
    folder = folder_for(root, form, f"prepare-{source.stem}")
    config = validated(PrepareConfig, {**raw, "out": str(folder)}, "prepare config")
    here = source.parent
    updates = {"input": _config_path(root, here, config.input, "input")}
    if not config.input:
        raise R1TuneError("prepare config: set `input` (the raw data file)")
    config = config.model_copy(update=updates)
    config.convert.spec = _config_path(root, here, config.convert.spec, "convert.spec")
    config.augment.dictionary = _config_path(root, here, config.augment.dictionary, "augment.dictionary")
    config.augment.wordnet_path = _config_path(root, here, config.augment.wordnet_path, "augment.wordnet_path")
    for check in config.check.checks:
        if isinstance(check.json_schema, str):
            check.json_schema = _config_path(root, here, check.json_schema, f"check.checks {check.name}")
    if config.window.enabled and config.window.model:
        config.window.model = resolve_model(root, board, config.window.model)
    return Plan(folder, "prepare", ["prepare", str(folder / LAUNCH_FILE)], config,
                {"config": text(form, "config")})
