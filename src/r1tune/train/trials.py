"""One search trial as a child process, watched from the study: intermediate losses, pruning, OOM, deadline.

    outcome = run_trial_process(cmd, folder, on_eval=lambda step, loss: trial.should_prune(), deadline=t)

Each trial runs in its own process (`python -m r1tune.recipes.search --trial trials/NNN`): an out-of-memory
crash, a CUDA error or the kernel's OOM killer ends that trial only, and the study records why. The child dies
with its parent (Linux `PR_SET_PDEATHSIG`), so `kill -9` of the study leaves no orphan still training into a
folder the next run redoes. The child's output goes to `trials/NNN/log.txt`.

While it runs, the eval lines of its `metrics.jsonl` are read as they appear and handed to `on_eval(step, loss)`;
True there stops the child (a pruned trial). A child still running at `deadline` is stopped too ("stopped"):
the study's time budget is spent, and the next run of the command redoes it.

Stale trials: a study stored in a database outlives the process that ran a trial. A trial left RUNNING by a
killed study is recognised by its owner (host and pid recorded at its start, plus a heartbeat for owners on
other machines) and is marked failed and enqueued again with the same parameters.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

OOM_MARKERS = ("out of memory", "outofmemoryerror", "can't allocate memory", "cannot allocate memory",
               "memoryerror", "std::bad_alloc")
PR_SET_PDEATHSIG = 1
HEARTBEAT_S = 30  # a RUNNING trial whose owner is on another machine is stale after STALE_AFTER_S of silence
STALE_AFTER_S = 600


@dataclass
class TrialOutcome:
    state: str  # complete | pruned | failed | stopped
    reason: str | None = None
    seconds: float = 0.0
    result: dict = field(default_factory=dict)  # the child's result.json (complete trials)
    evals: list[tuple[int, float]] = field(default_factory=list)


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the parent dies (Linux); elsewhere a no-op."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def read_evals(metrics: Path) -> list[tuple[int, float]]:
    """(step, validation loss) for every eval line written so far; a half-written last line is left for later."""
    try:
        text = metrics.read_text(encoding="utf-8")
    except OSError:
        return []
    evals = []
    for line in text.splitlines():
        if '"split": "eval"' not in line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        evals.append((int(record["step"]), float(record["loss"])))
    return evals


def failure_reason(log: Path, returncode: int) -> str:
    """Why a child failed, in one line: out of memory (from its log, or a SIGKILL we did not send), else its
    last error line."""
    try:
        lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()
                 if line.strip()]
    except OSError:
        lines = []
    tail = lines[-40:]
    oom = next((line for line in reversed(tail) if any(m in line.lower() for m in OOM_MARKERS)), None)
    if oom:
        return f"out of memory: {oom[:300]}"
    if returncode == -signal.SIGKILL:
        return "out of memory: killed by SIGKILL (the kernel's OOM killer, or another process)"
    error = next((line for line in reversed(tail) if line.startswith("error") or "Error" in line), None)
    return f"exit {returncode}: {(error or (tail[-1] if tail else 'no output'))[:300]}"


def run_trial_process(cmd: list[str], folder: Path, on_eval=None, deadline: float | None = None,
                      env: dict | None = None, poll_s: float = 0.5) -> TrialOutcome:
    """Run `cmd` (a trial child writing into `folder`) to its end, a prune or the deadline."""
    folder.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    seen: list[tuple[int, float]] = []
    with open(folder / "log.txt", "ab") as log:
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                 preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        try:
            while True:
                finished = child.poll() is not None
                evals = read_evals(folder / "metrics.jsonl")
                for step, loss in evals[len(seen):]:
                    seen.append((step, loss))
                    if on_eval and on_eval(step, loss) and not finished:
                        _stop(child)
                        return TrialOutcome("pruned", f"pruned at step {step} (validation loss {loss:.4f})",
                                            time.monotonic() - start, evals=seen)
                if finished:
                    break
                if deadline is not None and time.time() >= deadline:
                    _stop(child)
                    return TrialOutcome("stopped", "stopped by the time limit (redone by the next run)",
                                        time.monotonic() - start, evals=seen)
                time.sleep(poll_s)
        finally:
            if child.poll() is None:  # interrupted (Ctrl-C, an exception): never leave a trainer behind
                _stop(child)
    seconds = time.monotonic() - start
    result_file = folder / "result.json"
    if child.returncode == 0 and result_file.exists():
        return TrialOutcome("complete", None, seconds, json.loads(result_file.read_text(encoding="utf-8")), seen)
    return TrialOutcome("failed", failure_reason(folder / "log.txt", child.returncode), seconds, evals=seen)


def _stop(child: subprocess.Popen) -> None:
    child.kill()
    child.wait()


def owner() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}


def is_stale(attrs: dict, now: float | None = None) -> bool:
    """A RUNNING trial nobody runs any more: its owner on this host is dead, or an owner elsewhere fell silent."""
    now = time.time() if now is None else now
    silent = now - float(attrs.get("heartbeat", 0)) > STALE_AFTER_S
    if attrs.get("host") == socket.gethostname() and attrs.get("pid") != os.getpid():
        return silent or not _alive(int(attrs.get("pid", 0)))  # silent too: its pid may have been reused
    return silent


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Heartbeat:
    """Refreshes the `heartbeat` attribute of the trials this process runs, for other machines' stale check."""

    def __init__(self, study):
        self.study, self.trial_ids, self.lock = study, set(), threading.Lock()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(timeout=5)

    def watch(self, trial_id: int) -> None:
        with self.lock:
            self.trial_ids.add(trial_id)

    def forget(self, trial_id: int) -> None:
        with self.lock:
            self.trial_ids.discard(trial_id)

    def _beat(self) -> None:
        while not self.stop_event.wait(HEARTBEAT_S):
            with self.lock:
                ids = list(self.trial_ids)
            for trial_id in ids:
                try:
                    self.study._storage.set_trial_user_attr(trial_id, "heartbeat", time.time())
                except Exception:  # a trial finished meanwhile (its attributes are frozen): nothing to refresh
                    pass


class DeviceSlots:
    """One GPU per running trial where there are GPUs (CUDA_VISIBLE_DEVICES); none to hand out on a CPU."""

    def __init__(self, n_gpus: int):
        self.free = list(range(n_gpus))
        self.lock = threading.Lock()

    def take(self) -> int | None:
        with self.lock:
            return self.free.pop(0) if self.free else None

    def give(self, slot: int | None) -> None:
        if slot is not None:
            with self.lock:
                self.free.append(slot)
