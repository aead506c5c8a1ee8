"""Continual fine-tuning inside `r1tune finetune` (issue 15): continue a parent run on new data, replay what
came before, pull toward the parent's weights, and gate the result on forgetting.

    r1tune finetune --model BASE --data a.jsonl --test a_test.jsonl --out runs/m1          # first increment
    r1tune finetune --continue-from runs/m1 --data b.jsonl --test b_test.jsonl --out runs/m2 --replay 0.2
    r1tune finetune --continue-from runs/m2 --data c.jsonl --out runs/m3 --set continual.ewc=50

The finetune recipe calls, in order:
1. `prepare_continual(cfg)` before anything is read: the parent resolved (it must be an r1tune finetune run),
   its lineage read (a hand-edited one stops) or built from its config and provenance, the method and base
   model taken from it (a different one given stops), the template compared, and `--replay R` turned into
   `data.mix` sources over the earlier increments' training files (a file that changed or vanished stops);
2. `continue_model(model, parent)`: the parent's adapter loaded trainable (full / freeze runs load the parent's
   weights as their base model, so the method wraps them as usual);
3. `make_anchor(...)`: L2 / EWC toward the weights the run starts from (EWC's Fisher from the parent's folder,
   estimated there first when the parent did not store one);
4. `finish_continual(...)` after final/ is written: Fisher for the next increment (`continual.fisher_samples`),
   then this run evaluated on every test set of the lineage and the general set, the gate against the parent,
   RUN/lineage.json and RUN/lineage.html. `promoted: false` makes the command exit with code 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from r1tune.config import FinetuneConfig, MixSource
from r1tune.data.formats import load_samples
from r1tune.errors import R1TuneError
from r1tune.evaluate.gate import GENERAL, evaluate_sets, gate_verdict, write_lineage_report
from r1tune.model.load import load_tokenizer
from r1tune.model.runs import Run, check_same_base, load_for_inference, resolve_run
from r1tune.model.template import RESOURCES, resolve_template, template_hash
from r1tune.train.anchor import Anchor, estimate_fisher, load_fisher, save_fisher
from r1tune.train.data import file_hash, tokenize_samples
from r1tune.train.lineage import (
    check_recorded,
    file_record,
    read_lineage,
    task_names,
    unique_name,
    write_lineage,
)

GENERAL_SET = RESOURCES / "datasets" / "general" / "general.jsonl"


@dataclass
class Parent:
    run: Run
    cfg: FinetuneConfig
    lineage: dict  # the parent's lineage (read from its folder, or built for a run without one)

    @property
    def is_adapter(self) -> bool:
        return self.run.kind == "adapter"


def lineage_from_run(run: Run, cfg: FinetuneConfig) -> dict:
    """A one-increment lineage for a finetune run that has no lineage.json (its data checked against its hash)."""
    data = cfg.data
    recorded = run.provenance.get("data_hash")
    if recorded and file_hash(data.train, data.validation) != recorded:
        raise R1TuneError(f"{data.train}: the parent's training data changed since {run.root} was trained "
                          f"(data_hash {recorded} in its provenance.json): restore it, or start a new lineage")
    increment = {
        "name": run.root.name, "run": str(run.root.resolve()), "parent": None, "train": [file_record(data.train)],
        "mix": [], "train_samples": run.provenance.get("train_samples"), "test": None,
        "method": cfg.method.name, "base_model": run.provenance.get("base_model"),
        "template_hash": run.provenance.get("template_hash"), "replay": 0.0, "l2": 0.0, "ewc": 0.0,
        "metrics": {}, "gate": None, "promoted": True,
    }
    return {"increments": [increment]}


def resolve_parent(path: str) -> tuple[Run, FinetuneConfig]:
    run = resolve_run(path)
    if run.kind not in ("adapter", "model") or not (run.folder / "provenance.json").is_file():
        raise R1TuneError(f"--continue-from {path}: not an r1tune run (a run folder holds final/ with "
                          "provenance.json and config.yaml)")
    cfg = run.config()
    if not isinstance(cfg, FinetuneConfig) or run.provenance.get("stage") == "grpo":
        raise R1TuneError(f"--continue-from {path}: not a finetune run (no finetune config.yaml in {run.root})")
    return run, cfg


def replay_sources(lineage: dict, share: float) -> list[MixSource]:
    """`share` of every batch over the earlier increments' training files, in proportion to their sizes."""
    increments = lineage["increments"]
    sizes = []
    for inc in increments:
        n = inc.get("train_samples")
        if not n:  # older record without a count: count the file's records
            n = len(load_samples(inc["train"][0]["path"])[0])
        sizes.append(n)
    sources = []
    for inc, size in zip(increments, sizes):
        path = check_recorded(inc["train"][0], f"training data of increment {inc['name']!r} (replayed)")
        sources.append(MixSource(path=str(path), share=share * size / sum(sizes), name=f"replay:{inc['name']}"))
    return sources


