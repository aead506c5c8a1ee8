"""Business metrics: task completion by regex / JSON schema / a Python function (run only when code is
allowed, refused before anything runs otherwise), satisfaction from feedback."""

import json

import pytest

from r1tune.config import BusinessCheck
from r1tune.errors import R1TuneError
from r1tune.evaluate.business import load_callable, read_feedback, require_code_allowed, run_checks, satisfaction


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
    verdicts = run_checks(answers, samples, checks, allow_code=True)
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


def test_code_runs_only_when_allowed_and_the_refusal_says_what_would_run(tmp_path):
    marker = tmp_path / "ran"
    checker = tmp_path / "checks.py"
    checker.write_text(f"open({str(marker)!r}, 'w').close()\n"
                       "def ok(answer, sample):\n    return True\n", encoding="utf-8")
    checks = [BusinessCheck(name="has field", regex="x"), BusinessCheck(name="mine", callable=f"{checker}:ok"),
              BusinessCheck(name="lib", callable="json:loads")]
    with pytest.raises(R1TuneError) as refused:
        run_checks(["x"], [{}], checks)
    message = str(refused.value)
    assert f"check 'mine' runs the file {checker} and calls ok(answer, sample)" in message
    assert "check 'lib' imports json and calls loads(answer, sample)" in message
    assert "--allow-code" in message and "business.allow_code: true" in message and "\n" not in message
    assert not marker.exists()
    require_code_allowed(checks[:1], allow_code=False)  # regex and schema checks need no permission
    assert run_checks(["x"], [{}], checks[:2], allow_code=True)["task_completed"] == [True]
    assert marker.exists()


def test_user_code_failures_are_one_line_errors(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise ValueError('bad\\nconfig')\n", encoding="utf-8")
    with pytest.raises(R1TuneError, match=r"running .*broken.py failed: ValueError: bad$"):
        run_checks(["x"], [{}], [BusinessCheck(name="b", callable=f"{broken}:f")], allow_code=True)
    raising = tmp_path / "raising.py"
    raising.write_text("def f(answer, sample):\n    return 1 / 0\n", encoding="utf-8")
    with pytest.raises(R1TuneError, match=r"business check 'r': .*raising.py:f raised ZeroDivisionError: .* \(sample s7\)"):
        run_checks(["x"], [{"id": "s7"}], [BusinessCheck(name="r", callable=f"{raising}:f")], allow_code=True)
    with pytest.raises(R1TuneError, match="file not found"):
        run_checks(["x"], [{}], [BusinessCheck(name="gone", callable=f"{tmp_path / 'gone.py'}:f")], allow_code=True)


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
