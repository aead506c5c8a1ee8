"""Serve fixtures: two tiny LoRA runs (a few seconds each), one engine serving both, and live uvicorn servers
on 127.0.0.1 (an already-bound socket on a free port, so there is no port race).

Everything runs with one torch thread: on a 2-core machine shared with other work, two threads spin against
each other (generation measured 10x slower), and the tiny model gains nothing from a second one."""

import contextlib
import socket
import threading
import time

import pytest

from r1tune.config import FinetuneConfig, ServeConfig


def make_lora_run(model_dir, out, data_file, steps=8, seed=7):
    from r1tune.recipes.finetune import finetune

    finetune(FinetuneConfig(model={"name_or_path": str(model_dir)},
                            # keep: answers train from the first steps (auto would spend these few on the empty
                            # think block of the trace-less majority, and the runs would answer only newlines)
                            data={"train": str(data_file), "val_split": 0.2, "max_length": 128, "reasoning": "keep"},
                            method={"name": "lora", "lora_r": 8, "lora_alpha": 16},
                            train=dict(max_steps=steps, batch_size=8, lr=5e-3, eval_every=100, save_every=100,
                                       seed=seed, threads=1), out=str(out)))
    return out


@pytest.fixture(scope="session")
def finsent_subset(finsent_file):
    return finsent_file(80)


@pytest.fixture(scope="session")
def lora_run(tiny_model_dir, finsent_subset, tmp_path_factory):
    """runs/…/tuned: a LoRA run on the tiny model."""
    return make_lora_run(tiny_model_dir, tmp_path_factory.mktemp("runs") / "tuned", finsent_subset)


@pytest.fixture(scope="session")
def other_run(tiny_model_dir, finsent_subset, tmp_path_factory):
    """A second LoRA run on the same base, taught another answer ("不确定"): served as adapter 'other'."""
    import json

    data = tmp_path_factory.mktemp("other-data") / "train.jsonl"
    records = [json.loads(line) for line in finsent_subset.read_text(encoding="utf-8").splitlines()]
    data.write_text("".join(json.dumps({"instruction": r["instruction"], "input": r["input"], "output": "不确定"},
                                       ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return make_lora_run(tiny_model_dir, tmp_path_factory.mktemp("runs") / "other", data, steps=10, seed=3)


@pytest.fixture(scope="session")
def engine(lora_run, other_run):
    from r1tune.serve.engine import load_engine

    eng = load_engine(lora_run, ServeConfig(adapters={"other": str(other_run)}, threads=1))
    yield eng
    eng.close()


@contextlib.contextmanager
def live_server(app):
    """Run `app` with uvicorn in a thread on 127.0.0.1; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="session")
def start_server(engine):
    """start_server(ServeConfig(...)) → a context manager yielding the URL of a server on the shared engine."""
    from r1tune.serve.app import create_app

    return lambda cfg: live_server(create_app(engine, cfg))


@pytest.fixture(scope="session")
def server_url(engine):
    """A server with the default limits, no API key."""
    from r1tune.serve.app import create_app

    with live_server(create_app(engine, ServeConfig())) as url:
        yield url
