"""The board's routes: the page, its JSON API, live run events and chat (server-sent events).

    app = create_app(BoardConfig(runs="runs"))      # recipes/board.py serves it with uvicorn

    GET  /                       the one-page app (resources/board/), in the cookie's or the browser's language
    GET  /api/files /api/models  data files and base models a form may name
    PUT  /api/upload?name=F      a data file or prepare config, stored in RUNS/uploads/ (never replacing one)
    GET  /api/preview?file=F     the first records of a file, with its unreadable ones
    POST /api/check /api/prepare /api/train /api/evaluate /api/export    launch a detached job (jobs.py)
    POST /api/advise /api/train/preview    the advisor's report; the config a launch would write
    GET  /api/runs  /api/run?name=R  /api/run/events?name=R (SSE: metrics rows, status, log)  /api/run/file
    POST /api/run/stop /api/run/resume
    POST /api/chat               SSE: reasoning / answer / finish pieces from the run's model (serve's engine)

Every path a request names goes through paths.inside (403 outside the runs folder); a form's values through
forms.py (the same schema classes as the command line). A user error is `{"error": "one line"}` with 400,
403 (outside), 404 or 409 (name taken).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from urllib.parse import parse_qs

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse

from r1tune.board import forms, jobs
from r1tune.board.chat import ChatEngines
from r1tune.board.guard import SESSION_COOKIE, BoardGuard, board_secret, csrf_token, key_matches, session_value
from r1tune.board.i18n import choose_language, ui_strings
from r1tune.board.paths import (
    BOARD_STATE,
    CONFIG_SUFFIXES,
    DATA_SUFFIXES,
    UPLOADS,
    OutsideError,
    free_name,
    inside,
    relative,
    upload_name,
)
from r1tune.config import BoardConfig
from r1tune.data.io import read_records
from r1tune.errors import R1TuneError

PAGE_DIR = Path(__file__).resolve().parents[1] / "resources" / "board"
STATIC = {"board.js": "text/javascript; charset=utf-8", "board.css": "text/css; charset=utf-8"}
# what runs write, not inputs a form should offer (a run's config is not a prepare config)
SKIP_FILES = {"metrics.jsonl", "skipped.jsonl", "completions.jsonl", jobs.JOB_FILE, jobs.LAUNCH_FILE, "config.yaml"}
MAX_LISTED_FILES = 500
EXPORT_KINDS = ("merge", "int8", "gguf")
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
# a report a run wrote is the run's, not the board's: it runs sandboxed, away from the board's origin
REPORT_CSP = "sandbox allow-scripts; frame-ancestors 'none'"
HTML_REPORTS = (".html",)


class NotFound(R1TuneError):
    """A run or file that does not exist (answered 404)."""


def create_app(cfg: BoardConfig) -> BoardGuard:
    root = Path(cfg.runs).resolve()
    (root / UPLOADS).mkdir(parents=True, exist_ok=True)
    secret = board_secret(root)
    token = csrf_token(secret)
    chats = ChatEngines(cfg.chat_threads)
    pages = jinja2.Environment(loader=jinja2.FileSystemLoader(PAGE_DIR), autoescape=True)
    app = FastAPI(title="r1tune board", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.chats = chats

    @app.exception_handler(R1TuneError)
    async def on_user_error(_request, error: R1TuneError):
        status = 403 if isinstance(error, OutsideError) else 409 if isinstance(error, forms.Conflict) else \
            404 if isinstance(error, NotFound) else 400
        return JSONResponse({"error": str(error)}, status_code=status)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("content-security-policy", PAGE_CSP)
        response.headers.update({"x-content-type-options": "nosniff", "x-frame-options": "DENY",
                                 "referrer-policy": "same-origin", "cache-control": "no-store"})
        return response

    # ---------------------------------------------------------------- page, login, static

    def language(request: Request) -> str:
        return choose_language(request.cookies.get("lang"), request.headers.get("accept-language"))

    @app.get("/", response_class=HTMLResponse)
    async def page(request: Request):
        lang = language(request)
        boot = {"csrf": token, "lang": lang, "strings": ui_strings(lang), "poll_s": cfg.poll_s,
                "sampling": cfg.sampling.model_dump(), "chat_max_tokens": cfg.chat_max_tokens,
                "gguf": forms.gguf_available(), "methods": forms.METHODS, "runs": str(root)}
        html = pages.get_template("board.html").render(s=ui_strings(lang), lang=lang,
                                                       boot=json.dumps(boot, ensure_ascii=False).replace("</", "<\\/"))
        return HTMLResponse(html)

    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, wrong: int = 0):
        lang = language(request)
        return HTMLResponse(pages.get_template("login.html").render(s=ui_strings(lang), lang=lang, wrong=wrong))

    @app.post("/login")
    async def login(request: Request):
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        given = (form.get("key") or [""])[0].strip()
        if cfg.api_key is None or not key_matches(given, cfg.api_key):
            return RedirectResponse("/login?wrong=1", status_code=303)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, session_value(secret, cfg.api_key), httponly=True, samesite="strict")
        return response

    @app.get("/static/{name}")
    async def static(name: str):
        if name not in STATIC:
            raise NotFound(f"{name}: no such file")
        return FileResponse(PAGE_DIR / name, media_type=STATIC[name])

    # ---------------------------------------------------------------- data

    @app.get("/api/files")
    async def files():
        return {"data": list_files(root, DATA_SUFFIXES), "configs": list_files(root, CONFIG_SUFFIXES)}

    @app.get("/api/models")
    async def models():
        found = list(cfg.models)
        for folder in jobs.find_runs(root):
            if (folder / "model" / "config.json").is_file():
                found.append(relative(root, folder / "model"))
        return {"models": found}

    @app.put("/api/upload")
    async def upload(request: Request, name: str):
        target = free_name(root / UPLOADS, upload_name(name))
        size = 0
        fd, temp = tempfile.mkstemp(dir=root / UPLOADS, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > cfg.max_upload_bytes:
                        raise R1TuneError(f"upload larger than {cfg.max_upload_bytes} bytes")
                    out.write(chunk)
            if size == 0:
                raise R1TuneError("upload: the file is empty")
            os.replace(temp, target)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
        return {"file": relative(root, target), "bytes": size}

    @app.get("/api/preview")
    async def preview(file: str):
        return await asyncio.to_thread(preview_records, root, file, cfg.preview_records)

    async def launch(plan: forms.Plan) -> dict:
        if plan.config is not None:
            plan.write_config()
        job = jobs.launch(plan.folder, plan.kind, plan.args, plan.summary)
        return {"name": relative(root, plan.folder), "kind": plan.kind, "pid": job["pid"]}

    @app.post("/api/check")
    async def check(request: Request):
        return await launch(forms.check_plan(root, await json_body(request)))

    @app.post("/api/prepare")
    async def prepare(request: Request):
        return await launch(forms.prepare_plan(root, cfg, await json_body(request)))

    # ---------------------------------------------------------------- train

    @app.post("/api/advise")
    async def advise(request: Request):
        args = forms.advise_args(root, cfg, await json_body(request))
        return await run_child(args, cfg.advise_timeout_s)

    @app.post("/api/train/preview")
    async def train_preview(request: Request):
        plan = forms.train_plan(root, cfg, await json_body(request))
        return {"yaml": plan.yaml, "command": "r1tune " + " ".join(plan.args)}

    @app.post("/api/train")
    async def train(request: Request):
        return await launch(forms.train_plan(root, cfg, await json_body(request)))

    @app.post("/api/evaluate")
    async def evaluate(request: Request):
        return await launch(forms.evaluate_plan(root, cfg, await json_body(request)))

    @app.post("/api/export")
    async def export(request: Request):
        return await launch(forms.export_plan(root, cfg, await json_body(request)))

    # ---------------------------------------------------------------- runs

    @app.get("/api/runs")
    async def runs():
        found = await asyncio.to_thread(jobs.find_runs, root)
        rows = [jobs.summarize(root, folder) for folder in found]
        rows.sort(key=lambda r: r.get("started") or 0, reverse=True)
        return {"runs": rows}

    @app.get("/api/run")
    async def run(name: str):
        return jobs.details(root, run_folder(root, name), cfg.log_tail_bytes)

    @app.post("/api/run/stop")
    async def stop(request: Request):
        folder = run_folder(root, forms.text(await json_body(request), "name"))
        return {"status": jobs.status(folder, jobs.stop(folder))}

    @app.post("/api/run/resume")
    async def resume(request: Request):
        folder = run_folder(root, forms.text(await json_body(request), "name"))
        return {"status": jobs.status(folder, jobs.resume(folder))}

    @app.get("/api/run/file")
    async def run_file(name: str, file: str):
        folder = run_folder(root, name)
        if file not in jobs.REPORTS:
            raise NotFound(f"{file}: not a report the board shows")
        path = inside(root, f"{relative(root, folder)}/{file}")
        if not path.is_file():
            raise NotFound(f"{name}/{file} not found")
        headers = {"content-security-policy": REPORT_CSP} if path.suffix in HTML_REPORTS else None
        return FileResponse(path, headers=headers)

    @app.get("/api/run/events")
    async def run_events(request: Request, name: str):
        folder = run_folder(root, name)
        return StreamingResponse(run_stream(request, root, folder, cfg), media_type="text/event-stream",
                                 headers={"x-accel-buffering": "no"})

    # ---------------------------------------------------------------- chat

    @app.post("/api/chat")
    async def chat(request: Request):
        body = await json_body(request)
        folder = jobs.chat_folder(run_folder(root, forms.text(body, "run")))
        if folder is None:
            raise R1TuneError(f"run: {forms.text(body, 'run')} has no model to chat with yet (final/)")
        messages = chat_messages(body.get("messages"))
        temperature = _bounded(forms.number(body, "temperature"), cfg.sampling.temperature, 0, 2, "temperature")
        top_p = _bounded(forms.number(body, "top_p"), cfg.sampling.top_p, 1e-6, 1, "top_p")
        max_tokens = int(_bounded(forms.number(body, "max_tokens", int), cfg.chat_max_tokens, 1, 32768,
                                  "max_tokens"))

        async def pieces():
            try:
                async for kind, text in chats.reply(folder, messages, temperature, top_p, max_tokens):
                    yield sse(kind, {"text": text})
            except R1TuneError as e:
                yield sse("error", {"text": str(e)})

        return StreamingResponse(pieces(), media_type="text/event-stream", headers={"x-accel-buffering": "no"})

    return BoardGuard(app, cfg.api_key, secret, cfg.max_body_bytes, cfg.max_upload_bytes)


# ---------------------------------------------------------------- helpers


async def json_body(request: Request) -> dict:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise R1TuneError("the body must be JSON (Content-Type: application/json)")
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise R1TuneError("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise R1TuneError("the body must be a JSON object")
    return body


def run_folder(root: Path, name: str) -> Path:
    folder = inside(root, name)
    if not folder.is_dir() or folder == root or relative(root, folder).split("/")[0] in (UPLOADS, BOARD_STATE):
        raise NotFound(f"run {name!r} not found in the runs folder")
    return folder


def list_files(root: Path, suffixes: tuple[str, ...]) -> list[str]:
    """Data files (or configs) anywhere in the runs folder a form may pick, uploads first."""
    found: list[str] = []
    skip_dirs = jobs.SKIP_DIRS - {UPLOADS}
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in skip_dirs)
        depth = len(Path(folder).relative_to(root).parts)
        if depth >= 3:
            dirs[:] = []
        for name in sorted(names):
            if Path(name).suffix.lower() in suffixes and name not in SKIP_FILES and not name.startswith("."):
                found.append(relative(root, Path(folder) / name))
        if len(found) >= MAX_LISTED_FILES:
            break
    found.sort(key=lambda f: (not f.startswith(UPLOADS + "/"), f))
    return found[:MAX_LISTED_FILES]


def preview_records(root: Path, file: str, limit: int) -> dict:
    path = forms.data_file(root, file, "file")
    records, skipped = [], []
    try:
        for _loc, record in read_records(path, on_error="skip", skipped=skipped):
            records.append(record)
            if len(records) >= limit:
                break
    except R1TuneError as e:
        return {"records": records, "problems": [str(e)]}
    return {"records": records, "problems": [str(e) for e in skipped[:limit]]}


async def run_child(args: list[str], timeout_s: float) -> dict:
    """`r1tune ARGS` printing JSON (the advisor), awaited without blocking the board."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "r1tune.cli", *args,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                   env=jobs.child_env())
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise R1TuneError(f"{args[0]} took longer than {timeout_s:g} s") from None
    if process.returncode != 0:
        lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
        raise R1TuneError(jobs.failure_line("\n".join(lines)) or f"{args[0]} failed")
    return json.loads(out)


