"""Serving a lineage: the newest promoted run, swapped for a newly promoted one without a restart (issue 15).

    engine = LineageEngine("runs/monthly", load=lambda run: load_engine(run, cfg))   # Engine-shaped
    app = create_app(engine, cfg); add_reload_route(app, engine)                     # POST /admin/reload
    engine.watch(5.0)                                                                  # or poll the folder

Requests go to the engine that is current when they are submitted. A reload loads the newest promoted run
(`train/lineage.newest_promoted`) into a second engine while the first keeps serving, then swaps the
pointer: requests already submitted finish on the old weights, new ones start on the new, and the old
engine is closed once its last row has finished. Both engines serve the same model names (the lineage
folder's name), so clients never see a model vanish. Memory holds two models during a swap.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from r1tune.errors import R1TuneError
from r1tune.serve.engine import Engine, Finished
from r1tune.train.lineage import newest_promoted

log = logging.getLogger("r1tune.serve")


def is_lineage_folder(path: str | Path) -> bool:
    """A folder of runs (not a run itself) holding at least one run with a lineage.json."""
    folder = Path(path)
    return (folder.is_dir() and not (folder / "final").is_dir() and not (folder / "config.json").is_file()
            and any((p / "lineage.json").is_file() for p in folder.iterdir() if p.is_dir()))


class LineageEngine:
    def __init__(self, folder: str | Path, load: Callable[[Path], Engine]):
        self.folder, self._load = Path(folder), load
        run = newest_promoted(self.folder)
        if run is None:
            raise R1TuneError(f"{self.folder}: no promoted run to serve (a run is promoted when its gate passed: "
                              "see its lineage.json)")
        self.current, self.run = load(run), run
        self.swaps = 0
        self._rows: dict[int, int] = {id(self.current): 0}  # engine → rows submitted and not finished
        self._retired: dict[int, Engine] = {}
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()  # one reload at a time: loading is slow
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def __getattr__(self, name):  # models, encode, context_length, stats, template …: the current engine's
        if name == "current":  # not set yet (a failed __init__)
            raise AttributeError(name)
        return getattr(self.current, name)

    def submit(self, model, prompt_ids, sampling, n, emit, images=None):  # images: issue 19
        with self._lock:
            engine = self.current
            self._rows[id(engine)] = self._rows.get(id(engine), 0) + n

        def counted(index, event):
            emit(index, event)
            if isinstance(event, Finished):
                self._row_finished(engine, 1)

        try:
            return engine.submit(model, prompt_ids, sampling, n, counted, images)
        except BaseException:
            self._row_finished(engine, n)
            raise

    def _row_finished(self, engine: Engine, n: int) -> None:
        with self._lock:
            self._rows[id(engine)] -= n
            idle = id(engine) in self._retired and self._rows[id(engine)] <= 0
            if idle:
                del self._retired[id(engine)], self._rows[id(engine)]
        if idle:  # called on that engine's worker thread, which close() joins: close from another thread
            threading.Thread(target=engine.close, name="r1tune-retire", daemon=True).start()

    def reload(self) -> dict:
        """Swap in the newest promoted run when it is not the one served; {"serving", "changed", "previous"}."""
        with self._reload_lock:
            run = newest_promoted(self.folder)
            if run is None or run.resolve() == self.run.resolve():
                return {"serving": str(self.run), "changed": False}
            engine = self._load(run)
            with self._lock:
                old, previous = self.current, self.run
                self.current, self.run = engine, run
                self._rows.setdefault(id(engine), 0)
                self.swaps += 1
                idle = self._rows.get(id(old), 0) <= 0
                if idle:
                    self._rows.pop(id(old), None)
                else:
                    self._retired[id(old)] = old
            if idle:
                old.close()
            log.info("now serving %s (was %s)", run, previous)
            print(f"r1tune serve: now serving {run} (was {previous})", flush=True)
            return {"serving": str(run), "changed": True, "previous": str(previous)}

    def watch(self, every_s: float) -> None:
        """Look for a newly promoted run every `every_s` seconds, on a background thread."""
        def loop():
            while not self._stop.wait(every_s):
                try:
                    self.reload()
                except Exception:  # a broken candidate must not stop serving the current run
                    log.exception("reload failed; still serving %s", self.run)

        self._watcher = threading.Thread(target=loop, name="r1tune-watch", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            engines = [self.current, *self._retired.values()]
            self._retired.clear()
        for engine in engines:
            engine.close()


def add_reload_route(app, engine: LineageEngine) -> None:
    """POST /admin/reload on the app `create_app` built (behind its guard: the API key when one is set)."""
    import asyncio

    inner = getattr(app, "app", app)  # create_app wraps the FastAPI app in its Guard

    async def reload():
        try:
            return await asyncio.to_thread(engine.reload)
        except R1TuneError as e:
            from fastapi.responses import JSONResponse

            return JSONResponse({"error": {"message": str(e), "type": "server_error", "param": None,
                                           "code": "reload_failed"}}, status_code=409)

    inner.add_api_route("/admin/reload", reload, methods=["POST"])
