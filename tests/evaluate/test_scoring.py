"""Scoring a system: task detection, draws per prompt, and metric statistics that agree with direct formulas."""

import sacrebleu

from r1tune.config import EvaluateConfig
from r1tune.evaluate.classification import classification_report
from r1tune.evaluate.items import parse_prediction
from r1tune.evaluate.scoring import EvalItem, Output, ScoringOptions, detect_task, score_outputs
from r1tune.model.reasoning import split_reasoning
from r1tune.recipes.evaluate import plan_systems


def out(text: str) -> Output:
    return Output(text, split_reasoning(text))


def item(reference: str, label: str | None = None, k: int = 0) -> EvalItem:
    return EvalItem(id=str(k), messages=[{"role": "user", "content": "问"}], prompt="问", reference=reference, label=label)


def test_task_detection():
    assert detect_task([item("positive", "positive")], None) == "classification"
    assert detect_task([item('{"a": 1}'), item('{"a": 2}')], None) == "structured"
    assert detect_task([item('{"entities": [["drug", "A"]]}')], None) == "extraction"
    assert detect_task([item("主诉：头痛")], None) == "generation"


def test_macro_f1_statistics_equal_the_classification_report():
    labels = ["positive", "negative", "neutral"]
    gold = ["positive", "negative", "neutral", "positive", "neutral", "negative"]
    said = ["positive", "positive", "neutral", "no idea", "negative", "negative"]
    score = score_outputs([item(g, g, k) for k, g in enumerate(gold)], [[out(f"想。\n</think>\n\n{s}")] for s in said],
                          "classification", ["accuracy", "macro_f1"], ScoringOptions(labels=labels))
    report = classification_report([s if s in labels else None for s in said], gold, labels)
    assert abs(score.stats["macro_f1"].value - report["macro_f1"]) < 1e-12
    assert score.stats["accuracy"].value == report["accuracy"] == 0.5
    confusion = score.details["classification"]["confusion"]
    assert confusion["columns"] == [*labels, "(unparsed)"]
    assert confusion["matrix"][0] == [1, 0, 0, 1]  # positive: one right, one answer naming no label
    assert confusion["matrix"][1] == [1, 1, 0, 0]  # negative: one called positive
    assert [r["accuracy"] for r in score.items] == [1, 0, 1, 0, 0, 1]


def test_draws_average_for_mean_metrics_and_pool_for_corpus_metrics():
    items = [item("患者头痛三天", k=0), item("病人发热两天", k=1)]
    draws = [[out("x\n</think>\n\n患者头痛三天"), out("x\n</think>\n\n头痛")],
             [out("x\n</think>\n\n病人发热两天"), out("没有结束的思考")]]
    score = score_outputs(items, draws, "generation", ["rougeL", "bleu"])
    assert score.items[0]["rougeL"] == (1.0 + 2 * 2 / (2 + 6)) / 2  # exact, then 头痛 vs 6 characters
    assert score.items[1]["rougeL"] == 0.5 and score.stats["think_closed"].value == 0.75
    flat_hyps = ["患者头痛三天", "头痛", "病人发热两天", ""]
    flat_refs = ["患者头痛三天", "患者头痛三天", "病人发热两天", "病人发热两天"]
    expected = sacrebleu.corpus_bleu(flat_hyps, [flat_refs], tokenize="zh").score
    assert abs(score.stats["bleu"].value - expected) < 1e-9


def test_system_names():
    cfg = EvaluateConfig(model="m", adapter="runs/a", compare=["runs/b/final", "runs/a/checkpoints/step-000100",
                                                               "other/final"],
                         predictions=["vllm=out/v.jsonl", "out/human.jsonl"])
    names = [s.name for s in plan_systems(cfg)]
    assert names == ["base", "tuned", "b", "a@step-000100", "other", "vllm", "human"]
    assert [s.name for s in plan_systems(EvaluateConfig(model="m"))] == ["model"]
    twice = EvaluateConfig(model="m", compare=["x/final", "y/x/final"])
    assert [s.name for s in plan_systems(twice)] == ["base", "x", "x-2"]


def test_answers_left_in_an_unclosed_think_block_are_counted_apart():
    """The issue's case: the right label written straight after `<think>\\n` and never closed. It is reasoning, so
    the answer is empty and scores 0, and the count of such outputs says why."""
    items = [item("正面", "正面", k) for k in range(4)]
    outputs = [[out("正面")], [out("正面<｜end▁of▁sentence｜>")], [out("好\n</think>\n\n正面")], [out("")]]
    score = score_outputs(items, outputs, "classification", ["accuracy"], ScoringOptions(labels=["正面", "负面"]))
    assert score.stats["accuracy"].value == 0.25 and score.stats["well_formed"].value == 0.25
    assert score.stats["unclosed_think"].value == 0.75
    assert score.details["unclosed_think"] == {"count": 3, "outputs": 4, "share": 0.75}
    assert [r["unclosed_think"] for r in score.items] == [1.0, 1.0, 0.0, 1.0]
    # a bare answer from a system without a think block (a predictions file) is not an unclosed block
    bare = Output("正面", parse_prediction("正面", None))
    assert score_outputs(items[:1], [[bare]], "classification", ["accuracy"]).details["unclosed_think"]["count"] == 0
