"""Atomic, resumable checkpoints: `OUT/checkpoints/step-000200/`.

A checkpoint is written into a hidden temporary folder, flushed to disk, marked complete, and only then
renamed into place (a rename is atomic): a crash or `kill -9` mid-save leaves the previous checkpoint
untouched, and the half-written folder is ignored and cleaned up on the next save.

It holds what an exact resume needs: the trainable weights, optimizer and scheduler state, every RNG
state, and the trainer's own state (step, data position, early-stopping history).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from r1tune.errors import R1TuneError

COMPLETE = "COMPLETE"


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_tree(folder: Path) -> None:
    for f in folder.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def save_checkpoint(root: Path, step: int, weights: dict[str, torch.Tensor], optimizer, scheduler,
                    trainer_state: dict, keep: int = 2, rng_per_rank: list[dict] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp / "trainable.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": rng_per_rank or [rng_state()]}, tmp / "optimizer.pt")
    (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=1), encoding="utf-8")
    (tmp / COMPLETE).write_text(str(step), encoding="utf-8")
    _fsync_tree(tmp)
    if final.exists():  # re-saving a step after a resume: replace it as a whole
        shutil.rmtree(final)
    os.replace(tmp, final)
    _prune(root, keep)
    return final


def _prune(root: Path, keep: int) -> None:
    for stale in root.glob(".tmp-step-*"):
        shutil.rmtree(stale, ignore_errors=True)
    done = complete_checkpoints(root)
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def complete_checkpoints(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if (p / COMPLETE).exists()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(root: Path) -> Path | None:
    done = complete_checkpoints(root)
    return done[-1] if done else None


def load_checkpoint(folder: Path, optimizer, scheduler, rank: int = 0) -> tuple[dict[str, torch.Tensor], dict]:
    """Restore optimizer, scheduler and this rank's RNG; return (trainable weights, trainer state)."""
    blob = torch.load(folder / "optimizer.pt", weights_only=False)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    if rank >= len(blob["rng"]):
        raise R1TuneError(f"{folder} was written by {len(blob['rng'])} process(es): resume with the same --nproc")
    set_rng_state(blob["rng"][rank])
    weights = load_file(str(folder / "trainable.safetensors"))
    state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    return weights, state


def kill_if_asked(step: int) -> None:
    """Fault injection for the resume tests: R1TUNE_KILL_AT_STEP=N sends SIGKILL to this process after step N."""
    if os.environ.get("R1TUNE_KILL_AT_STEP") == str(step):
        os.kill(os.getpid(), signal.SIGKILL)
