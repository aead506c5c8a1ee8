"""Atomic, resumable checkpoints: `OUT/checkpoints/step-000200/`.

    save_checkpoint(OUT / "checkpoints", step, weights, optimizer, scheduler, trainer_state)
    folder, weights, state = resume_latest(OUT / "checkpoints", optimizer, scheduler, rank)

A checkpoint is written into a hidden temporary folder, flushed to disk, marked complete, and only then
renamed into place (a rename is atomic): a crash or `kill -9` mid-save leaves the previous checkpoint
untouched, and the half-written folder is ignored and cleaned up on the next save.

It holds what an exact resume needs: the trainable weights (safetensors), optimizer and scheduler state and
every RNG state (optimizer.pt), and the trainer's own state (step, data position, early-stopping history;
JSON). optimizer.pt holds only tensors and plain values — the numpy RNG state is stored as a tensor — and is
read with `torch.load(weights_only=True)`: resuming a run folder from someone else cannot run code. A file
that names Python code is refused; a checkpoint that is marked complete but does not read back (truncated,
overwritten) is named and the one before it is used.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from r1tune.errors import R1TuneError

COMPLETE = "COMPLETE"
FILES = ("trainable.safetensors", "optimizer.pt", "trainer_state.json")
NUMPY_ARRAY_GLOBALS = ("numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct", "numpy.ndarray",
                       "numpy.dtype", "numpy.dtypes.UInt32DType")


class CorruptCheckpoint(R1TuneError):
    """A checkpoint marked complete whose files do not read back."""


def rng_state() -> dict:
    """Every RNG's state, as tensors and plain values only (what `torch.load(weights_only=True)` reads)."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else keys  # an ndarray in checkpoints before the tensor
    np.random.set_state((name, keys.astype(np.uint32), *rest))
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
    # an optimizer, or its state already gathered (FSDP: every rank gathers, rank 0 writes; train/fsdp.py)
    torch.save({"optimizer": optimizer if isinstance(optimizer, dict) else optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
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


def _numpy_array_globals() -> list:
    """What an ndarray pickles to, under each numpy's module name. Checkpoints written before the numpy RNG
    state became a tensor hold one; rebuilding it calls no code the file chooses (its items pass the same
    restricted unpickler)."""
    reconstruct = np._core.multiarray._reconstruct
    return [(reconstruct, NUMPY_ARRAY_GLOBALS[0]), (reconstruct, NUMPY_ARRAY_GLOBALS[1]),
            (np.ndarray, NUMPY_ARRAY_GLOBALS[2]), (np.dtype, NUMPY_ARRAY_GLOBALS[3]),
            (np.dtypes.UInt32DType, NUMPY_ARRAY_GLOBALS[4])]


def read_optimizer_state(path: Path) -> dict:
    """optimizer.pt read without running code: R1TuneError (nothing loaded) when it names Python code beyond
    tensors, plain values and numpy arrays; CorruptCheckpoint when it does not read back."""
    if not zipfile.is_zipfile(path):  # torch.save writes a zip, its directory at the end: truncation loses it
        raise CorruptCheckpoint(f"{path.name} is not a file torch.save wrote (truncated or overwritten)")
    try:
        code = sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) - set(NUMPY_ARRAY_GLOBALS))
    except Exception as e:  # noqa: BLE001  (whatever the zip reader raises on broken bytes means the same)
        raise CorruptCheckpoint(f"{path.name} does not read back: {_first_line(e)}") from None
    if code:
        raise R1TuneError(f"{path} names Python code that loading it would run ({', '.join(code)}): r1tune "
                          "checkpoints hold only tensors and plain values, so r1tune did not write this file. "
                          "Refusing to resume from it")
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            blob = torch.load(path, weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise CorruptCheckpoint(f"{path.name} does not read back: {_first_line(e)}") from None
    if not isinstance(blob, dict) or not {"optimizer", "scheduler", "rng"} <= blob.keys():
        raise CorruptCheckpoint(f"{path.name} lacks the optimizer, scheduler or RNG state")
    return blob


def read_checkpoint(folder: Path) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """(optimizer.pt's content, trainable weights, trainer state), every file read before anything is restored."""
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise CorruptCheckpoint(f"{', '.join(missing)} missing")
    blob = read_optimizer_state(folder / "optimizer.pt")
    try:
        weights = load_file(str(folder / "trainable.safetensors"))
    except (SafetensorError, OSError, ValueError) as e:
        raise CorruptCheckpoint(f"trainable.safetensors does not read back: {_first_line(e)}") from None
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CorruptCheckpoint(f"trainer_state.json does not read back: {_first_line(e)}") from None
    if not isinstance(state, dict) or not {"step", "micro_batches", "early_stopping"} <= state.keys():
        raise CorruptCheckpoint("trainer_state.json lacks step, micro_batches or early_stopping")
    return blob, weights, state


def restore(blob: dict, optimizer, scheduler, rank: int, folder: Path) -> None:
    """Optimizer, scheduler and this rank's RNG, as the checkpoint had them."""
    if rank >= len(blob["rng"]):
        raise R1TuneError(f"{folder} was written by {len(blob['rng'])} process(es): resume with the same --nproc")
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    set_rng_state(blob["rng"][rank])


def resume_latest(root: Path, optimizer, scheduler, rank: int = 0) -> tuple[Path, dict[str, torch.Tensor], dict]:
    """The newest complete checkpoint that reads back, restored: (its folder, trainable weights, trainer state).
    One that does not read back is named (by rank 0) and the one before it is tried."""
    skipped = []
    for folder in reversed(complete_checkpoints(root)):
        try:
            blob, weights, state = read_checkpoint(folder)
        except CorruptCheckpoint as e:
            skipped.append(f"{folder.name}: {e}")
            if rank == 0:
                print(f"checkpoint {folder} is corrupt ({e}): falling back to the one before it", flush=True)
            continue
        restore(blob, optimizer, scheduler, rank, folder)
        return folder, weights, state
    if skipped:
        raise R1TuneError(f"--resume: no checkpoint in {root} reads back ({'; '.join(skipped)})")
    raise R1TuneError(f"--resume: no complete checkpoint in {root}")


def _first_line(e: Exception) -> str:
    """The line of a reader's error that says what is wrong (torch's weights-only errors open with advice)."""
    text = str(e)
    _, found, detail = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (detail if found else text).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def kill_if_asked(step: int) -> None:
    """Fault injection for the resume tests: R1TUNE_KILL_AT_STEP=N sends SIGKILL to this process after step N."""
    if os.environ.get("R1TUNE_KILL_AT_STEP") == str(step):
        os.kill(os.getpid(), signal.SIGKILL)
