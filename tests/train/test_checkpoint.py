"""Checkpoints: what is saved reads back with `torch.load(weights_only=True)` (RNG states included), a planted
pickle that would run code is refused before anything is loaded, and a checkpoint marked complete whose files
are broken is named and skipped for the one before it — through `r1tune finetune --resume`."""

import json
import os
import random
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from r1tune.errors import R1TuneError
from r1tune.train.checkpoint import (
    CorruptCheckpoint,
    complete_checkpoints,
    read_checkpoint,
    resume_latest,
    save_checkpoint,
)


class WritesAFile:
    """A pickle payload: unpickling it with weights_only=False would create `path`."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def tiny_training(seed=0):
    torch.manual_seed(seed)
    layer = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (1 + s))
    for _ in range(2):
        layer(torch.randn(5, 4)).pow(2).sum().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return layer, optimizer, scheduler


def save(root, step, layer, optimizer, scheduler):
    return save_checkpoint(root, step, {k: v.detach() for k, v in layer.state_dict().items()}, optimizer, scheduler,
                           {"step": step, "micro_batches": step, "early_stopping": {}}, keep=5)


def test_everything_saved_reads_back_without_pickled_code_and_rng_resumes_exactly(tmp_path):
    layer, optimizer, scheduler = tiny_training()
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    folder = save(tmp_path, 2, layer, optimizer, scheduler)
    after = (random.random(), np.random.rand(), torch.rand(1).item())
    blob = torch.load(folder / "optimizer.pt", weights_only=True)  # the strict loader reads all of it
    assert isinstance(blob["rng"][0]["numpy"][1], torch.Tensor)

    _, fresh_optimizer, fresh_scheduler = tiny_training(seed=9)
    random.seed(100)
    np.random.seed(100)
    weights, state = resume_latest(tmp_path, fresh_optimizer, fresh_scheduler)[1:]
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == after
    assert state["step"] == 2 and torch.equal(weights["weight"], layer.weight)
    exp_avg = next(iter(fresh_optimizer.state.values()))["exp_avg"]
    assert torch.equal(exp_avg, next(iter(optimizer.state.values()))["exp_avg"])
    assert fresh_scheduler.last_epoch == scheduler.last_epoch == 2


def test_checkpoints_with_the_numpy_state_as_an_array_still_resume(tmp_path):
    """Runs checkpointed before the numpy RNG state became a tensor: an ndarray rebuilds without running code."""
    layer, optimizer, scheduler = tiny_training()
    folder = save(tmp_path, 2, layer, optimizer, scheduler)
    np.random.seed(5)
    legacy = torch.load(folder / "optimizer.pt", weights_only=True)
    legacy["rng"][0]["numpy"] = np.random.get_state()
    torch.save(legacy, folder / "optimizer.pt")
    expected = np.random.rand()
    np.random.seed(0)
    resume_latest(tmp_path, optimizer, scheduler)
    assert np.random.rand() == expected


def test_unreadable_files_are_corrupt_not_loaded(tmp_path):
    layer, optimizer, scheduler = tiny_training()
    folder = save(tmp_path, 2, layer, optimizer, scheduler)
    good = {f.name: f.read_bytes() for f in folder.iterdir()}
    cases = {"optimizer.pt": [b"", good["optimizer.pt"][:200], b"partial", os.urandom(500)],
             "trainable.safetensors": [b"", good["trainable.safetensors"][:50]],
             "trainer_state.json": [b'{"step": 2', b"[]", b"\xff\xfe"]}
    for name, contents in cases.items():
        for content in contents:
            (folder / name).write_bytes(content)
            with pytest.raises(CorruptCheckpoint, match=name.split(".")[0]):
                read_checkpoint(folder)
            (folder / name).write_bytes(good[name])
    (folder / "optimizer.pt").unlink()
    with pytest.raises(CorruptCheckpoint, match="optimizer.pt missing"):
        read_checkpoint(folder)


def test_a_pickle_that_would_run_code_is_refused_unloaded(tmp_path):
    layer, optimizer, scheduler = tiny_training()
    folder = save(tmp_path, 2, layer, optimizer, scheduler)
    marker = tmp_path / "pwned"
    blob = torch.load(folder / "optimizer.pt", weights_only=True)
    blob["scheduler"] = WritesAFile(marker)
    torch.save(blob, folder / "optimizer.pt")
    with pytest.raises(R1TuneError, match=r"names Python code that loading it would run \(posix.system\)"):
        resume_latest(tmp_path, optimizer, scheduler)
    assert not marker.exists()


# ---------------------------------------------------------------- through `r1tune finetune --resume`


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, finsent_file, tmp_path_factory):
    """A finished 6-step LoRA run with checkpoints at steps 2 and 4, its final adapter kept aside."""
    from helpers import run_main

    out = tmp_path_factory.mktemp("ckpt") / "run"
    args = finetune_args(tiny_model_dir, finsent_file(40), out)
    assert run_main(*args) == 0
    assert [p.name for p in complete_checkpoints(out / "checkpoints")] == ["step-000002", "step-000004"]
    straight = load_file(out / "final" / "adapter_model.safetensors")
    return out, args, straight


def finetune_args(model, data, out):
    return ["finetune", "--model", model, "--data", data, "--out", out, "--max-steps", 6, "--save-every", 2,
            "--eval-every", 100, "--batch-size", 4, "--seed", 5, "--set", "data.max_length=96",
            "--set", "train.threads=1", "--set", "method.lora_dropout=0.0"]


@pytest.fixture
def run_copy(trained_run, tmp_path):
    out, args, straight = trained_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    return copy, [str(copy) if a == out else a for a in args], straight


def test_resume_names_the_step_it_resumed_from(run_copy, cli):
    out, args, straight = run_copy
    code, stdout, err = cli(*args, "--resume")
    assert code == 0, err
    assert "resumed from step 4 (checkpoints/step-000004)" in stdout
    resumed = load_file(out / "final" / "adapter_model.safetensors")
    assert max((resumed[k] - straight[k]).abs().max().item() for k in straight) <= 1e-6


@pytest.mark.parametrize("damage", ["truncated optimizer", "truncated weights", "garbage state", "raw pickle"])
def test_a_complete_looking_but_broken_checkpoint_falls_back_to_the_one_before(run_copy, cli, damage, tmp_path):
    out, args, straight = run_copy
    newest = out / "checkpoints" / "step-000004"
    marker = tmp_path / "pwned"
    if damage == "truncated optimizer":
        (newest / "optimizer.pt").write_bytes((newest / "optimizer.pt").read_bytes()[:1000])
    elif damage == "truncated weights":
        (newest / "trainable.safetensors").write_bytes((newest / "trainable.safetensors").read_bytes()[:100])
    elif damage == "garbage state":
        (newest / "trainer_state.json").write_text("{not json", encoding="utf-8")
    else:  # a plain pickle (not torch's zip) that would run code: never unpickled at all
        import pickle

        (newest / "optimizer.pt").write_bytes(pickle.dumps({"optimizer": WritesAFile(marker)}))
    code, stdout, err = cli(*args, "--resume")
    assert code == 0, err
    assert f"checkpoint {newest} is corrupt (" in stdout and "falling back to the one before it" in stdout
    assert "resumed from step 2 (checkpoints/step-000002)" in stdout
    resumed = load_file(out / "final" / "adapter_model.safetensors")
    assert max((resumed[k] - straight[k]).abs().max().item() for k in straight) <= 1e-6
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if '"train"' in line]
    assert steps == list(range(1, 7))
    assert not marker.exists()


def test_resume_refuses_a_planted_pickle_and_runs_none_of_it(run_copy, cli, tmp_path):
    out, args, _ = run_copy
    marker = tmp_path / "pwned"
    target = out / "checkpoints" / "step-000004" / "optimizer.pt"
    blob = torch.load(target, weights_only=True)
    blob["optimizer"] = WritesAFile(marker)
    torch.save(blob, target)
    before = (out / "metrics.jsonl").read_text()
    code, stdout, err = cli(*args, "--resume")
    assert code == 2
    last = err.strip().splitlines()[-1]  # above it: the model's loading bar
    assert last.startswith(f"error: {target} names Python code that loading it would run (posix.system)")
    assert last.endswith("Refusing to resume from it")
    assert not marker.exists()
    assert (out / "metrics.jsonl").read_text() == before  # nothing of the run was touched


def test_resume_when_every_checkpoint_is_broken_says_so(run_copy, cli):
    out, args, _ = run_copy
    for folder in complete_checkpoints(out / "checkpoints"):
        (folder / "optimizer.pt").write_bytes(b"")
    code, _, err = cli(*args, "--resume")
    assert code == 2
    assert "no checkpoint in" in err and "reads back (step-000004: optimizer.pt" in err and "step-000002:" in err
