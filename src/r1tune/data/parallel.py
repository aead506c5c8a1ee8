"""A per-record step on several cores: a JSONL file cut into chunks of lines, each handled by a worker
process, the results taken back in input order, so the output and the log are byte for byte those of one
process (tests/data/test_parallel.py). Memory stays flat: at most two chunks per worker are in flight.

    for part in chunk_results("raw.jsonl", clean_chunk, 8, init_worker, (config,), log):
        ...  # part = the payload clean_chunk returned for the next chunk, in file order

Workers are forked where the system can (Linux): a spawned worker re-imports the caller's main module, which
breaks a user's script that lacks the `if __name__ == "__main__":` guard, and costs each worker a fresh
import. Elsewhere (macOS, Windows) they are spawned. Either way a worker reads the file as its parent was told
to (`encodings.reading_as`: encoding, columns). A file that is not UTF-8 is read by one process (`workers_for`): its
lines are decoded on the way, not cut as bytes.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from r1tune.data.encodings import adopt_declared_inputs, declared_inputs
from r1tune.data.io import (
    empty_file_error,
    file_not_found_error,
    is_jsonl,
    jsonl_chunks,
    splits_as_utf8,
)
from r1tune.data.steplog import StepLog

LINES_PER_CHUNK = 2000


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers and `taskset` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int) -> int:
    """0 means every available core."""
    return available_cores() if workers == 0 else workers


def workers_for(path: str | Path, workers: int) -> int:
    """How many processes a step uses on this input: `resolve_workers(workers)` for a UTF-8 JSONL file, one for
    other formats and encodings (they are not cut into chunks of raw lines)."""
    if not is_jsonl(path):
        return 1
    workers = resolve_workers(workers)
    return workers if workers == 1 or splits_as_utf8(path) else 1


def chunk_results(path: str | Path, work: Callable, workers: int, init: Callable, initargs: tuple,
                  log: StepLog, lines_per_chunk: int | None = None) -> Iterator:
    """`work(name, first_line, lines)` for each chunk of the file, on `workers` processes, in file order.

    `work` returns (its StepLog's `counts()`, payload): the counts go into `log`, the payloads are yielded.
    A missing file, or one with no record and no unreadable line, raises the error `read_records` raises.
    """
    if not Path(path).exists():
        raise file_not_found_error(path)
    lines_per_chunk = lines_per_chunk or LINES_PER_CHUNK
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with context.Pool(workers, initializer=_start_worker, initargs=(declared_inputs(), init, initargs)) as pool:
        pending: deque = deque()

        def next_payload():
            counts, payload = pending.popleft().get()
            log.merge(counts)
            return payload

        for first_line, lines in jsonl_chunks(path, lines_per_chunk):
            pending.append(pool.apply_async(work, (str(path), first_line, lines)))
            if len(pending) >= 2 * workers:
                yield next_payload()
        while pending:
            yield next_payload()
    if log.read == 0:
        raise empty_file_error(path)


def _start_worker(declared: dict | None, init: Callable, initargs: tuple) -> None:
    adopt_declared_inputs(declared)
    init(*initargs)
