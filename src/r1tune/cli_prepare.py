"""`r1tune prepare …`: the data-preparation commands (the configured pipeline, and each step alone), and the
options every command that reads a user's data file shares. Each command parses its arguments and calls one
function of `r1tune.recipes.prepare`; `cli.py` mounts the group.
"""

from __future__ import annotations

from pathlib import Path

import typer

from r1tune.recipes.prepare import (
    augment_step,
    check_step,
    clean_step,
    convert_step,
    dedupe_step,
    leakage_step,
    run_config,
    split_step,
    tag_step,
    window_step,
)

# How a data file is read (r1tune.data.encodings): on finetune, evaluate and each prepare step.
ENCODING_OPTION = typer.Option(None, "--encoding", help="Input text encoding: auto (the default: UTF-8, or "
                               "UTF-16/32 with a byte-order mark) or a codec: gb18030, gbk, big5, utf-16 …")
COLUMNS_OPTION = typer.Option(None, "--columns", help="Rename input columns to the names the formats know: "
                              "'instruction=指令,input=输入,output=输出'.")


class _ConfigOrStep(typer.core.TyperGroup):
    """`r1tune prepare CONFIG.yaml` runs the configured pipeline; `r1tune prepare STEP …` runs one step."""

    def resolve_command(self, ctx, args):
        # a config file, not a step: a typo'd step name still gets click's "No such command"
        if args and args[0] not in self.commands and (args[0].endswith((".yaml", ".yml")) or Path(args[0]).is_file()):
            args = ["run", *args]
        return super().resolve_command(ctx, args)


prepare_app = typer.Typer(cls=_ConfigOrStep, no_args_is_help=True, help=(
    "Raw records → clean, checked, deduplicated training data. `r1tune prepare CONFIG.yaml` runs the "
    "configured pipeline; each step also runs alone on JSONL in / JSONL out and logs every dropped or "
    "changed record next to OUT."))


@prepare_app.command("run")
def prepare_run_cmd(
    config: Path = typer.Argument(..., help="YAML prepare config (see configs/prepare-finance.yaml)."),
    set_: list[str] = typer.Option([], "--set", help="Any config key: --set dedupe.near=true"),
):
    """Run the configured pipeline: clean → convert → dedupe → window → tag → check → split → augment."""
    run_config(config, set_)


@prepare_app.command("clean")
def prepare_clean_cmd(
    inp: Path = typer.Argument(..., metavar="IN", help="Input records (.jsonl/.json/.csv/.parquet)."),
    out: Path = typer.Argument(..., help="Output JSONL."),
    rules: Path | None = typer.Option(None, help="YAML: a `clean:` section, or a list of {name, pattern, replace}."),
    on_error: str | None = typer.Option(None, help="Unreadable records: skip (and log; the default) or stop."),
    workers: int | None = typer.Option(None, min=0, help="Processes for a JSONL input (0 = every core; default 1)."),
    encoding: str | None = ENCODING_OPTION,
    columns: str | None = COLUMNS_OPTION,
):
    """Normalise text (NFKC, HTML, control, symbol noise, whitespace), mask personal data, filter."""
    clean_step(inp, out, rules, on_error, workers, encoding=encoding, columns=columns)


@prepare_app.command("check")
def prepare_check_cmd(
    inp: Path = typer.Argument(..., metavar="IN", help="Records to check."),
    out: Path = typer.Option(..., "--out", help="Folder for quality.json, report.md and problems.jsonl."),
    config: Path | None = typer.Option(None, help="Prepare config whose `check` section to use."),
    labels: str | None = typer.Option(None, help="Declared label set, comma-separated."),
    label_field: str | None = typer.Option(None, help="Label field (default: label / category)."),
    threshold: list[str] = typer.Option([], help="rule=max_share, e.g. --threshold any=0.05; crossing exits 2."),
    workers: int | None = typer.Option(None, min=0, help="Processes for a JSONL input (0 = every core; default 1)."),
    encoding: str | None = ENCODING_OPTION,
    columns: str | None = COLUMNS_OPTION,
):
    """Quality report: consistency, completeness, correctness, personal data."""
    check_step(inp, out, config, labels.split(",") if labels else None, label_field, threshold, workers,
               encoding=encoding, columns=columns)


@prepare_app.command("dedupe")
def prepare_dedupe_cmd(
    inp: Path = typer.Argument(..., metavar="IN"),
    out: Path = typer.Argument(...),
    near: bool = typer.Option(False, "--near", help="Also near-duplicates (MinHash/LSH, character 5-grams)."),
    semantic: bool = typer.Option(False, "--semantic", help="Also semantic duplicates (all-MiniLM-L6-v2)."),
    near_threshold: float | None = typer.Option(None, help="Jaccard for --near (default 0.8)."),
    semantic_threshold: float | None = typer.Option(None, help="Cosine for --semantic (default 0.95)."),
    encoding: str | None = ENCODING_OPTION,
    columns: str | None = COLUMNS_OPTION,
):
    """Drop exact (and near / semantic) duplicates, keeping the first."""
    dedupe_step(inp, out, near, semantic, near_threshold, semantic_threshold, encoding=encoding, columns=columns)


