"""Shared fixtures. Everything is offline: HF_HUB_OFFLINE=1, and sockets may only reach loopback.

The tiny models are built once per session (a few seconds) from a config and a locally trained tokenizer
that carries the R1 special tokens and chat template; tests never download anything.
"""

import atexit
import os
import shutil
import socket
import tempfile

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# issue 20: runs cache their tokenized data; the suite's cache lives and dies with the session, not in ~/.cache
os.environ["R1TUNE_CACHE"] = tempfile.mkdtemp(prefix="r1tune-test-cache-")
atexit.register(shutil.rmtree, os.environ["R1TUNE_CACHE"], ignore_errors=True)
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest worker per core: a torch pool per worker would oversubscribe the cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")

_real_connect = socket.socket.connect


def _loopback_only(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1") or self.family == socket.AF_UNIX):
        raise OSError(f"network access blocked in tests: {address}")
    return _real_connect(self, address)


socket.socket.connect = _loopback_only


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random-init Qwen2 (R1-Distill-Qwen architecture) with the R1 tokenizer and template."""
    from r1tune.model.tiny import make_tiny_model

    out = tmp_path_factory.mktemp("tiny-qwen2")
    make_tiny_model(out, arch="qwen2", size="tiny")
    return out


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A tiny random-init Llama (R1-Distill-Llama architecture) with the R1 tokenizer and template."""
    from r1tune.model.tiny import make_tiny_model

    out = tmp_path_factory.mktemp("tiny-llama")
    make_tiny_model(out, arch="llama", size="tiny")
    return out


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def jsonl():
    """jsonl(path, records) writes a JSONL file (a string record is written as it is, e.g. a broken line)."""
    from helpers import write_jsonl

    return write_jsonl


@pytest.fixture
def read():
    """read(path) → the records of a JSONL file."""
    from helpers import read_jsonl

    return read_jsonl


@pytest.fixture(scope="session")
def finsent_file(tmp_path_factory):
    """finsent_file(n, split="train"): a file holding the first n records of the bundled finsent split."""
    from helpers import finsent_head

    made = {}

    def make(n: int, split: str = "train"):
        if (n, split) not in made:
            made[n, split] = finsent_head(tmp_path_factory.mktemp(f"finsent-{split}-{n}") / f"{split}.jsonl", n, split)
        return made[n, split]

    return make


@pytest.fixture
def cli(capsys):
    """cli(*args) runs `r1tune ARGS` in this process (the console script's main()): (exit code, stdout, stderr)."""
    from r1tune.cli import main

    def run(*args):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
