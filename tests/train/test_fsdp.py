"""FSDP (`train.fsdp`, FSDP2 over gloo) on 2 CPU processes: the final weights and losses of one process with the
same global batch, and a checkpoint of whole tensors that two nodes on loopback (two torchrun commands, node ranks
0 and 1) resume to the same end."""

import json
import os
import socket
import subprocess
import sys

import pytest
from safetensors.torch import load_file

TOL = 1e-5  # fp32: the sharded run sums the same terms in another order


def finetune_args(model, data, out, *extra):
    return ["finetune", "--model", str(model), "--data", str(data), "--out", str(out), "--max-steps", "4",
            "--lr", "5e-3", "--save-every", "2", "--eval-every", "2", "--set", "data.val_split=0.25",
            "--set", "train.threads=1", "--set", "train.mixed_precision=no", "--set", "method.lora_dropout=0", *extra]


def start(args, env=None, launcher=()):
    return subprocess.Popen([sys.executable, *launcher, "-m", "r1tune", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def finish(proc):
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def losses(out, split="train"):
    """The logged losses of `split`; for eval, with the next-token accuracy."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] if split == "train" else (r["loss"], r["token_accuracy"]) for r in records
            if r.get("split") == split]


def max_diff(a_file, b_file):
    a, b = load_file(a_file), load_file(b_file)
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_fsdp_matches_one_process_and_resumes_on_two_nodes(tiny_model_dir, finsent_file, tmp_path, cli):
    data = finsent_file(48)
    run = lambda *extra: finetune_args(tiny_model_dir, data, *extra)  # noqa: E731

    # the reference: one process (this one) with the same global batch of 4
    code, _, err = cli(*run(tmp_path / "one", "--batch-size", "4"))
    assert code == 0, err[-2000:]

    # FSDP on 2 local processes, LoRA: frozen and trainable parameters share each unit
    fsdp = tmp_path / "fsdp"
    code, out, err = finish(start(run(fsdp, "--batch-size", "2", "--nproc", "2", "--set", "train.fsdp=true")))
    assert code == 0, err[-2000:]
    assert "FSDP over 2 processes: 3 units (base_model.model.model.layers.0" in out and out.count("done: 4 steps") == 1
    adapter = "final/adapter_model.safetensors"
    assert max_diff(tmp_path / "one" / adapter, fsdp / adapter) <= TOL
    a, b = losses(tmp_path / "one"), losses(fsdp)
    assert len(a) == len(b) == 4 and all(abs(x - y) <= TOL * abs(x) for x, y in zip(a, b)), (a, b)
    # evaluation runs through the sharded model's own forward: the same loss and accuracy
    ea, eb = losses(tmp_path / "one", "eval"), losses(fsdp, "eval")
    assert len(ea) == len(eb) == 2 and all(abs(x[0] - y[0]) <= TOL * x[0] and x[1] == y[1] for x, y in zip(ea, eb))
    provenance = json.loads((fsdp / "final" / "provenance.json").read_text())
    assert provenance["training"]["distributed"] == "FSDP" and provenance["training"]["processes"] == 2
    # its checkpoint holds whole tensors under the one-process names (rank 0 wrote what every rank gathered)
    step2 = "checkpoints/step-000002/trainable.safetensors"
    assert max_diff(tmp_path / "one" / step2, fsdp / step2) <= TOL

    # resumed from that checkpoint by two nodes of one process each on loopback (node ranks 0 and 1): every rank
    # reads the whole tensors back into its shard, and the run ends where one process ends
    port = free_port()
    nodes = [start(run(fsdp, "--batch-size", "2", "--set", "train.fsdp=true", "--resume"),
                   launcher=("-m", "torch.distributed.run", "--nnodes=2", f"--node-rank={rank}",
                             "--nproc-per-node=1", "--master-addr=127.0.0.1", f"--master-port={port}"))
             for rank in (0, 1)]
    (code, out, err), (code1, out1, err1) = [finish(node) for node in nodes]
    assert code == 0 and code1 == 0, (err[-2000:], err1[-2000:])
    assert "resumed from step 2" in out and "done: 4 steps" in out and "done:" not in out1  # global rank 0 writes
    assert max_diff(tmp_path / "one" / adapter, fsdp / adapter) <= TOL
    b = losses(fsdp)
    assert len(b) == 4 and all(abs(x - y) <= TOL * abs(x) for x, y in zip(a, b)), (a, b)


def test_fsdp_is_asked_for_or_an_accelerate_config_is_not_dropped_in_silence(monkeypatch):
    from r1tune.errors import R1TuneError
    from r1tune.train.fsdp import use_fsdp

    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    assert use_fsdp(True, 1, "NO") == (False, None)  # one process: nothing to shard over
    assert use_fsdp(True, 2, "MULTI_CPU") == (True, None)
    assert use_fsdp(False, 2, "MULTI_CPU") == (False, None)
    # accelerate launched with an FSDP config on CPU falls back to plain data parallelism: r1tune shards instead
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert use_fsdp(False, 2, "MULTI_CPU") == (True, "accelerate does not run FSDP on CPU: sharding with r1tune's "
                                                     "FSDP (train.fsdp) instead")
    assert use_fsdp(True, 2, "FSDP") == (False, None)  # on GPUs accelerate's own FSDP wraps the model
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    fsdp, note = use_fsdp(False, 2, "MULTI_CPU")
    assert not fsdp and note.startswith("accelerate does not run DeepSpeed on CPU") and "train.fsdp=true" in note
    with pytest.raises(R1TuneError, match="does not run under DeepSpeed"):  # on GPUs: refused in one line
        use_fsdp(False, 8, "DEEPSPEED")


def test_fsdp_refuses_what_it_cannot_shard(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from r1tune.errors import R1TuneError
    from r1tune.train.fsdp import shard_model, wrapping_plan

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert wrapping_plan(model) == ["model.layers.0", "model.layers.1", ""]
    with pytest.raises(R1TuneError, match="QLoRA"):
        shard_model(model, "qlora")
    with pytest.raises(R1TuneError, match="several processes"):
        shard_model(model, "lora")  # no process group in this one
