"""A compact hash map from 64-bit content hashes to a few 64-bit values, for streaming over big files.

    seen = HashIndex(columns=1)
    if seen.get(key) is None:
        seen.put(key, (sources.pack("raw.jsonl", 12),))

The exact-dedupe and conflicting-label indexes must remember every distinct record of a 2 GB file. A
Python dict of tuples costs about 200 bytes per record (over a gigabyte for 6 million records); this
open-addressing table in flat `array('Q')` buffers costs 8 × (1 + columns) bytes per slot at a load of at most
2/3, so memory stays a small fraction of the file and never holds its text. (`array` rather than numpy: reading
or writing one element of an array is a plain Python int operation, several times cheaper than a numpy scalar,
and this table is touched once or twice per record.)
"""

from __future__ import annotations

from array import array


class HashIndex:
    """uint64 key → `columns` uint64 values; linear probing, doubling when two-thirds full."""

    def __init__(self, columns: int = 1, capacity: int = 1 << 12):
        self.columns = columns
        self._size = 0
        self._alloc(capacity)

    def _alloc(self, capacity: int) -> None:
        self._keys = array("Q", [0]) * capacity  # 0 marks an empty slot
        self._values = array("Q", [0]) * (capacity * self.columns)  # row-major: slot i at [i*columns, (i+1)*columns)
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
            current = keys[slot]
            if current == 0 or current == key:
                return slot
            slot = (slot + 1) & mask

    def get(self, key: int) -> tuple[int, ...] | None:
        key = self._key(key)
        slot = self._slot(key)
        if self._keys[slot] != key:
            return None
        start = slot * self.columns
        return tuple(self._values[start:start + self.columns])

    def put(self, key: int, values: tuple[int, ...]) -> None:
        key = self._key(key)
        slot = self._slot(key)
        if self._keys[slot] == 0:
            self._size += 1
            self._keys[slot] = key
        start = slot * self.columns
        self._values[start:start + self.columns] = array("Q", values)
        if self._size * 3 > len(self._keys) * 2:
            self._grow()

    def _grow(self) -> None:
        keys, values, columns = self._keys, self._values, self.columns
        self._alloc(len(keys) * 2)
        for old_slot, key in enumerate(keys):
            if key:
                start, old_start = self._slot(key) * columns, old_slot * columns
                self._values[start:start + columns] = values[old_start:old_start + columns]
                self._keys[start // columns] = key

    def nbytes(self) -> int:
        return self._keys.itemsize * len(self._keys) + self._values.itemsize * len(self._values)


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
