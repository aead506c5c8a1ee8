"""Raw records → training samples, each with provenance (source file, line, rule).

    r1tune prepare convert statements.csv samples.jsonl --kind structured --spec spec.yaml
    r1tune prepare convert summaries.jsonl samples.jsonl --kind semi --spec spec.yaml
    r1tune prepare convert chats.jsonl samples.jsonl --kind dialogue --spec spec.yaml

structured  JSON/CSV records (a financial statement per row) are standardised to a declared JSON schema
            (columns renamed from their aliases, numbers parsed from 3.5亿 / 1,234.5 / (1,234), then
            validated) and turned into alpaca samples by the user's templates: Python format strings
            over the standard fields, `{_json}` being the whole standardised record as JSON.
semi        key metrics are extracted from report summaries by declared regex patterns, then templated.
dialogue    question/answer records or dialogue logs become chat samples, one per valid exchange with up
            to `history` earlier exchanges as context; invalid exchanges (empty, too short, no question,
            duplicated, bot boilerplate) are dropped with the reason recorded.

A record that cannot be converted is dropped and logged with the reason (the schema error, the missing
metric, the template field it lacks): nothing disappears silently.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from r1tune.config import DialogueSpec, SemiSpec, StructuredSpec, TemplateSpec, load_section, read_yaml
from r1tune.data.io import Location, write_jsonl
from r1tune.data.numbers import parse_number
from r1tune.data.records import content_hash
from r1tune.data.steplog import StepLog, read_input
from r1tune.errors import R1TuneError

SPECS = {"structured": StructuredSpec, "semi": SemiSpec, "dialogue": DialogueSpec}
MISSING_TEXT = {"", "-", "—", "--", "n/a", "na", "null", "none", "无", "暂无", "不适用"}

USER_ROLES = {"user", "human", "customer", "client", "patient", "q", "question", "用户", "客户", "患者", "提问"}
ASSISTANT_ROLES = {"assistant", "gpt", "bot", "agent", "model", "doctor", "advisor", "a", "answer",
                   "客服", "医生", "顾问", "助手", "回答"}
QUESTION = re.compile(
    r"[?？]|吗|呢|什么|怎么|怎样|如何|为什么|为何|哪|几[个年月天次种]|多少|是否|能否|可否|可不可以|能不能|是不是|有没有|"
    r"请|帮我|帮忙|求助|想问|想知道|咨询|问一下|解释|介绍|说明|分析|计算|列出|比较|总结|翻译|推荐|建议|"
    r"(?i:\b(?:what|why|how|when|where|which|who|whom|whose|please|explain|describe|help|tell me|list|compare|"
    r"summari[sz]e|calculate|recommend|suggest|translate)\b|^\s*(?:can|could|would|will|should|is|are|do|does|did|"
    r"may|might|shall|have|has)\b)")


def load_spec(kind: str, spec: str | Path | dict | None):
    """A kind's spec from a YAML file (bare, or under a key named after the kind) or a dict."""
    if kind not in SPECS:
        raise R1TuneError(f"unknown convert kind '{kind}' (one of {', '.join(SPECS)})")
    if spec is None:
        return SPECS[kind]()
    where = "spec"
    if not isinstance(spec, dict):
        where = str(spec)
        spec = read_yaml(spec, "spec")
    if isinstance(spec.get("convert"), dict):
        spec = spec["convert"]
    if isinstance(spec.get(kind), dict):
        spec = spec[kind]
    spec = {k: v for k, v in spec.items() if k != "kind"}
    return load_section(SPECS[kind], spec, where)


# ------------------------------------------------------------------ templates

class _Fields(dict):
    def __missing__(self, key):
        raise KeyError(key)


def render_template(template: TemplateSpec, values: dict) -> dict:
    """One alpaca sample; KeyError names a field the template refers to and the record lacks."""
    fields = _Fields(values)
    sample = {"instruction": template.instruction.format_map(fields)}
    if template.input:
        sample["input"] = template.input.format_map(fields)
    sample["output"] = template.output.format_map(fields)
    if template.system:
        sample["system"] = template.system.format_map(fields)
    return sample


def _template_samples(values: dict, templates: list[TemplateSpec], loc: Location, log: StepLog, source: str):
    values = {**values, "_json": json.dumps({k: v for k, v in values.items() if not k.startswith("_")},
                                            ensure_ascii=False)}
    for template in templates:
        try:
            sample = render_template(template, values)
        except KeyError as e:
            log.dropped(f"{source} (template {template.name})", "template_field_missing",
                        f"template '{template.name}' refers to field {e}, which the record does not have")
            continue
        except (ValueError, IndexError) as e:
            log.dropped(f"{source} (template {template.name})", "template_error", f"template '{template.name}': {e}")
            continue
        sample["provenance"] = {"file": loc.file, "line": loc.line, "rule": template.name}
        yield sample


# ------------------------------------------------------------------ structured

def _types_of(prop: dict) -> list[str]:
    t = prop.get("type", [])
    return [t] if isinstance(t, str) else list(t)


