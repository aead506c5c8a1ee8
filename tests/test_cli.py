"""The command-line contract: flags without YAML, --set for any key, one-line errors, --debug tracebacks."""

import json
import os
import subprocess
import sys


def r1tune(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "r1tune.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_bad_data_is_one_line_on_stderr_without_traceback(tiny_model_dir, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"instruction": "q", "output": "a"}\n{"instruction": "q", "output": 5}\n', encoding="utf-8")
    run = r1tune("finetune", "--model", tiny_model_dir, "--data", data, "--out", tmp_path / "o", "--max-steps", 1)
    assert run.returncode == 2
    assert f"error: {data}:2: field 'output': wrong type: expected text, got int" in run.stderr
    assert "Traceback" not in run.stderr
    debug = r1tune("finetune", "--model", tiny_model_dir, "--data", data, "--out", tmp_path / "o", "--debug")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_unknown_config_key_and_bad_value_are_named(tiny_model_dir, tmp_path):
    run = r1tune("finetune", "--model", tiny_model_dir, "--set", "train.learning_rate=1")
    assert run.returncode == 2 and "train.learning_rate" in run.stderr and "Extra inputs" in run.stderr
    run = r1tune("finetune", "--model", tiny_model_dir, "--method", "magic")
    assert run.returncode == 2 and "method.name" in run.stderr


def test_yaml_config_with_overrides(tiny_model_dir, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(12)))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"model: {{name_or_path: {tiny_model_dir}}}\ndata: {{train: {data}}}\n"
                   f"train: {{max_steps: 50, batch_size: 2}}\nout: {tmp_path / 'o'}\n")
    run = r1tune("finetune", cfg, "--max-steps", 2, "--set", "train.weight_decay=0.0")
    assert run.returncode == 0, run.stderr
    resolved = (tmp_path / "o" / "final" / "config.yaml").read_text()
    assert "max_steps: 2" in resolved and "weight_decay: 0.0" in resolved


def test_render_text_train_and_ids(tiny_model_dir, tmp_path):
    msgs = tmp_path / "m.json"
    msgs.write_text(json.dumps([{"role": "user", "content": "营收3.5亿元？"},
                                {"role": "assistant", "content": "<think>\n看增速\n</think>\n\n利好"}], ensure_ascii=False))
    infer = r1tune("render", "--model", tiny_model_dir, "--messages", msgs)
    assert infer.returncode == 0 and "<｜Assistant｜>\n\n利好<｜end▁of▁sentence｜>" in infer.stdout  # stock template
    train = r1tune("render", "--model", tiny_model_dir, "--messages", msgs, "--train")
    assert "<｜Assistant｜><think>\n看增速\n</think>\n\n利好<｜end▁of▁sentence｜>" in train.stdout
    ids = r1tune("render", "--model", tiny_model_dir, "--messages", msgs, "--train", "--ids")
    rows = [line.split("\t") for line in ids.stdout.splitlines()[1:-1]]
    assert rows[-1][2] == "1" and "end▁of▁sentence" in rows[-1][3]  # eos trained
    assert rows[0][2] == "0" and "bos count 1" in ids.stdout.splitlines()[-1]


def test_make_tiny_model_cli(tmp_path):
    run = r1tune("make-tiny-model", tmp_path / "m", "--arch", "llama")
    assert run.returncode == 0 and (tmp_path / "m" / "model.safetensors").exists()
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == "llama"
    bad = r1tune("make-tiny-model", tmp_path / "x", "--arch", "gpt2")
    assert bad.returncode == 2 and "--arch must be qwen2 or llama" in bad.stderr
