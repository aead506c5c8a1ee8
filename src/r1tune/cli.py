"""The `r1tune` command. Each command parses its arguments and calls one function; no logic lives here.

Errors a user can fix are printed as one line on stderr with exit code 2; anything else as one line with
exit code 1. `--debug` (anywhere on the command line) shows the Python traceback instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from r1tune.cli_prepare import COLUMNS_OPTION, ENCODING_OPTION, prepare_app
from r1tune.config import (
    BoardConfig,
    EvaluateConfig,
    FinetuneConfig,
    GgufConfig,
    GrpoConfig,
    MergeConfig,
    QuantizeConfig,
    SearchConfig,
    ServeConfig,
    flag_overrides,
    load_config,
    merge,
    parse_overrides,
)
from r1tune.errors import R1TuneError
from r1tune.model.bitsandbytes_import import hide_bitsandbytes
from r1tune.recipes.annotate import import_annotations, report_agreement, write_label_config, write_tasks
from r1tune.recipes.board import board
from r1tune.recipes.make_tiny_model import make_tiny_model
from r1tune.recipes.quickstart import quickstart
from r1tune.recipes.serve import serve

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Fine-tune, evaluate and serve DeepSeek-R1 (R1-Distill) models on domain data.")


@app.command("make-tiny-model")
def make_tiny_model_cmd(
    out: Path = typer.Argument(..., help="Folder to write the model and tokenizer to."),
    arch: str = typer.Option("qwen2", help="qwen2 (R1-Distill-Qwen), llama (R1-Distill-Llama), or the "
                             "vision-language qwen2_5_vl / qwen2_vl."),
    size: str = typer.Option("tiny", help="tiny (fast tests) or small (real 151,936-row vocabulary)."),
    seed: int = typer.Option(0, help="Initialisation seed."),
    chat: str = typer.Option("r1", help="Vision archs: r1 (R1 tokenizer and template) or chatml (the hub "
                             "Qwen2-VL / Qwen2.5-VL layout: ChatML template, eos <|im_end|>, no R1 marker)."),
):
    """Build a deterministic random-init R1-Distill-architecture model with an R1 tokenizer, offline."""
    make_tiny_model(out, arch=arch, size=size, seed=seed, chat=chat)


@app.command("render")
def render_cmd(
    model: str = typer.Option(..., help="Model folder or hub id whose tokenizer renders."),
    messages: Path = typer.Option(..., help="JSON file: a list of messages, or a record in any data format."),
    train: bool = typer.Option(False, "--train", help="Render as a training sample (final answer kept)."),
    ids: bool = typer.Option(False, "--ids", help="Print token ids with the label mask."),
    reasoning: str = typer.Option("keep", help="Training only: keep | drop | empty (auto: as keep)."),
    max_length: int = typer.Option(4096, help="Training only: token budget."),
    truncate: str = typer.Option("skip", help="Training only: a prompt that fills max_length is an error (skip), "
                                 "or cut from the left (left)."),
):
    """Show exactly what the model will see, as text or token ids with the label mask."""
    from r1tune.recipes.render import render

    text = render(model, messages, train=train, ids=ids, reasoning=reasoning, max_length=max_length,
                  truncate=truncate)
    typer.echo(text, nl=not text.endswith("\n"))


FINETUNE_FLAGS = {
    "model": "model.name_or_path", "data": "data.train", "out": "out", "method": "method.name",
    "max_steps": "train.max_steps", "epochs": "train.epochs", "batch_size": "train.batch_size",
    "grad_accum": "train.grad_accum", "lr": "train.lr", "max_length": "data.max_length", "seed": "train.seed",
    "save_every": "train.save_every", "eval_every": "train.eval_every", "reasoning": "data.reasoning",
    "auto_batch_size": "train.auto_batch_size", "layers": "method.layers",
    "encoding": "data.encoding", "columns": "data.columns",
    "continue_from": "continual.continue_from", "replay": "continual.replay", "test": "continual.test",  # issue 15
}


@app.command("finetune")
def finetune_cmd(
    config: Path | None = typer.Argument(None, help="YAML run config (optional)."),
    model: str | None = typer.Option(None, help="model.name_or_path"),
    data: str | None = typer.Option(None, help="data.train"),
    out: str | None = typer.Option(None, help="out"),
    method: str | None = typer.Option(None, help="method.name: lora dora qlora ia3 prefix prompt ptuning full freeze"),
    max_steps: int | None = typer.Option(None, help="train.max_steps"),
    epochs: float | None = typer.Option(None, help="train.epochs"),
    batch_size: int | None = typer.Option(None, help="train.batch_size (per process)"),
    grad_accum: int | None = typer.Option(None, help="train.grad_accum"),
    lr: float | None = typer.Option(None, help="train.lr"),
    max_length: int | None = typer.Option(None, help="data.max_length"),
    seed: int | None = typer.Option(None, help="train.seed"),
    save_every: int | None = typer.Option(None, help="train.save_every"),
    eval_every: int | None = typer.Option(None, help="train.eval_every"),
    reasoning: str | None = typer.Option(None, help="data.reasoning: auto | keep | drop | empty"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in --out."),
    auto_batch_size: bool = typer.Option(False, "--auto-batch-size", help="Largest micro-batch that fits."),
    nproc: int = typer.Option(1, "--nproc", help="Local processes (data parallel; --batch-size is per process)."),
    layers: str | None = typer.Option(None, help="method.layers: 'top:N', 'A-B' or 'i,j,k'"),
    encoding: str | None = ENCODING_OPTION,
    columns: str | None = COLUMNS_OPTION,
    continue_from: str | None = typer.Option(None, help="continual.continue_from: parent run to continue (issue 15)"),
    replay: float | None = typer.Option(None, help="continual.replay: share of each batch from earlier increments"),
    test: str | None = typer.Option(None, help="continual.test: this increment's test set (lineage + gate)"),
    set_: list[str] = typer.Option([], "--set", help="Any config key: --set train.weight_decay=0.0"),
):
    """Fine-tune a model with one recipe for every method (LoRA, DoRA, QLoRA, IA3, prefix, prompt, full, freeze…)."""
    from r1tune.recipes.finetune import finetune
    from r1tune.train.distributed import in_launched_process, launch

    if nproc > 1 and not in_launched_process():
        raise typer.Exit(launch(nproc, strip_option(sys.argv[1:], "--nproc")))

    given = dict(model=model, data=data, out=out, method=method, max_steps=max_steps, epochs=epochs,
                 batch_size=batch_size, grad_accum=grad_accum, lr=lr, max_length=max_length, seed=seed,
                 save_every=save_every, eval_every=eval_every, reasoning=reasoning,
                 auto_batch_size=auto_batch_size or None, layers=layers, encoding=encoding, columns=columns,
                 continue_from=continue_from, replay=replay, test=test)
    cfg = load_config(FinetuneConfig, config, merge(flag_overrides(FINETUNE_FLAGS, given), parse_overrides(set_)))
    summary = finetune(cfg, resume=resume)
    if (summary.get("continual") or {}).get("promoted") is False:  # issue 15: the forgetting gate said no
        raise typer.Exit(3)


GRPO_FLAGS = {
    "model": "model.name_or_path", "adapter": "adapter", "data": "data.train", "out": "out",
    "method": "method.name", "reward": "rewards.use", "num_generations": "grpo.num_generations",
    "max_completion_length": "grpo.max_completion_length", "max_prompt_length": "data.max_prompt_length",
    "loss_type": "grpo.loss_type", "beta": "grpo.beta", "max_steps": "train.max_steps",
    "batch_size": "train.batch_size", "lr": "train.lr", "seed": "train.seed", "save_every": "train.save_every",
    "allow_code": "rewards.allow_code", "encoding": "data.encoding", "columns": "data.columns",
}


@app.command("grpo")
def grpo_cmd(
    config: Path | None = typer.Argument(None, help="YAML run config (optional)."),
    model: str | None = typer.Option(None, help="model.name_or_path (default with --adapter: the run's base)"),
    adapter: str | None = typer.Option(None, help="adapter: the SFT finetune run whose adapter GRPO trains on"),
    data: str | None = typer.Option(None, help="data.train: prompts in any finetune format"),
    out: str | None = typer.Option(None, help="out"),
    reward: str | None = typer.Option(None, help="rewards.use, comma-separated: accuracy format json_schema "
                                      "field_f1 language length, or module:function (needs --allow-code)"),
    num_generations: int | None = typer.Option(None, help="grpo.num_generations: completions per prompt (G ≥ 2)"),
    max_completion_length: int | None = typer.Option(None, help="grpo.max_completion_length"),
    max_prompt_length: int | None = typer.Option(None, help="data.max_prompt_length"),
    loss_type: str | None = typer.Option(None, help="grpo.loss_type: dapo | grpo | dr_grpo"),
    beta: float | None = typer.Option(None, help="grpo.beta: KL penalty to the reference (0: none)"),
    method: str | None = typer.Option(None, help="method.name: lora dora qlora ia3 full freeze"),
    max_steps: int | None = typer.Option(None, help="train.max_steps"),
    batch_size: int | None = typer.Option(None, help="train.batch_size: prompts per step (per process)"),
    lr: float | None = typer.Option(None, help="train.lr"),
    seed: int | None = typer.Option(None, help="train.seed"),
    save_every: int | None = typer.Option(None, help="train.save_every"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in --out."),
    nproc: int = typer.Option(1, "--nproc", help="Local processes (data parallel; --batch-size is per process)."),
    allow_code: bool = typer.Option(False, "--allow-code", help="Run the Python functions --reward names "
                                    "(module:function, file.py:function): arbitrary code, only if you trust it."),
    encoding: str | None = ENCODING_OPTION,
    columns: str | None = COLUMNS_OPTION,
    set_: list[str] = typer.Option([], "--set", help="Any config key: --set grpo.temperature=0.7"),
):
    """Reinforcement learning with verifiable rewards (GRPO) on a model or an SFT run's adapter."""
    from r1tune.recipes.grpo import grpo
    from r1tune.train.distributed import in_launched_process, launch

    if nproc > 1 and not in_launched_process():
        raise typer.Exit(launch(nproc, strip_option(sys.argv[1:], "--nproc")))

    given = dict(model=model, adapter=adapter, data=data, out=out, reward=reward, num_generations=num_generations,
                 max_completion_length=max_completion_length, max_prompt_length=max_prompt_length,
                 loss_type=loss_type, beta=beta, method=method, max_steps=max_steps, batch_size=batch_size, lr=lr,
                 seed=seed, save_every=save_every, allow_code=allow_code or None, encoding=encoding,
                 columns=columns)
    cfg = load_config(GrpoConfig, config, merge(flag_overrides(GRPO_FLAGS, given), parse_overrides(set_)))
    grpo(cfg, resume=resume)


