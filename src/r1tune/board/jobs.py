"""Jobs the board launches, and every run it finds under the runs folder.

    job = launch(runs / "finance-lora", "finetune", ["finetune", "runs/finance-lora/launch.yaml"])
    status(folder)             # running | stopping | finished | failed | stopped | incomplete
    stop(folder); resume(folder)
    rows, cursor = read_metrics(folder / "metrics.jsonl", cursor)   # the rows appended since `cursor`

A job is a detached child process, `python -m r1tune.cli ARGS` in its own session (start_new_session):
closing the board does not stop it. Its folder holds `job.json` (pid, the process's start time, command,
when it started, whether a stop was asked) and `board.log` (its stdout and stderr). While the board that
started it runs, a thread waits for it and records its exit code; a board started later finds it again
by scanning the runs folder and tells its status from job.json, whether that pid still runs the same
process (the pid and its start time: a reused pid is not the job), and what the job leaves when it ends
(final/ for training, report.html for an evaluation, …).

Stop sends SIGTERM to the job's process group; resume starts the same command again with `--resume`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from r1tune.board.paths import BOARD_STATE, UPLOADS, relative
from r1tune.config import PrepareConfig, load_config
from r1tune.errors import R1TuneError
from r1tune.files import write_text

JOB_FILE, LOG_FILE, LAUNCH_FILE = "job.json", "board.log", "launch.yaml"
# what a finished job leaves, by kind: its presence (written after the job started) means it ended well
DONE_MARKERS = {
    "finetune": "final/provenance.json", "grpo": "final/provenance.json", "evaluate": "report.html",
    "merge": "model/merge_report.json", "int8": "model/quantize_report.json", "gguf": "gguf/gguf_report.json",
    "check": "report.md", "prepare": "summary.json",
}
RESUMABLE = ("finetune", "grpo")
# files a run's page links to when present
REPORTS = ("report.html", "report.md", "metrics.json", "quality.json", "summary.json", "model/merge_report.json",
           "model/quantize_report.json", "gguf/gguf_report.json", "final/provenance.json", "loss.png", "lr.png",
           "skipped.jsonl")
SKIP_DIRS = {UPLOADS, BOARD_STATE, "checkpoints", "final", "tensorboard", "predictions", "model", "merged", "int8",
             "gguf", "__pycache__"}
SCAN_DEPTH = 3
_job_lock = threading.Lock()  # job.json is rewritten by request handlers and by the threads waiting on children
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


# ---------------------------------------------------------------- job.json


def read_job(folder: Path) -> dict | None:
    try:
        job = json.loads((folder / JOB_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return job if isinstance(job, dict) else None


def _write_job(folder: Path, job: dict) -> None:
    write_text(folder / JOB_FILE, json.dumps(job, indent=1, ensure_ascii=False))


def _update_job(folder: Path, pid: int | None = None, **changes) -> dict | None:
    """Apply `changes` to job.json (only while it still describes process `pid`, when given)."""
    with _job_lock:
        job = read_job(folder)
        if job is None or (pid is not None and job.get("pid") != pid):
            return job
        job.update(changes)
        _write_job(folder, job)
        return job


# ---------------------------------------------------------------- launching


def child_env() -> dict:
    """The board's environment, with the child's output unbuffered (the log shows lines as they come)."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "TERM": "dumb", "COLUMNS": "120"}


def launch(folder: Path, kind: str, args: list[str], summary: dict | None = None) -> dict:
    """Start `r1tune ARGS` detached, logging into folder/board.log; write and return job.json."""
    folder.mkdir(parents=True, exist_ok=True)
    job = {"kind": kind, "command": [sys.executable, "-m", "r1tune.cli", *args], "summary": summary or {},
           "resumes": 0}
    return _start(folder, job, "ab")


