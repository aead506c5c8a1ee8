"""Scoring answers: entity/relation F1, exact match and JSON, verifiable answers, reasoning format."""

import json

from r1tune.evaluate.extraction import extraction_report, parse_structure
from r1tune.evaluate.reasoning_format import check_format
from r1tune.evaluate.structured import exact_match, extract_json, json_valid, schema_valid
from r1tune.evaluate.verifiable import final_number, verifiable_match
from r1tune.model.reasoning import split_reasoning
from r1tune.model.template import RESOURCES


def test_record_text_becomes_field_entities():
    entities, relations = parse_structure("主诉：头痛；部位：前额；伴随症状：恶心、失眠；初步建议：神经内科就诊，注意休息")
    assert entities == {("主诉", "头痛"), ("部位", "前额"), ("伴随症状", "恶心"), ("伴随症状", "失眠"),
                        ("初步建议", "神经内科就诊"), ("初步建议", "注意休息")}
    assert relations == set()
    english, _ = parse_structure("Chief complaint: Knee pain; Location: right knee.")
    assert english == {("chief complaint", "knee pain"), ("location", "right knee")}


def test_json_entities_and_relations():
    text = json.dumps({"entities": [{"type": "drug", "text": "阿司匹林"}, ["symptom", "头痛"], "发热"],
                       "relations": [{"head": "阿司匹林", "relation": "treats", "tail": "头痛"}, ["a", "b", "c"]]},
                      ensure_ascii=False)
    entities, relations = parse_structure(f"```json\n{text}\n```")
    assert entities == {("drug", "阿司匹林"), ("symptom", "头痛"), ("", "发热")}
    assert relations == {("阿司匹林", "treats", "头痛"), ("a", "b", "c")}
    assert parse_structure('{"症状": ["头痛", "发热"], "部位": "前额"}')[0] == {("症状", "头痛"), ("症状", "发热"),
                                                                          ("部位", "前额")}


def test_entity_and_relation_f1_match_a_hand_computation():
    predictions = ['{"entities": [["drug", "A"], ["drug", "B"], ["symptom", "X"]], "relations": [["A", "treats", "X"]]}',
                   "主诉：头痛；部位：前额"]
    references = ['{"entities": [["drug", "A"], ["symptom", "X"], ["symptom", "Y"]], '
                  '"relations": [["A", "treats", "X"], ["B", "treats", "Y"]]}',
                  "主诉：头痛；部位：后脑勺"]
    report = extraction_report(predictions, references)
    # entities: tp = A, X, 主诉/头痛 = 3; fp = B, 部位/前额 = 2; fn = Y, 部位/后脑勺 = 2
    assert report["entity"] == {"precision": 3 / 5, "recall": 3 / 5, "f1": 3 / 5}
    # relations: tp 1, fp 0, fn 1
    assert report["relation"]["precision"] == 1.0 and report["relation"]["recall"] == 0.5
    assert abs(report["relation"]["f1"] - 2 / 3) < 1e-12
    assert report["per_type"]["drug"]["f1"] == 2 / 3 and report["per_type"]["symptom"]["recall"] == 0.5
    assert report["entity_counts"] == [(2, 1, 1), (1, 1, 1)]


def test_exact_match_and_json():
    assert exact_match("  Positive。", "positive")
    assert exact_match("ＡＢＣ", "abc")  # full-width
    assert not exact_match("positive!", "negative")
    assert exact_match('{"b": 2, "a": [1, 2]}', '{"a": [1, 2], "b": 2}')
    assert not exact_match('{"a": 1}', '{"a": 2}')
    assert extract_json('Here it is:\n```json\n{"a": 1}\n```') == {"a": 1}
    assert extract_json('结果如下 {"症状": "头痛"} 以上') == {"症状": "头痛"}
    assert json_valid("[1, 2]") and not json_valid("not json") and not json_valid("42")
    schema = {"type": "object", "required": ["主诉"], "properties": {"主诉": {"type": "string"}}}
    assert schema_valid('{"主诉": "头痛"}', schema)
    assert not schema_valid('{"主诉": 3}', schema) and not schema_valid("no json", schema)


def test_verifiable_answers():
    assert verifiable_match("So the result is \\boxed{391}.", "391", "number")
    assert verifiable_match("答案是 1,024。", "1024", "number")
    assert verifiable_match("It is 36 inches", "36", "number") and not verifiable_match("It is 35", "36", "number")
    assert final_number("３６") == 36.0  # full-width digits
    assert verifiable_match("The capital is Paris.", "Paris", "text")
    assert verifiable_match("巴黎", "Paris", "text", aliases=["巴黎"])
    assert not verifiable_match("Parisian food", "Paris", "text")  # whole words only
    assert not verifiable_match("yes or no", "yes", "text", distractors=["no"])
    assert verifiable_match("小明比小红高，所以小刚最矮", "小刚", "text", distractors=["小明", "小红"])


def test_bundled_general_set_is_verifiable():
    rows = [json.loads(line) for line in (RESOURCES / "datasets/general/general.jsonl").read_text(encoding="utf-8").splitlines()]
    assert 40 <= len(rows) <= 60
    assert {r["lang"] for r in rows} == {"zh", "en"} and len({r["kind"] for r in rows}) >= 4
    for r in rows:  # the reference itself passes, a wrong answer does not
        assert verifiable_match(r["output"], r["output"], r["answer_type"], r["aliases"], r["distractors"]), r
        wrong = "-1" if r["answer_type"] == "number" else "不知道 I don't know"
        assert not verifiable_match(wrong, r["output"], r["answer_type"], r["aliases"], r["distractors"]), r


def test_reasoning_format_checks():
    good = check_format(split_reasoning("营收增长，利好。\n</think>\n\npositive"), "判断情感倾向", "positive")
    assert good["well_formed"] and good["language_consistent"]
    cut = check_format(split_reasoning("让我想想，营收"), "判断情感倾向", "positive")
    assert not cut["think_closed"] and not cut["answer_present"] and not cut["well_formed"]
    doubled = check_format(split_reasoning("想想。\n</think>\n</think>\n主诉：头痛"), "症状", "主诉：头痛")
    assert doubled["think_closed"] and doubled["answer_present"] and not doubled["well_formed"]
    drift = check_format(split_reasoning("The patient reports headache for three days.\n</think>\n\n主诉：头痛"),
                         "我头疼三天了", "主诉：头痛")
    assert drift["well_formed"] and drift["answer_language_consistent"] and not drift["language_consistent"]
    wrong_language = check_format(split_reasoning("头痛。\n</think>\n\nheadache"), "我头疼", "主诉：头痛")
    assert not wrong_language["answer_language_consistent"]
    number = check_format(split_reasoning("17*23\n</think>\n\n391"), "计算 17 × 23", "391")
    assert number["language_consistent"]  # numbers carry no language
