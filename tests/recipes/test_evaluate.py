"""`r1tune evaluate`: the medical-records example end to end through the CLI (tuned clearly beats base on
generation metrics), generation with several samples per prompt, and scoring predictions made elsewhere."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from r1tune.config import EvaluateConfig, FinetuneConfig, load_config
from r1tune.recipes.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[2]
MEDICAL = ROOT / "configs" / "medical-records"


def run_cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "r1tune.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_medical_records_configs_validate_and_name_their_commands():
    finetune_cfg, evaluate_cfg = MEDICAL / "finetune.yaml", MEDICAL / "evaluate.yaml"
    assert finetune_cfg.read_text(encoding="utf-8").startswith("# r1tune finetune configs/medical-records/finetune.yaml")
    assert evaluate_cfg.read_text(encoding="utf-8").startswith("# r1tune evaluate configs/medical-records/evaluate.yaml")
    ft = load_config(FinetuneConfig, finetune_cfg)
    ev = load_config(EvaluateConfig, evaluate_cfg)
    assert (ROOT / ft.data.train).exists() and (ROOT / ev.data).exists()
    assert ev.adapter == ft.out and ev.model == ft.model.name_or_path


@pytest.mark.slow
def test_medical_records_example_end_to_end(tmp_path):
    base, tuned, out = tmp_path / "base-model", tmp_path / "tuned", tmp_path / "eval"
    assert run_cli("make-tiny-model", base).returncode == 0
    # 200 of the config's 300 steps keep the test short; one thread each: steadier on a busy 2-core machine
    run = run_cli("finetune", MEDICAL / "finetune.yaml", "--model", base, "--out", tuned, "--max-steps", 200,
                  "--set", "train.threads=1")
    assert run.returncode == 0, run.stderr[-3000:]
    checkpoint = tuned / "checkpoints" / "step-000100"  # the run halfway, side by side with base and final
    run = run_cli("evaluate", MEDICAL / "evaluate.yaml", "--model", base, "--adapter", tuned, "--out", out,
                  "--compare", checkpoint, "--max-samples", 40, "--set", "generation.latency_requests=4", "--set", "bootstrap.resamples=500",
                  "--set", "generation.threads=1")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "rougeL" in run.stdout
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["task"] == "generation" and metrics["samples"] == 40
    assert metrics["systems"] == ["base", "tuned", "tuned@step-000100"]
    b, t = metrics["by_system"]["base"]["metrics"], metrics["by_system"]["tuned"]["metrics"]
    diff = metrics["comparisons"]["tuned"]["metrics"]
    for key in ("rougeL", "rouge1", "chrf", "bleu", "bertscore", "think_closed", "answer_present"):
        assert diff[key]["low"] > 0, (key, b[key], t[key], diff[key])  # clearly higher: the whole interval
        assert t[key]["low"] <= t[key]["value"] <= t[key]["high"]
    assert b["rougeL"]["value"] < 0.05 and b["think_closed"]["value"] < 0.1  # random weights: nothing usable
    assert t["rougeL"]["value"] >= 0.25 and t["chrf"]["value"] >= 15 and t["think_closed"]["value"] >= 0.5
    assert metrics["by_system"]["tuned"]["bleu_tokenize"] == "zh"
    assert metrics["by_system"]["tuned"]["adapter_merged"] is True
    # forgetting next to the gain: both models answered the bundled general set
    assert metrics["general_set"]["questions"] == 52
    assert set(metrics["forgetting"]["tuned"]) == {"gain", "general"}
    speed, latency = metrics["by_system"]["tuned"]["speed"], metrics["by_system"]["tuned"]["latency"]
    assert speed["tokens_per_s"] > 0 and speed["chars_per_s"] > 0
    assert latency["requests"] == 4 and 0 < latency["p50_s"] <= latency["p95_s"]
    assert metrics["training"]["tuned"]["eval"]  # loss curves from the run
    assert "task_completed" in t and "check:five fields" in t
    halfway = metrics["comparisons"]["tuned@step-000100"]
    assert halfway["vs"] == "base" and halfway["metrics"]["answer_present"]["diff"] > 0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") >= 7 and "Outside the domain" in html
    records = [json.loads(line) for line in (out / "predictions" / "tuned.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(records) == 40 and {"prompt", "reference", "answer", "reasoning", "scores"} <= set(records[0])
    # a checkpoint loads as the run had it at that step: its weights exactly, neither the base nor the final ones
    import torch
    from safetensors.torch import load_file

    from r1tune.model.runs import load_for_inference

    step_model, tokenizer = load_for_inference(checkpoint)
    params = dict(step_model.named_parameters())
    saved = load_file(checkpoint / "trainable.safetensors")
    assert saved and all(torch.equal(params[name], value) for name, value in saved.items())
    ids = tokenizer("主诉：头痛；部位：前额", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        halfway_logits = step_model(ids).logits
        for other in (base, tuned):
            assert not torch.allclose(halfway_logits, load_for_inference(other)[0](ids).logits)
    # and the human round trip starts from here
    run = run_cli("human-eval", "export", out, "--out", tmp_path / "human", "--n", 10)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "human" / "sheet.csv").exists() and (tmp_path / "human" / "label_studio_tasks.json").exists()


def test_several_samples_per_prompt_and_compared_runs(tiny_model_dir, tmp_path):
    cfg = EvaluateConfig(model=str(tiny_model_dir), compare=[str(tiny_model_dir)], names=["base", "same-again"],
                         data=str(ROOT / "src/r1tune/resources/datasets/medical/test.jsonl"), max_samples=6,
                         out=str(tmp_path / "eval"), metrics=["chrf", "rougeL"],
                         generation={"sampling": "r1", "num_samples": 3, "max_new_tokens": 12, "batch_size": 8,
                                     "latency_requests": 3, "seed": 5, "threads": 1},
                         general={"max_new_tokens": 6}, bootstrap={"resamples": 100})
    results = evaluate(cfg)
    assert results["draws_per_prompt"] == 3 and results["sampling"] == {"mode": "r1", "temperature": 0.6, "top_p": 0.95}
    records = [json.loads(line) for line in (tmp_path / "eval" / "predictions" / "base.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(len(r["draws"]) == 3 for r in records)
    assert len({d for r in records for d in r["draws"]}) > 6  # sampled: the draws differ
    # the same model with the same seed samples the same outputs: every difference is exactly zero
    diff = results["comparisons"]["same-again"]["metrics"]
    assert all(d["diff"] == 0 and d["low"] == 0 == d["high"] for d in diff.values())
    latency = results["by_system"]["base"]["latency"]
    assert latency["requests"] == 3 and latency["p50_s"] <= latency["p95_s"]
    assert results["by_system"]["base"]["speed"]["outputs"] == 18  # 6 prompts × 3 draws
    assert results["by_system"]["base"]["general"]["accuracy"]["value"] == 0.0  # random weights know nothing
    assert (tmp_path / "eval" / "report.html").exists()


def test_predictions_from_elsewhere_via_cli(tmp_path):
    schema = {"type": "object", "required": ["主诉", "持续时间"]}
    rows = [{"id": "a", "reference": '{"主诉": "头痛", "持续时间": "3天"}',
             "prediction": '想想。\n</think>\n\n{"持续时间": "3天", "主诉": "头痛"}', "latency_s": 0.5, "new_tokens": 20},
            {"id": "b", "reference": '{"主诉": "发热", "持续时间": "2天"}', "prediction": '{"主诉": "发热"}',
             "reasoning": "患者发热。", "latency_s": 1.5, "new_tokens": 10},
            {"id": "c", "reference": '{"主诉": "咳嗽", "持续时间": "1周"}', "prediction": "咳嗽一周",
             "latency_s": 1.0, "new_tokens": 5}]
    predictions = tmp_path / "vllm.jsonl"
    predictions.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "schema.json").write_text(json.dumps(schema), encoding="utf-8")
    run = run_cli("evaluate", "--predictions", f"vllm={predictions}", "--out", tmp_path / "eval",
                  "--set", f"json_schema={tmp_path / 'schema.json'}", timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["task"] == "structured" and metrics["general_set"] is None
    m = metrics["by_system"]["vllm"]["metrics"]
    assert m["exact_match"]["value"] == pytest.approx(1 / 3)  # key order does not matter
    assert m["json_valid"]["value"] == pytest.approx(2 / 3) and m["schema_valid"]["value"] == pytest.approx(1 / 3)
    assert m["think_closed"]["value"] == pytest.approx(2 / 3)  # a reasoning field counts as a closed block
    latency = metrics["by_system"]["vllm"]["latency"]
    assert latency["p50_s"] == 1.0 and latency["tokens_per_s"] == pytest.approx(35 / 3.0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"reference": "x"}\n', encoding="utf-8")
    run = run_cli("evaluate", "--predictions", bad, "--out", tmp_path / "bad", timeout=120)
    assert run.returncode == 2 and "bad.jsonl:1: field 'prediction': missing" in run.stderr
    # predictions and feedback logs go through the shared reader: hostile lines are file:line errors, not crashes
    hostile = {"deep": '{"reference": "x", "prediction": ' + "[" * 5000 + "]" * 5000 + "}\n",
               "nan": '{"reference": "x", "prediction": NaN}\n',
               "surrogate": '{"reference": "x", "prediction": "\\ud800"}\n'}
    for name, line in hostile.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text(line, encoding="utf-8")
        run = run_cli("evaluate", "--predictions", path, "--out", tmp_path / name, timeout=120)
        assert run.returncode == 2 and f"{name}.jsonl:1:" in run.stderr and "Traceback" not in run.stderr, run.stderr
    feedback = tmp_path / "feedback.jsonl"
    feedback.write_text('{"thumbs": "up"}\n' + '{"thumbs": ' + "[" * 5000 + "]" * 5000 + "}\n", encoding="utf-8")
    run = run_cli("evaluate", "--predictions", f"vllm={predictions}", "--out", tmp_path / "fb",
                  "--set", f"business.feedback={feedback}", timeout=120)
    assert run.returncode == 2 and "feedback.jsonl:2:" in run.stderr, run.stderr


def quick_evaluate_args(model, data, out, *extra):
    return ["evaluate", "--model", model, "--data", data, "--out", out, "--sampling", "greedy", "--batch-size", 2,
            "--set", "general.enabled=false", "--set", "generation.latency_requests=0",
            "--set", "bootstrap.resamples=10", "--set", "generation.threads=1", *extra]


def test_classification_caps_new_tokens_from_its_labels_and_shows_progress(tiny_model_dir, finsent_file, tmp_path,
                                                                           cli, tiny_tokenizer):
    data = finsent_file(6, "test")
    code, out, err = cli(*quick_evaluate_args(tiny_model_dir, data, tmp_path / "auto",
                                              "--set", "generation.reasoning_budget=8"))
    assert code == 0, err
    longest = max(len(tiny_tokenizer(label, add_special_tokens=False)["input_ids"])
                  for label in ("negative", "neutral", "positive"))
    cap = longest + 8
    assert (f"generating up to {cap} new tokens: labels ≤ {longest} tokens + 8 reasoning budget; "
            "set --max-new-tokens to change") in out
    metrics = json.loads((tmp_path / "auto" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["task"] == "classification"
    assert 0 < max(metrics["by_system"]["model"]["lengths"]["new_tokens"]) <= cap
    # not a terminal: a plain line after the first batch (with an ETA) and one at the end
    assert "  model: 2/6 prompts, " in err and ", ETA " in err
    assert "  model: 6/6 prompts, " in err and err.rstrip().endswith("elapsed, done")

    code, out, err = cli(*quick_evaluate_args(tiny_model_dir, data, tmp_path / "set", "--max-new-tokens", 5))
    assert code == 0, err
    assert "generating up to 5 new tokens: set by --max-new-tokens" in out
    metrics = json.loads((tmp_path / "set" / "metrics.json").read_text(encoding="utf-8"))
    assert max(metrics["by_system"]["model"]["lengths"]["new_tokens"]) <= 5


def test_generation_tasks_keep_the_open_cap(tiny_model_dir, tmp_path, cli):
    data = ROOT / "src/r1tune/resources/datasets/medical/test.jsonl"
    code, out, err = cli(*quick_evaluate_args(tiny_model_dir, data, tmp_path / "gen", "--max-samples", 2, "--metrics", "chrf",
                                              "--set", "generation.open_max_new_tokens=4"))
    assert code == 0, err
    assert "generating up to 4 new tokens: the generation default; set --max-new-tokens to change" in out


def test_business_checks_naming_code_need_allow_code(tiny_model_dir, finsent_file, tmp_path, cli):
    marker = tmp_path / "ran"
    checker = tmp_path / "checks.py"
    checker.write_text(f"open({str(marker)!r}, 'w').close()\n"
                       "def short(answer, sample):\n    return len(answer) < 50\n", encoding="utf-8")
    config = tmp_path / "evaluate.yaml"
    config.write_text(f"business:\n  checks:\n    - name: short\n      callable: {checker}:short\n", encoding="utf-8")
    args = quick_evaluate_args(tiny_model_dir, finsent_file(4, "test"), tmp_path / "eval", "--max-new-tokens", 4)
    code, out, err = cli(args[0], config, *args[1:])
    assert code == 2
    assert err == (f"error: business checks run Python code (check 'short' runs the file {checker} and calls "
                   "short(answer, sample)), with your permissions: pass --allow-code (or set business.allow_code: "
                   "true) if you trust it\n")
    assert out == "" and not marker.exists() and not (tmp_path / "eval").exists()  # refused before anything ran

    code, out, err = cli(args[0], config, *args[1:], "--allow-code")
    assert code == 0, err
    assert marker.exists()
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert "check:short" in metrics["by_system"]["model"]["metrics"]
