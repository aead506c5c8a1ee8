"""`r1tune search`: the best method and hyper-parameters within a budget, on Optuna (TPE + pruning).

    r1tune search configs/search-finsent.yaml --trials 20 --timeout 30m
    r1tune search CONFIG.yaml --metric accuracy --jobs 2 --storage postgresql://user:pw@host/r1tune

1. the base: a finetune config (this file's own keys, over `search.base` when given) that every trial starts from;
2. the advisor (`train/advice.py`) ranks the methods that fit the memory; the space (`train/search_space.py`)
   offers those, with LoRA shape, rate, training length, warmup, global batch, max length and reasoning;
3. the study (OUT/study.db, or any Optuna storage URL) is created or reopened: trials a killed run left
   RUNNING are marked failed and enqueued again with the same values; a fresh study runs the advisor's
   recommendation first;
4. each trial is a normal finetune run in OUT/trials/NNN/ in its own process (`train/trials.py`): its
   validation losses feed the pruner as they are logged, an out-of-memory crash fails that trial with the
   reason; a task metric (accuracy, macro_f1, rougeL, …) is then scored on the validation split by greedy
   generation (`evaluate/validation.py`). A line per trial shows the best so far and the time left;
5. OUT/best/ (the winning run), OUT/best.yaml (`r1tune finetune OUT/best.yaml` trains it again) and
   OUT/report.html (`evaluate/search_report.py`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import optuna
import torch
import yaml

from r1tune.config import FinetuneConfig, SearchConfig, SearchEvaluation, load_config, merge, read_yaml
from r1tune.errors import R1TuneError
from r1tune.evaluate.search_report import write_search_report
from r1tune.evaluate.validation import score_run, validation_items
from r1tune.files import replaced_folder, write_text
from r1tune.recipes.finetune import finetune
from r1tune.train.advice import recommend
from r1tune.train.search_space import advisor_values, build_space, enqueueable, sample, trial_config
from r1tune.train.trials import DeviceSlots, Heartbeat, is_stale, owner, read_evals, run_trial_process

FINETUNE_KEYS = set(FinetuneConfig.model_fields) - {"out"}  # every section a trial's finetune run reads
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


class TrialFailed(Exception):
    """A trial that ended without a value (out of memory, a crash, the time limit): recorded, the study goes on."""


def search(cfg: SearchConfig) -> dict:
    s = cfg.search
    out = Path(cfg.out)
    started = time.time()
    deadline = started + s.timeout if s.timeout else None
    base = base_config(cfg)
    if not base.data.validation and base.data.val_split == 0:
        raise R1TuneError("search: trials are judged on a validation split: set data.validation or data.val_split")
    metric_names = [s.metric, *s.objectives]
    directions = [direction(name, s.direction if k == 0 else "auto") for k, name in enumerate(metric_names)]

    print(f"r1tune search: asking the advisor about {base.model.name_or_path} on {base.data.train}")
    advice = recommend(base.model.name_or_path, base.data.train, s.memory, keep_general_ability=s.keep_general_ability)
    space = build_space(advice, base, s.space)
    out.mkdir(parents=True, exist_ok=True)
    study = open_study(cfg, directions)
    redone = recover_interrupted(study)
    if not study.get_trials(deepcopy=False):
        if s.advisor_first:
            first = advisor_values(advice, base, space)
            fixed = enqueueable(first, space)
            study.enqueue_trial(fixed, user_attrs={"advisor": True, "fixed": sorted(fixed), "advisor_values": first})
        for values in s.enqueue:
            study.enqueue_trial(values)

    done = counted(study)
    remaining = s.trials - done
    top = advice.settings[0]
    print(f"  advisor: {top.method}{f' r{top.lora_r}' if top.lora_r else ''}, lr {top.lr:.0e}, micro-batch "
          f"{top.batch_size} × {top.grad_accum}; methods that fit: {', '.join(advice.fitting_methods())}\n"
          f"  study {s.study_name} in {storage_url(cfg)}: {done} of {s.trials} trials done"
          + (f", {redone} interrupted trial(s) to redo" if redone else "") + f"; {len(space)} dimensions")

    slots = DeviceSlots(torch.cuda.device_count() if torch.cuda.is_available() else 0)
    with Heartbeat(study) as heartbeat:
        objective = make_objective(cfg, base, advice, space, metric_names, deadline, slots, heartbeat)
        progress = make_progress(s.trials, metric_names, started, deadline, s.jobs)
        if remaining > 0:
            budget = max(0.0, deadline - time.time()) if deadline else None  # the advisor's time counts too
            study.optimize(objective, n_trials=remaining, timeout=budget, n_jobs=s.jobs, catch=(TrialFailed,),
                           callbacks=[progress, stop_when_enough(s.trials)])
    return write_outputs(cfg, study, metric_names, time.time() - started)


def base_config(cfg: SearchConfig) -> FinetuneConfig:
    """The finetune config every trial starts from: `search.base` (a finetune YAML) with this file's keys over it."""
    own = cfg.model_dump(mode="json", include=FINETUNE_KEYS, exclude_unset=True)
    own = {k: v for k, v in own.items() if v}
    raw = merge(read_yaml(cfg.search.base), own) if cfg.search.base else own
    raw.pop("out", None)
    return load_config(FinetuneConfig, None, raw)