@app.command("quickstart")
def quickstart_cmd(
    out: Path = typer.Option(Path("runs/quickstart"), help="Output folder."),
    steps: int = typer.Option(600, help="Optimizer steps for the LoRA fine-tune."),
):
    """Offline, end to end: tiny R1 model → LoRA fine-tune on bundled finance data → base vs tuned."""
    quickstart(out, steps=steps)


app.add_typer(prepare_app, name="prepare")  # cli_prepare.py


# --- annotate commands (issue 4): `r1tune annotate …` sub-app goes here ---

annotate_app = typer.Typer(no_args_is_help=True, help=(
    "Label Studio round trip for the three-layer scheme (entities, relations, intents): labeling config, "
    "import tasks with pre-annotations, export → training samples, inter-annotator agreement."))
app.add_typer(annotate_app, name="annotate")


@annotate_app.command("config")
def annotate_config_cmd(
    schema: Path = typer.Argument(..., help="Schema YAML (entities, relations, intents)."),
    out: Path | None = typer.Option(None, help="XML file to write (default: print it)."),
):
    """Write the Label Studio labeling config for a schema."""
    typer.echo(write_label_config(schema, out))


@annotate_app.command("tasks")
def annotate_tasks_cmd(
    data: Path = typer.Argument(..., help="Texts to label (.jsonl/.json/.csv/.parquet, one record per text)."),
    schema: Path = typer.Option(..., help="Schema YAML."),
    out: Path = typer.Option(..., help="Label Studio import file (JSON) to write."),
    model: str | None = typer.Option(None, help="Model folder or finetune run: add its pre-annotations."),
    field: str | None = typer.Option(None, help="Record field with the text (default: the schema's text_field)."),
    max_new_tokens: int = typer.Option(1024, help="--model: generation budget per question."),
    batch_size: int = typer.Option(8, help="--model: texts per generation batch."),
):
    """Write Label Studio import tasks, optionally pre-annotated by a model."""
    typer.echo(write_tasks(data, schema, out, model=model, field=field, max_new_tokens=max_new_tokens,
                           batch_size=batch_size))