@prepare_app.command("convert")
def prepare_convert_cmd(
    inp: Path = typer.Argument(..., metavar="IN"),
    out: Path = typer.Argument(...),
    kind: str = typer.Option(..., help="structured | semi | dialogue"),
    spec: Path = typer.Option(..., help="YAML spec: schema and templates, patterns, or dialogue rules."),
    encoding: str | None = ENCODING_OPTION,
    columns: str | None = COLUMNS_OPTION,
):
    """Turn records into training samples with provenance."""
    convert_step(inp, out, kind, spec, encoding=encoding, columns=columns)


@prepare_app.command("window")
def prepare_window_cmd(
    inp: Path = typer.Argument(..., metavar="IN"),
    out: Path = typer.Argument(...),
    model: str = typer.Option(..., help="Model folder or hub id whose tokenizer counts tokens."),
    window: int | None = typer.Option(None, help="Tokens per window (default 512)."),
    stride: int | None = typer.Option(None, help="Tokens between window starts (default 256)."),
    field: str | None = typer.Option(None, help="Field to window (default: input / last user turn)."),
    encoding: str | None = ENCODING_OPTION,
    columns: str | None = COLUMNS_OPTION,
):
    """Split inputs longer than the window into overlapping token windows; the target stays intact."""
    window_step(inp, out, model, window, stride, field, encoding=encoding, columns=columns)


@prepare_app.command("tag")
def prepare_tag_cmd(
    inp: Path = typer.Argument(..., metavar="IN"),
    out: Path = typer.Argument(...),
    add_tags: bool = typer.Option(False, "--add-tags", help="Prefix prompts with [ZH] / [EN] / [MIXED]."),
    encoding: str | None = ENCODING_OPTION,
    columns: str | None = COLUMNS_OPTION,
):
    """Detect each sample's language (zh / en / mixed with the Chinese share); optionally tag prompts."""
    tag_step(inp, out, add_tags, encoding=encoding, columns=columns)


@prepare_app.command("augment")
def prepare_augment_cmd(
    inp: Path = typer.Argument(..., metavar="IN", help="Training records (never validation or test)."),
    out: Path = typer.Argument(...),
    ratio: float | None = typer.Option(None, help="Augmented copies per record (default 1; 0.5: every other one)."),
    dict_: Path | None = typer.Option(None, "--dict", help="Your synonyms: one group per line."),
    seed: int | None = typer.Option(None, help="Seed (default 42)."),
    swap: float | None = typer.Option(None, help="Chance per copy of swapping two words (default 0)."),
    delete: float | None = typer.Option(None, help="Chance per word of deleting it (default 0)."),
    encoding: str | None = ENCODING_OPTION,
    columns: str | None = COLUMNS_OPTION,
):
    """Synonym replacement (Cilin, WordNet, finance and medical lists, yours) on the prompt side."""
    augment_step(inp, out, ratio, dict_, seed, swap, delete, encoding=encoding, columns=columns)


@prepare_app.command("split")
def prepare_split_cmd(
    inp: Path = typer.Argument(..., metavar="IN"),
    out: Path = typer.Option(..., "--out", help="Folder for train / validation / test .jsonl."),
    train: float | None = typer.Option(None, help="Share in train (default 0.8)."),
    validation: float | None = typer.Option(None, help="Share in validation (default 0.1)."),
    test: float | None = typer.Option(None, help="Share in test (default 0.1)."),
    seed: int | None = typer.Option(None, help="Seed of the split (default 42)."),
    label_field: str | None = typer.Option(None, help="Stratify by this field (default: label / category)."),
    group_field: str | None = typer.Option(None, help="Keep records with the same value in one split."),
    encoding: str | None = ENCODING_OPTION,
    columns: str | None = COLUMNS_OPTION,
):
    """Stratified, seeded, group-aware split; then flags evaluation prompts that leak from train."""
    split_step(inp, out, train, validation, test, seed, label_field, group_field, encoding=encoding, columns=columns)


@prepare_app.command("leakage")
def prepare_leakage_cmd(
    train: Path = typer.Argument(..., help="Training records."),
    others: list[Path] = typer.Argument(..., help="Validation / test records."),
    near: bool = typer.Option(True, help="Also near-duplicates (MinHash)."),
):
    """List evaluation records whose prompt also appears in train."""
    leakage_step(train, others, near)