def prepare_continual(cfg: FinetuneConfig) -> tuple[FinetuneConfig, Parent | None]:
    cc = cfg.continual
    if not cc.continue_from:
        for key in ("replay", "l2", "ewc"):
            if getattr(cc, key):
                raise R1TuneError(f"continual.{key} needs a parent run: pass --continue-from RUN")
        return cfg, None
    run, parent_cfg = resolve_parent(cc.continue_from)
    method = parent_cfg.method
    if "name" in cfg.method.model_fields_set and cfg.method.name != method.name:
        raise R1TuneError(f"--method {cfg.method.name}: the parent {run.root} was trained with {method.name}; a "
                          f"continued run keeps its parent's method (leave --method out)")
    base = run.provenance.get("base_model") or parent_cfg.model.name_or_path
    if run.kind == "adapter":
        if cfg.model.name_or_path:
            check_same_base(run, cfg.model.name_or_path)
        model = parent_cfg.model.model_copy(update={"name_or_path": run.base_model()})
    else:  # full / freeze: the parent's weights are the base the method wraps
        given = cfg.model.name_or_path
        if given and Path(given).resolve() not in (Path(base).resolve(), run.folder.resolve()) and given != base:
            raise R1TuneError(f"--model {given}: the parent {run.root} was trained from {base}; a continued run "
                              "starts from its parent's weights (leave --model out)")
        model = parent_cfg.model.model_copy(update={"name_or_path": str(run.folder)})
    lineage = read_lineage(run.root) or lineage_from_run(run, parent_cfg)
    if "chat_template" not in cfg.data.model_fields_set:  # unless told otherwise, the parent's
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(
            update={"chat_template": parent_cfg.data.chat_template})})
    template = resolve_template(load_tokenizer(model), cfg.data.chat_template)
    trained = run.provenance.get("template_hash")
    if trained and trained != template_hash(template):
        raise R1TuneError(f"data.chat_template={cfg.data.chat_template} gives template {template_hash(template)}, "
                          f"but the parent {run.root} was trained with {trained}: a continued run keeps its "
                          "parent's template")
    # a run's own config.yaml (a resume) already lists the replay sources this step adds: never twice
    mix = [s for s in cfg.data.mix if not s.name.startswith("replay:")]
    mix += replay_sources(lineage, cc.replay) if cc.replay else []
    data = cfg.data.model_copy(update={"mix": mix})
    cfg = cfg.model_copy(update={"model": model, "method": method, "data": data})
    return cfg, Parent(run, parent_cfg, lineage)


