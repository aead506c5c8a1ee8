"""lineage.json: the chain of increments a continually fine-tuned run was built from (issue 15).

    lineage = read_lineage(run.root)               # None for a run without one; a hand-edited file stops
    check_recorded(record, "replay data of runA")  # a recorded file that changed or vanished stops
    write_lineage(out, lineage)                    # digest added, written atomically
    newest_promoted("runs/monthly")                # what `r1tune serve LINEAGE_DIR` serves

Each increment records its run folder, its training files and its test set (absolute path + sha256), the
method, base model and template it was trained with, the forgetting settings, its metrics on every test set
of the lineage so far (one row of the forgetting table) and whether its gate promoted it. The file carries a
digest of its own content: metrics and hashes are what the next gate and replay trust, so a file edited by
hand is refused rather than believed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from r1tune.errors import R1TuneError
from r1tune.files import write_text

LINEAGE_FILE = "lineage.json"
FORMAT = 1


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_record(path: str | Path) -> dict:
    """{"path": absolute path, "sha256": content hash} of a data file."""
    p = Path(path)
    if not p.is_file():
        raise R1TuneError(f"{path}: file not found")
    return {"path": str(p.resolve()), "sha256": sha256_file(p)}


def check_recorded(record: dict, what: str) -> Path:
    """The recorded file, or an R1TuneError when it vanished or its content changed since it was recorded."""
    p = Path(record["path"])
    if not p.is_file():
        raise R1TuneError(f"{p}: {what} recorded in the lineage is gone: restore it (sha256 {record['sha256'][:16]}…) "
                          "or start a new lineage")
    if sha256_file(p) != record["sha256"]:
        raise R1TuneError(f"{p}: {what} changed since it was recorded in the lineage (sha256 "
                          f"{record['sha256'][:16]}… expected): restore it, or start a new lineage")
    return p


def _digest(lineage: dict) -> str:
    body = {k: v for k, v in lineage.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def read_lineage(folder: str | Path) -> dict | None:
    """FOLDER/lineage.json, checked against its digest; None when there is none."""
    path = Path(folder) / LINEAGE_FILE
    if not path.is_file():
        return None
    try:
        lineage = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise R1TuneError(f"{path}: not valid JSON ({e}): a lineage file is written by r1tune, never by hand") from None
    if not isinstance(lineage, dict) or lineage.get("format") != FORMAT or not isinstance(
            lineage.get("increments"), list) or not lineage["increments"]:
        raise R1TuneError(f"{path}: not an r1tune lineage file (format {FORMAT} with increments)")
    if lineage.get("digest") != _digest(lineage):
        raise R1TuneError(f"{path}: edited by hand (its content no longer matches its digest): the metrics and data "
                          "hashes in it cannot be trusted. Restore the file r1tune wrote, or start a new lineage")
    return lineage


def write_lineage(folder: str | Path, lineage: dict) -> Path:
    lineage = {**lineage, "format": FORMAT}
    lineage["digest"] = _digest(lineage)
    return write_text(Path(folder) / LINEAGE_FILE, json.dumps(lineage, indent=1, ensure_ascii=False) + "\n")


def task_names(lineage: dict) -> list[str]:
    """The names of the increments that have a test set, in order: the columns of the forgetting table."""
    return [inc["name"] for inc in lineage["increments"] if inc.get("test")]


def unique_name(lineage: dict | None, name: str) -> str:
    """`name`, or `name#N` when an earlier increment already has that name."""
    taken = {inc["name"] for inc in lineage["increments"]} if lineage else set()
    if name not in taken:
        return name
    n = 2
    while f"{name}#{n}" in taken:
        n += 1
    return f"{name}#{n}"


def newest_promoted(folder: str | Path) -> Path | None:
    """The promoted run with the longest lineage under FOLDER (FOLDER itself, or its direct subfolders); among
    equals, the most recently written. None when no run there is promoted."""
    folder = Path(folder)
    best, best_key = None, None
    for candidate in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
        path = candidate / LINEAGE_FILE
        if not path.is_file() or not (candidate / "final").is_dir():
            continue
        try:
            lineage = read_lineage(candidate)
        except R1TuneError:
            continue  # a broken or half-written lineage is never served
        last = lineage["increments"][-1]
        if not last.get("promoted"):
            continue
        key = (len(lineage["increments"]), path.stat().st_mtime_ns)
        if best_key is None or key > best_key:
            best, best_key = candidate, key
    return best