def chat_messages(raw) -> list[dict]:
    if not isinstance(raw, list) or not raw or len(raw) > 200:
        raise R1TuneError("messages: a list of 1–200 {role, content}")
    messages = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant") or \
                not isinstance(message.get("content"), str):
            raise R1TuneError(f"messages[{i}]: expected {{role: system|user|assistant, content: text}}")
        messages.append({"role": message["role"], "content": message["content"]})
    if messages[-1]["role"] != "user":
        raise R1TuneError("messages: the last one must be the user's")
    return messages


def _bounded(value, default, low, high, what: str):
    value = default if value is None else value
    if not low <= value <= high:
        raise R1TuneError(f"{what}: between {low:g} and {high:g}")
    return value


def sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def run_stream(request: Request, root: Path, folder: Path, cfg: BoardConfig):
    """A run's events: its metrics rows as metrics.jsonl grows, its status and log tail when they change;
    `end` once the run is no longer running (the page closes the stream then)."""
    cursor, last_status, last_log = None, None, None
    while True:
        rows, cursor, reset = await asyncio.to_thread(jobs.read_metrics, folder / "metrics.jsonl", cursor)
        if rows or reset:
            yield sse("metrics", {"rows": rows, "reset": reset})
        summary = jobs.summarize(root, folder)
        if summary != last_status:
            last_status = summary
            yield sse("status", summary)
        log = jobs.log_tail(folder / jobs.LOG_FILE, cfg.log_tail_bytes)
        if log != last_log:
            last_log = log
            yield sse("log", {"text": log})
        if summary["status"] not in ("running", "stopping"):
            rows, cursor, reset = await asyncio.to_thread(jobs.read_metrics, folder / "metrics.jsonl", cursor)
            if rows or reset:
                yield sse("metrics", {"rows": rows, "reset": reset})
            yield sse("end", {"status": summary["status"]})
            return
        if await request.is_disconnected():
            return
        await asyncio.sleep(cfg.poll_s)