def _start(folder: Path, job: dict, log_mode: str) -> dict:
    with open(folder / LOG_FILE, log_mode) as log:
        if log_mode == "ab" and log.tell():
            log.write(f"\n--- board: started again at {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
            log.flush()
        process = subprocess.Popen(job["command"], cwd=folder, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True, env=child_env())
    job.update(pid=process.pid, pgid=process.pid, process_started=_process_start(process.pid), started=time.time(),
               ended=None, exit_code=None, stop_requested=False)
    with _job_lock:
        _write_job(folder, job)
    threading.Thread(target=_wait_for, args=(process, folder), name=f"board-wait-{process.pid}", daemon=True).start()
    return job


def _wait_for(process: subprocess.Popen, folder: Path) -> None:
    """Reap the child (no zombie) and record how it ended."""
    code = process.wait()
    _update_job(folder, pid=process.pid, exit_code=code, ended=time.time())


def _process_start(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def job_alive(job: dict) -> bool:
    """Whether job.json's pid still runs the process the board started (not a zombie, not a reused pid)."""
    pid, started = job.get("pid"), job.get("process_started")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - float(started)) < 1.0
    except (psutil.Error, ValueError, TypeError):
        return False


def stop(folder: Path) -> dict:
    """SIGTERM to the job's process group (the job and anything it started)."""
    job = read_job(folder)
    if job is None:
        raise R1TuneError(f"{folder.name}: not a job the board started (no {JOB_FILE})")
    if not job_alive(job):
        raise R1TuneError(f"{folder.name} is not running")
    _update_job(folder, pid=job["pid"], stop_requested=True)
    try:
        os.killpg(job["pgid"], signal.SIGTERM)
    except ProcessLookupError:
        pass
    return read_job(folder) or job


def resume(folder: Path) -> dict:
    """Start a stopped or failed training job again with `--resume` (from its latest checkpoint)."""
    job = read_job(folder)
    if job is None:
        raise R1TuneError(f"{folder.name}: not a job the board started (no {JOB_FILE})")
    if job.get("kind") not in RESUMABLE:
        raise R1TuneError(f"{folder.name}: a {job.get('kind')} job cannot be resumed; launch it again")
    if job_alive(job):
        raise R1TuneError(f"{folder.name} is still running")
    if not (folder / "checkpoints").is_dir() or not any((folder / "checkpoints").iterdir()):
        raise R1TuneError(f"{folder.name} has no checkpoint to resume from; launch it again")
    command = list(job["command"])
    if "--resume" not in command:
        command.append("--resume")
    job.update(command=command, resumes=int(job.get("resumes", 0)) + 1)
    return _start(folder, job, "ab")


# ---------------------------------------------------------------- status


def done_marker(folder: Path, kind: str | None) -> Path | None:
    marker = DONE_MARKERS.get(kind or "")
    return folder / marker if marker else None


def status(folder: Path, job: dict | None = None) -> str:
    """running | stopping | finished | failed | stopped (board jobs); finished | incomplete (other runs)."""
    job = job if job is not None else read_job(folder)
    if job is None:
        return "finished" if (folder / "final").is_dir() or (folder / "report.html").is_file() else "incomplete"
    if job_alive(job):
        return "stopping" if job.get("stop_requested") else "running"
    marker = done_marker(folder, job.get("kind"))
    ended_well = marker is not None and marker.exists() and marker.stat().st_mtime >= float(job.get("started", 0)) - 1
    if job.get("exit_code") is not None and job["exit_code"] != 0:
        return "stopped" if job.get("stop_requested") else "failed"
    if ended_well:
        return "finished"
    if job.get("stop_requested"):
        return "stopped"
    return "finished" if job.get("exit_code") == 0 else "failed"


# ---------------------------------------------------------------- finding runs


def _is_run(folder: Path) -> bool:
    return any((folder / name).exists() for name in (JOB_FILE, "metrics.jsonl", "final", "config.yaml")) or (
        (folder / "report.html").is_file() and (folder / "metrics.json").is_file())


def find_runs(root: Path) -> list[Path]:
    """Every run folder under `root` (board jobs and runs made on the command line), up to 3 levels down."""
    found: list[Path] = []
    base = root.resolve()

    def walk(folder: Path, depth: int) -> None:
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            return
        for child in children:
            if child.name.startswith(".") or child.name in SKIP_DIRS:
                continue
            if _is_run(child):
                found.append(child)
            elif depth < SCAN_DEPTH:
                walk(child, depth + 1)

    if base.is_dir():
        walk(base, 1)
    return found


def guess_kind(folder: Path) -> str:
    if (folder / "report.html").is_file() and (folder / "metrics.json").is_file():
        return "evaluate"
    config = folder / "config.yaml"
    if config.is_file() and re.search(r"^grpo:", config.read_text(encoding="utf-8", errors="replace"), re.M):
        return "grpo"
    return "finetune"


def summarize(root: Path, folder: Path) -> dict:
    """What the runs list shows of one run."""
    job = read_job(folder)
    kind = job.get("kind") if job else guess_kind(folder)
    last = last_train_row(folder / "metrics.jsonl")
    summary = (job or {}).get("summary") or {}
    return {
        "name": relative(root, folder), "kind": kind, "status": status(folder, job), "board_job": job is not None,
        "started": (job or {}).get("started") or _mtime(folder), "ended": (job or {}).get("ended"),
        "exit_code": (job or {}).get("exit_code"), "step": last.get("step") if last else None,
        "total_steps": summary.get("max_steps"), "loss": last.get("loss") if last else None,
        "reward": last.get("reward") if last else None, "chat": chat_folder(folder) is not None,
        "adapter": (folder / "final" / "adapter_config.json").is_file(),
        "resumable": bool(job) and kind in RESUMABLE, "summary": summary,
    }


def _mtime(folder: Path) -> float | None:
    try:
        return folder.stat().st_mtime
    except OSError:
        return None


def chat_folder(folder: Path) -> Path | None:
    """The model a chat would load from this run: its final/ (adapter or model) or an exported model/."""
    for candidate in (folder / "final", folder / "model"):
        if (candidate / "adapter_config.json").is_file() or (candidate / "config.json").is_file():
            return candidate
    if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
        return folder
    return None


def details(root: Path, folder: Path, log_bytes: int) -> dict:
    """One run in full: its summary, config, reports present, log tail, and the last line worth reading."""
    info = summarize(root, folder)
    config = next((folder / n for n in (LAUNCH_FILE, "config.yaml", "prepare-config.yaml")
                   if (folder / n).is_file()), None)
    info["config"] = config.read_text(encoding="utf-8", errors="replace") if config else None
    info["config_file"] = config.name if config else None
    info["reports"] = [name for name in REPORTS if (folder / name).is_file()]
    info["log"] = log_tail(folder / LOG_FILE, log_bytes)
    info["reason"] = failure_line(info["log"]) if info["status"] == "failed" else None
    job = read_job(folder)
    # the job's argv after `python -m r1tune.cli`, as the user would type it after `r1tune`
    info["command"] = " ".join(job["command"][3:]) if job and job.get("command") else None
    info["progress"] = prepare_progress(folder) if info["kind"] == "prepare" else None
    return info


# ---------------------------------------------------------------- metrics and logs


def read_metrics(path: Path, cursor: str | None = None) -> tuple[list[dict], str, bool]:
    """(rows appended since `cursor`, the new cursor, whether the file was rewritten since). The cursor is
    "inode:offset"; a resumed run rewrites metrics.jsonl (a new file), which starts the rows over."""
    try:
        stat = path.stat()
    except OSError:
        return [], "0:0", cursor not in (None, "0:0")
    inode, offset = str(stat.st_ino), 0
    reset = False
    if cursor:
        seen_inode, _, seen_offset = cursor.partition(":")
        if seen_inode == inode and seen_offset.isdigit() and int(seen_offset) <= stat.st_size:
            offset = int(seen_offset)
        else:
            reset = cursor != "0:0"
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    end = chunk.rfind(b"\n") + 1  # only whole lines: the writer may be in the middle of one
    rows = []
    for line in chunk[:end].splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows, f"{inode}:{offset + end}", reset


def last_train_row(path: Path, tail_bytes: int = 8192) -> dict | None:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - tail_bytes))
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and row.get("split", "train") == "train":
            return row
    return None


