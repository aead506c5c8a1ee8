"""Business metrics: task completion by regex / JSON schema / a Python function, satisfaction from feedback."""

import json

import pytest

from r1tune.config import BusinessCheck
from r1tune.errors import R1TuneError
from r1tune.evaluate.business import load_callable, read_feedback, run_checks, satisfaction


def test_checks_and_task_completion(tmp_path):
    checker = tmp_path / "checks.py"
    checker.write_text("def names_the_duration(answer, sample):\n"
                       "    return sample['duration'] in answer\n", encoding="utf-8")
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["主诉"]}), encoding="utf-8")
    checks = [BusinessCheck(name="has field", regex="主诉"),
              BusinessCheck(name="json", json_schema=str(schema)),
              BusinessCheck(name="duration", callable=f"{checker}:names_the_duration")]
    answers = ['{"主诉": "头痛", "持续": "3天"}', '{"主诉": "头痛"}', "主诉：头痛，3天"]
    samples = [{"duration": "3天"}] * 3
    verdicts = run_checks(answers, samples, checks)
    assert verdicts["has field"] == [True, True, True]
    assert verdicts["json"] == [True, True, False]
    assert verdicts["duration"] == [True, False, True]
    assert verdicts["task_completed"] == [True, False, False]


def test_callable_by_module_name_and_clear_errors():
    assert load_callable("json:dumps") is json.dumps
    with pytest.raises(R1TuneError, match="module:function"):
        load_callable("no_colon")
    with pytest.raises(R1TuneError, match="has no function"):
        load_callable("json:nope")
    with pytest.raises(R1TuneError, match="give a regex"):
        run_checks(["x"], [{}], [BusinessCheck(name="empty")])


def test_feedback_log_satisfaction(tmp_path):
    log = tmp_path / "feedback.jsonl"
    rows = ([{"system": "tuned", "feedback": "up"}] * 8 + [{"system": "tuned", "thumbs": "👎"}] * 2
            + [{"system": "base", "rating": 5}, {"system": "base", "rating": 2}, {"system": "base", "rating": 4},
               {"system": "base", "rating": 1}])
    log.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    summary = satisfaction(read_feedback(log), resamples=300)
    assert summary["tuned"]["value"] == 0.8 and summary["tuned"]["n"] == 10
    assert summary["base"]["value"] == 0.5 and summary["base"]["mean_rating"] == 3.0
    assert abs(summary["overall"]["value"] - 10 / 14) < 1e-12
    assert summary["overall"]["low"] <= summary["overall"]["value"] <= summary["overall"]["high"]
    log.write_text('{"feedback": "maybe"}\n', encoding="utf-8")
    with pytest.raises(R1TuneError, match=r"feedback.jsonl:1: field 'feedback'"):
        read_feedback(log)
