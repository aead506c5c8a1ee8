"""The token cache: the same set as tokenizing, a hit on a rerun, a miss when what it is made of changes, and a
damaged file ignored with a warning and rebuilt."""

from dataclasses import asdict

import pytest

import r1tune.train.token_cache as token_cache
from r1tune.config import DataConfig
from r1tune.model.template import resolve_template
from r1tune.train.data import file_hash, load_training_data
from r1tune.train.token_cache import cached_training_data


@pytest.fixture
def data_file(finsent_file, tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(finsent_file(40).read_text(encoding="utf-8"), encoding="utf-8")
    return path


def as_plain(data) -> dict:
    return asdict(data)


def test_cache_hit_equals_tokenizing_and_misses_when_inputs_change(tiny_tokenizer, data_file, tmp_path, monkeypatch,
                                                                    capsys):
    template = resolve_template(tiny_tokenizer)
    cache = tmp_path / "cache"
    cfg = DataConfig(train=str(data_file), max_length=24, val_split=0.2, token_cache=str(cache))
    fresh = load_training_data(cfg, tiny_tokenizer, template, seed=7)

    first, hit = cached_training_data(cfg, tiny_tokenizer, template, seed=7)
    assert not hit and as_plain(first) == as_plain(fresh)
    assert fresh.truncated and fresh.skipped and fresh.validation  # cut, skipped and held-out samples round-trip
    assert len(list(cache.glob("*.npz"))) == 1

    # a hit does not read or tokenize: the loader would fail if it were called
    def must_not_tokenize(*a, **k):
        raise AssertionError("tokenized on a cache hit")

    monkeypatch.setattr(token_cache, "load_training_data", must_not_tokenize)
    again, hit = cached_training_data(cfg, tiny_tokenizer, template, seed=7)
    assert hit and as_plain(again) == as_plain(fresh)
    monkeypatch.undo()

    # max_length, the data, the template and the seed (it draws the validation split) are each a miss
    longer = cfg.model_copy(update={"max_length": 30})
    _, hit = cached_training_data(longer, tiny_tokenizer, template, seed=7)
    assert not hit
    _, hit = cached_training_data(cfg, tiny_tokenizer, template, seed=8)
    assert not hit
    _, hit = cached_training_data(cfg, tiny_tokenizer, resolve_template(tiny_tokenizer, "r1-2025-01"), seed=7)
    assert not hit
    lines = data_file.read_text(encoding="utf-8").splitlines(keepends=True)
    data_file.write_text("".join(lines[:-1]), encoding="utf-8")  # one row fewer, same path
    changed, hit = cached_training_data(cfg, tiny_tokenizer, template, seed=7)
    assert not hit and len(changed.train) + len(changed.validation) + len(changed.skipped) == 39
    assert len(list(cache.glob("*.npz"))) == 5
    assert capsys.readouterr().err == ""

    # a damaged file: a warning naming it, the set tokenized again, and the file rewritten whole
    path = cache / f"{token_cache.cache_key(cfg, tiny_tokenizer, template, 7, file_hash(data_file))}.npz"
    assert path.exists()
    path.write_bytes(path.read_bytes()[:200])
    rebuilt, hit = cached_training_data(cfg, tiny_tokenizer, template, seed=7)
    err = capsys.readouterr().err
    assert not hit and f"warning: token cache {path} cannot be used" in err and "tokenizing again" in err
    assert as_plain(rebuilt) == as_plain(changed)
    _, hit = cached_training_data(cfg, tiny_tokenizer, template, seed=7)
    assert hit

    # another key's file under this key's name (a copy, a rename): refused, not trusted
    other = next(p for p in cache.glob("*.npz") if p != path)
    path.write_bytes(other.read_bytes())
    _, hit = cached_training_data(cfg, tiny_tokenizer, template, seed=7)
    assert not hit and "written for other data or settings" in capsys.readouterr().err


def test_cache_off_writes_nothing(tiny_tokenizer, data_file, tmp_path, monkeypatch):
    monkeypatch.setenv("R1TUNE_CACHE", str(tmp_path / "cache"))
    cfg = DataConfig(train=str(data_file), token_cache="off")
    _, hit = cached_training_data(cfg, tiny_tokenizer, resolve_template(tiny_tokenizer), seed=1)
    assert not hit and not (tmp_path / "cache").exists()
    assert token_cache.cache_folder("auto") == tmp_path / "cache" / "tokens"