def continue_model(model, parent: Parent):
    """The parent's adapter on `model`, trainable (adapter parents only)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(parent.run.folder), is_trainable=True)


def make_anchor(model, cfg: FinetuneConfig, parent: Parent | None, tokenizer, template: str, plan: dict, device,
                sharded: bool = False):
    """The L2 / EWC anchor, or None when both are off."""
    cc = cfg.continual
    if parent is None or not (cc.l2 or cc.ewc):
        return None
    if sharded:
        raise R1TuneError("continual.l2 / continual.ewc need the whole parameters on every process: not available "
                          "under FSDP / DeepSpeed (use replay there)")
    fisher = load_fisher(parent.run.folder) if cc.ewc else None
    if cc.ewc and fisher is None:
        increment = parent.lineage["increments"][-1]
        path = check_recorded(increment["train"][0], f"training data of the parent {parent.run.root}")
        samples, _ = load_samples(path, cfg.data.format, "skip", cfg.data.encoding, cfg.data.columns)
        tokenized, _ = tokenize_samples(samples, tokenizer, template, cfg.data, [], plan)
        n = cc.fisher_samples or 64
        fisher = estimate_fisher(model, tokenized, n, tokenizer.pad_token_id, device)
        where = save_fisher(fisher, parent.run.folder)
        print(f"EWC: the parent had no Fisher information; estimated on {min(n, len(tokenized))} of its training "
              f"samples and stored in {where}")
    return Anchor(model, cc.l2, cc.ewc, fisher)


def this_increment(cfg: FinetuneConfig, out: Path, parent: Parent | None, summary: dict) -> dict:
    cc = cfg.continual
    replayed = {s.name for s in cfg.data.mix if s.name.startswith("replay:")}
    return {
        "name": unique_name(parent.lineage if parent else None, out.name), "run": str(out.resolve()),
        "parent": str(parent.run.root.resolve()) if parent else None, "train": [file_record(cfg.data.train)],
        "mix": [{**file_record(s.path), "share": s.share, "name": s.name} for s in cfg.data.mix
                if s.name not in replayed],
        "train_samples": summary.get("train_samples"), "test": file_record(cc.test) if cc.test else None,
        "method": cfg.method.name,
        "base_model": parent.lineage["increments"][0]["base_model"] if parent else summary.get("base_model"),
        "template_hash": summary.get("template_hash"), "replay": cc.replay, "l2": cc.l2, "ewc": cc.ewc,
    }


def finish_continual(cfg: FinetuneConfig, parent: Parent | None, out: Path, model, samples: list, pad_id: int,
                     device, summary: dict) -> dict | None:
    """After final/ is written (main process): Fisher, evaluation, gate, lineage.json and lineage.html."""
    cc = cfg.continual
    if cc.fisher_samples:
        save_fisher(estimate_fisher(model, samples, cc.fisher_samples, pad_id, device), out / "final")
    if parent is None and not cc.test:
        return None
    increment = this_increment(cfg, out, parent, summary)
    earlier = [dict(inc) for inc in parent.lineage["increments"]] if parent else []
    lineage = {"increments": [*earlier, increment]}
    sets = {inc["name"]: check_recorded(inc["test"], f"test set of increment {inc['name']!r}")
            for inc in lineage["increments"] if inc.get("test")}
    if cc.general_enabled:
        sets[GENERAL] = Path(cc.general or GENERAL_SET)
    tuned, tokenizer = load_for_inference(out / "final")
    increment["metrics"] = evaluate_sets(tuned, tokenizer, sets, cc.max_new_tokens, cc.max_test_samples)
    del tuned
    verdict = {"promoted": True, "drops": {}, "failed": []}
    if parent:
        previous = task_names(parent.lineage)
        parent_row = dict(earlier[-1].get("metrics") or {})
        missing = {n: p for n, p in sets.items() if n in [*previous, GENERAL] and n not in parent_row}
        if missing:  # a parent that never measured these (no lineage, or other settings): measured now
            model_p, tok_p = load_for_inference(parent.run)
            parent_row.update(evaluate_sets(model_p, tok_p, missing, cc.max_new_tokens, cc.max_test_samples))
            earlier[-1]["metrics"] = parent_row
            del model_p
        verdict = gate_verdict(parent_row, increment["metrics"], previous, cc.gate.previous, cc.gate.general)
    increment["gate"], increment["promoted"] = verdict, verdict["promoted"]
    write_lineage(out, lineage)
    write_lineage_report(lineage, out / "lineage.html")
    row = ", ".join(f"{k} {v:.3f}" for k, v in increment["metrics"].items()) or "no test sets to evaluate"
    print(f"lineage: increment {len(lineage['increments'])} ({increment['name']}): {row}")
    if verdict["promoted"]:
        print(f"gate: promoted ({out / 'lineage.json'})")
    else:
        print("gate: NOT promoted — " + "; ".join(verdict["failed"]))
    return {"promoted": verdict["promoted"], "metrics": increment["metrics"], "gate": verdict}