def direction(metric: str, asked: str) -> str:
    if asked != "auto":
        return asked
    return "minimize" if metric in ("val_loss", "memory", "time") else "maximize"


def storage_url(cfg: SearchConfig) -> str:
    return cfg.search.storage or f"sqlite:///{Path(cfg.out).resolve() / 'study.db'}"


def open_study(cfg: SearchConfig, directions: list[str]):
    s = cfg.search
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # TPE's group / liar flags
    multi = len(directions) > 1
    if multi or s.pruner == "none":
        pruner = optuna.pruners.NopPruner()  # Optuna cannot prune a multi-objective trial
    elif s.pruner == "hyperband":
        pruner = optuna.pruners.HyperbandPruner()
    else:
        pruner = optuna.pruners.MedianPruner(n_startup_trials=s.pruner_startup_trials,
                                             n_warmup_steps=s.pruner_warmup_steps)
    # few trials: fewer random start-up trials before TPE models the good region; parallel jobs must not all
    # sample the same point (constant liar)
    sampler = optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=max(2, min(10, s.trials // 3)),
                                         constant_liar=s.jobs > 1, multivariate=True, group=True)
    try:
        return optuna.create_study(storage=storage_url(cfg), study_name=s.study_name, sampler=sampler, pruner=pruner,
                                   directions=directions, load_if_exists=True)
    except ValueError as e:  # the stored study was made with other directions
        raise R1TuneError(f"search.study_name {s.study_name}: {e}") from None


def recover_interrupted(study) -> int:
    """Trials a killed run left RUNNING: marked failed (not counted) and enqueued again with the same values."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if not is_stale(t.user_attrs):
            continue
        storage = study._storage
        storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        storage.set_trial_user_attr(t._trial_id, "fail_reason", "interrupted (its process died): redone")
        storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        keep = ("advisor", "fixed", "advisor_values")
        attrs = {"redo_of": t.number, **{k: t.user_attrs[k] for k in keep if k in t.user_attrs}}
        study.enqueue_trial(t.params, user_attrs=attrs)
        n += 1
    return n


def counted(study) -> int:
    """Finished trials, an interrupted one not counted (it is redone)."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=FINISHED) if not t.user_attrs.get("interrupted"))


def stop_when_enough(total: int):
    def callback(study, trial) -> None:
        if counted(study) >= total:  # other machines share the study: their trials count too
            study.stop()
    return callback


def make_objective(cfg: SearchConfig, base: FinetuneConfig, advice, space: dict, metric_names: list[str],
                   deadline: float | None, slots: DeviceSlots, heartbeat: Heartbeat):
    s = cfg.search
    multi = len(metric_names) > 1
    sign = -1.0 if direction(s.metric, s.direction) == "maximize" else 1.0  # intermediate values are val losses

    def objective(trial):
        folder = Path(cfg.out) / "trials" / f"{trial.number:03d}"
        advisor = trial.user_attrs.get("advisor", False)
        values = sample(trial, space, only=trial.user_attrs.get("fixed") if advisor else None)
        if advisor:  # what the advisor chose outside the searched ranges applies too
            values = {**trial.user_attrs.get("advisor_values", {}), **values}
        trial_cfg = trial_config(base, values, space, advice, str(folder), s.keep_general_ability)
        for key, value in {**owner(), "folder": str(folder)}.items():
            trial.set_user_attr(key, value)
        if folder.exists():  # left by an earlier study of the same name: this trial starts clean
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        write_text(folder / "trial.json", json.dumps({
            "config": trial_cfg.model_dump(mode="json"), "metrics": [m for m in metric_names
                                                                     if m not in ("memory", "time")],
            "evaluation": s.evaluation.model_dump(mode="json")}, ensure_ascii=False, indent=1))

        def on_eval(step: int, loss: float) -> bool:
            if multi:
                return False
            trial.report(sign * loss, step)
            return trial.should_prune()

        slot = slots.take()
        env = None if slot is None else {**os.environ, "CUDA_VISIBLE_DEVICES": str(slot)}
        heartbeat.watch(trial._trial_id)
        try:
            outcome = run_trial_process([sys.executable, "-m", "r1tune.recipes.search", "--trial", str(folder)],
                                        folder, on_eval, deadline, env)
        finally:
            heartbeat.forget(trial._trial_id)
            slots.give(slot)
        trial.set_user_attr("seconds", round(outcome.seconds, 1))
        if outcome.state == "pruned":
            trial.set_user_attr("prune_reason", outcome.reason)
            raise optuna.TrialPruned(outcome.reason)
        if outcome.state == "stopped":
            trial.set_user_attr("interrupted", True)
            trial.study.enqueue_trial(trial.params, user_attrs={"redo_of": trial.number})
        if outcome.state != "complete":
            trial.set_user_attr("fail_reason", outcome.reason)
            raise TrialFailed(outcome.reason)
        result = outcome.result
        trial.set_user_attr("peak_memory_bytes", result.get("peak_memory_bytes"))
        found = [result["memory"] if m == "memory" else result["time"] if m == "time" else result[m]
                 for m in metric_names]
        return found if multi else found[0]

    return objective


def make_progress(total: int, metric_names: list[str], started: float, deadline: float | None, jobs: int):
    def progress(study, trial) -> None:
        done = counted(study)
        reason = trial.user_attrs.get("fail_reason") or trial.user_attrs.get("prune_reason")
        line = f"trial {trial.number:03d} {trial.state.name.lower()}: "
        if trial.state == optuna.trial.TrialState.COMPLETE:  # a pruned trial's value is its last val loss
            line += ", ".join(f"{name} {v:.4g}" for name, v in zip(metric_names, trial.values))
        else:
            line += reason or ""
        try:
            best = ([f"{t.number}" for t in study.best_trials] if len(metric_names) > 1 else
                    [f"{study.best_trial.number} ({study.best_value:.4g})"])
            line += f" — best so far: trial {', '.join(best)}"
        except ValueError:
            line += " — no complete trial yet"
        elapsed = time.time() - started
        if deadline:
            left = max(0.0, deadline - time.time())
        else:
            left = elapsed / max(1, done) * max(0, total - done) / jobs if done else float("nan")
        print(f"{line} — {done}/{total} done, {_clock(left)} left", flush=True)
    return progress


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def best_trial(study, metric_names: list[str]):
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return None
    if len(metric_names) == 1:
        return study.best_trial
    # several objectives: of the Pareto front, the trial best on the first (the quality metric)
    pick = max if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else min
    return pick(study.best_trials, key=lambda t: t.values[0])


def write_outputs(cfg: SearchConfig, study, metric_names: list[str], seconds: float) -> dict:
    out = Path(cfg.out)
    best = best_trial(study, metric_names)
    trials = study.get_trials(deepcopy=False)
    states = {name: sum(t.state.name == name for t in trials) for name in ("COMPLETE", "PRUNED", "FAIL")}
    summary = [f"metric: {metric_names[0]} ({study.directions[0].name.lower()})"
               + (f"; other objectives: {', '.join(metric_names[1:])}" if len(metric_names) > 1 else ""),
               f"{states['COMPLETE']} complete, {states['PRUNED']} pruned, {states['FAIL']} failed "
               f"({sum(bool(t.user_attrs.get('interrupted')) for t in trials)} of them interrupted and redone)",
               f"storage: {storage_url(cfg)}, study {cfg.search.study_name}"]
    result = {"trials": len(trials), **{k.lower(): v for k, v in states.items()}, "best": None}
    if best is not None:
        folder = Path(best.user_attrs["folder"])
        with replaced_folder(out / "best") as temp:
            shutil.copytree(folder, temp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("checkpoints"))
        best_cfg = load_config(FinetuneConfig, folder / "config.yaml", {"out": str(out / "best-rerun")})
        values = dict(zip(metric_names, best.values))
        header = (f"# r1tune finetune {out / 'best.yaml'}\n# trial {best.number} of study {cfg.search.study_name}: "
                  + ", ".join(f"{k} {v:.6g}" for k, v in values.items()) + f" (its run: {out / 'best'})\n")
        write_text(out / "best.yaml", header + yaml.safe_dump(best_cfg.model_dump(mode="json"), allow_unicode=True,
                                                               sort_keys=False))
        result["best"] = {"trial": best.number, "values": values, "params": best.params,
                          "advisor": bool(best.user_attrs.get("advisor"))}
        summary.insert(0, f"best: trial {best.number} " + ", ".join(f"{k} {v:.4g}" for k, v in values.items())
                       + f" — {json.dumps(best.params)}")
        advisor = next((t for t in trials if t.user_attrs.get("advisor") and t.state.name == "COMPLETE"), None)
        if advisor is not None:
            result["advisor"] = {"trial": advisor.number, "values": dict(zip(metric_names, advisor.values))}
            summary.insert(1, f"advisor's trial {advisor.number}: {metric_names[0]} {advisor.values[0]:.4g}")
    write_search_report(study, out / "report.html", metric_names, best.number if best else None, summary)
    write_text(out / "search.json", json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print("\n".join(summary) + f"\nreport: {out / 'report.html'} ({seconds:.0f} s)")
    return result


def run_trial(folder: Path) -> None:
    """The trial child: the finetune run, then its metrics on the validation split, into result.json."""
    spec = json.loads((folder / "trial.json").read_text(encoding="utf-8"))
    cfg = FinetuneConfig.model_validate(spec["config"])
    started = time.perf_counter()
    summary = finetune(cfg)
    seconds = time.perf_counter() - started
    evals = read_evals(folder / "metrics.jsonl")
    if not evals:
        raise R1TuneError(f"{folder}: no validation loss was logged (an empty validation split?)")
    result = {"val_loss": evals[-1][1], "memory": summary["training"]["peak_memory_bytes"], "time": seconds,
              "peak_memory_bytes": summary["training"]["peak_memory_bytes"], "steps": summary["steps"]}
    task_metrics = [m for m in spec["metrics"] if m != "val_loss"]
    if task_metrics:
        evaluation = SearchEvaluation.model_validate(spec["evaluation"])
        items = validation_items(cfg.data, cfg.train.seed, evaluation.max_samples)
        result.update(score_run(str(folder), items, task_metrics, evaluation))
    write_text(folder / "result.json", json.dumps(result, indent=1) + "\n")


if __name__ == "__main__" and sys.argv[1:2] == ["--trial"]:
    try:
        run_trial(Path(sys.argv[2]))
    except R1TuneError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