@annotate_app.command("import")
def annotate_import_cmd(
    export: Path = typer.Argument(..., help="Label Studio JSON export."),
    schema: Path = typer.Option(..., help="Schema YAML."),
    out: Path = typer.Option(..., help="Folder for entities/relations/intents/problems.jsonl."),
    on_disagreement: str = typer.Option("problem", help="Annotators disagree and none is ground truth: "
                                                        "problem (leave the task out) | latest."),
    strict: bool = typer.Option(False, "--strict", help="Exit 2 when any task has a problem."),
):
    """Turn a Label Studio export into training samples, one file per layer, and a problem list."""
    typer.echo(import_annotations(export, schema, out, on_disagreement=on_disagreement, strict=strict))


@annotate_app.command("agreement")
def annotate_agreement_cmd(
    export: Path = typer.Argument(..., help="Label Studio JSON export."),
    schema: Path = typer.Option(..., help="Schema YAML."),
    out: Path | None = typer.Option(None, help="Write the full report (with the review list) as JSON."),
):
    """Inter-annotator agreement: kappa for intents, span F1 for entities and relations, a review list."""
    typer.echo(report_agreement(export, schema, out))

# --- evaluate commands (issue 6): `r1tune evaluate …` goes here ---

EVALUATE_FLAGS = {
    "model": "model", "adapter": "adapter", "data": "data", "out": "out", "task": "task",
    "max_samples": "max_samples", "sampling": "generation.sampling", "num_samples": "generation.num_samples",
    "max_new_tokens": "generation.max_new_tokens", "batch_size": "generation.batch_size", "seed": "generation.seed",
    "allow_code": "business.allow_code",
}


