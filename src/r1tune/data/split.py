"""Stratified train / validation / test split with a fixed seed, by groups, and a leakage check.

    r1tune prepare split samples.jsonl --out data/ [--train 0.8 --validation 0.1 --test 0.1] [--seed 42]

The unit of assignment is a group: records from one source record (the windows of one long text, the
samples several templates made from one statement row, an augmented copy and its original) share their
provenance and always land in the same split; `group_field` groups by a field instead. Within each
label (stratum), groups are ordered by a hash of (seed, group) and cut by the ratios, so the split is the
same on every machine, proportional per label, and independent of the file's order.

Two streaming passes (memory: one entry per group). An augmented sample whose group falls in
validation or test is dropped and logged: augmented data never reaches evaluation. Afterwards the
validation and test prompts are compared with train (exact and MinHash near-duplicates) and each
leak is listed in `leakage.jsonl`.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path

from r1tune.config import SplitConfig
from r1tune.data.dedup import find_leakage
from r1tune.data.io import Location
from r1tune.data.records import content_hash, label_key, origin, with_provenance
from r1tune.data.steplog import StepLog, read_input
from r1tune.errors import R1TuneError

SPLITS = ("train", "validation", "test")


def group_of(record: dict, loc: Location, group_field: str | None = None) -> str:
    if group_field and record.get(group_field) is not None:
        return f"{group_field}={json.dumps(record[group_field], ensure_ascii=False, sort_keys=True)}"
    return origin(loc, record)


def stratum_of(record: dict, label_field: str | None = None) -> str:
    key = label_key(record, label_field)
    if key is None or record.get(key) is None:
        return ""
    value = record[key]
    return json.dumps(sorted(map(str, value)) if isinstance(value, list) else value, ensure_ascii=False)


def split_sizes(n: int, validation: float, test: float) -> tuple[int, int, int]:
    """(train, validation, test) group counts; half-up rounding, and train keeps at least one group."""
    n_test = math.floor(n * test + 0.5)
    n_val = math.floor(n * validation + 0.5)
    while n_test + n_val >= n and n_test + n_val > 0:
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val, n_test


def assign_groups(strata: dict[str, set[int]], cfg: SplitConfig) -> dict[int, str]:
    """group rank key → split, per stratum."""
    assignment: dict[int, str] = {}
    for groups in strata.values():
        ordered = sorted(groups)
        _, n_val, n_test = split_sizes(len(ordered), cfg.validation, cfg.test)
        for i, g in enumerate(ordered):
            assignment[g] = "test" if i < n_test else "validation" if i < n_test + n_val else "train"
    return assignment


def split_file(in_path: str | Path, out_dir: str | Path, config: SplitConfig | None = None,
               on_error: str = "skip", leakage: bool = True) -> dict:
    """Write out_dir/{train,validation,test}.jsonl; returns counts per split and label, and leakage."""
    cfg = config or SplitConfig()
    if abs(cfg.train + cfg.validation + cfg.test - 1) > 1e-6:
        raise R1TuneError(f"split shares must add up to 1 (train {cfg.train} + validation {cfg.validation} "
                          f"+ test {cfg.test} = {cfg.train + cfg.validation + cfg.test:g})")
    out_dir = Path(out_dir)
    paths = {s: out_dir / f"{s}.jsonl" for s in SPLITS}

    def rank(group: str) -> int:
        return content_hash(f"{cfg.seed}\x00{group}")

    # The three splits and the log land together when the step succeeds (see StepLog); leakage.jsonl is
    # made from the splits afterwards, so the old one, which described the old splits, goes when they are replaced.
    with StepLog("split", out_dir / "split.jsonl", inputs=[in_path],
                 outputs=[*paths.values(), out_dir / "leakage.jsonl"]) as log:
        # pass 1: groups per stratum (a group's stratum is that of its first record)
        strata: dict[str, set[int]] = defaultdict(set)
        stratum_of_group: dict[int, str] = {}
        for loc, record in read_input(in_path, _NullLog(), on_error):
            g = rank(group_of(record, loc, cfg.group_field))
            if g not in stratum_of_group:
                stratum_of_group[g] = stratum_of(record, cfg.label_field)
                strata[stratum_of_group[g]].add(g)
        assignment = assign_groups(strata, cfg)
        del stratum_of_group

        # pass 2: write
        counts = {s: Counter() for s in SPLITS}
        files = {s: log.outputs.open(path) for s, path in paths.items()}
        for loc, record in read_input(in_path, log, on_error):
            split = assignment[rank(group_of(record, loc, cfg.group_field))]
            if split != "train" and record.get("augmented"):
                log.dropped(origin(loc, record), "augmented_in_eval",
                            f"augmented copy of a record that went to {split}: "
                            "augmented data stays out of evaluation")
                continue
            with_provenance(record, loc)
            files[split].write(json.dumps(record, ensure_ascii=False) + "\n")
            counts[split][stratum_of(record, cfg.label_field) or "(no label)"] += 1
            log.written += 1
        summary = log.summary()
    (out_dir / "leakage.jsonl").unlink(missing_ok=True)
    summary["splits"] = {s: sum(c.values()) for s, c in counts.items()}
    summary["labels"] = {s: dict(c) for s, c in counts.items()}
    summary["files"] = {s: str(path) for s, path in paths.items()}
    if leakage:
        summary["leakage"] = check_leakage(out_dir, near=cfg.leakage_near)
    return summary


def check_leakage(out_dir: str | Path, near: bool = True) -> dict:
    out_dir = Path(out_dir)
    return find_leakage(out_dir / "train.jsonl", [out_dir / "validation.jsonl", out_dir / "test.jsonl"],
                        out_dir / "leakage.jsonl", near=near)


class _NullLog:
    """Pass 1 only counts; unreadable records are logged once, in pass 2."""

    read = 0

    def dropped(self, *args, **kwargs) -> None:
        pass
