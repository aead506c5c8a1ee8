"""`r1tune chat RUN`: talk to a run in the terminal, the reasoning streamed dimmed, then the answer.

    r1tune chat runs/quickstart/tuned
    r1tune chat runs/x --model base --temperature 0 --max-tokens 512

The model runs in this process through the same engine as `r1tune serve` (same template check, same marker
handling, same sampling defaults); `serve/chat.py` holds the loop.
"""

from __future__ import annotations

from rich.console import Console

from r1tune.config import ServeConfig
from r1tune.errors import R1TuneError
from r1tune.serve.chat import chat_loop
from r1tune.serve.engine import Sampling, load_engine


def chat(run: str, cfg: ServeConfig, model: str | None = None, max_tokens: int = 2048,
         temperature: float | None = None, show_reasoning: bool = True) -> None:
    console = Console(highlight=False)
    console.print(f"loading {run} …", style="dim")
    engine = load_engine(run, cfg)
    name = model or engine.default_model
    if name not in engine.models:
        engine.close()
        raise R1TuneError(f"unknown model {name!r}; this run serves {', '.join(engine.models)}")
    sampling = Sampling(max_tokens=max_tokens,
                        temperature=cfg.sampling.temperature if temperature is None else temperature,
                        top_p=cfg.sampling.top_p)
    console.print(f"r1tune chat with [bold]{name}[/] (models: {', '.join(engine.models)}). "
                  "/reset clears the conversation, /exit or Ctrl-D leaves.", style="dim")

    def read_line() -> str | None:
        try:
            return console.input("[bold cyan]you>[/] ")
        except (EOFError, KeyboardInterrupt):
            return None

    try:
        chat_loop(lambda history: engine.stream_chat(history, sampling, model=name), read_line, console,
                  show_reasoning)
    finally:
        engine.close()
