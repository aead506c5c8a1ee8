"""The log every prepare step writes: one JSON line per record it dropped, changed or flagged.

    with StepLog("clean", out_path, inputs=[in_path]) as log:   # writes <out stem>.log.jsonl next to OUT
        for loc, record in read_input(in_path, log):  # unreadable records are logged as dropped
            ...
            log.dropped(origin(loc, record), "too_short", "12 characters, minimum is 20")
        log.written = write_jsonl(out_path, kept, log.outputs)   # OUT and its log land together
    print(log.summary())

Nothing is lost silently: a record that does not reach OUT has a line here naming its source (raw file
and line), the step, the rule and the reason; the counts per rule are returned and printed.

Nothing is destroyed either: before anything is read or opened, the step's files are checked
(`check_step_files`: every input exists, no output is an input); the log and the files opened in
`log.outputs` are written to temporary files and renamed into place together when the step succeeds, and
removed when it fails, so a failed step leaves the previous output and log as they were.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from r1tune.data.io import (
    Location,
    file_not_found_error,
    json_encoder,
    located_records,
    read_jsonl_lines,
    read_records,
)
from r1tune.errors import DataError
from r1tune.files import OutputSet, check_outputs


def log_path_for(out: str | Path) -> Path:
    """`data/clean.jsonl` → `data/clean.log.jsonl`."""
    out = Path(out)
    return out.with_name(f"{out.stem}.log.jsonl")


def check_step_files(inputs, outputs, also_read=()) -> None:
    """What a step does before it reads or writes anything: each of `inputs` exists, and no output is one of
    `inputs` or `also_read` (files read when present) in any spelling, nor a folder, nor under a file."""
    for path in inputs:
        if path is not None and not Path(path).exists():
            raise file_not_found_error(path)
    check_outputs(outputs, [*inputs, *also_read])


class StepLog:
    """Counts and logs what one step did to the records that passed through it."""

    def __init__(self, step: str, out_path: str | Path | None = None, log_path: str | Path | None = None,
                 stream: TextIO | None = None, inputs=(), outputs=()):
        """Logs to `log_path` (default: next to `out_path`), or to `stream` (a parallel worker's part).

        `inputs` (the files the step reads) and `outputs` (its files besides OUT and the log) are checked
        with `check_step_files` first; the log is then opened in `self.outputs`, the step's set of files
        renamed into place together when the log closes without error."""
        self.step = step
        self.outputs = OutputSet()
        if stream is not None:
            self.path, self._file = None, stream
        else:
            self.path = Path(log_path) if log_path else log_path_for(out_path)
            check_step_files(inputs, [out_path, self.path, *outputs])
            self._file = self.outputs.open(self.path)
        self._encode = json_encoder()  # the text of json.dumps(entry, ensure_ascii=False)
        self.read = 0
        self.written = 0
        self.dropped_by: Counter = Counter()
        self.changed_by: Counter = Counter()
        self.flagged_by: Counter = Counter()
        self.added_by: Counter = Counter()
        self.changed_records = 0
        self.extra: dict = {}

    def __enter__(self) -> StepLog:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.outputs.discard()

    def close(self) -> None:
        """Put the log and the step's other outputs in place (a stream is closed as it is)."""
        if self.path is None:
            if not self._file.closed:
                self._file.close()
            return
        self.outputs.commit()

    def _write(self, entry: dict) -> None:
        self._file.write(self._encode(entry) + "\n")

    def dropped(self, source: str, rule: str, reason: str, **detail) -> None:
        self.dropped_by[rule] += 1
        self._write({"source": source, "step": self.step, "action": "dropped", "rule": rule, "reason": reason,
                     **detail})

    def changed(self, source: str, rules: dict[str, list[str]], **detail) -> None:
        """`rules` maps each changed field to the rules that changed it."""
        self.changed_records += 1
        rule_names = {r for names in rules.values() for r in names}
        self.changed_by.update(rule_names)
        reason = "; ".join(f"{field}: {', '.join(names)}" for field, names in rules.items())
        self._write({"source": source, "step": self.step, "action": "changed", "rule": ",".join(sorted(rule_names)),
                     "reason": reason, **detail})

    def flagged(self, source: str, rule: str, reason: str, **detail) -> None:
        """Kept, but worth a look (e.g. a validation prompt that also appears in train)."""
        self.flagged_by[rule] += 1
        self._write({"source": source, "step": self.step, "action": "flagged", "rule": rule, "reason": reason,
                     **detail})

    def added(self, source: str, rule: str, reason: str, **detail) -> None:
        """A new record made from `source` (an augmented copy)."""
        self.added_by[rule] += 1
        self._write({"source": source, "step": self.step, "action": "added", "rule": rule, "reason": reason,
                     **detail})

    _COUNTERS = ("dropped_by", "changed_by", "flagged_by", "added_by")

    def counts(self) -> dict:
        """What `merge` needs from a worker's log: the counts (its entries travel as text)."""
        return {"read": self.read, "written": self.written, "changed_records": self.changed_records,
                **{name: getattr(self, name) for name in self._COUNTERS}}

    def entries(self) -> str:
        """The lines written so far, for a log kept in a `stream` (io.StringIO)."""
        return self._file.getvalue()

    def append(self, entries: str) -> None:
        """Log lines made elsewhere (a worker's `entries()`), after those already written."""
        self._file.write(entries)

    def merge(self, counts: dict) -> None:
        """Add a worker's `counts()` (its lines come through `append`, in their place)."""
        self.read += counts["read"]
        self.written += counts["written"]
        self.changed_records += counts["changed_records"]
        for name in self._COUNTERS:
            getattr(self, name).update(counts[name])

    def summary(self) -> dict:
        out = {"step": self.step, "read": self.read, "written": self.written,
               "dropped": sum(self.dropped_by.values()), "dropped_by_rule": dict(self.dropped_by),
               "changed": self.changed_records, "changed_by_rule": dict(self.changed_by),
               "log": str(self.path)}
        if self.added_by:
            out["added"] = sum(self.added_by.values())
        if self.flagged_by:
            out["flagged"] = sum(self.flagged_by.values())
            out["flagged_by_rule"] = dict(self.flagged_by)
        out.update(self.extra)
        return out


def read_input(path: str | Path, log: StepLog, on_error: str = "skip") -> Iterator[tuple[Location, dict]]:
    """Stream records; with on_error="skip" an unreadable line is logged as dropped and reading goes on."""
    skipped: list[DataError] = []
    return _logged(read_records(path, on_error=on_error, skipped=skipped), skipped, log)


def read_input_lines(name: str, first_line: int, lines: list[bytes], log: StepLog,
                     on_error: str = "skip") -> Iterator[tuple[Location, dict]]:
    """`read_input` for one chunk of a JSONL file (see `io.jsonl_chunks`): the same records, errors and log."""
    skipped: list[DataError] = []
    return _logged(located_records(read_jsonl_lines(name, first_line, lines), on_error, skipped), skipped, log)


def _log_unreadable(log: StepLog, errors: list[DataError]) -> None:
    for err in errors:
        log.read += 1
        where = err.file if err.line is None else f"{err.file}:{err.line}"
        log.dropped(where, "unreadable", f"field '{err.field}': {err.problem}" if err.field else err.problem)


def _logged(records, skipped: list[DataError], log: StepLog) -> Iterator[tuple[Location, dict]]:
    for loc, record in records:
        if skipped:
            _log_unreadable(log, skipped)
            skipped.clear()
        log.read += 1
        yield loc, record
    _log_unreadable(log, skipped)
    skipped.clear()


# Records read ahead for `hints`: Arrow's cost per call is paid once per batch, memory stays flat. A smaller
# batch (a small file, a file's tail) goes without hints: the scans' one-off costs (pyarrow's import, the Unicode
# tables: about 0.3 CPU-s) would be more than they spare there.
BATCH_RECORDS = 4096
HINTED_BATCH_MIN = 512


def read_input_hinted(path: str | Path, log: StepLog, hints: Callable[[list[dict]], list] | None,
                      on_error: str = "skip") -> Iterator[tuple[Location, dict, object]]:
    """`read_input`, each record with its hint: `hints(records)` gives one for each record of a batch of up to
    BATCH_RECORDS read ahead (clean's and check's vectorised scans). The log, its order and the errors are those of
    `read_input`: an unreadable line is logged when the record after it is handed out, and an error met while
    reading ahead is raised once the records read before it are handed out. `hints` None: `read_input` itself, one
    record at a time, each with the hint None."""
    skipped: list[DataError] = []
    records = read_records(path, on_error=on_error, skipped=skipped)
    if hints is None:
        return ((loc, record, None) for loc, record in _logged(records, skipped, log))
    return _hinted(records, skipped, log, hints)


def read_input_lines_hinted(name: str, first_line: int, lines: list[bytes], log: StepLog,
                            hints: Callable[[list[dict]], list] | None,
                            on_error: str = "skip") -> Iterator[tuple[Location, dict, object]]:
    """`read_input_lines` with hints, as `read_input_hinted`."""
    skipped: list[DataError] = []
    records = located_records(read_jsonl_lines(name, first_line, lines), on_error, skipped)
    if hints is None:
        return ((loc, record, None) for loc, record in _logged(records, skipped, log))
    return _hinted(records, skipped, log, hints)


def _hinted(records, skipped: list[DataError], log: StepLog, hints) -> Iterator[tuple[Location, dict, object]]:
    while True:
        batch, unreadable_before, failure = [], [], None
        try:
            for item in records:
                batch.append(item)
                unreadable_before.append(tuple(skipped))
                skipped.clear()
                if len(batch) == BATCH_RECORDS:
                    break
        except Exception as error:  # noqa: BLE001 - raised below, after the records read before it
            failure = error
        found = hints([record for _, record in batch]) if len(batch) >= HINTED_BATCH_MIN else [None] * len(batch)
        for (loc, record), unreadable, hint in zip(batch, unreadable_before, found):
            if unreadable:
                _log_unreadable(log, unreadable)
            log.read += 1
            yield loc, record, hint
        if failure is not None:
            raise failure
        if len(batch) < BATCH_RECORDS:
            break
    _log_unreadable(log, skipped)
    skipped.clear()


def format_summary(summary: dict) -> str:
    """One readable line per step for the terminal."""
    parts = [f"{summary['step']}: read {summary['read']}, wrote {summary['written']}"]
    if summary.get("dropped"):
        rules = ", ".join(f"{k} {v}" for k, v in sorted(summary["dropped_by_rule"].items(), key=lambda kv: -kv[1]))
        parts.append(f"dropped {summary['dropped']} ({rules})")
    if summary.get("changed"):
        rules = ", ".join(f"{k} {v}" for k, v in sorted(summary["changed_by_rule"].items(), key=lambda kv: -kv[1]))
        parts.append(f"changed {summary['changed']} ({rules})")
    if summary.get("added"):
        parts.append(f"added {summary['added']}")
    if summary.get("flagged"):
        rules = ", ".join(f"{k} {v}" for k, v in summary["flagged_by_rule"].items())
        parts.append(f"flagged {summary['flagged']} ({rules})")
    return "; ".join(parts) + f" — log: {summary['log']}"