def log_tail(path: Path, max_bytes: int) -> str:
    """The end of a log as a terminal would show it: colour codes dropped, a line redrawn with \\r shown once."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - max_bytes))
            raw = f.read()
    except OSError:
        return ""
    text = _ANSI.sub("", raw.decode("utf-8", errors="replace"))
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def failure_line(log: str) -> str | None:
    """The line that says why a job failed: its `error: …` line, else its last line."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or [None])[-1]


# ---------------------------------------------------------------- prepare progress


PREPARE_FILE_STEPS = ("clean", "convert", "dedupe", "window", "tag")  # as `r1tune prepare` numbers its files


def prepare_progress(folder: Path) -> dict | None:
    """Steps of a prepare job done / planned, from its config and the files its steps have written."""
    config = folder / LAUNCH_FILE
    if not config.is_file():
        return None
    try:
        cfg = load_config(PrepareConfig, config)
    except R1TuneError:
        return None
    out = Path(cfg.out)
    steps = [name for name in PREPARE_FILE_STEPS if getattr(cfg, name).enabled]
    if cfg.augment.enabled and not cfg.split.enabled:
        steps.append("augment")
    stages = [(name, out / f"{n:02d}-{name}.jsonl") for n, name in enumerate(steps, 1)]
    if cfg.split.enabled:
        stages.append(("split", out / "train.jsonl"))
        if cfg.augment.enabled:
            stages.append(("augment", out / "train-augmented.jsonl"))
    stages.append(("report", out / "summary.json"))
    done = [name for name, path in stages if path.exists()]
    return {"stages": [name for name, _ in stages], "done": done, "fraction": len(done) / len(stages)}
