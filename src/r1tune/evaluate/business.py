"""Business metrics: task completion by user-declared checks, and satisfaction from a feedback log.

    passed = run_checks(answers, samples, cfg.business.checks)   # {"check name": [True, False, …], …}
    satisfaction(read_feedback("feedback.jsonl"))               # {"overall": {"rate", "n", …}, "by_system": …}

A check is a regex the answer must contain, a JSON schema the answer must satisfy, or a Python function
named in the config (`module:function` or `path/to/file.py:function`) called as `f(answer, sample) -> bool`.
A named function is arbitrary code: checks naming one are refused unless the user allowed code
(`business.allow_code` / `--allow-code`; `require_code_allowed` says what would run). An answer completes
the task when it passes every check. A feedback log is JSONL, one line per rated
answer: thumbs (up/down, 👍/👎, true/false, 1/0) count as satisfied / not; 1–5 ratings (in a `rating` or
`score` field, or 2–5 anywhere) count 4 and 5 as satisfied and their mean is reported too.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from collections.abc import Callable
from pathlib import Path

from r1tune.data.io import read_records
from r1tune.errors import R1TuneError
from r1tune.evaluate.structured import schema_valid

FEEDBACK_FIELDS = ("feedback", "thumbs", "rating", "score", "vote")
POSITIVE = {"up", "thumbs_up", "thumbsup", "+1", "👍", "good", "positive", "yes", "true", "like", "satisfied",
            "赞", "满意"}
NEGATIVE = {"down", "thumbs_down", "thumbsdown", "-1", "👎", "bad", "negative", "no", "false", "dislike",
            "unsatisfied", "踩", "不满意"}


def load_callable(spec: str) -> Callable:
    """'package.module:function' or 'path/to/file.py:function' → the function."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise R1TuneError(f"callable '{spec}': expected 'module:function' or 'file.py:function'")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise R1TuneError(f"callable '{spec}': file not found: {path}")
        module_spec = importlib.util.spec_from_file_location(f"r1tune_user_check_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception as e:  # noqa: BLE001  (the user's file: whatever it raises is reported, not a crash)
            raise R1TuneError(f"callable '{spec}': running {path} failed: {_one_line(e)}") from None
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise R1TuneError(f"callable '{spec}': cannot import {target}: {e}") from None
        except Exception as e:  # noqa: BLE001
            raise R1TuneError(f"callable '{spec}': importing {target} failed: {_one_line(e)}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise R1TuneError(f"callable '{spec}': {target} has no function {name}")
    return function


def _one_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _schema(value: dict | str) -> dict:
    if isinstance(value, dict):
        return value
    try:
        return json.loads(Path(value).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise R1TuneError(f"json_schema '{value}': {e}") from None


def what_runs(spec: str) -> str:
    """'checks.py:f' → 'runs the file checks.py and calls f(answer, sample)', for the refusal message."""
    target, _, name = spec.rpartition(":")
    return f"{'runs the file' if target.endswith('.py') else 'imports'} {target} and calls {name}(answer, sample)"


def require_code_allowed(checks, allow_code: bool) -> None:
    """Checks naming Python code run it with the user's permissions: refused, saying what would run, unless
    the user allowed code. Called before anything is generated, and again by `run_checks`."""
    named = [c for c in checks if c.callable]
    if named and not allow_code:
        what = "; ".join(f"check '{c.name}' {what_runs(c.callable)}" for c in named)
        raise R1TuneError(f"business checks run Python code ({what}), with your permissions: pass --allow-code "
                          "(or set business.allow_code: true) if you trust it")


def make_check(check) -> Callable[[str, dict], bool]:
    """One config check (regex, json_schema and/or callable: all given must pass) → f(answer, sample)."""
    parts: list[Callable[[str, dict], bool]] = []
    if check.regex:
        try:
            pattern = re.compile(check.regex)
        except re.error as e:
            raise R1TuneError(f"business check '{check.name}': invalid regex: {e}") from None
        parts.append(lambda answer, sample: pattern.search(answer) is not None)
    if check.json_schema is not None:
        schema = _schema(check.json_schema)
        parts.append(lambda answer, sample: schema_valid(answer, schema))
    if check.callable:
        function = load_callable(check.callable)

        def call(answer: str, sample: dict) -> bool:
            try:
                return bool(function(answer, sample))
            except Exception as e:  # noqa: BLE001  (the user's function: one line naming it and the sample)
                raise R1TuneError(f"business check '{check.name}': {check.callable} raised {_one_line(e)} "
                                  f"(sample {sample.get('id', '?')})") from None

        parts.append(call)
    if not parts:
        raise R1TuneError(f"business check '{check.name}': give a regex, a json_schema or a callable")
    return lambda answer, sample: all(p(answer, sample) for p in parts)


def run_checks(answers: list[str], samples: list[dict], checks, allow_code: bool = False) -> dict[str, list[bool]]:
    """Each check's verdict per answer, plus `task_completed` (all checks passed)."""
    require_code_allowed(checks, allow_code)
    results = {check.name: [bool(f(a, s)) for a, s in zip(answers, samples)]
               for check, f in ((c, make_check(c)) for c in checks)}
    if results:
        results["task_completed"] = [all(v) for v in zip(*results.values())]
    return results


RATING_FIELDS = ("rating", "score")


def feedback_value(value, rating: bool = False) -> tuple[bool, float | None] | None:
    """(satisfied, rating if it was a 1–5 rating) from one feedback value; None when it is not feedback.

    `rating`: the field holds 1–5 ratings (rating / score), so 1 is a poor rating, not a thumbs up."""
    if isinstance(value, bool):
        return value, None
    if isinstance(value, (int, float)):
        if value in (0, 1) and not rating:
            return bool(value), None
        if 1 <= value <= 5:
            return value >= 4, float(value)
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in POSITIVE:
            return True, None
        if text in NEGATIVE:
            return False, None
        try:
            return feedback_value(float(text), rating)
        except ValueError:
            return None
    return None


def read_feedback(path: str | Path, field: str | None = None, system_field: str = "system") -> list[dict]:
    """[{"system", "satisfied", "rating"}] from a JSONL log; lines without usable feedback are an error."""
    rows = []
    for loc, record in read_records(path):  # the shared reader: bad lines stop with file:line: problem
        number = loc.line
        key = field or next((k for k in FEEDBACK_FIELDS if k in record), None)
        parsed = feedback_value(record.get(key), rating=key in RATING_FIELDS) if key else None
        if parsed is None:
            raise R1TuneError(f"{path}:{number}: field '{key or '/'.join(FEEDBACK_FIELDS)}': no thumbs up/down "
                              f"or 1–5 rating found")
        rows.append({"system": str(record.get(system_field) or record.get("model") or "all"),
                     "satisfied": parsed[0], "rating": parsed[1]})
    if not rows:
        raise R1TuneError(f"{path}: no feedback lines")
    return rows


def satisfaction(rows: list[dict], resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Satisfaction rate with a bootstrap interval, overall and per system; mean rating where 1–5 ratings exist."""
    from r1tune.evaluate.bootstrap import MetricStats, confidence_interval, resample_weights

    groups = {"overall": rows}
    systems = sorted({r["system"] for r in rows})
    if systems != ["all"]:
        groups.update({s: [r for r in rows if r["system"] == s] for s in systems})
    out = {}
    for name, group in groups.items():
        rate = MetricStats.mean("satisfaction", [r["satisfied"] for r in group])
        summary = {"n": len(group), **confidence_interval(rate, resample_weights(len(group), resamples, seed),
                                                          confidence)}
        ratings = [r["rating"] for r in group if r["rating"] is not None]
        if ratings:
            summary["mean_rating"] = sum(ratings) / len(ratings)
        out[name] = summary
    return out
