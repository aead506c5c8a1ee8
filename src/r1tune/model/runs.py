"""What a run folder is: resolved once into a `Run`, then loaded for inference the same way everywhere.

    run = resolve_run("runs/quickstart/tuned")          # Run(kind="adapter", folder=…/tuned/final, …)
    model, tokenizer = load_for_inference(run)           # evaluate, export, serve and chat all do this

A path names one of:
- a finetune (or grpo) run `RUN/` or its `RUN/final/`: the adapter or the full model, the tokenizer,
  config.yaml and provenance.json (base model, method, template, data hash);
- a checkpoint `RUN/checkpoints/step-NNNNNN/`: the trainable weights in r1tune's own format, loaded onto the
  run's base model wrapped for its method exactly as training wrapped it;
- an export (`RUN/merged`, `RUN/int8`) or any model folder, or a hub id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import accelerate
import peft
import torch
import transformers
from peft import PeftModel
from safetensors.torch import load_file

import r1tune
from r1tune.config import (
    FinetuneConfig,
    GrpoConfig,
    MethodConfig,
    ModelConfig,
    Section,
    dump_config,
    load_config,
    read_yaml,
)
from r1tune.errors import R1TuneError
from r1tune.files import replaced_folder, write_text
from r1tune.model.load import load_model, load_tokenizer, resolve_dtype
from r1tune.model.methods import apply_method, load_trainable_state, quantization_config, save_trained

RunKind = Literal["adapter", "model", "checkpoint", "hub"]


def library_versions() -> dict:
    return {"r1tune": r1tune.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "accelerate": accelerate.__version__}


def write_final(folder: Path, model, tokenizer, config: Section, provenance: dict) -> Path:
    """A trained run's `final/`: the adapter (PEFT methods) or the whole model, the tokenizer with its chat
    template, the config that made it and its provenance — everything `resolve_run` reads back. Built beside
    `folder` and swapped in complete: a crash while saving leaves the previous `final/` whole."""
    with replaced_folder(folder) as partial:
        save_trained(model, partial)
        tokenizer.save_pretrained(partial)
        dump_config(config, partial / "config.yaml")
        write_text(partial / "provenance.json", json.dumps(provenance, indent=1, ensure_ascii=False))
    return folder


def read_provenance(folder: str | Path) -> dict:
    p = Path(folder) / "provenance.json"
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except ValueError as e:
        raise R1TuneError(f"{p}: not valid JSON ({e})") from None


@dataclass(frozen=True)
class Run:
    path: str  # as the user gave it
    folder: Path  # where the weights are
    root: Path  # the run folder (RUN for RUN, RUN/final and RUN/checkpoints/step-N); the folder itself otherwise
    kind: RunKind
    provenance: dict

    @property
    def source(self) -> str:
        """What `from_pretrained` is given for the weights and the tokenizer: the folder, or the hub id."""
        return self.path if self.kind == "hub" else str(self.folder)

    @property
    def name(self) -> str:
        """A display name from the path as given (existing or not): the run folder's name for `RUN` and
        `RUN/final`, `RUN@step-000200` for a checkpoint, the last part of a hub id."""
        p = Path(self.path)
        if p.parent.name == "checkpoints":
            return f"{p.parent.parent.name}@{p.name}"
        return p.parent.name if p.name == "final" else p.name

    def config(self) -> FinetuneConfig | GrpoConfig | None:
        """The run's config.yaml (the folder's own copy first, then the run's), or None. A grpo run's (it has a
        `grpo` section) reads as a GrpoConfig: both have the `model` and `method` a checkpoint is rebuilt from."""
        for folder in (self.folder, self.root):
            if (folder / "config.yaml").exists():
                raw = read_yaml(folder / "config.yaml")
                kind = GrpoConfig if isinstance(raw, dict) and "grpo" in raw else FinetuneConfig
                return load_config(kind, folder / "config.yaml")
        return None

    def base_model(self, override: str | None = None) -> str:
        """The base an adapter or a checkpoint is loaded on: `override`, the provenance, the adapter's config."""
        if override:
            return override
        base = self.provenance.get("base_model")
        if not base and self.kind == "adapter":
            adapter_cfg = json.loads((self.folder / "adapter_config.json").read_text(encoding="utf-8"))
            base = adapter_cfg.get("base_model_name_or_path")
        if not base and self.kind == "checkpoint" and self.config() is not None:
            base = self.config().model.name_or_path
        if not base:
            raise R1TuneError(f"{self.folder}: cannot tell the base model; pass --base")
        return base


