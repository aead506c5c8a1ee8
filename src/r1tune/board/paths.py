"""Every path a board request names, resolved inside the runs folder — or refused.

    folder = inside(runs, "finance-lora")              # runs/finance-lora, symlinks followed
    inside(runs, "../etc/passwd")                       # OutsideError: '..' is never accepted
    inside(runs, "/etc/passwd")                         # OutsideError: paths are relative to the runs folder
    inside(runs, "link-to-home/x")                      # OutsideError when the symlink leads out of runs

A request can only name things relative to the runs folder; the name is resolved (symlinks followed) and the
result must still lie inside the resolved runs folder. New names (runs, uploads) are one plain component.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path, PurePosixPath

from r1tune.errors import R1TuneError

UPLOADS = "uploads"  # under the runs folder: where uploaded files go
BOARD_STATE = ".board"  # under the runs folder: the board's own secret
DATA_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet")
CONFIG_SUFFIXES = (".yaml", ".yml")
MAX_PATH_CHARS = 1024
# one component: letters (any script), digits, _ . - ; not starting with a dot; 1–80 characters
NAME = re.compile(r"[^\W_][\w.\-]{0,79}")
RESERVED = {UPLOADS, BOARD_STATE, "checkpoints", "final", "tensorboard"}


class OutsideError(R1TuneError):
    """A path that is not relative, climbs with '..', or resolves outside the runs folder (answered 403)."""


def inside(root: Path, given: str) -> Path:
    """`given` (relative to `root`) resolved with symlinks followed; OutsideError unless it stays in `root`."""
    if not isinstance(given, str) or not given.strip() or "\x00" in given or len(given) > MAX_PATH_CHARS:
        raise OutsideError("a path relative to the runs folder is expected")
    text = given.replace("\\", "/")
    pure = PurePosixPath(text)
    if pure.is_absolute() or re.match(r"[A-Za-z]:", text) or text.startswith("~"):
        raise OutsideError(f"{given!r}: paths are relative to the runs folder")
    if ".." in pure.parts:
        raise OutsideError(f"{given!r}: '..' is not accepted")
    base = root.resolve()
    target = (base / pure).resolve()
    if target != base and base not in target.parents:
        raise OutsideError(f"{given!r} leads outside the runs folder")
    return target


def relative(root: Path, path: Path) -> str:
    """`path` as the board names it: relative to the runs folder, with forward slashes."""
    return path.resolve().relative_to(root.resolve()).as_posix()


def new_name(given: str, what: str = "run name") -> str:
    """A name for a new folder or file: one component, no path, no leading dot, not a reserved name."""
    name = unicodedata.normalize("NFC", given.strip()) if isinstance(given, str) else ""
    if not NAME.fullmatch(name) or name in RESERVED or name.endswith("."):
        raise R1TuneError(f"{what} {given!r}: use 1–80 letters, digits, '_', '.', '-' (no '/', not starting with "
                          f"a dot or '_', not {', '.join(sorted(RESERVED))})")
    return name


def upload_name(filename: str) -> str:
    """The name an uploaded file is stored under in uploads/: its last component, cleaned, with a known suffix."""
    base = re.split(r"[\\/]", filename or "")[-1].strip()
    stem, dot, suffix = base.rpartition(".")
    suffix = f".{suffix.lower()}" if dot else ""
    if suffix not in DATA_SUFFIXES + CONFIG_SUFFIXES:
        raise R1TuneError(f"upload {filename!r}: only data files ({', '.join(DATA_SUFFIXES)}) and prepare configs "
                          f"({', '.join(CONFIG_SUFFIXES)}) are accepted")
    stem = re.sub(r"[^\w.\-]+", "-", unicodedata.normalize("NFC", stem)).strip(".-_")[:80] or "upload"
    return new_name(stem + suffix, "file name")


def free_name(folder: Path, name: str) -> Path:
    """folder/name, or folder/name-2, -3 … when taken: an upload never replaces an earlier one."""
    candidate = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 2
    while candidate.exists() or candidate.is_symlink():
        candidate = folder / f"{stem}-{n}{suffix}"
        n += 1
    return candidate
