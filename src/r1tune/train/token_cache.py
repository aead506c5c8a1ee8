"""The tokenized training set, cached by what it is made of: a rerun on the same data skips reading and tokenizing.

    data, hit = cached_training_data(cfg.data, tokenizer, template, seed)    # TrainingData, whether it came cached

The key hashes everything the result depends on: the data files' content (train, validation, data.mix sources;
their paths too, which skipped rows name), the tokenizer's files, the template text, every `data.*` setting, the
seed (it draws the validation split) and the source of the code that reads, renders and tokenizes — so a changed
file, tokenizer, template, max_length or r1tune version is a miss, never a stale hit. One file per key under
`data.token_cache` (default: $R1TUNE_CACHE or ~/.cache/r1tune, then tokens/), written to a temporary file and
renamed (`files.write_bytes`). The file is an .npz of plain integer arrays and a JSON header (no pickle): a file that
cannot be read or does not match its key is reported on stderr and rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np

import r1tune
from r1tune.files import write_bytes
from r1tune.model.template import TokenizedSample
from r1tune.train.data import TrainingData, file_hash, load_training_data

CACHE_FORMAT = 1
SRC = Path(r1tune.__file__).parent
# the code whose output is cached: the reader and formats, the R1 rendering and tokenizing, the training set, the
# error texts that skipped rows carry (the modules `load_training_data` runs for a text model)
CODE = [SRC / "data" / "io.py", SRC / "data" / "encodings.py", SRC / "data" / "json_values.py",
        SRC / "data" / "formats.py", SRC / "model" / "template.py", SRC / "model" / "encode.py",
        SRC / "train" / "data.py", SRC / "errors.py"]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                   "tokenizer.model", "added_tokens.json", "chat_template.jinja", "chat_template.json")
NOT_KEYED = {"token_cache"}  # data.* settings that do not change the tokenized set


def cache_folder(setting: str) -> Path | None:
    """`data.token_cache` decided: None when off."""
    if setting == "off":
        return None
    if setting != "auto":
        return Path(setting).expanduser()
    root = os.environ.get("R1TUNE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "r1tune"
    return Path(root).expanduser() / "tokens"


def tokenizer_fingerprint(tokenizer) -> str:
    """The tokenizer's files when it was loaded from a folder; its serialized state otherwise."""
    import tokenizers
    import transformers

    h = hashlib.sha256(f"{type(tokenizer).__name__} {transformers.__version__} {tokenizers.__version__}".encode())
    folder = Path(str(tokenizer.name_or_path))
    files = [folder / n for n in TOKENIZER_FILES if (folder / n).is_file()] if folder.is_dir() else []
    if files:
        for f in files:
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    elif getattr(tokenizer, "backend_tokenizer", None) is not None:
        h.update(tokenizer.backend_tokenizer.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode())
    return h.hexdigest()


def cache_key(cfg, tokenizer, template: str, seed: int, data_hash: str) -> str:
    h = hashlib.sha256()
    settings = cfg.model_dump(mode="json", exclude=NOT_KEYED)
    for part in (str(CACHE_FORMAT), r1tune.__version__, data_hash, tokenizer_fingerprint(tokenizer), template,
                 json.dumps(settings, sort_keys=True), str(seed)):
        h.update(part.encode() + b"\0")
    for f in CODE:
        h.update(f.read_bytes())
    return h.hexdigest()[:32]


def to_bytes(data: TrainingData, key: str) -> bytes:
    samples = data.train + data.validation
    header = {"format": CACHE_FORMAT, "key": key, "n_train": len(data.train), "skipped": data.skipped,
              "truncated": data.truncated, "without_reasoning": data.without_reasoning, "data_hash": data.data_hash,
              "prompt_too_long": data.prompt_too_long, "prompt_cut": data.prompt_cut, "reasoning": data.reasoning}
    buf = io.BytesIO()
    np.savez(buf, header=np.frombuffer(json.dumps(header, ensure_ascii=False).encode(), dtype=np.uint8),
             lengths=np.array([len(s.input_ids) for s in samples], dtype=np.int64),
             ids=np.array([t for s in samples for t in s.input_ids], dtype=np.int64),
             labels=np.array([t for s in samples for t in s.labels], dtype=np.int64),
             flags=np.array([s.truncated | s.prompt_cut << 1 for s in samples], dtype=np.uint8))
    return buf.getvalue()


def from_file(path: Path, key: str) -> TrainingData:
    """The cached set, or ValueError / OSError when the file is damaged or not this key's."""
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(z["header"].tobytes().decode())
        lengths, ids, labels, flags = z["lengths"], z["ids"], z["labels"], z["flags"]
    if header.get("format") != CACHE_FORMAT or header.get("key") != key:
        raise ValueError("written for other data or settings")
    if not (len(lengths) == len(flags) and int(lengths.sum()) == len(ids) == len(labels)
            and 0 < header["n_train"] <= len(lengths)):
        raise ValueError("its arrays disagree")
    cuts = np.cumsum(lengths)[:-1]
    samples = [TokenizedSample(i.tolist(), lab.tolist(), bool(f & 1), bool(f & 2))
               for i, lab, f in zip(np.split(ids, cuts), np.split(labels, cuts), flags.tolist())]
    n = header["n_train"]
    return TrainingData(samples[:n], samples[n:], header["skipped"], header["truncated"], header["without_reasoning"],
                        header["data_hash"], header["prompt_too_long"], header["prompt_cut"], header["reasoning"])


def cached_training_data(cfg, tokenizer, template: str, seed: int) -> tuple[TrainingData, bool]:
    """`load_training_data`, read from the cache when this exact set was tokenized before; (data, cache hit)."""
    folder = cache_folder(cfg.token_cache)
    if folder is None:
        return load_training_data(cfg, tokenizer, template, seed), False
    try:
        data_hash = file_hash(cfg.train, cfg.validation, *(s.path for s in getattr(cfg, "mix", [])))
    except OSError:  # a missing or unreadable file: the reader says so, in its words
        return load_training_data(cfg, tokenizer, template, seed), False
    key = cache_key(cfg, tokenizer, template, seed, data_hash)
    path = folder / f"{key}.npz"
    if path.exists():
        try:
            return from_file(path, key), True
        except Exception as e:  # noqa: BLE001  (any damage — zip, JSON, arrays — means: tokenize again)
            print(f"warning: token cache {path} cannot be used ({type(e).__name__}: {e}); tokenizing again",
                  file=sys.stderr)
    data = load_training_data(cfg, tokenizer, template, seed)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes(path, to_bytes(data, key))
    except Exception as e:  # noqa: BLE001  (a cache that cannot be written costs the next run time, not this run)
        print(f"warning: token cache {path} not written ({e})", file=sys.stderr)
    return data, False
