"""The finetune recipe: every method trains what it should and nothing else; resume after kill -9 is
exact; checkpoints survive a crash mid-save; NaN stops the run; the output folder is complete."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from r1tune.config import FinetuneConfig
from r1tune.errors import R1TuneError
from r1tune.recipes import finetune as recipe
from r1tune.recipes.finetune import finetune
from r1tune.train.checkpoint import complete_checkpoints
from r1tune.train.precision import resolve_precision


@pytest.fixture(scope="module")
def data_file(finsent_file):
    return finsent_file(80)


def config(model_dir, data_file, out, **train):
    method = train.pop("method", {"name": "lora"})
    base_train = dict(max_steps=12, batch_size=8, lr=5e-3, eval_every=4, save_every=4, seed=7, threads=2)
    base_train.update(train)
    return FinetuneConfig(model={"name_or_path": str(model_dir)},
                          data={"train": str(data_file), "val_split": 0.2, "max_length": 128},
                          method=method, train=base_train, out=str(out))


def train_losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["split"] == "train"]


def base_weights(model_dir) -> dict[str, torch.Tensor]:
    return load_file(Path(model_dir) / "model.safetensors")


def test_lora_trains_adapter_and_leaves_base_untouched(tiny_model_dir, data_file, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "lora"
    summary = finetune(config(tiny_model_dir, data_file, out))
    losses = train_losses(out)
    assert sum(losses[-3:]) / 3 < losses[0] - 0.3, losses
    adapter = load_file(out / "final" / "adapter_model.safetensors")
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.abs().max() > 0 for v in lora_b)  # lora_B starts at zero: it trained
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    merged_base = PeftModel.from_pretrained(base, out / "final").get_base_model().state_dict()
    for name, original in base_weights(tiny_model_dir).items():
        stem, _, leaf = name.rpartition(".")
        key = f"{stem}.base_layer.{leaf}" if f"{stem}.base_layer.{leaf}" in merged_base else name
        torch.testing.assert_close(merged_base[key], original, rtol=0, atol=0)
    prov = json.loads((out / "final" / "provenance.json").read_text())
    assert prov["template"] == "r1" and prov["method"] == "lora" and len(prov["data_hash"]) == 16
    assert prov == summary and set(prov["versions"]) >= {"torch", "transformers", "peft"}
    for f in ("config.yaml", "tokenizer.json", "chat_template.jinja", "adapter_config.json"):
        assert (out / "final" / f).exists(), f
    for f in ("loss.png", "lr.png", "metrics.jsonl", "skipped.jsonl", "config.yaml"):
        assert (out / f).exists(), f
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    assert len(evals) == 3 and {"loss", "token_accuracy"} <= set(evals[0])
    train_rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert {"loss", "lr", "grad_norm", "tokens_per_s"} <= set(train_rows[0])


def test_freeze_trains_only_top_layers(tiny_model_dir, data_file, tmp_path):
    out = tmp_path / "freeze"
    finetune(config(tiny_model_dir, data_file, out, lr=1e-3, method={"name": "freeze", "trainable_layers": 1}))
    losses = train_losses(out)
    assert sum(losses[-3:]) / 3 < losses[0], losses
    before, after = base_weights(tiny_model_dir), load_file(out / "final" / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("model.layers.1.") for k in changed), sorted(changed)[:5]
    assert any(k.startswith("model.layers.1.") and "proj" in k for k in changed)


def test_full_trains_everything(tiny_model_dir, data_file, tmp_path):
    out = tmp_path / "full"
    finetune(config(tiny_model_dir, data_file, out, lr=1e-3, method={"name": "full"}))
    losses = train_losses(out)
    assert sum(losses[-3:]) / 3 < losses[0] - 0.3, losses
    before, after = base_weights(tiny_model_dir), load_file(out / "final" / "model.safetensors")
    assert not torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])
    assert not torch.equal(before["model.layers.0.self_attn.q_proj.weight"], after["model.layers.0.self_attn.q_proj.weight"])


def run_cli(args, env=None):
    return subprocess.run([sys.executable, "-m", "r1tune.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_resume_after_kill_equals_uninterrupted_run(tiny_model_dir, data_file, tmp_path):
    args = ["finetune", "--model", str(tiny_model_dir), "--data", str(data_file), "--max-steps", "10",
            "--batch-size", "8", "--lr", "5e-3", "--save-every", "4", "--eval-every", "3", "--seed", "3",
            "--set", "method.lora_dropout=0.2", "--set", "train.threads=1", "--set", "data.max_length=128"]
    straight = run_cli(args + ["--out", str(tmp_path / "straight")])
    assert straight.returncode == 0, straight.stderr
    killed = run_cli(args + ["--out", str(tmp_path / "killed")], env={"R1TUNE_KILL_AT_STEP": "6"})
    assert killed.returncode == -9  # SIGKILL after step 6; the last checkpoint is step 4
    assert not (tmp_path / "killed" / "final").exists()
    assert [p.name for p in complete_checkpoints(tmp_path / "killed" / "checkpoints")] == ["step-000004"]
    resumed = run_cli(args + ["--out", str(tmp_path / "killed"), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(tmp_path / "straight" / "final" / "adapter_model.safetensors")
    b = load_file(tmp_path / "killed" / "final" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    steps = [json.loads(line)["step"] for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
             if '"train"' in line]
    assert steps == list(range(1, 11))  # steps 5–6 logged once, not twice


def test_crash_mid_checkpoint_keeps_the_previous_one(tiny_model_dir, data_file, tmp_path, monkeypatch):
    out = tmp_path / "crash"
    real_save = torch.save
    calls = {"n": 0}

    def crashing_save(obj, path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # second checkpoint: die after the weights, before the optimizer file is complete
            Path(path).write_bytes(b"partial")
            raise OSError("disk full (injected)")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr("r1tune.train.checkpoint.torch.save", crashing_save)
    with pytest.raises(OSError, match="injected"):
        finetune(config(tiny_model_dir, data_file, out, max_steps=12, save_every=4))
    monkeypatch.undo()
    assert [p.name for p in complete_checkpoints(out / "checkpoints")] == ["step-000004"]
    assert not (out / "checkpoints" / "step-000008").exists()
    finetune(config(tiny_model_dir, data_file, out, max_steps=12, save_every=4), resume=True)
    finetune(config(tiny_model_dir, data_file, tmp_path / "clean", max_steps=12, save_every=4))
    a = load_file(out / "final" / "adapter_model.safetensors")
    b = load_file(tmp_path / "clean" / "final" / "adapter_model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_nan_loss_stops_with_a_clear_message(tiny_model_dir, data_file, tmp_path, monkeypatch):
    real = recipe.target_loss
    calls = {"n": 0}

    def poisoned(*a, **k):
        calls["n"] += 1
        loss, n, c = real(*a, **k)
        return (loss * float("nan") if calls["n"] >= 7 else loss), n, c

    monkeypatch.setattr(recipe, "target_loss", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(R1TuneError, match=r"loss became nan at step \d+: stopped. Last good checkpoint: .*step-000004"):
        finetune(config(tiny_model_dir, data_file, out, eval_every=100, save_every=4))
    assert [p.name for p in complete_checkpoints(out / "checkpoints")] == ["step-000004"]
    assert not (out / "final").exists()


def test_refuses_to_overwrite_a_run_without_resume(tiny_model_dir, data_file, tmp_path):
    out = tmp_path / "twice"
    finetune(config(tiny_model_dir, data_file, out, max_steps=5, save_every=2))
    with pytest.raises(R1TuneError, match="--resume"):
        finetune(config(tiny_model_dir, data_file, out, max_steps=5, save_every=2))


def test_skip_mode_lists_bad_rows(tiny_model_dir, data_file, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(data_file.read_text(encoding="utf-8") + '{"instruction": "x"}\n{oops\n', encoding="utf-8")
    out = tmp_path / "skip"
    cfg = config(tiny_model_dir, bad, out, max_steps=2)
    with pytest.raises(R1TuneError, match=r"bad\.jsonl:81: field 'output': missing"):
        finetune(cfg)
    cfg.data.on_error = "skip"
    summary = finetune(cfg)
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert summary["skipped"] == 2 and [s["line"] for s in skipped] == [81, 82]


def test_peak_memory_of_a_child_is_not_its_parents_peak(tmp_path):
    """getrusage's ru_maxrss survives execve: a run started from a big pytest process would report pytest's
    peak as its own. The recipe's peak is the process image's own, counted from the baseline."""
    ballast = torch.ones(400 * 2**20 // 4)  # 400 MiB resident in this (parent) process
    ballast.add_(1)
    code = ("from r1tune.train.memory import peak_memory, process_memory; import torch; b = process_memory(); "
            "x = torch.ones(50 * 2**18); x.add_(1); print(peak_memory(b))")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak = int(child.stdout.split()[-1])
    assert 40 * 2**20 <= peak <= 150 * 2**20, peak
    del ballast


def test_token_capped_pieces_give_the_same_training(tiny_model_dir, data_file, tmp_path):
    """Splitting each micro-batch into pieces of at most N padded tokens changes memory, not the result."""
    fp32 = {"max_steps": 4, "eval_every": 100, "save_every": 100, "mixed_precision": "no",
            "method": {"name": "lora", "lora_dropout": 0.0}}  # dropout masks would follow the split
    whole, split = tmp_path / "whole", tmp_path / "split"
    finetune(config(tiny_model_dir, data_file, whole, max_micro_batch_tokens=0, **fp32))
    finetune(config(tiny_model_dir, data_file, split, max_micro_batch_tokens=100, **fp32))
    a = load_file(whole / "final" / "adapter_model.safetensors")
    b = load_file(split / "final" / "adapter_model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5
    torch.testing.assert_close(train_losses(whole), train_losses(split), rtol=1e-5, atol=1e-6)


def test_precision_auto_uses_bf16_base_on_cpus_with_native_bf16(tiny_model_dir, data_file, tmp_path, monkeypatch):
    lora = FinetuneConfig(method={"name": "lora"})
    import r1tune.model.methods as methods

    monkeypatch.setattr(methods, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision(lora) == ("auto", "no")
    monkeypatch.setattr(methods, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision(lora) == ("bfloat16", "bf16")
    assert resolve_precision(FinetuneConfig(method={"name": "full"})) == ("auto", "no")  # trained weights
    assert resolve_precision(FinetuneConfig(method={"name": "qlora"})) == ("auto", "no")  # 4-bit base
    explicit = FinetuneConfig(method={"name": "lora"}, train={"mixed_precision": "no"})
    assert resolve_precision(explicit) == ("auto", "no")

    out = tmp_path / "bf16"
    summary = finetune(config(tiny_model_dir, data_file, out, max_steps=8, eval_every=100, save_every=100))
    assert (summary["training"]["base_dtype"], summary["training"]["mixed_precision"]) == ("bfloat16", "bf16")
    adapter = load_file(out / "final" / "adapter_model.safetensors")
    assert all(v.dtype == torch.float32 for v in adapter.values())  # adapters and AdamW stay fp32
    losses = train_losses(out)
    assert sum(losses[-3:]) / 3 < losses[0] - 0.3, losses
