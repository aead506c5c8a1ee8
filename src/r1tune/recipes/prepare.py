"""`r1tune prepare`: raw domain records → clean, checked, deduplicated, split training data, with numbers.

    r1tune prepare configs/prepare-finance.yaml            # the whole pipeline, configured
    r1tune prepare clean raw.jsonl clean.jsonl             # or any step alone, JSONL in / JSONL out

The pipeline, each step enabled in its config section (see `PrepareConfig`):

    clean → convert → dedupe → window → tag → check → split → augment (train only) → leakage check

Every step streams, writes OUT/NN-step.jsonl and a log next to it (one line per dropped, changed or
added record, with source and reason), and prints its counts. The quality report (OUT/quality.json,
OUT/report.md) covers the data as it will be trained on, plus the pipeline's counts and any leakage.
A crossed quality threshold fails the run (exit code 2) after everything has been written.

Nothing is destroyed: before anything runs, every file the pipeline will write (`pipeline_outputs`) is
checked against its input files (none may be one, in any spelling), and each file is written beside its
target and renamed into place when complete (r1tune.files).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from r1tune.config import (
    CheckConfig,
    PrepareConfig,
    dump_config,
    load_config,
    load_section,
    parse_overrides,
)
from r1tune.data.augment import augment_file
from r1tune.data.clean import clean_file, load_rules_file
from r1tune.data.convert import convert_file
from r1tune.data.encodings import reading_as
from r1tune.data.lang import tag_file
from r1tune.data.quality import check_file, write_report
from r1tune.data.steplog import check_step_files, format_summary, log_path_for
from r1tune.data.window import window_file
from r1tune.errors import R1TuneError
from r1tune.files import check_outputs, write_text


class QualityGateFailed(R1TuneError):
    """The data failed the quality gate: a configured threshold was crossed, or no line of it can be trained on
    (all unreadable, no known format); the report says which and by how much."""


def _gate(report: dict, where: str) -> None:
    crossed = [t for t in report["thresholds"] if t["crossed"]]
    reasons = list(report.get("failures", []))
    if crossed:
        reasons.append("quality thresholds crossed: " + ", ".join(
            f"{t['rule']} {t['rate']:.2%} > {t['max_rate']:.2%}" for t in crossed))
    if reasons:
        raise QualityGateFailed(f"{'; '.join(reasons)} (see {where})")


# ------------------------------------------------------------------ the pipeline

FILE_STEPS = ("clean", "convert", "dedupe", "window", "tag")  # the steps that write OUT/NN-step.jsonl, in order
SPLIT_FILES = ("train.jsonl", "validation.jsonl", "test.jsonl", "split.log.jsonl", "leakage.jsonl")


def pipeline_outputs(cfg: PrepareConfig) -> list[Path]:
    """Every file the configured pipeline writes into its out folder (`run_prepare` writes no other)."""
    out = Path(cfg.out)
    names = [name for name in FILE_STEPS if getattr(cfg, name).enabled]
    if cfg.augment.enabled and not cfg.split.enabled:
        names.append("augment")
    files = [out / "prepare-config.yaml", out / "summary.json"]
    for n, name in enumerate(names, 1):
        files += [out / f"{n:02d}-{name}.jsonl", out / f"{n:02d}-{name}.log.jsonl"]
    if cfg.tag.enabled:
        files.append(out / "tagging.json")
    if cfg.check.enabled:
        files += [out / "quality.json", out / "report.md", out / "problems.jsonl"]
    if cfg.split.enabled:
        files += [out / name for name in SPLIT_FILES]
        if cfg.augment.enabled:
            files += [out / "train-augmented.jsonl", out / "train-augmented.log.jsonl"]
    return files


def check_line(report: dict) -> str:
    """The console line of the check, the same in the pipeline and alone: every line read counts."""
    return (f"check: {report['records']} lines, {report['unreadable_records']} unreadable, "
            f"{report['untrainable_records']} untrainable, {report['records_with_problems']} with problems")


def run_prepare(cfg: PrepareConfig) -> dict:
    """Run every enabled step in order; returns {steps, report, files}."""
    with reading_as(cfg.input, cfg.encoding, cfg.columns):  # for whichever step reads the input first
        return _run_steps(cfg)


def _run_steps(cfg: PrepareConfig) -> dict:
    from r1tune.data.dedup import dedupe_file, find_leakage
    from r1tune.data.split import split_file

    if not cfg.input:
        raise R1TuneError("prepare: set `input` (the raw data file) in the config or with --set input=FILE")
    if not Path(cfg.input).exists():
        raise R1TuneError(f"prepare: input file not found: {cfg.input}")
    spec = cfg.convert.spec if cfg.convert.enabled else None
    dictionary = cfg.augment.dictionary if cfg.augment.enabled else None
    check_outputs(pipeline_outputs(cfg), inputs=[cfg.input, spec, dictionary])
    out = Path(cfg.out)
    dump_config(cfg, out / "prepare-config.yaml")
    steps: list[dict] = []
    current = Path(cfg.input)
    n = 0

    def run(name: str, fn, *args, **kwargs) -> Path:
        nonlocal current, n
        n += 1
        target = out / f"{n:02d}-{name}.jsonl"
        summary = fn(current, target, *args, **kwargs)
        steps.append(summary)
        print(format_summary(summary))
        current = target
        return target

    if cfg.clean.enabled:
        run("clean", clean_file, cfg.clean, on_error=cfg.on_error, workers=cfg.workers)
    if cfg.convert.enabled:
        spec = cfg.convert.spec or getattr(cfg.convert, cfg.convert.kind)
        run("convert", convert_file, cfg.convert.kind, spec, on_error=cfg.on_error)
    if cfg.dedupe.enabled:
        run("dedupe", dedupe_file, cfg.dedupe, on_error=cfg.on_error)
    if cfg.window.enabled:
        run("window", window_file, cfg.window.model, cfg.window.window, cfg.window.stride, cfg.window.field,
            on_error=cfg.on_error)
    if cfg.tag.enabled:
        run("tag", tag_file, cfg.tag.add_tags, cfg.tag.tags, on_error=cfg.on_error)
        # Inference must tag prompts exactly as training did: record how, next to the data.
        write_text(out / "tagging.json", json.dumps(
            {"add_tags": cfg.tag.add_tags, "tags": cfg.tag.tags, "apply_with": "r1tune.data.lang.tag_prompt"},
            ensure_ascii=False, indent=2))

    report = None
    if cfg.check.enabled:
        report = check_file(current, out, cfg.check, cfg.clean.pii, on_error=cfg.on_error, write=False,
                            workers=cfg.workers)
        print(f"{check_line(report)} — {'passed' if report['passed'] else 'FAILED'}")

    files = {"data": str(current)}
    leakage = None
    if cfg.split.enabled:
        split = split_file(current, out, cfg.split, on_error=cfg.on_error, leakage=False)
        steps.append(split)
        print(format_summary(split) + f" — train {split['splits']['train']}, validation "
              f"{split['splits']['validation']}, test {split['splits']['test']}")
        files = dict(split["files"])
        if cfg.augment.enabled:
            target = out / "train-augmented.jsonl"
            summary = augment_file(out / "train.jsonl", target, cfg.augment, on_error=cfg.on_error)
            steps.append(summary)
            print(format_summary(summary))
            files["train"] = str(target)
        leakage = find_leakage(files["train"], [files["validation"], files["test"]], out / "leakage.jsonl",
                               near=cfg.split.leakage_near)
        print(f"leakage: {leakage['exact']} exact and {leakage['near']} near-duplicate evaluation prompts "
              f"also in train (of {leakage['checked']}) — {leakage['log']}")
    elif cfg.augment.enabled:
        run("augment", augment_file, cfg.augment, on_error=cfg.on_error)
        files = {"data": str(current)}

    result = {"steps": steps, "files": files, "leakage": leakage}
    write_text(out / "summary.json", json.dumps(result, ensure_ascii=False, indent=2))
    if report is not None:
        report["pipeline"] = steps
        report["leakage"] = leakage
        clean = next((s for s in steps if s["step"] == "clean"), None)
        if clean is not None:
            report["personal_data_in_input"] = clean["pii"]
        json_path, md_path = write_report(report, out)
        print(f"quality report: {md_path} ({json_path})")
        result["report"] = report
        _gate(report, str(md_path))
    return result


# ------------------------------------------------------------------ single steps (the CLI's `prepare STEP`)
# A single step runs with the pipeline's own settings: the options given, the schema's defaults for the rest.

def _print(summary: dict) -> dict:
    print(format_summary(summary))
    return summary


def step_settings(**given) -> PrepareConfig:
    """The prepare config of a single step: `given` (None = not given) over PrepareConfig's defaults;
    `section={...}` entries set keys of that section."""
    raw: dict = {}
    for key, value in given.items():
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if v is not None}
        if value is not None and value != {}:
            raw[key] = value
    return load_section(PrepareConfig, raw, "options")


def reads_input(step):
    """A single step whose IN is read with `encoding=` / `columns=` (--encoding, --columns; checked as the
    pipeline's `encoding` / `columns`), by the step and its workers alike."""
    @functools.wraps(step)
    def run(inp, *args, encoding: str | None = None, columns: str | dict | None = None, **kwargs):
        with reading_declared(inp, encoding, columns):
            return step(inp, *args, **kwargs)

    return run


def reading_declared(inp: Path, encoding: str | None, columns: str | dict | None):
    """`reading_as` for IN with --encoding / --columns (None = not given), checked as the pipeline's settings."""
    settings = step_settings(encoding=encoding, columns=columns)
    return reading_as(inp, settings.encoding, settings.columns)


@reads_input
def clean_step(inp: Path, out: Path, rules: Path | None = None, on_error: str | None = None,
               workers: int | None = None) -> dict:
    settings = step_settings(on_error=on_error, workers=workers)
    check_outputs([out, log_path_for(out)], inputs=[rules])
    config = load_rules_file(rules) if rules else settings.clean
    summary = _print(clean_file(inp, out, config, settings.on_error, workers=settings.workers))
    if summary["pii"]["found"]:
        print("personal data: " + ", ".join(f"{k} {v}" for k, v in summary["pii"]["found"].items())
              + f" ({summary['pii']['action']})")
    return summary


def check_step(inp: Path, out_dir: Path, config: Path | None = None, labels: list[str] | None = None,
               label_field: str | None = None, thresholds: list[str] | None = None, workers: int | None = None,
               encoding: str | None = None, columns: str | dict | None = None) -> dict:
    """`config`'s check section, and its `encoding` / `columns` for IN unless --encoding / --columns are given."""
    out_dir = Path(out_dir)
    check_step_files([inp], [out_dir / "quality.json", out_dir / "report.md", out_dir / "problems.jsonl"],
                     also_read=[config])
    prepare = load_config(PrepareConfig, config) if config is not None else None
    if prepare is not None:
        encoding = encoding if encoding is not None else prepare.encoding
        columns = columns if columns is not None else prepare.columns
    with reading_declared(inp, encoding, columns):
        return _check(inp, out_dir, prepare, labels, label_field, thresholds, workers)


def _check(inp: Path, out_dir: Path, prepare: PrepareConfig | None, labels: list[str] | None,
           label_field: str | None, thresholds: list[str] | None, workers: int | None) -> dict:
    check = prepare.check if prepare else CheckConfig()
    updates = {}
    if labels:
        updates["labels"] = labels
    if label_field:
        updates["label_field"] = label_field
    if thresholds:
        updates["thresholds"] = {**check.thresholds, **{k: float(v) for k, v in parse_overrides(thresholds).items()}}
    if updates:
        check = load_section(CheckConfig, {**check.model_dump(), **updates}, "check options")
    workers = workers if workers is not None else (prepare or step_settings()).workers
    report = check_file(inp, out_dir, check, prepare.clean.pii if prepare else None, workers=workers)
    print(f"{check_line(report)}; report: {Path(out_dir) / 'report.md'}")
    for section, rules in report["sections"].items():
        found = ", ".join(f"{rule} {r['count']}" for rule, r in rules.items() if r["count"])
        if found:
            print(f"  {section}: {found}")
    _gate(report, str(Path(out_dir) / "report.md"))
    return report


@reads_input
def dedupe_step(inp: Path, out: Path, near: bool = False, semantic: bool = False,
                near_threshold: float | None = None, semantic_threshold: float | None = None) -> dict:
    from r1tune.data.dedup import dedupe_file

    cfg = step_settings(dedupe={"near": near, "semantic": semantic, "near_threshold": near_threshold,
                                "semantic_threshold": semantic_threshold}).dedupe
    return _print(dedupe_file(inp, out, cfg))


@reads_input
def convert_step(inp: Path, out: Path, kind: str, spec: Path) -> dict:
    return _print(convert_file(inp, out, kind, spec))


@reads_input
def window_step(inp: Path, out: Path, model: str, window: int | None = None, stride: int | None = None,
                field: str | None = None) -> dict:
    cfg = step_settings(window={"model": model, "window": window, "stride": stride, "field": field}).window
    return _print(window_file(inp, out, cfg.model, cfg.window, cfg.stride, cfg.field))


@reads_input
def tag_step(inp: Path, out: Path, add_tags: bool = False) -> dict:
    summary = _print(tag_file(inp, out, add_tags))
    print("languages: " + ", ".join(f"{k} {v}" for k, v in summary["languages"].items()))
    return summary


@reads_input
def augment_step(inp: Path, out: Path, ratio: float | None = None, dictionary: Path | None = None,
                 seed: int | None = None, swap: float | None = None, delete: float | None = None) -> dict:
    cfg = step_settings(augment={"enabled": True, "ratio": ratio, "seed": seed, "swap": swap, "delete": delete,
                                 "dictionary": str(dictionary) if dictionary else None}).augment
    return _print(augment_file(inp, out, cfg))


@reads_input
def split_step(inp: Path, out_dir: Path, train: float | None = None, validation: float | None = None,
               test: float | None = None, seed: int | None = None, label_field: str | None = None,
               group_field: str | None = None) -> dict:
    from r1tune.data.split import split_file

    cfg = step_settings(split={"train": train, "validation": validation, "test": test, "seed": seed,
                               "label_field": label_field, "group_field": group_field}).split
    summary = split_file(inp, out_dir, cfg)
    print(format_summary(summary))
    print(f"train {summary['splits']['train']}, validation {summary['splits']['validation']}, "
          f"test {summary['splits']['test']} in {out_dir}")
    leak = summary["leakage"]
    print(f"leakage: {leak['exact']} exact and {leak['near']} near-duplicate evaluation prompts also in train "
          f"— {leak['log']}")
    return summary


def leakage_step(train: Path, others: list[Path], near: bool = True, log: Path | None = None) -> dict:
    from r1tune.data.dedup import find_leakage

    log = log or Path(train).with_name("leakage.jsonl")
    result = find_leakage(train, others, log, near=near)
    print(f"leakage: {result['exact']} exact and {result['near']} near-duplicate prompts of {result['checked']} "
          f"evaluation records also in train — {result['log']}")
    return result


def run_config(config: Path, overrides: list[str] | None = None) -> dict:
    return run_prepare(load_config(PrepareConfig, config, parse_overrides(overrides or [])))
