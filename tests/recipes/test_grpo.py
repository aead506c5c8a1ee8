"""The grpo recipe end to end on CPU: a tiny model warm-started by a short SFT run learns finsent from verifiable
rewards (held-out accuracy up, format reward ≥ 0.95, `r1tune evaluate` reads the run); kill -9 and --resume give
the same final weights; an SFT run's adapter is trained on; and every bad setup stops before anything is
generated, with a message that says what to do."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import FINSENT
from r1tune.config import FinetuneConfig
from r1tune.train.checkpoint import complete_checkpoints

SFT_STEPS = 120  # full fine-tuning: sampled at R1's temperature the model is right about half the time (room to grow)


def run_cli(args, env=None):
    return subprocess.run([sys.executable, "-m", "r1tune.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


@pytest.fixture(scope="module")
def sft_run(tiny_model_dir, tmp_path_factory):
    """The SFT stage: full fine-tuning of the tiny model on finsent (zh / en / mixed news sentiment)."""
    from r1tune.recipes.finetune import finetune

    out = tmp_path_factory.mktemp("sft") / "run"
    finetune(FinetuneConfig(model={"name_or_path": str(tiny_model_dir)},
                            data={"train": str(FINSENT / "train.jsonl"), "val_split": 0.0, "max_length": 128},
                            method={"name": "full"},
                            train={"max_steps": SFT_STEPS, "batch_size": 16, "lr": 1e-3, "warmup_steps": 10,
                                   "save_every": 10_000, "eval_every": 10_000, "threads": 1, "seed": 1},
                            out=str(out)))
    return out / "final"


def grpo_args(model, out, *extra):
    return ["grpo", "--model", model, "--data", FINSENT / "train.jsonl", "--out", out, "--method", "full",
            "--reward", "accuracy,format", "--num-generations", 8, "--max-completion-length", 32,
            "--batch-size", 8, "--lr", 1e-4, "--set", "train.threads=1", *extra]


def metrics(run: Path, key: str) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r[key] for r in rows if r.get("split") == "train"]


@pytest.mark.slow
def test_grpo_lifts_held_out_accuracy_of_an_sft_start(sft_run, tmp_path, cli):
    out = tmp_path / "grpo"
    code, stdout, err = cli(*grpo_args(sft_run, out, "--max-steps", 40, "--set", "train.save_every=1000"))
    assert code == 0, err
    assert "completions start inside the reasoning" in stdout
    fmt = metrics(out, "rewards/format/mean")
    assert sum(fmt[-5:]) / 5 >= 0.95, fmt
    for key in ("loss", "reward", "reward_std", "rewards/accuracy/mean", "rewards/accuracy/std",
                "frac_reward_zero_std", "completions/clipped_ratio", "completions/mean_length", "entropy",
                "clip_ratio/region_mean", "tokens_per_s", "generation_s", "training_s"):
        assert len(metrics(out, key)) == 40, key
    assert (out / "completions.jsonl").exists() and (out / "final" / "provenance.json").exists()
    prov = json.loads((out / "final" / "provenance.json").read_text())
    assert prov["stage"] == "grpo" and prov["rewards"] == {"accuracy": 1.0, "format": 1.0}

    # held out: the finsent test split, sampled as R1 is served (temperature 0.6, top-p 0.95), 2 draws a prompt
    code, _, err = cli("evaluate", "--model", sft_run, "--compare", out, "--data", FINSENT / "test.jsonl",
                       "--out", tmp_path / "eval", "--num-samples", 2, "--set", "general.enabled=false",
                       "--set", "generation.latency_requests=0", "--set", "generation.threads=1",
                       "--set", "bootstrap.resamples=10")
    assert code == 0, err
    by_system = json.loads((tmp_path / "eval" / "metrics.json").read_text())["by_system"]
    start, after = by_system["base"]["metrics"], by_system["grpo"]["metrics"]
    assert 0.3 <= start["accuracy"]["value"] <= 0.8, start["accuracy"]  # the SFT start leaves room to improve
    assert after["accuracy"]["value"] > start["accuracy"]["value"] + 0.1, (start["accuracy"], after["accuracy"])
    assert after["well_formed"]["value"] >= 0.95


@pytest.mark.slow
def test_kill_and_resume_give_the_same_final_weights(sft_run, tmp_path):
    args = grpo_args(sft_run, None, "--max-steps", 6, "--save-every", 2, "--lr", 3e-4,
                     "--set", "grpo.num_iterations=2", "--set", "grpo.beta=0.02")
    straight = run_cli([a if a is not None else tmp_path / "straight" for a in args])
    assert straight.returncode == 0, straight.stderr
    killed_out = tmp_path / "killed"
    killed = run_cli([a if a is not None else killed_out for a in args], env={"R1TUNE_KILL_AT_STEP": "5"})
    assert killed.returncode == -9  # SIGKILL after step 5; the last checkpoint is step 4
    assert [p.name for p in complete_checkpoints(killed_out / "checkpoints")] == ["step-000002", "step-000004"]
    resumed = run_cli([a if a is not None else killed_out for a in args] + ["--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step 4" in resumed.stdout
    a = load_file(tmp_path / "straight" / "final" / "model.safetensors")
    b = load_file(killed_out / "final" / "model.safetensors")
    assert a.keys() == b.keys() and max(float((a[k] - b[k]).abs().max()) for k in a) == 0.0
    start = load_file(sft_run / "model.safetensors")
    assert any(not torch.equal(a[k], start[k]) for k in a)  # it trained: the comparison means something
    steps = [json.loads(line)["step"] for line in (killed_out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))
    kl = metrics(killed_out, "kl")
    assert abs(kl[0]) < 1e-6 and max(kl) > 1e-4  # the reference is the starting model


def test_an_sft_runs_adapter_is_trained_on(tiny_model_dir, tmp_path, cli):
    from r1tune.recipes.finetune import finetune

    sft = tmp_path / "sft-lora"
    finetune(FinetuneConfig(model={"name_or_path": str(tiny_model_dir)},
                            data={"train": str(FINSENT / "train.jsonl"), "val_split": 0.0, "max_length": 96},
                            method={"name": "lora", "lora_r": 4, "lora_alpha": 8},
                            train={"max_steps": 3, "batch_size": 4, "save_every": 100, "threads": 1}, out=str(sft)))
    out = tmp_path / "grpo-lora"
    # a user reward with variance even for a barely trained model: the completion's length in characters
    module = tmp_path / "chars.py"
    module.write_text("def chars(answers, samples):\n    return [float(len(s['completion'])) for s in samples]\n")
    # --model defaults to the adapter's base
    code, stdout, err = cli("grpo", "--adapter", sft, "--data", FINSENT / "test.jsonl", "--out", out,
                            "--reward", f"format,{module}:chars", "--allow-code", "--num-generations", 4,
                            "--max-completion-length", 8, "--batch-size", 2, "--max-steps", 2, "--lr", 1e-2,
                            "--beta", 0.1, "--save-every", 1, "--set", "train.threads=1")
    assert code == 0, err
    assert f"(adapter from {sft})" in stdout
    before = load_file(sft / "final" / "adapter_model.safetensors")
    after = load_file(out / "final" / "adapter_model.safetensors")
    assert before.keys() == after.keys()  # the same adapter (rank 4), not a new one; no reference copy saved
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert not (out / "final" / "reference").exists()
    config = (out / "final" / "config.yaml").read_text()
    assert "lora_r: 4" in config  # the adapter's method, so its checkpoints rebuild the same wrapping
    from r1tune.model.runs import load_for_inference, resolve_run

    assert resolve_run(out).base_model() == str(tiny_model_dir)
    for path in (out, out / "checkpoints" / "step-000001"):  # what evaluate, export and serve do
        model, _ = load_for_inference(path)
        assert any(".lora_A." in name for name, _ in model.named_parameters())


# ---------------------------------------------------------------- setups that stop before any generation


@pytest.fixture
def no_generation(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("generation started")

    monkeypatch.setattr("r1tune.recipes.grpo.sample_completions", refuse)


def test_a_reward_needing_a_label_the_data_lacks(tiny_model_dir, jsonl, tmp_path, cli, no_generation):
    data = jsonl(tmp_path / "p.jsonl", [{"instruction": "判断情感", "label": "positive"}, {"instruction": "没有标签"}])
    code, _, err = cli("grpo", "--model", tiny_model_dir, "--data", data, "--out", tmp_path / "o", "--reward",
                       "accuracy,format")
    assert code == 2
    assert "reward 'accuracy' needs a reference to check answers against, and 1 of 2 prompts have none" in err
    assert "p.jsonl:2" in err and "data.reference_field" in err


def test_fewer_than_two_generations(tiny_model_dir, finsent_file, tmp_path, cli, no_generation):
    code, _, err = cli("grpo", "--model", tiny_model_dir, "--data", finsent_file(8), "--out", tmp_path / "o",
                       "--num-generations", 1)
    assert code == 2 and "grpo.num_generations" in err and "needs at least 2" in err


def test_a_prompt_longer_than_the_budget(tiny_model_dir, jsonl, tmp_path, cli, no_generation):
    data = jsonl(tmp_path / "p.jsonl", [{"instruction": "短", "label": "a"}, {"instruction": "长" * 400, "label": "b"}])
    code, _, err = cli("grpo", "--model", tiny_model_dir, "--data", data, "--out", tmp_path / "o",
                       "--max-prompt-length", 64)
    assert code == 2 and "p.jsonl:2: the prompt is" in err and "longer than data.max_prompt_length (64)" in err
    code, out, err = cli("grpo", "--model", tiny_model_dir, "--data", data, "--out", tmp_path / "o2",
                         "--max-prompt-length", 64, "--set", "data.truncate=skip", "--max-steps", 1,
                         "--num-generations", 2, "--max-completion-length", 4, "--reward", "format")
    assert code == 1 and "generation started" in err  # skip: it went on, with the long prompt listed
    assert "1 longer than max_prompt_length (left out)" in out
    assert json.loads((tmp_path / "o2" / "skipped.jsonl").read_text())["prompt_tokens"] > 64


def test_an_adapter_trained_on_another_base(tiny_model_dir, tmp_path, cli, no_generation):
    from r1tune.model.tiny import make_tiny_model
    from r1tune.recipes.finetune import finetune

    sft = tmp_path / "sft"
    finetune(FinetuneConfig(model={"name_or_path": str(tiny_model_dir)},
                            data={"train": str(FINSENT / "test.jsonl"), "val_split": 0.0, "max_length": 64},
                            train={"max_steps": 1, "batch_size": 2, "threads": 1}, out=str(sft)))
    other = tmp_path / "other-base"  # the same architecture and shapes, other weights: only the content tells
    make_tiny_model(other, arch="qwen2", size="tiny", seed=1)
    code, _, err = cli("grpo", "--model", other, "--adapter", sft, "--data", FINSENT / "test.jsonl",
                       "--out", tmp_path / "o")
    assert code == 2 and f"is an adapter trained on {tiny_model_dir}, not on {other}" in err
    full = tmp_path / "full-run"
    full.mkdir()
    (full / "config.json").write_text("{}")
    code, _, err = cli("grpo", "--adapter", full, "--data", FINSENT / "test.jsonl", "--out", tmp_path / "o")
    assert code == 2 and "not a run holding an adapter (a full model: pass it as --model" in err


def test_user_rewards_need_allow_code(tiny_model_dir, finsent_file, tmp_path, cli, no_generation):
    module = tmp_path / "checks.py"
    module.write_text("import os\ndef polite(answers, samples):\n    return [1.0 for a in answers]\n")
    args = ["grpo", "--model", tiny_model_dir, "--data", finsent_file(8), "--out", tmp_path / "o",
            "--reward", f"format,{module}:polite"]
    code, _, err = cli(*args)
    assert code == 2 and f"runs the file {module} and calls polite(answers, samples)" in err and "--allow-code" in err
    code, _, err = cli(*args, "--allow-code", "--max-steps", 1, "--num-generations", 2, "--max-completion-length", 4)
    assert code == 1 and "generation started" in err  # allowed: past the checks, into generation


def test_bad_settings_are_named(tiny_model_dir, finsent_file, tmp_path, cli, no_generation):
    data = finsent_file(8)
    for args, message in ((["--reward", "acuracy"], "unknown reward 'acuracy'"),
                          (["--method", "prefix"], "grpo trains LoRA-family adapters"),
                          (["--loss-type", "bnpo"], "grpo.loss_type"),
                          (["--set", "rewards.weights.formt=2"], "weights names formt")):
        code, _, err = cli("grpo", "--model", tiny_model_dir, "--data", data, "--out", tmp_path / "o", *args)
        assert code == 2 and message in err, (args, err)


def test_stalls_are_reported_not_silent(tiny_model_dir, finsent_file, tmp_path, cli):
    """A random-init model never says eos: with a short cap every completion is cut, every group's rewards are
    equal. The run says so loudly and logs it, instead of training on zeros in silence (trl#5697)."""
    out = tmp_path / "stalled"
    code, stdout, err = cli("grpo", "--model", tiny_model_dir, "--data", finsent_file(16), "--out", out,
                            "--reward", "format,length", "--num-generations", 2, "--max-completion-length", 4,
                            "--batch-size", 2, "--max-steps", 2, "--set", "train.threads=1")
    assert code == 0, err
    assert "warning" in stdout and "100% of the completions hit max_completion_length (4 tokens)" in stdout
    assert metrics(out, "completions/clipped_ratio") == [1.0, 1.0]
    assert metrics(out, "frac_reward_zero_std") == [1.0, 1.0]
    assert metrics(out, "completions/trained") == [0, 0]  # zero-variance groups dropped: nothing to train on
    assert metrics(out, "rewards/length/mean") == [-1.0, -1.0]


@pytest.mark.slow
def test_several_processes_share_a_step(tiny_model_dir, finsent_file, tmp_path):
    """--nproc 2: each rank samples its own prompts; gradients are summed; the metrics cover every rank's
    completions."""
    module = tmp_path / "chars.py"
    module.write_text("def chars(answers, samples):\n    return [float(len(s['completion'])) for s in samples]\n")
    out = tmp_path / "two"
    done = run_cli(["grpo", "--model", tiny_model_dir, "--data", finsent_file(16), "--out", out, "--method", "full",
                    "--reward", f"format,{module}:chars", "--allow-code", "--num-generations", 3,
                    "--max-completion-length", 6, "--batch-size", 2, "--max-steps", 2, "--nproc", 2,
                    "--set", "train.threads=1"])
    assert done.returncode == 0, done.stderr
    assert "4 prompts × 3 completions" in done.stdout
    assert metrics(out, "completions/generated_tokens") == [2 * 2 * 3 * 6] * 2  # cut at 6 tokens, both ranks
    before, after = load_file(Path(tiny_model_dir) / "model.safetensors"), load_file(out / "final" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_a_fresh_adapters_reference_is_the_base_with_the_adapter_off(tiny_model_dir, finsent_file, tmp_path, cli):
    module = tmp_path / "chars.py"
    module.write_text("def chars(answers, samples):\n    return [float(len(s['completion'])) for s in samples]\n")
    out = tmp_path / "lora-kl"
    code, _, err = cli("grpo", "--model", tiny_model_dir, "--data", finsent_file(16), "--out", out,
                       "--reward", f"{module}:chars", "--allow-code", "--num-generations", 4,
                       "--max-completion-length", 6, "--batch-size", 2, "--max-steps", 3, "--lr", 5e-2,
                       "--beta", 0.1, "--set", "train.threads=1")
    assert code == 0, err
    kl = metrics(out, "kl")
    assert abs(kl[0]) < 1e-6 < kl[-1]  # LoRA starts as the base (B = 0), then moves away from it
