"""A per-record step on several cores: a JSONL file cut into chunks of lines, each handled by a worker
process, the results taken back in input order, so the output and the log are byte for byte those of one
process (tests/data/test_parallel.py). Memory stays flat: at most two chunks per worker are in flight.

    for part in chunk_results("raw.jsonl", clean_chunk, workers=8, init=init_worker, initargs=(config,)):
        ...  # part = whatever clean_chunk returned for the next chunk, in file order

Workers are forked where the system can (Linux): a spawned worker re-imports the caller's main module, which
breaks a user's script that lacks the `if __name__ == "__main__":` guard, and costs each worker a fresh
import. Elsewhere (macOS, Windows) they are spawned.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from r1tune.data.io import jsonl_chunks

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


def chunk_results(path: str | Path, work: Callable, workers: int, init: Callable, initargs: tuple,
                  lines_per_chunk: int | None = None) -> Iterator:
    """`work(name, first_line, lines)` for each chunk of the file, on `workers` processes, in file order."""
    lines_per_chunk = lines_per_chunk or LINES_PER_CHUNK
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with context.Pool(workers, initializer=init, initargs=initargs) as pool:
        pending: deque = deque()
        for first_line, lines in jsonl_chunks(path, lines_per_chunk):
            pending.append(pool.apply_async(work, (str(path), first_line, lines)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
