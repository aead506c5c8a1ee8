"""Board jobs without a browser: a detached child's status, stop, a reused pid, and metrics read as they grow.

The child here is a plain `python -c "sleep"` started the way jobs.launch starts `r1tune …` (own session,
job.json, board.log), so the test takes seconds; the browser test runs a real fine-tune.
"""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from r1tune.board import jobs
from r1tune.errors import R1TuneError


def wait_for(predicate, timeout: float = 20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_detached_job_status_stop_and_reused_pid(tmp_path):
    folder = tmp_path / "runs" / "sleeper"
    folder.mkdir(parents=True)
    job = jobs._start(folder, {"kind": "finetune", "command": [sys.executable, "-c", "import time; time.sleep(60)"],
                               "summary": {}, "resumes": 0}, "ab")
    assert os.getpgid(job["pid"]) == job["pid"] != os.getpgid(0)  # its own session: closing the board spares it
    assert jobs.status(folder) == "running"
    assert [p.name for p in jobs.find_runs(tmp_path / "runs")] == ["sleeper"]

    # a board started later knows it only from job.json: the same pid with another start time is not the job
    stale = {**job, "process_started": job["process_started"] - 1000}
    assert jobs.job_alive(job) and not jobs.job_alive(stale)

    jobs.stop(folder)
    # the status follows the process at once; its exit code comes from the board's waiter thread a moment later
    assert wait_for(lambda: jobs.status(folder) == "stopped" and jobs.read_job(folder)["exit_code"] is not None)
    ended = jobs.read_job(folder)
    assert ended["stop_requested"] and ended["exit_code"] == -15
    assert jobs.summarize(tmp_path / "runs", folder)["status"] == "stopped"

    # resume needs a checkpoint; then it runs the same command again with --resume
    with pytest.raises(R1TuneError, match="no checkpoint"):
        jobs.resume(folder)
    (folder / "checkpoints" / "step-000001").mkdir(parents=True)
    again = jobs.resume(folder)
    assert again["command"][-1] == "--resume" and again["resumes"] == 1 and again["pid"] != job["pid"]
    assert jobs.status(folder) == "running"
    jobs.stop(folder)
    assert wait_for(lambda: jobs.status(folder) == "stopped")


def test_metrics_are_read_as_they_grow_whole_lines_only(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows, cursor, reset = jobs.read_metrics(path)
    assert (rows, reset) == ([], False)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": 1, "split": "train", "loss": 3.0}) + "\n" + '{"step": 2, "spl')
    rows, cursor, _ = jobs.read_metrics(path, cursor)
    assert [r["step"] for r in rows] == [1]  # the half-written line waits
    with open(path, "a", encoding="utf-8") as f:
        f.write('it": "train", "loss": 2.5}\n')
    rows, cursor, reset = jobs.read_metrics(path, cursor)
    assert [r["step"] for r in rows] == [2] and not reset
    # a resumed run rewrites the file (a new inode): the curve starts over
    replacement = tmp_path / "metrics.new"
    replacement.write_text(json.dumps({"step": 1, "split": "train", "loss": 3.0}) + "\n", encoding="utf-8")
    os.replace(replacement, path)
    rows, cursor, reset = jobs.read_metrics(path, cursor)
    assert reset and [r["step"] for r in rows] == [1]
