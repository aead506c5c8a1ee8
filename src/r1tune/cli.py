"""The `r1tune` command. Each command parses its arguments and calls one function; no logic lives here.

Errors a user can fix are printed as one line on stderr with exit code 2; anything else as one line with
exit code 1. `--debug` (anywhere on the command line) shows the Python traceback instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from r1tune.errors import R1TuneError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Fine-tune, evaluate and serve DeepSeek-R1 (R1-Distill) models on domain data.")


@app.command("make-tiny-model")
def make_tiny_model_cmd(
    out: Path = typer.Argument(..., help="Folder to write the model and tokenizer to."),
    arch: str = typer.Option("qwen2", help="qwen2 (R1-Distill-Qwen) or llama (R1-Distill-Llama)."),
    size: str = typer.Option("tiny", help="tiny (fast tests) or small (real 151,936-row vocabulary)."),
    seed: int = typer.Option(0, help="Initialisation seed."),
):
    """Build a deterministic random-init R1-Distill-architecture model with an R1 tokenizer, offline."""
    from r1tune.model.tiny import make_tiny_model

    info = make_tiny_model(out, arch=arch, size=size, seed=seed)
    typer.echo(f"wrote {info['arch']}/{info['size']} model ({info['parameters']:,} parameters) to {out}")


@app.command("render")
def render_cmd(
    model: str = typer.Option(..., help="Model folder or hub id whose tokenizer renders."),
    messages: Path = typer.Option(..., help="JSON file: a list of messages, or a record in any data format."),
    train: bool = typer.Option(False, "--train", help="Render as a training sample (final answer kept)."),
    ids: bool = typer.Option(False, "--ids", help="Print token ids with the label mask."),
    reasoning: str = typer.Option("keep", help="Training only: keep | drop | empty."),
    max_length: int = typer.Option(4096, help="Training only: token budget."),
):
    """Show exactly what the model will see, as text or token ids with the label mask."""
    from r1tune.recipes.render import render

    text = render(model, messages, train=train, ids=ids, reasoning=reasoning, max_length=max_length)
    typer.echo(text, nl=not text.endswith("\n"))


FINETUNE_FLAGS = {
    "model": "model.name_or_path", "data": "data.train", "out": "out", "method": "method.name",
    "max_steps": "train.max_steps", "epochs": "train.epochs", "batch_size": "train.batch_size",
    "grad_accum": "train.grad_accum", "lr": "train.lr", "max_length": "data.max_length", "seed": "train.seed",
    "save_every": "train.save_every", "eval_every": "train.eval_every", "reasoning": "data.reasoning",
}


@app.command("finetune")
def finetune_cmd(
    config: Path | None = typer.Argument(None, help="YAML run config (optional)."),
    model: str | None = typer.Option(None, help="model.name_or_path"),
    data: str | None = typer.Option(None, help="data.train"),
    out: str | None = typer.Option(None, help="out"),
    method: str | None = typer.Option(None, help="method.name: lora | full | freeze"),
    max_steps: int | None = typer.Option(None, help="train.max_steps"),
    epochs: float | None = typer.Option(None, help="train.epochs"),
    batch_size: int | None = typer.Option(None, help="train.batch_size (per process)"),
    grad_accum: int | None = typer.Option(None, help="train.grad_accum"),
    lr: float | None = typer.Option(None, help="train.lr"),
    max_length: int | None = typer.Option(None, help="data.max_length"),
    seed: int | None = typer.Option(None, help="train.seed"),
    save_every: int | None = typer.Option(None, help="train.save_every"),
    eval_every: int | None = typer.Option(None, help="train.eval_every"),
    reasoning: str | None = typer.Option(None, help="data.reasoning: keep | drop | empty"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in --out."),
    set_: list[str] = typer.Option([], "--set", help="Any config key: --set train.weight_decay=0.0"),
):
    """Fine-tune a model (LoRA, full or freeze) with one recipe."""
    from r1tune.config import FinetuneConfig, load_config, merge, parse_overrides
    from r1tune.recipes.finetune import finetune

    given = dict(model=model, data=data, out=out, method=method, max_steps=max_steps, epochs=epochs,
                 batch_size=batch_size, grad_accum=grad_accum, lr=lr, max_length=max_length, seed=seed,
                 save_every=save_every, eval_every=eval_every, reasoning=reasoning)
    flags = [f"{FINETUNE_FLAGS[k]}={v}" for k, v in given.items() if v is not None]
    cfg = load_config(FinetuneConfig, config, merge(parse_overrides(flags), parse_overrides(set_)))
    finetune(cfg, resume=resume)


@app.command("quickstart")
def quickstart_cmd(
    out: Path = typer.Option(Path("runs/quickstart"), help="Output folder."),
    steps: int = typer.Option(600, help="Optimizer steps for the LoRA fine-tune."),
):
    """Offline, end to end: tiny R1 model → LoRA fine-tune on bundled finance data → base vs tuned."""
    from r1tune.recipes.quickstart import quickstart

    quickstart(out, steps=steps)


# --- prepare commands (issue 3): `r1tune prepare …` sub-app goes here ---

# --- annotate commands (issue 4): `r1tune annotate …` sub-app goes here ---

# --- evaluate commands (issue 6): `r1tune evaluate …` goes here ---

# --- export / serve / chat commands (issue 7): `r1tune export …`, `r1tune serve`, `r1tune chat` go here ---

# --- advise command (issue 5) goes here ---


def main(argv: list[str] | None = None) -> None:
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
