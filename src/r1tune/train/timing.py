"""Where a run's wall time goes, from the moment the process started: OUT/timing.json of a finetune run.

    clock = RunClock()                  # at the recipe's first line: start-up = process start → here (0 when
                                        # the recipe runs inside a longer-lived process: a notebook, a test)
    ...; clock.mark("data")             # each phase ends with a mark: seconds since the previous mark
    clock.mark("eval")                  # a phase that recurs (steps, evaluation, checkpoints) adds up
    clock.record(step, real_tokens)     # {"<phase>_s": …, "total_s": …, "cpu_s": {…}, "real_tokens_per_s_whole": …}

A user waits for the whole process, not for the steady state of the loop: the record puts start-up (interpreter
and imports), tokenizing, model load, the first step (warm-up), evaluation, saving and plots beside the training
steps, and the whole-process real tokens/s beside the steady-state one.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from r1tune.files import write_text


def process_age() -> float | None:
    """Seconds since this process started (Linux: /proc/self/stat against the boot clock), or None elsewhere."""
    try:
        with open("/proc/self/stat") as f:
            started_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, AttributeError):
        return None


def own_process() -> bool:
    """This process was started to run an r1tune command (`r1tune …`, `python -m r1tune …`): its start-up is the
    command's. In a notebook or a test calling the recipe, what ran before is not this run's time."""
    exe = sys.argv[0] if sys.argv else ""
    return Path(exe).name == "r1tune" or exe.endswith(("r1tune/__main__.py", "r1tune/cli.py"))


def cpu_seconds() -> float:
    """CPU time (user + system, all threads) this process has used."""
    t = os.times()
    return t.user + t.system


class RunClock:
    """Phase durations in the order they happened, wall and CPU; `startup` is the time before the clock was made.
    CPU seconds beside wall seconds tell a slow phase from a machine shared with other work."""

    def __init__(self):
        self.t0 = self.last = time.perf_counter()
        self.cpu_last = cpu_seconds()
        age = process_age() if own_process() else None
        self.phases: dict[str, float] = {"startup": max(0.0, age) if age is not None else 0.0}
        self.cpu: dict[str, float] = {"startup": self.cpu_last if age is not None else 0.0}
        self.cpu_start = self.cpu_last - self.cpu["startup"]
        self.notes: dict[str, object] = {}

    def mark(self, phase: str) -> float:
        """End `phase` now: it took the time since the previous mark (added to it if it ran before)."""
        now, cpu = time.perf_counter(), cpu_seconds()
        took = now - self.last
        self.phases[phase] = self.phases.get(phase, 0.0) + took
        self.cpu[phase] = self.cpu.get(phase, 0.0) + cpu - self.cpu_last
        self.last, self.cpu_last = now, cpu
        return took

    def total(self) -> float:
        return self.phases["startup"] + time.perf_counter() - self.t0

    def record(self, step: int, real_tokens: int) -> dict:
        """The timing record: start-up, every phase, the whole process; real (non-padding) tokens per second of
        the whole process beside those of the training steps after the first (the steady state)."""
        total = self.total()
        rec = {"step": step, **{f"{k}_s": round(v, 3) for k, v in self.phases.items()}}
        rec["total_s"] = round(total, 3)
        rec["cpu_s"] = {k: round(v, 3) for k, v in self.cpu.items()}
        rec["cpu_s"]["total"] = round(cpu_seconds() - self.cpu_start, 3)
        rec.update(self.notes)
        steady = real_tokens - self.notes.get("first_step_real_tokens", 0)
        rec.update({"real_tokens": real_tokens, "real_tokens_per_s_whole": round(real_tokens / total, 2),
                    "real_tokens_per_s_steady": round(steady / self.phases["steps"], 2)
                    if self.phases.get("steps") else None})
        return rec


def write_timing(path: Path, rec: dict) -> None:
    """OUT/timing.json, written whole or not at all."""
    write_text(path, json.dumps(rec, indent=1) + "\n")


def timing_line(rec: dict) -> str:
    """One line for the terminal: the whole process, its parts from largest to smallest, and both speeds."""
    parts = {k[:-2]: v for k, v in rec.items() if k.endswith("_s") and k != "total_s" and isinstance(v, float)}
    shown = ", ".join(f"{k.replace('_', ' ')} {v:.1f}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])
                      if v >= 0.05)
    steady = rec.get("real_tokens_per_s_steady")
    speed = f"{rec['real_tokens_per_s_whole']:.0f} real tok/s over the whole process" + (
        f", {steady:.0f} in the steps after the first" if steady else "")
    return f"time: {rec['total_s']:.1f} s in all ({shown}; seconds); {speed}"