@app.command("evaluate")
def evaluate_cmd(
    config: Path | None = typer.Argument(None, help="YAML evaluate config (optional)."),
    model: str | None = typer.Option(None, help="Base model folder or hub id."),
    adapter: str | None = typer.Option(None, help="Tuned run (finetune output folder) loaded on --model."),
    data: str | None = typer.Option(None, help="Test set (any training format)."),
    out: str | None = typer.Option(None, help="Output folder: metrics.json, report.html, predictions/."),
    compare: list[str] = typer.Option([], "--compare", help="Another run to compare (repeat for more)."),
    predictions: list[str] = typer.Option(
        [], "--predictions", help="[NAME=]FILE: outputs produced elsewhere (JSONL with prediction, reference); "
        "scored without loading a model. Repeat for more."),
    task: str | None = typer.Option(None, help="auto | classification | generation | extraction | structured"),
    labels: str | None = typer.Option(None, help="Classification labels, comma-separated."),
    metrics: str | None = typer.Option(None, help="Task metrics, comma-separated (default: the task's set)."),
    max_samples: int | None = typer.Option(None, help="Evaluate only the first N test samples."),
    sampling: str | None = typer.Option(None, help="r1 (temperature 0.6, top-p 0.95) | greedy"),
    num_samples: int | None = typer.Option(None, help="Outputs per prompt, averaged (r1 sampling)."),
    max_new_tokens: int | None = typer.Option(
        None, help="Cap on generated tokens per output (default: classification: longest label + "
        "generation.reasoning_budget; other tasks: generation.open_max_new_tokens)."),
    batch_size: int | None = typer.Option(None, help="Prompts generated together."),
    seed: int | None = typer.Option(None, help="Sampling seed."),
    encoding: str | None = ENCODING_OPTION,
    columns: str | None = COLUMNS_OPTION,
    allow_code: bool = typer.Option(False, "--allow-code", help="Run the Python functions business checks name "
                                    "(module:function, file.py:function): arbitrary code, only if you trust it."),
    set_: list[str] = typer.Option([], "--set", help="Any config key: --set bootstrap.resamples=2000"),
):
    """Base vs tuned (vs more runs) on a test set, or score outputs produced elsewhere: metrics.json + report.html."""
    from r1tune.recipes.evaluate import evaluate

    lists = {"compare": compare, "predictions": predictions,
             "labels": labels.split(",") if labels else None, "metrics": metrics.split(",") if metrics else None}
    given = dict(model=model, adapter=adapter, data=data, out=out, task=task, max_samples=max_samples,
                 sampling=sampling, num_samples=num_samples, max_new_tokens=max_new_tokens, batch_size=batch_size,
                 seed=seed, allow_code=allow_code or None, encoding=encoding, columns=columns,
                 **{k: [x.strip() for x in v] for k, v in lists.items() if v})
    cfg = load_config(EvaluateConfig, config, merge(flag_overrides(EVALUATE_FLAGS, given), parse_overrides(set_)))
    evaluate(cfg)


