"""Plain helpers shared by the tests (fixtures are in conftest.py): JSONL files, the in-process CLI, the
bundled finance-sentiment data."""

from __future__ import annotations

import json
from pathlib import Path

from r1tune.model.template import RESOURCES

FINSENT = RESOURCES / "datasets" / "finsent"


def write_jsonl(path: str | Path, records: list) -> Path:
    """Records are dicts (written as JSON) or strings (written as they are, e.g. a broken line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
    return path


def read_jsonl(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def run_main(*args) -> int:
    """Run the `r1tune` command in this process; returns its exit code (output goes where pytest captures it)."""
    from r1tune.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return e.code or 0
    return 0


def finsent_head(path: str | Path, n: int, split: str = "train") -> Path:
    """The first `n` records of the bundled finsent split, written to `path`."""
    path = Path(path)
    lines = (FINSENT / f"{split}.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)[:n]
    path.write_text("".join(lines), encoding="utf-8")
    return path
