"""The compact hash map behind exact dedupe and the conflicting-label index."""

import random

from r1tune.data.hashindex import HashIndex, SourceTable


def test_hash_index_matches_a_dict_through_growth():
    rng = random.Random(0)
    index, reference = HashIndex(columns=2, capacity=8), {}
    for _ in range(5000):
        key = rng.getrandbits(64) if rng.random() < 0.8 else rng.choice(list(reference) or [0])
        value = (rng.getrandbits(64), rng.getrandbits(32))
        index.put(key, value)
        reference[key] = value
    assert len(index) == len(reference)
    assert all(index.get(k) == v for k, v in reference.items())
    assert index.get(12345) is None or 12345 in reference
    assert index.nbytes() < 5000 * 24 * 3  # a few dozen bytes per entry, not a Python object each


def test_zero_is_a_valid_key_and_sources_round_trip():
    index = HashIndex()
    index.put(0, (7,))
    assert index.get(0) == (7,) and index.get(1) == (7,)  # 0 is stored as 1: a 1-in-2^64 collision
    sources = SourceTable()
    for source in ["/data/raw.jsonl:1", "/data/raw.jsonl:4294967295", "other.csv:12", "table.parquet#row3"]:
        assert sources.unpack(sources.pack(source)) == source
