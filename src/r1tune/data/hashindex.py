"""A compact hash map from 64-bit content hashes to a few 64-bit values, for streaming over big files.

    seen = HashIndex(columns=1)
    if seen.get(key) is None:
        seen.put(key, (sources.pack("raw.jsonl", 12),))

The exact-dedupe and conflicting-label indexes must remember every distinct record of a 2 GB file. A
Python dict of tuples costs about 200 bytes per record (over a gigabyte for 6 million records); this
open-addressing table in numpy arrays costs 8 × (1 + columns) bytes per slot at a load of at most 2/3,
so memory stays a small fraction of the file and never holds its text.
"""

from __future__ import annotations

import numpy as np

EMPTY = np.uint64(0)


class HashIndex:
    """uint64 key → `columns` uint64 values; linear probing, doubling when two-thirds full."""

    def __init__(self, columns: int = 1, capacity: int = 1 << 12):
        self.columns = columns
        self._size = 0
        self._alloc(capacity)

    def _alloc(self, capacity: int) -> None:
        self._keys = np.zeros(capacity, dtype=np.uint64)
        self._values = np.zeros((capacity, self.columns), dtype=np.uint64)
        self._mask = capacity - 1

    def __len__(self) -> int:
        return self._size

    @staticmethod
    def _key(key: int) -> int:
        return key or 1  # 0 marks an empty slot

    def _slot(self, key: int) -> int:
        keys, mask = self._keys, self._mask
        slot = (key ^ (key >> 29)) & mask
        while True:
            current = int(keys[slot])
            if current == 0 or current == key:
                return slot
            slot = (slot + 1) & mask

    def get(self, key: int) -> tuple[int, ...] | None:
        key = self._key(key)
        slot = self._slot(key)
        if int(self._keys[slot]) != key:
            return None
        return tuple(int(v) for v in self._values[slot])

    def put(self, key: int, values: tuple[int, ...]) -> None:
        key = self._key(key)
        slot = self._slot(key)
        if int(self._keys[slot]) == 0:
            self._size += 1
            self._keys[slot] = key
        self._values[slot] = values
        if self._size * 3 > len(self._keys) * 2:
            self._grow()

    def _grow(self) -> None:
        keys, values = self._keys, self._values
        used = keys != EMPTY
        self._alloc(len(keys) * 2)
        for key, row in zip(keys[used].tolist(), values[used]):
            slot = self._slot(key)
            self._keys[slot] = key
            self._values[slot] = row

    def nbytes(self) -> int:
        return self._keys.nbytes + self._values.nbytes


class SourceTable:
    """A record's source ("file:line") packed into one integer: file number << 32 | line."""

    def __init__(self):
        self._files: list[str] = []
        self._ids: dict[str, int] = {}

    def pack(self, source: str) -> int:
        file, _, line = source.rpartition(":")
        if not line.isdigit():
            file, line = source, "0"
        if file not in self._ids:
            self._ids[file] = len(self._files)
            self._files.append(file)
        return (self._ids[file] << 32) | int(line)

    def unpack(self, packed: int) -> str:
        file, line = self._files[packed >> 32], packed & 0xFFFFFFFF
        return f"{file}:{line}" if line else file  # line 0: a source that had no line number
