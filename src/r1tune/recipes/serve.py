"""The serve flow: check the address and key, load the run, start the OpenAI-compatible server.

    r1tune serve runs/quickstart/tuned                                  # http://127.0.0.1:8000/v1
    r1tune serve runs/x --adapter legal=runs/legal --api-key-env R1TUNE_API_KEY --port 9000
    r1tune serve runs/x --engine vllm                                   # GPU machines with vLLM installed

A non-loopback address is refused without an API key: the server would otherwise answer anyone who can
reach the port. The key is stripped of surrounding whitespace (a trailing newline from a file or an env line
would otherwise make every client's key "wrong"); one with control or non-ASCII characters is refused.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from r1tune.config import ServeConfig
from r1tune.errors import R1TuneError

API_KEY_ENV = "R1TUNE_API_KEY"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_api_key(cfg: ServeConfig) -> ServeConfig:
    """The key from the config, else from $R1TUNE_API_KEY (keeps it out of argv and shell history)."""
    if cfg.api_key is None and os.environ.get(API_KEY_ENV):
        cfg = cfg.model_copy(update={"api_key": os.environ[API_KEY_ENV]})
    if cfg.api_key is not None:
        # a key read from a file or an env line often ends with a newline no client sends: stripped
        key = cfg.api_key.strip()
        if not key:
            raise R1TuneError("the API key is empty")
        if not all(" " <= c <= "~" for c in key):
            raise R1TuneError("the API key must be printable ASCII: an HTTP header cannot carry other characters")
        cfg = cfg.model_copy(update={"api_key": key})
    if not is_loopback(cfg.host) and not cfg.api_key:
        raise R1TuneError(f"refusing to serve on {cfg.host} without an API key: anyone who reaches the port could "
                          f"use the model. Set {API_KEY_ENV} (or --api-key), or bind 127.0.0.1")
    return cfg


def serve(run: str | Path, cfg: ServeConfig) -> None:
    cfg = resolve_api_key(cfg)
    if cfg.engine == "vllm":
        from r1tune.serve.vllm import serve_with_vllm

        if not (Path(run) / "final").is_dir() and any(Path(run).glob("*/lineage.json")):  # issue 15
            raise R1TuneError(f"{run}: a lineage folder is served (and hot-swapped) by the transformers engine "
                              "only: serve one of its runs with --engine vllm")
        serve_with_vllm(run, cfg)
        return
    import uvicorn

    from r1tune.serve.app import create_app
    from r1tune.serve.engine import load_engine
    from r1tune.serve.lineage import LineageEngine, add_reload_route, is_lineage_folder

    if is_lineage_folder(run):  # issue 15: the newest promoted run, swapped on promotion
        named = cfg.model_copy(update={"served_name": cfg.served_name or Path(run).resolve().name})
        engine = LineageEngine(run, lambda chosen: load_engine(chosen, named))
        print(f"r1tune serve: lineage {run}: serving {engine.run} (a newly promoted run is picked up "
              f"{f'every {cfg.watch_s:g} s and ' if cfg.watch_s else ''}on POST /admin/reload)", flush=True)
        if cfg.watch_s:
            engine.watch(cfg.watch_s)
    else:
        engine = load_engine(run, cfg)
    app = create_app(engine, cfg)
    if isinstance(engine, LineageEngine):
        add_reload_route(app, engine)
    print(f"r1tune serve: models {', '.join(engine.models)} on http://{cfg.host}:{cfg.port}/v1"
          f" ({'API key required' if cfg.api_key else 'no API key'}; template {cfg.template})", flush=True)
    try:
        uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info", lifespan="off",
                    timeout_graceful_shutdown=5, server_header=False)
    finally:
        engine.close()