def _coerce(value, prop: dict):
    """Text from a spreadsheet → the schema's type; unparseable values are kept so validation names them."""
    types = [t for t in _types_of(prop) if t != "null"]
    if isinstance(value, str) and value.strip().lower() in MISSING_TEXT:
        return None
    if not types:
        return value
    kind = types[0]
    if kind in ("number", "integer"):
        number = parse_number(value)
        if number is None:
            return value
        if number.is_integer():
            return int(number)
        return number
    if kind == "string":
        return value.strip() if isinstance(value, str) else value if value is None else str(value)
    if kind == "boolean" and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "yes", "y", "1", "是", "对"):
            return True
        if lowered in ("false", "no", "n", "0", "否", "不"):
            return False
    return value


def standardize(record: dict, spec: StructuredSpec, validator=None) -> tuple[dict | None, str | None]:
    """(standard record, None) or (None, reason)."""
    props = spec.json_schema.get("properties", {})
    names = list(props) or [k for k in record if k != "provenance"]
    for name in spec.aliases:
        if name not in names:
            names.append(name)
    std = {}
    for name in names:
        for source_name in [name, *spec.aliases.get(name, [])]:
            if source_name in record:
                value = _coerce(record[source_name], props.get(name, {}))
                if value is not None:
                    std[name] = value
                break
    if validator is not None:
        error = next(iter(sorted(validator.iter_errors(std), key=lambda e: list(e.absolute_path))), None)
        if error is not None:
            where = "/".join(map(str, error.absolute_path))
            return None, f"{where + ': ' if where else ''}{error.message}"
    return std, None


def _structured(records, spec: StructuredSpec, log: StepLog):
    validator = None
    if spec.json_schema:
        import jsonschema

        try:
            cls = jsonschema.validators.validator_for(spec.json_schema)
            cls.check_schema(spec.json_schema)
        except jsonschema.SchemaError as e:
            raise R1TuneError(f"convert spec: invalid json_schema: {e.message}") from None
        validator = cls(spec.json_schema)
    if not spec.templates:
        raise R1TuneError("convert spec: structured conversion needs at least one template")
    for loc, record in records:
        std, reason = standardize(record, spec, validator)
        if std is None:
            log.dropped(str(loc), "schema", reason)
            continue
        yield from _template_samples(std, spec.templates, loc, log, str(loc))


# ------------------------------------------------------------------ semi-structured

def extract_metrics(text: str, spec: SemiSpec) -> tuple[dict, list[str]]:
    """(metric → value, problems) from one report summary."""
    found, problems = {}, []
    for name, metric in spec.metrics.items():
        m = re.search(metric.pattern, text)
        if not m:
            if metric.required:
                problems.append(f"metric '{name}' not found")
            continue
        raw = m.group("value") if "value" in m.re.groupindex else (m.group(1) if m.re.groups else m.group())
        if metric.type == "text":
            found[name] = raw.strip()
            continue
        if metric.type == "percent":
            number = parse_number(raw.strip().rstrip("%％")) if raw.strip().endswith(("%", "％")) else parse_number(raw)
        else:
            number = parse_number(raw)
        if number is None:
            problems.append(f"metric '{name}': {raw!r} is not a number")
            continue
        found[name] = int(number) if number.is_integer() else number
    return found, problems


def _semi(records, spec: SemiSpec, log: StepLog, metric_counts: Counter):
    if not spec.metrics:
        raise R1TuneError("convert spec: semi-structured conversion needs at least one metric pattern")
    for name, metric in spec.metrics.items():
        try:
            re.compile(metric.pattern)
        except re.error as e:
            raise R1TuneError(f"convert spec: metric '{name}': invalid regex: {e}") from None
    for loc, record in records:
        text = record.get(spec.text_field)
        if not isinstance(text, str) or not text.strip():
            log.dropped(str(loc), "no_text", f"field '{spec.text_field}' is missing or empty")
            continue
        metrics, problems = extract_metrics(text, spec)
        required_missing = [p for p in problems if "not found" in p]
        if required_missing or (problems and not metrics):
            log.dropped(str(loc), "metric_missing", "; ".join(problems))
            continue
        metric_counts.update(metrics.keys())
        values = {k: record[k] for k in spec.keep if k in record} | metrics
        if not spec.templates:  # no templates: the extraction itself, with provenance
            yield {**values, "provenance": {"file": loc.file, "line": loc.line, "rule": "extract"}}
            continue
        values["_text"] = text
        yield from _template_samples(values, spec.templates, loc, log, str(loc))


# ------------------------------------------------------------------ dialogue

def _role(turn: dict) -> str | None:
    for key in ("role", "from", "speaker"):
        if key in turn:
            return str(turn[key]).strip().lower()
    return None


def _turn_text(turn: dict) -> str:
    for key in ("content", "value", "text"):
        if isinstance(turn.get(key), str):
            return turn[key]
    return ""


def is_question(text: str) -> bool:
    return bool(QUESTION.search(text))


