"""A search trial's child process, watched: pruned from its logged losses, stopped at the deadline, an
out-of-memory crash recorded with its reason, stale RUNNING trials recognised (fake children, no model)."""

import os
import socket
import sys
import time

from r1tune.train.trials import failure_reason, is_stale, run_trial_process

# a child that logs an eval line every 0.2 s, like finetune's metrics.jsonl, then writes result.json
TRAINER = """
import json, sys, time
from pathlib import Path
folder = Path(sys.argv[1])
for step in range(1, 6):
    with open(folder / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": step, "split": "train", "loss": 9.0}) + "\\n")
        f.write(json.dumps({"step": step, "split": "eval", "loss": 10.0 - step}) + "\\n")
    time.sleep(0.2)
(folder / "result.json").write_text(json.dumps({"val_loss": 5.0}))
"""


def test_complete_then_pruned_at_the_step_asked(tmp_path):
    seen = []
    done = run_trial_process([sys.executable, "-c", TRAINER, str(tmp_path / "a")], tmp_path / "a",
                             on_eval=lambda step, loss: seen.append((step, loss)) and False, poll_s=0.05)
    assert done.state == "complete" and done.result == {"val_loss": 5.0}
    assert seen == [(1, 9.0), (2, 8.0), (3, 7.0), (4, 6.0), (5, 5.0)]  # every eval line, once, in order

    pruned = run_trial_process([sys.executable, "-c", TRAINER, str(tmp_path / "b")], tmp_path / "b",
                               on_eval=lambda step, loss: step == 2, poll_s=0.05)
    assert pruned.state == "pruned" and pruned.reason == "pruned at step 2 (validation loss 8.0000)"
    time.sleep(0.5)
    assert not (tmp_path / "b" / "result.json").exists()  # the child was stopped, not left running


def test_deadline_stops_a_running_trial(tmp_path):
    start = time.monotonic()
    outcome = run_trial_process([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "t",
                                deadline=time.time() + 1, poll_s=0.05)
    assert outcome.state == "stopped" and "time limit" in outcome.reason
    assert time.monotonic() - start < 30


def test_out_of_memory_is_a_failed_trial_with_its_reason(tmp_path):
    crash = ("import sys; print('step 1'); print('torch.OutOfMemoryError: CUDA out of memory. Tried to allocate "
             "2.00 GiB', file=sys.stderr); sys.exit(1)")
    outcome = run_trial_process([sys.executable, "-c", crash], tmp_path / "oom", poll_s=0.05)
    assert outcome.state == "failed"
    assert outcome.reason.startswith("out of memory: torch.OutOfMemoryError: CUDA out of memory")
    other = run_trial_process([sys.executable, "-c", "raise ValueError('bad lr')"], tmp_path / "err", poll_s=0.05)
    assert other.state == "failed" and other.reason == "exit 1: ValueError: bad lr"
    # SIGKILL that the study did not send: the kernel's OOM killer
    (tmp_path / "log.txt").write_text("step 3/10\n")
    assert failure_reason(tmp_path / "log.txt", -9).startswith("out of memory: killed by SIGKILL")


def test_stale_running_trials():
    here = socket.gethostname()
    assert not is_stale({"host": here, "pid": os.getpid(), "heartbeat": time.time()})  # this very process runs it
    assert not is_stale({"host": here, "pid": 1, "heartbeat": time.time()})  # another live process here
    assert is_stale({"host": here, "pid": 2 ** 22 + 12345, "heartbeat": time.time()})  # no such process any more
    assert not is_stale({"host": "elsewhere", "pid": 1, "heartbeat": time.time() - 60})  # another machine, alive
    assert is_stale({"host": "elsewhere", "pid": 1, "heartbeat": time.time() - 3600})