human_app = typer.Typer(no_args_is_help=True, help=(
    "Human evaluation round trip: export a blind A/B sheet from an evaluation, import the filled sheets."))
app.add_typer(human_app, name="human-eval")


@human_app.command("export")
def human_export_cmd(
    evaluation: Path = typer.Argument(..., help="An `r1tune evaluate` output folder."),
    out: Path = typer.Option(..., help="Folder for sheet.csv, Label Studio tasks and config, rubric, key.json."),
    systems: str | None = typer.Option(None, help="Two systems, baseline first: base,tuned (default: the first two)."),
    n: int | None = typer.Option(None, help="Sample this many prompts (default: all)."),
    seed: int = typer.Option(0, help="Seed of the A/B order and the shuffle."),
    with_reasoning: bool = typer.Option(False, "--with-reasoning", help="Show raters the reasoning traces too."),
):
    """Write a blind, shuffled A/B sheet (CSV and Label Studio tasks) with a 1–5 rubric."""
    from r1tune.recipes.human_eval import export_sheets

    export_sheets(evaluation, out, systems.split(",") if systems else None, n=n, seed=seed,
                  with_reasoning=with_reasoning)


@human_app.command("import")
def human_import_cmd(
    sheet: Path = typer.Argument(..., help="The exported sheet folder (holds key.json)."),
    filled: list[Path] = typer.Argument(..., help="Filled CSV sheets (one per rater) and/or Label Studio exports."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
):
    """Score filled sheets: mean ratings, win rate, inter-rater agreement; adds them to the evaluation report."""
    from r1tune.recipes.human_eval import import_sheets

    import_sheets(sheet, filled, seed=seed)


# --- export / serve / chat commands (issue 7): `r1tune export …`, `r1tune serve`, `r1tune chat` go here ---

export_app = typer.Typer(no_args_is_help=True, help="Export a run: merge its LoRA adapter, quantize to INT8, "
                                                   "write a GGUF for llama.cpp / Ollama.")
app.add_typer(export_app, name="export")


@export_app.command("merge")
def export_merge_cmd(
    run: str = typer.Argument(..., help="Finetune run folder (or its final/) holding a LoRA adapter."),
    out: str | None = typer.Option(None, help="Output folder (default RUN/merged)."),
    base: str | None = typer.Option(None, help="Full-precision base model (default: the one the run names)."),
    dtype: str | None = typer.Option(None, help="Saved dtype: auto (the base's, default) | float32 | bfloat16 "
                                               "| float16."),
):
    """Merge the adapter in fp32 into a standalone model (transformers / vLLM); report the max logit diff."""
    from r1tune.recipes.export import merge_adapter

    merge_adapter(load_config(MergeConfig, None, flag_overrides({}, dict(run=run, out=out, base=base, dtype=dtype))))


@export_app.command("quantize")
def export_quantize_cmd(
    run: str = typer.Argument(..., help="Finetune run (adapter runs are merged first) or a model folder."),
    int8: bool = typer.Option(False, "--int8", help="Weight-only INT8 (the format offered)."),
    out: str | None = typer.Option(None, help="Output folder (default RUN/int8)."),
    data: str | None = typer.Option(None, help="Test set to measure on (default: the run's validation data)."),
    backend: str | None = typer.Option(None, help="auto (default) | torchao (CPU) | bitsandbytes (CUDA GPU)."),
    max_samples: int | None = typer.Option(None, help="Measure on the first N test samples only."),
    max_new_tokens: int | None = typer.Option(None, help="Generation cap when scoring labelled data (default 256)."),
    batch_size: int | None = typer.Option(None, help="Evaluation batch size (default 16)."),
):
    """Quantize to INT8 and write quantize_report.json (size ratio, metric change on the test set)."""
    from r1tune.recipes.export import quantize

    given = dict(run=run, int8=int8, out=out, data=data, backend=backend, max_samples=max_samples,
                 max_new_tokens=max_new_tokens, batch_size=batch_size)
    quantize(load_config(QuantizeConfig, None, flag_overrides({}, given)))


@export_app.command("gguf")
def export_gguf_cmd(
    run: str = typer.Argument(..., help="Finetune run (adapter runs are merged in fp32 first) or a model folder."),
    type_: str | None = typer.Option(None, "--type", help="f16 | bf16 | q8_0 (default) | q4_0."),
    out: str | None = typer.Option(None, help="The .gguf file (default RUN/gguf-TYPE/RUNNAME-TYPE.gguf); Modelfile "
                                              "and gguf_report.json go beside it."),
    check: bool | None = typer.Option(None, "--check/--no-check", help="Reload with transformers and compare logits "
                                                                        "with the source model (default on)."),
):
    """Write a GGUF for llama.cpp / Ollama (no llama.cpp needed), an Ollama Modelfile and gguf_report.json."""
    from r1tune.recipes.export import gguf_export

    gguf_export(load_config(GgufConfig, None, flag_overrides({}, dict(run=run, type=type_, out=out, check=check))))


def _serve_config(config: Path | None, flags: dict, adapters: list[str], set_: list[str]):
    overrides = flag_overrides({}, flags)
    for pair in adapters:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise R1TuneError(f"--adapter expects NAME=PATH, got '{pair}'")
        overrides.setdefault("adapters", {})[name] = path
    return load_config(ServeConfig, config, merge(overrides, parse_overrides(set_)))


@app.command("serve")
def serve_cmd(
    run: str = typer.Argument(..., help="Finetune run, merged / int8 export, or model folder; or a folder of "
                              "continual runs: its newest promoted run, swapped on promotion (issue 15)."),
    config: Path | None = typer.Option(None, "--config", help="YAML ServeConfig (optional)."),
    host: str | None = typer.Option(None, help="Bind address (default 127.0.0.1, loopback only)."),
    port: int | None = typer.Option(None, help="Port (default 8000)."),
    api_key: str | None = typer.Option(None, help="Required on every request. Prefer the R1TUNE_API_KEY variable."),
    adapter: list[str] = typer.Option([], "--adapter", help="Serve another LoRA adapter: NAME=PATH (repeatable)."),
    served_name: str | None = typer.Option(None, help="Model id of the run (default: its folder name)."),
    template: str | None = typer.Option(None, help="model (the tokenizer's) | r1 | r1-2025-01."),
    allow_template_mismatch: bool = typer.Option(False, "--allow-template-mismatch",
                                                 help="Serve although the run was trained with another template."),
    engine: str | None = typer.Option(None, help="transformers (default) | vllm (GPU, vLLM installed)."),
    set_: list[str] = typer.Option([], "--set", help="Any ServeConfig key: --set limits.max_n=2"),
):
    """OpenAI-compatible server (/v1/chat/completions, /v1/models) with reasoning_content, streaming, limits."""
    flags = dict(host=host, port=port, api_key=api_key, served_name=served_name, template=template,
                 engine=engine, allow_template_mismatch=allow_template_mismatch or None)
    serve(run, _serve_config(config, flags, adapter, set_))


@app.command("chat")
def chat_cmd(
    run: str = typer.Argument(..., help="Finetune run, merged / int8 export, or model folder."),
    model: str | None = typer.Option(None, help="Which served model to talk to (default: the run; 'base')."),
    max_tokens: int = typer.Option(2048, help="Tokens per reply (reasoning included)."),
    temperature: float | None = typer.Option(None, help="Default 0.6 (DeepSeek's advice); 0 = greedy."),
    hide_reasoning: bool = typer.Option(False, "--hide-reasoning", help="Show only the answers."),
    adapter: list[str] = typer.Option([], "--adapter", help="Another LoRA adapter: NAME=PATH (repeatable)."),
    template: str | None = typer.Option(None, help="model (the tokenizer's) | r1 | r1-2025-01."),
    allow_template_mismatch: bool = typer.Option(False, "--allow-template-mismatch"),
    config: Path | None = typer.Option(None, "--config", help="YAML ServeConfig (optional)."),
):
    """Interactive terminal chat: reasoning streamed dimmed, then the answer."""
    from r1tune.recipes.chat import chat

    flags = dict(template=template, allow_template_mismatch=allow_template_mismatch or None)
    chat(run, _serve_config(config, flags, adapter, []), model=model, max_tokens=max_tokens,
         temperature=temperature, show_reasoning=not hide_reasoning)

# --- advise command (issue 5) ---
@app.command("advise")
def advise_cmd(
    model: str = typer.Option(..., help="Model folder or hub id (only its config and tokenizer are needed)."),
    data: str = typer.Option(..., help="Training data file."),
    memory: str | None = typer.Option(None, help="Memory per device, e.g. 24GiB (default: detected)."),
    gpus: int = typer.Option(1, help="Number of devices (ZeRO-3/FSDP shards full and freeze runs)."),
    keep_general_ability: bool = typer.Option(False, "--keep-general-ability", help="Prefer light methods, lower lr."),
    method: str | None = typer.Option(None, help="Estimate this method instead of recommending one."),
    batch_size: int | None = typer.Option(None, help="With --method: this micro-batch."),
    max_length: int | None = typer.Option(None, help="Token budget per sample (default: covers p95 of the data)."),
    measure: bool = typer.Option(True, help="Time 3 real steps when the model fits this machine."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output, memory in bytes."),
):
    """Recommend method, rank, learning rate, batch size and accumulation from data, memory and goals."""
    from r1tune.recipes.advise import advise

    typer.echo(advise(model, data, memory, gpus, keep_general_ability, method, batch_size, max_length, measure,
                      as_json), nl=False)


# --- search command (issue 16) ---
SEARCH_FLAGS = {"trials": "search.trials", "timeout": "search.timeout", "metric": "search.metric",
                "storage": "search.storage", "jobs": "search.jobs", "study_name": "search.study_name", "out": "out"}


@app.command("search")
def search_cmd(
    config: Path = typer.Argument(..., help="YAML: a finetune config (every trial's base) + its `search` section."),
    trials: int | None = typer.Option(None, help="search.trials: finished trials the study holds when done."),
    timeout: str | None = typer.Option(None, help="search.timeout: wall-clock budget, e.g. 30m, 2h, 1h30m."),
    metric: str | None = typer.Option(None, help="search.metric: val_loss | accuracy | macro_f1 | rougeL | …"),
    storage: str | None = typer.Option(None, help="search.storage: Optuna URL (default sqlite:///OUT/study.db); "
                                       "postgresql://… or mysql://… shares one study between machines."),
    jobs: int | None = typer.Option(None, help="search.jobs: trials run at once (one GPU each where there are GPUs)."),
    study_name: str | None = typer.Option(None, help="search.study_name"),
    out: str | None = typer.Option(None, help="out: study folder (trials/, best/, best.yaml, report.html)."),
    set_: list[str] = typer.Option([], "--set", help="Any config key: --set search.pruner=hyperband"),
):
    """Search the best method and hyper-parameters within a budget (Optuna TPE + pruning), advisor's pick first."""
    from r1tune.recipes.search import search

    given = dict(trials=trials, timeout=timeout, metric=metric, storage=storage, jobs=jobs, study_name=study_name,
                 out=out)
    search(load_config(SearchConfig, config, merge(flag_overrides(SEARCH_FLAGS, given), parse_overrides(set_))))


# --- board command (issue 17) ---
@app.command("board")
def board_cmd(
    config: Path | None = typer.Option(None, "--config", help="YAML BoardConfig (optional)."),
    host: str | None = typer.Option(None, help="Bind address (default 127.0.0.1, loopback only)."),
    port: int | None = typer.Option(None, help="Port (default 7860)."),
    runs: str | None = typer.Option(None, help="The runs folder the board lists, launches into and uploads to."),
    api_key: str | None = typer.Option(None, help="Required off loopback. Prefer the R1TUNE_API_KEY variable."),
    model: list[str] = typer.Option([], "--model", help="A base model offered in the forms (repeatable)."),
    set_: list[str] = typer.Option([], "--set", help="Any BoardConfig key: --set poll_s=1"),
):
    """Web board (Data / Train / Runs / Evaluate / Chat / Export) over one runs folder, in English and Chinese."""
    flags = dict(host=host, port=port, runs=runs, api_key=api_key, models=model or None)
    board(load_config(BoardConfig, config, merge(flag_overrides({}, flags), parse_overrides(set_))))


def strip_option(argv: list[str], name: str) -> list[str]:
    """argv without `name VALUE` / `name=VALUE` (and without --debug's effect on the children)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> None:
    hide_bitsandbytes()  # peft imports it whenever installed, noisily; only quantized paths need it
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    try:
        app(args=argv, prog_name="r1tune")
    except R1TuneError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # an unexpected failure: one line, the traceback only with --debug
        if debug:
            raise
        print(f"error: {type(e).__name__}: {e} (run again with --debug for the traceback)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