def model_fingerprint(path: str | Path) -> str | None:
    """A content fingerprint of a local model folder — config.json and each weight file's size, first and last
    MiB — cheap on a 15 GB checkpoint, yet two random inits of one architecture differ; None for a hub id."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        return None
    h = hashlib.sha256((folder / "config.json").read_bytes())
    for weights in sorted(folder.glob("*.safetensors")):
        size = weights.stat().st_size
        h.update(f"{weights.name}:{size}".encode())
        with open(weights, "rb") as f:
            h.update(f.read(1 << 20))
            f.seek(max(0, size - (1 << 20)))
            h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def check_same_base(run: Run, model: str) -> None:
    """R1TuneError when the adapter of `run` was trained on another base model than `model`: the same name, or
    local folders with the same content, pass; a hub id against a local folder cannot be told apart and passes."""
    trained_on = run.base_model()
    if trained_on == model or Path(trained_on).resolve() == Path(model).resolve():
        return
    theirs, ours = model_fingerprint(trained_on), model_fingerprint(model)
    if theirs is not None and ours is not None and theirs != ours:
        raise R1TuneError(f"{run.folder} is an adapter trained on {trained_on}, not on {model}: its weights are "
                          f"deltas of that model's. Pass --model {trained_on} (or leave --model out)")


def resolve_run(path: str | Path) -> Run:
    """The one place that decides what a path is (see the module docstring)."""
    given = str(path)
    folder = Path(path)
    if (folder / "final").is_dir():
        folder = folder / "final"
    if (folder / "trainable.safetensors").exists():
        root = folder.parent.parent
        if not (root / "config.yaml").exists():
            raise R1TuneError(f"{folder}: a checkpoint needs its run's config.yaml in {root}")
        return Run(given, folder, root, "checkpoint", read_provenance(folder))
    if not folder.exists():
        return Run(given, folder, folder, "hub", {})
    if not folder.is_dir():
        raise R1TuneError(f"{folder}: a run, a checkpoint or a model folder is a directory, not a file")
    root = folder.parent if folder.name == "final" else folder
    kind: RunKind = "adapter" if (folder / "adapter_config.json").exists() else "model"
    return Run(given, folder, root, kind, read_provenance(folder))


def load_for_inference(run: Run | str | Path, dtype: str = "auto", base: str | None = None):
    """(model, tokenizer) in eval mode, whatever the run is (adapter, full model, checkpoint, hub id)."""
    run = run if isinstance(run, Run) else resolve_run(run)
    if run.kind == "checkpoint":
        cfg = run.config()
        quantization = quantization_config(cfg.method)
        extra = {"quantization_config": quantization} if quantization else {}
        model = load_model(cfg.model.model_copy(update={"name_or_path": run.base_model(base)}),
                           dtype=resolve_dtype(dtype), **extra)
        model = apply_method(model, cfg.method, tokenizer_path=cfg.model.name_or_path)
        load_trainable_state(model, load_file(str(run.folder / "trainable.safetensors")))
        tokenizer = load_tokenizer(cfg.model)
    elif run.kind == "adapter":
        extra = {}
        if run.provenance.get("quantization"):  # a QLoRA adapter runs on the 4-bit base it was trained on
            device = "cuda" if torch.cuda.is_available() else "cpu"
            method = MethodConfig(name="qlora", quant_type=run.provenance["quantization"])
            extra = {"quantization_config": quantization_config(method), "device_map": {"": device}}
        model = load_model(ModelConfig(name_or_path=run.base_model(base), dtype=dtype), **extra)
        model = PeftModel.from_pretrained(model, str(run.folder))
        tokenizer = load_tokenizer(ModelConfig(name_or_path=run.source))
    else:
        model = load_model(ModelConfig(name_or_path=run.source, dtype=dtype))
        tokenizer = load_tokenizer(ModelConfig(name_or_path=run.source))
    model.eval()
    return model, tokenizer
