"""`r1tune serve RUN --engine vllm`: hand serving to vLLM (GPU machines, `pip install vllm`).

    r1tune serve runs/x --engine vllm --port 8000

vLLM serves a standalone model, so an adapter run is merged first (`r1tune export merge`, kept in
RUN/merged and reused). With extra adapters (`--adapter NAME=PATH`) the base model is served instead, with
the run's adapter and the extras as vLLM LoRA modules (adapters trained on the base must not be stacked on a
merged model). vLLM gets `--reasoning-parser deepseek_r1`, so it too returns `reasoning_content`, the same chat
template as training (checked here against the run's provenance first), R1's sampling defaults from
generation_config.json, and the API key through VLLM_API_KEY (never on the command line, which `ps` shows).

vLLM enforces its own limits: `--max-model-len` and `--max-num-seqs` are set from `limits`; the body-size, n
and 429 caps of r1tune's own server do not apply there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from r1tune.config import ModelConfig, ServeConfig
from r1tune.errors import R1TuneError
from r1tune.export.merge import default_merged_dir, merge_run, merged_is_current
from r1tune.model.load import load_tokenizer
from r1tune.model.runs import resolve_run
from r1tune.model.template import RESOURCES, TEMPLATE_FILES, resolve_template
from r1tune.serve.engine import check_template


def vllm_executable() -> str:
    path = shutil.which("vllm")
    if path is None:
        raise R1TuneError("--engine vllm: vLLM is not installed (it needs a CUDA GPU): `pip install vllm`, or serve "
                          "with the built-in engine (drop --engine vllm)")
    return path


def model_folder_for_vllm(run: str | Path, cfg: ServeConfig) -> tuple[Path, dict[str, Path]]:
    """(model folder vLLM loads, {name: adapter folder} for --lora-modules)."""
    served = resolve_run(run)
    folder = served.folder
    run_name = cfg.served_name or served.root.name
    extras = {name: resolve_run(path).folder for name, path in cfg.adapters.items()}
    if served.kind != "adapter":
        return folder, extras
    if extras:
        return Path(served.base_model()), {run_name: folder, **extras}
    merged = default_merged_dir(served)
    if not merged_is_current(served, merged):
        print(f"merging the adapter into {merged} for vLLM", flush=True)
        merge_run(served, merged)
    return merged, {}


def vllm_command(run: str | Path, cfg: ServeConfig, executable: str = "vllm") -> list[str]:
    served = resolve_run(run)
    folder = served.folder
    run_name = cfg.served_name or served.root.name
    template = _served_template(folder, cfg)  # checked before anything is merged
    for what, path in [(f"run {run}", run), *((f"adapter {n!r}", p) for n, p in cfg.adapters.items())]:
        problem = check_template(resolve_run(path).provenance, template, what, cfg.allow_template_mismatch)
        if problem:
            raise R1TuneError(problem)
    model_dir, lora = model_folder_for_vllm(run, cfg)
    names = [run_name] if not lora else [cfg.base_name]
    cmd = [executable, "serve", str(model_dir), "--host", cfg.host, "--port", str(cfg.port),
           "--served-model-name", *names, "--reasoning-parser", "deepseek_r1", "--generation-config", "auto",
           "--max-model-len", str(cfg.limits.max_prompt_tokens + cfg.limits.max_tokens),
           "--max-num-seqs", str(cfg.limits.max_concurrent), "--dtype", cfg.dtype]
    if cfg.template != "model":
        cmd += ["--chat-template", str(RESOURCES / TEMPLATE_FILES[cfg.template])]
    if lora:
        cmd += ["--enable-lora", "--max-loras", str(len(lora)), "--lora-modules",
                *(f"{name}={path}" for name, path in lora.items())]
    return cmd


def _served_template(folder: Path, cfg: ServeConfig) -> str:
    return resolve_template(load_tokenizer(ModelConfig(name_or_path=str(folder))), cfg.template)


def serve_with_vllm(run: str | Path, cfg: ServeConfig) -> None:
    """Replace this process with `vllm serve …` (signals and exit code are vLLM's from here on)."""
    executable = vllm_executable()
    cmd = vllm_command(run, cfg, executable)
    env = dict(os.environ)
    if cfg.api_key:
        env["VLLM_API_KEY"] = cfg.api_key
    print("r1tune serve: handing over to " + " ".join(cmd), flush=True)
    os.execve(executable, cmd, env)