def exchanges_of(record: dict, spec: DialogueSpec) -> tuple[list[tuple[str, str]], str | None]:
    """[(question, answer)] from a QA record or a dialogue log; consecutive turns of a speaker are joined."""
    turns = record.get(spec.turns_field)
    if isinstance(turns, list):
        merged: list[list] = []  # [role, text]
        for turn in turns:
            if not isinstance(turn, dict):
                return [], f"turn {turn!r} is not an object"
            role = _role(turn)
            if role in ("system",):
                continue
            side = "user" if role in USER_ROLES else "assistant" if role in ASSISTANT_ROLES else None
            if side is None:
                return [], (f"unknown speaker {role!r} (user: {sorted(USER_ROLES)}; "
                            f"assistant: {sorted(ASSISTANT_ROLES)})")
            text = _turn_text(turn).strip()
            if merged and merged[-1][0] == side:
                if text and text != merged[-1][1].split("\n")[-1]:  # a repeated message is sent once
                    merged[-1][1] = f"{merged[-1][1]}\n{text}" if merged[-1][1] else text
            else:
                merged.append([side, text])
        pairs, pending = [], None
        for side, text in merged:
            if side == "user":
                if pending is not None:
                    pairs.append((pending, ""))  # a question nobody answered
                pending = text
            else:
                pairs.append((pending if pending is not None else "", text))
                pending = None
        if pending is not None:
            pairs.append((pending, ""))
        return pairs, None
    if spec.question_field in record or spec.answer_field in record:
        q, a = record.get(spec.question_field), record.get(spec.answer_field)
        return [(q.strip() if isinstance(q, str) else "", a.strip() if isinstance(a, str) else "")], None
    return [], f"neither '{spec.turns_field}' nor '{spec.question_field}'/'{spec.answer_field}' found"


def exchange_problem(question: str, answer: str, spec: DialogueSpec,
                     boilerplate: list[re.Pattern]) -> tuple[str, str] | None:
    """(rule, reason) when a question/answer exchange is not a usable training example."""
    if not question.strip() or not answer.strip():
        return "empty", "no question" if not question.strip() and answer.strip() else \
            "no answer" if question.strip() else "empty question and answer"
    if len(question.strip()) < spec.min_chars or len(answer.strip()) < spec.min_chars:
        short = "question" if len(question.strip()) < spec.min_chars else "answer"
        return "too_short", f"{short} shorter than {spec.min_chars} characters"
    for pattern in boilerplate:
        if pattern.search(answer.strip()):
            return "bot_boilerplate", f"answer is bot boilerplate ({pattern.pattern!r})"
    if not is_question(question):
        return "no_question", f"no question or request in {question[:40]!r}"
    return None


def _dialogue(records, spec: DialogueSpec, log: StepLog, counts: Counter):
    try:
        boilerplate = [re.compile(p) for p in spec.boilerplate]
    except re.error as e:
        raise R1TuneError(f"convert spec: invalid boilerplate regex: {e}") from None
    seen: set[int] = set()
    for loc, record in records:
        pairs, error = exchanges_of(record, spec)
        if error:
            log.dropped(str(loc), "not_a_dialogue", error)
            continue
        rule = "dialogue" if isinstance(record.get(spec.turns_field), list) else "qa"
        history: list[dict] = []
        for k, (question, answer) in enumerate(pairs, start=1):
            counts["exchanges"] += 1
            where = f"{loc}#exchange{k}" if len(pairs) > 1 else str(loc)
            problem = exchange_problem(question, answer, spec, boilerplate)
            if problem is None:
                key = content_hash(" ".join(question.split()) + "\x00" + " ".join(answer.split()))
                if key in seen:
                    problem = ("duplicated", "the same question and answer appeared earlier")
                seen.add(key)
            if problem:
                log.dropped(where, problem[0], problem[1])
                continue
            counts["valid"] += 1
            system = [{"role": "system", "content": spec.system}] if spec.system else []
            context = history[-2 * spec.history:] if spec.history else []
            turn = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            prov = {"file": loc.file, "line": loc.line, "rule": rule}
            if len(pairs) > 1:
                prov["exchange"] = k
            yield {"messages": system + context + turn, "provenance": prov}
            history += turn


def convert_file(in_path: str | Path, out_path: str | Path, kind: str, spec=None, on_error: str = "skip") -> dict:
    """Stream IN → OUT as training samples of the given kind; `spec` is a spec object, dict or YAML path."""
    spec_file = spec if isinstance(spec, (str, Path)) else None
    if not isinstance(spec, (StructuredSpec, SemiSpec, DialogueSpec)):
        spec = load_spec(kind, spec)
    counts: Counter = Counter()
    with StepLog("convert", out_path, inputs=[in_path, spec_file]) as log:
        records = read_input(in_path, log, on_error)
        if kind == "structured":
            samples = _structured(records, spec, log)
        elif kind == "semi":
            samples = _semi(records, spec, log, counts)
        else:
            samples = _dialogue(records, spec, log, counts)
        log.written = write_jsonl(out_path, samples, log.outputs)
        log.extra["kind"] = kind
        if kind == "semi":
            log.extra["metrics_found"] = dict(counts)
        if kind == "dialogue":
            log.extra["exchanges"] = counts["exchanges"]
            log.extra["valid_exchanges"] = counts["valid"]
        return log.summary()
