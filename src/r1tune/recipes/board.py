"""The board flow: check the address and key, open the runs folder, serve the one-page app.

    r1tune board                                            # http://127.0.0.1:7860, runs/ in this folder
    r1tune board --runs /data/runs --model /models/R1-Distill-Qwen-1.5B
    R1TUNE_API_KEY=… r1tune board --host 0.0.0.0            # another address needs a key (a sign-in form)

The jobs the board launches are detached processes writing into their run folders: stopping the board
leaves them running, and a board started later on the same runs folder lists them again (board/jobs.py).
A chat model loaded by the board is closed when the board stops.
"""

from __future__ import annotations

import time
from pathlib import Path

from r1tune.config import BoardConfig
from r1tune.errors import R1TuneError
from r1tune.recipes.serve import resolve_api_key


def board(cfg: BoardConfig) -> None:
    started = time.perf_counter()
    cfg = resolve_api_key(cfg)
    runs = Path(cfg.runs)
    if runs.exists() and not runs.is_dir():
        raise R1TuneError(f"--runs {cfg.runs}: not a folder")
    runs.mkdir(parents=True, exist_ok=True)
    import uvicorn

    from r1tune.board.app import create_app

    app = create_app(cfg)
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    print(f"r1tune board: http://{host}:{cfg.port}/ over {runs.resolve()} "
          f"({'API key required' if cfg.api_key else 'loopback only, no key'}; "
          f"ready in {time.perf_counter() - started:.2f} s)", flush=True)
    try:
        uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", lifespan="off",
                    timeout_graceful_shutdown=3, server_header=False)
    finally:
        app.app.state.chats.close()
