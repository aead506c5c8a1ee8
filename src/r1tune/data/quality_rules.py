"""The quality check's record-level rules: one function per rule family, run on each record by
`QualityChecker.check` (the dataset-level ones, decided at the end of the stream, are in quality_dataset_rules.py).

    problems = []
    empty_keys = count_fields(checker, record, source, required)     # counts for the dataset-level rules
    check_completeness(checker, record, source, fmt, required, empty_keys, problems)
    lkey, label = check_labels(checker, record, source, problems)     # … then answer, duplicates, truncation, …

Each record-level function reads and updates the checker's counts (`checker` is the `QualityChecker`: counts,
examples, memos and the indexes) and appends (rule, detail) pairs to `problems`; the order in which the
checker calls them is the order of the problems in the report and in problems.jsonl. `RULES` names every rule,
its section and what it checks.

The rules that depend on the records before this one (duplicates, conflicts, and the language of a short answer,
which is a class name when the file's answers are classes) are worked out per record but decided by
`QualityChecker.settle`, in file order: on one process right away, with parallel workers in the parent.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from r1tune.data.formats import split_think, to_sample
from r1tune.data.io import encode_sorted_json
from r1tune.data.lang import strip_tag
from r1tune.data.numbers import parse_number
from r1tune.data.pii import find_pii
from r1tune.data.records import (
    ASSISTANT_ROLES,
    META_KEYS,
    OUTPUT_KEYS,
    PROMPT_KEYS,
    content_hash,
    flat_text_slots,
    get_path,
    label_key,
    output_slot,
    path_str,
    prompt_slots,
)
from r1tune.errors import DataError, R1TuneError
from r1tune.model.template import ASSISTANT, BOS, EOS, THINK_CLOSE, THINK_OPEN, USER, bundled_template

RULES: dict[str, tuple[str, str]] = {
    "schema_mismatch": ("consistency", "fields differ from the dataset's usual set of fields"),
    "type_mismatch": ("consistency", "a field's type differs from its type in most records"),
    "label_not_in_set": ("consistency", "label outside the declared label set"),
    "label_variant": ("consistency", "label differs from another label only in case, width, spacing or "
                                      "surrounding punctuation"),
    "conflicting_labels": ("consistency", "the same input carries a different label in another record"),
    "conflicting_outputs": ("consistency", "the same input has a different answer in another record"),
    "exact_duplicate": ("consistency", "the same record as an earlier one (compared as `prepare dedupe` does: "
                                       "NFKC, case and whitespace aside)"),
    "duplicate_prompt": ("consistency", "the same input with the same answer and label as an earlier record"),
    "output_language": ("consistency", "answer written in another language than its prompt (not counting short "
                                       "answers that are class names)"),
    "output_format": ("consistency", "answer format (JSON or text) differs from most answers"),
    "missing_field": ("completeness", "a required field is absent"),
    "empty_field": ("completeness", "a field is empty (null, blank text, empty list)"),
    "truncated_text": ("completeness", "text looks cut off (open bracket or code block, trailing ellipsis, "
                                       "cut at a round length, answer ending mid-sentence)"),
    "rare_label": ("completeness", "records whose label has too few examples, or is a tiny share among "
                                   "frequent labels (a suspect label)"),
    "class_imbalance": ("completeness", "largest class is too many times the smallest"),
    "unreadable": ("correctness", "line cannot be read (invalid JSON or UTF-8, not an object, a bad CSV row)"),
    "format_unknown": ("correctness", "record matches no training format (alpaca, ShareGPT, messages): it cannot "
                                      "be trained on"),
    "format_invalid": ("correctness", "record cannot become a training sample"),
    "label_invalid": ("correctness", "label is null, blank, or not a single value"),
    "json_invalid": ("correctness", "answer should be JSON but does not parse"),
    "number_invalid": ("correctness", "a value in a number field (declared, or numbers in 80% of records) "
                                      "does not parse"),
    "reference_missing": ("correctness", "a reference names a field the record does not have"),
    "marker_text": ("correctness", "R1 marker text in data (role, think, bos/eos or tool marker outside an "
                                   "answer's think block): it will be tokenized as plain text, never as the marker"),
    "pii": ("personal data", "record contains personal data"),
}
SECTIONS = ("consistency", "completeness", "correctness", "personal data")
OPTIONAL_FIELDS = frozenset({"input", "system", "history", "reasoning", "reasoning_content"})  # may be empty
REQUIRED_BY_FORMAT = {"alpaca": ["instruction", "output"], "messages": ["messages"], "sharegpt": ["conversations"]}
ROUND_LENGTHS = frozenset({128, 256, 500, 512, 1000, 1024, 2000, 2048, 4000, 4096, 8000, 8192})
TERMINAL = set("。！？!?.…；;）)】]」』\"”'’》>`*~—-%0123456789") | set("}")
OPENERS, CLOSERS = "（(【[「『“{", "）)】]」』”}"
_OPENERS_RE, _CLOSERS_RE = re.compile(f"[{re.escape(OPENERS)}]"), re.compile(f"[{re.escape(CLOSERS)}]")
_FENCED_JSON = re.compile(r"^```(?:json)?\s*\n(.*)\n```\s*$", re.S)
_PROSE_PUNCT = re.compile(r"[，,。！？!?；;]|\.(?:\s|$)")
SHORT_TEXT = 64  # texts up to this length are remembered (the checker's memos): short texts are the ones that repeat
# A short answer (a class name such as `positive` or 正面) is at most this long and has at most this many words.
SHORT_ANSWER_CHARS, SHORT_ANSWER_WORDS = 32, 3
# Every R1 marker: bos, eos, roles and think from the template module, the tool markers from the bundled template.
MARKERS = tuple(sorted({BOS, EOS, USER, ASSISTANT, THINK_OPEN, THINK_CLOSE}
                       | set(re.findall(r"<｜[^｜<>]+｜>", bundled_template("r1")))))
MISMATCHED_LANGUAGES = frozenset({("zh", "en"), ("en", "zh")})


@dataclass
class Tally:
    """Count and examples of one rule."""

    count: int = 0
    examples: list = field(default_factory=list)

    def add(self, source: str, detail: str, limit: int) -> None:
        self.count += 1
        if len(self.examples) < limit:
            self.examples.append({"source": source, "detail": detail})


@dataclass(frozen=True)
class RecordLoc:
    """Stands in for io.Location so `to_sample` errors name the record's origin."""

    source: str

    def error(self, field, problem):
        return DataError(self.source, None, field, problem)

    def __str__(self) -> str:
        return self.source


# ------------------------------------------------------------------ helpers of the rules

TYPE_NAMES = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "text", list: "list",
              dict: "object"}


def type_name(value) -> str:
    name = TYPE_NAMES.get(type(value))  # the JSON types, by one lookup; subclasses below
    if name is not None:
        return name
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "text", list: "list", dict: "object"}.get(type(value), type(value).__name__)


def count_example(counter: Counter, key, examples: dict[object, list], source: str, limit: int) -> None:
    """counter[key] += 1, keeping the source in examples[key] while that holds fewer than `limit`. The examples
    of a key grow with its count, so the count before this record says whether there is room (no len())."""
    n = counter[key]
    counter[key] = n + 1
    if n < limit:
        examples[key].append(source)


def flat_prompt_and_answer(record: dict) -> tuple[str, tuple | None, object]:
    """(prompt text, answer path, answer value) of a record with no list values (so no turns): what
    `prompt_slots`, `output_slot` and `get_path` give there, without building paths."""
    prompt = "\n".join([strip_tag(value) for key in PROMPT_KEYS if isinstance(value := record.get(key), str)])
    for key in OUTPUT_KEYS:
        if key in record and not isinstance(value := record[key], (dict, list)):
            return prompt, (key,), value
    return prompt, None, None


def is_empty(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, (list, dict))
                                                                                and not value)


def plain_alpaca(record: dict) -> bool:
    """True only where `to_sample(record, loc, "alpaca")` surely succeeds, tested without building the sample:
    instruction and output non-blank text, no </think> in the output, input absent/null/text, and no system,
    history or reasoning to validate. False means "not sure": the caller runs to_sample."""
    instruction, output, extra = record.get("instruction"), record.get("output"), record.get("input")
    return (type(instruction) is str and type(output) is str and (extra is None or type(extra) is str)
            and instruction.strip() != "" and output.strip() != "" and "</think>" not in output
            and not record.get("system") and not record.get("history")
            and record.get("reasoning") in (None, "") and record.get("reasoning_content") in (None, ""))


def answer_text(value: str) -> str:
    """The final answer of an R1-style output: the part after </think>."""
    return split_think(value)[1].strip() if "</think>" in value else value.strip()


def json_body(text: str) -> str:
    m = _FENCED_JSON.match(text)
    return m.group(1) if m else text


def truncation_reason(text: str, is_answer: bool) -> str | None:
    """Why a text looks cut off, or None. Conservative: each sign alone is strong evidence."""
    stripped = text.rstrip()
    if len(stripped) < 20:
        return None
    if stripped.count("```") % 2 == 1:
        return "a code block is opened and never closed"
    if stripped.endswith(("...", "…", "……")) and not stripped.endswith(("etc...", "等...")):
        return "ends with an ellipsis"
    if stripped[-1] not in CLOSERS:  # (counted only where they can matter: two scans of the whole text)
        opened = len(_OPENERS_RE.findall(stripped))
        if opened:
            closed = len(_CLOSERS_RE.findall(stripped))
            if opened > closed:
                return f"{opened - closed} bracket(s) or quote(s) opened and not closed"
    last = stripped[-1]
    if len(text) in ROUND_LENGTHS and last not in TERMINAL:
        return f"exactly {len(text)} characters and no closing punctuation"
    if is_answer and len(stripped) >= 50 and (last.isalpha() or "\u4e00" <= last <= "\u9fff") \
            and _PROSE_PUNCT.search(stripped):  # punctuated prose that stops without a final mark
        return f"answer ends mid-sentence: …{stripped[-12:]!r}"
    return None


# Sentence punctuation and quotes around a label (`neutral??`, "positive."), after NFKC; signs (+, -) are kept.
_LABEL_PUNCT = ".,;:!?'\"()[]{}<>。、「」『』【】《》“”‘’…·"


def label_norm(label: str) -> str:
    """A label's normal form, for telling variants apart: NFKC, case folded, no spaces, no surrounding punctuation."""
    import unicodedata

    text = "".join(unicodedata.normalize("NFKC", label).casefold().split())
    return text.strip(_LABEL_PUNCT) or text


def is_short_answer(text: str) -> bool:
    """A few words at most (`positive`, `正面`, `not relevant`): what a class name looks like."""
    return len(text) <= SHORT_ANSWER_CHARS and len(text.split()) <= SHORT_ANSWER_WORDS


def outside_think_block(text: str) -> str:
    """An answer without its well-formed think block (an optional leading `<think>`, then the first `</think>`,
    as the trainer splits it): the markers that remain are text inside the data."""
    head, sep, tail = text.partition(THINK_CLOSE)
    if not sep:
        return text
    stripped = head.lstrip()
    if stripped.startswith(THINK_OPEN):
        head = stripped[len(THINK_OPEN):]
    return f"{head}\n{tail}"  # a separator, so that no marker is made across the cut


def is_answer_slot(record: dict, path: tuple, out_path: tuple | None) -> bool:
    """The trained answer, an earlier assistant turn, or the answer of an alpaca history pair."""
    if path == out_path:
        return True
    if len(path) != 3 or not isinstance(path[1], int):
        return False
    if isinstance(path[2], int):  # history: [question, answer]
        return path[2] == 1
    turn = record[path[0]][path[1]]
    return str(turn.get("role", turn.get("from", ""))) in ASSISTANT_ROLES


def compile_user_checks(checks: list) -> list[tuple]:
    """The configured user checks as (check, compiled regex or None, JSON-schema validator or None)."""
    compiled = []
    for check in checks:
        if (check.regex is None) == (check.json_schema is None):
            raise R1TuneError(f"check '{check.name}': give exactly one of regex or json_schema")
        if check.regex is not None:
            try:
                compiled.append((check, re.compile(check.regex), None))
            except re.error as e:
                raise R1TuneError(f"check '{check.name}': invalid regex: {e}") from None
        else:
            compiled.append((check, None, load_schema(check.json_schema, f"check '{check.name}'")))
    return compiled


def load_schema(schema, where: str):
    """A user check's JSON schema (inline, or a path to a .json file) as a validator."""
    if isinstance(schema, str):
        try:
            schema = json.loads(Path(schema).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise R1TuneError(f"{where}: JSON schema file not found: {schema}") from None
        except json.JSONDecodeError as e:
            raise R1TuneError(f"{where}: JSON schema file is not JSON: {e}") from None
    import jsonschema

    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
    except jsonschema.SchemaError as e:
        raise R1TuneError(f"{where}: invalid JSON schema: {e.message}") from None
    return cls(schema)


# ------------------------------------------------------------------ record-level rule families, in report order

def count_fields(checker, record: dict, source: str, required) -> list[str]:
    """One pass over the fields (r1tune's metadata excluded): the schema, each field's type and whether a short
    text parses as a number are counted for the dataset-level rules. Returns the fields that are empty."""
    limit = checker.limit
    keys = frozenset(record)
    if not META_KEYS.isdisjoint(keys):
        keys -= META_KEYS
    count_example(checker.schemas, keys, checker.schema_examples, source, limit)
    empty_keys = []
    types, type_examples, numeric = checker.types, checker.type_examples, checker.numeric
    number_fields, parses_as_number = checker.number_fields, checker.parses_as_number
    for key, value in record.items():
        if key in META_KEYS:
            continue
        t = TYPE_NAMES.get(type(value)) or type_name(value)
        if t != "null":  # null is judged as emptiness, not as a type
            counter = types[key]
            n = counter[t]
            counter[t] = n + 1
            if n < limit:  # see `count_example`
                type_examples[(key, t)].append(source)
        # short scalar values: is this a numeric column (3.5亿, 1,234.5, 12%) with some values that are not?
        if t == "text":  # exactly a str
            if 0 < len(value) <= 40 and key not in number_fields:
                stats = numeric[key]
                if parses_as_number(value):
                    stats[0] += 1
                else:
                    stats[1] += 1
                    if len(stats[2]) < limit:
                        stats[2].append((source, value))
            empty = not value.strip()
        else:
            if t == "number" and key not in number_fields:
                numeric[key][0] += 1  # parse_number reads every int and float
            empty = is_empty(value)
        if empty and (key not in OPTIONAL_FIELDS or key in required):
            empty_keys.append(key)
    return empty_keys


def check_completeness(checker, record: dict, source: str, fmt: str | None, required, empty_keys: list[str],
                       problems: list) -> None:
    """missing_field, empty_field; format_unknown and format_invalid where the record cannot become a training
    sample (counted as untrainable, with the fields of the records that match no format)."""
    for key in required:
        if key in META_KEYS or key not in record:
            problems.append(("missing_field", f"'{key}' is absent"))
    for key in empty_keys:
        problems.append(("empty_field", f"'{key}' is empty"))
    if fmt is None:
        fields = tuple(key for key in record if key not in META_KEYS)
        checker.untrainable += 1
        checker.unknown_fields[fields] += 1
        problems.append(("format_unknown", f"fields {', '.join(fields) or '(none)'}: no 'messages', "
                                           "'conversations' or 'instruction'/'output'"))
    elif not (fmt == "alpaca" and plain_alpaca(record)):
        try:
            to_sample(record, RecordLoc(source), fmt)
        except DataError as e:
            checker.untrainable += 1
            problems.append(("format_invalid", f"{e.field + ': ' if e.field else ''}{e.problem}"))


def check_labels(checker, record: dict, source: str, problems: list) -> tuple[str | None, str | None]:
    """label_invalid and label_not_in_set, counting each label. Returns (label field, the label as JSON text as
    conflicts compare it, None when empty)."""
    lkey = label_key(record, checker.label_field)
    label = None
    if lkey is not None:
        if lkey not in record:
            problems.append(("missing_field", f"label field '{lkey}' is absent"))
        elif type(raw := record[lkey]) is str and raw.strip():  # the common case: one text label
            count_label(checker, raw, source, problems)
            label = checker.label_json(raw) if len(raw) <= SHORT_TEXT else encode_sorted_json(raw)
        else:
            values = raw if isinstance(raw, list) and raw and all(isinstance(v, (str, int)) for v in raw) else [raw]
            for value in values:
                if value is None or isinstance(value, (dict, list, bool)) or (isinstance(value, str)
                                                                              and not value.strip()):
                    problems.append(("label_invalid", f"label {value!r}"))
                    continue
                count_label(checker, str(value), source, problems)
            label = encode_sorted_json(raw) if not is_empty(raw) else None
    return lkey, label


def count_label(checker, value: str, source: str, problems: list) -> None:
    count_example(checker.label_counts, value, checker.label_examples, source, checker.limit)
    if checker.labels is not None and value not in checker.labels:
        problems.append(("label_not_in_set", f"label '{value}' is not one of {checker.declared_labels}"))


def prompt_and_answer(record: dict) -> tuple[str, tuple | None, str | None, list | None]:
    """(prompt text, answer path, final answer text or None, text slots of a record without lists or None)."""
    texts = flat_text_slots(record)  # None: the record has lists (turns, history), `text_slots` walks them
    if texts is not None:  # no lists, so no turns: the slots are top-level fields
        prompt, out_path, answer = flat_prompt_and_answer(record)
    else:
        prompt = "\n".join([strip_tag(str(get_path(record, p))) for p in prompt_slots(record)])
        out_path = output_slot(record)
        answer = get_path(record, out_path) if out_path else None
    return prompt, out_path, answer_text(answer) if isinstance(answer, str) else None, texts


def check_answer(checker, record: dict, source: str, prompt: str, answer: str | None,
                 lkey: str | None, problems: list) -> tuple[str | None, str | None]:
    """Languages of prompt and answer, and the answer's format (json_invalid; JSON or text counted for
    output_format). Returns what `settle` decides output_language on: (the answer when it is short and the record
    has no label field, for the file's classes; what is wrong with its language, or None)."""
    prompt_lang = checker.text_language(prompt) if prompt else None
    if prompt_lang:
        checker.prompt_langs[prompt_lang] += 1
    if not answer:
        return None, None
    body = json_body(answer)
    parsed_ok = False
    if body[:1] in ("{", "[") or checker.json_output == "always":
        try:
            json.loads(body)
            parsed_ok = True
        except json.JSONDecodeError as e:
            if checker.json_output != "never":
                problems.append(("json_invalid", f"{e.msg} at line {e.lineno} column {e.colno}"))
    kind = "json" if parsed_ok else "text"
    count_example(checker.output_formats, kind, checker.format_examples, source, checker.limit)
    # language of prose answers only: JSON keys and class names are not prose
    is_label = lkey is not None and answer == str(record.get(lkey))
    short = None
    if not parsed_ok and not is_label:
        if lkey is None:
            checker.unlabelled_answers += 1
        if is_short_answer(answer):  # a class name where the record has a label field or the label set names it
            if lkey is not None:
                is_label = True
            else:  # counted for the file's classes (see `settle` and `answer_classes`)
                short = answer
                is_label = checker.labels is not None and answer in checker.labels
    if not parsed_ok and not is_label:
        answer_lang = checker.text_language(answer)
        checker.output_langs[answer_lang] += 1
        if (prompt_lang, answer_lang) in MISMATCHED_LANGUAGES:
            return short, f"prompt is {prompt_lang}, answer is {answer_lang}"
    return short, None


def record_keys(checker, record: dict) -> tuple[int, int]:
    """(record key, prompt key): `dedup.exact_key` of the record (what `prepare dedupe` calls the same record), and
    the hash of its prompt's texts (language tags stripped), 0 for none, both normalised by dedup's
    `normalize_for_hash`. A record without lists or objects has each text normalised once, for both keys."""
    normalize, short, long = checker.normalize_text, checker.normalized_short, checker.normalized_long
    content: dict | None = {}
    for key, value in record.items():  # dedup's `_normalized(content_of(record))`, for a flat record
        if key in META_KEYS:
            continue
        if isinstance(value, str):
            content[key] = short(value) if len(value) <= SHORT_TEXT else long(value)  # `normalize`, inlined
        elif isinstance(value, (dict, list)):
            content = None
            break
        else:
            content[key] = value
    if content is not None:
        record_key = content_hash(checker.encode_sorted(content))
        parts = [content[key] if value[:1] != "[" else normalize(strip_tag(value))
                 for key in PROMPT_KEYS if isinstance(value := record.get(key), str)]
    else:
        record_key = checker.exact_key(record)
        parts = [normalize(strip_tag(str(get_path(record, path)))) for path in prompt_slots(record)]
    prompt = " ".join([part for part in parts if part])
    return record_key, content_hash(prompt) if prompt else 0


def check_duplicates(checker, record: dict, answer: str | None, label: str | None,
                     language: tuple[str | None, str | None], problems: list) -> None:
    """exact_duplicate, duplicate_prompt, conflicting_labels / conflicting_outputs (the same prompt with the
    same or another answer or label), with the answer's language: the record's keys, for `settle` to decide
    (`checker.deferred`, its problems going in at this place)."""
    record_key, prompt_key = record_keys(checker, record)
    answer_hash = checker.text_hash(answer) if answer else 0
    label_hash = checker.text_hash(label) if label is not None else 0
    checker.deferred = (len(problems), record_key, prompt_key, label_hash, answer_hash, label, *language)


def check_truncation(checker, texts: list, out_path: tuple | None, problems: list) -> None:
    """truncated_text on every text, mid-sentence only for the answer."""
    for path, text in texts:
        if len(text) < 20:  # too short to judge: truncation_reason says None
            continue
        is_answer = out_path is not None and path == out_path
        if len(text) <= SHORT_TEXT:
            reason = (checker.answer_truncation if is_answer else checker.truncation)(text)
        else:
            reason = truncation_reason(text, is_answer)
        if reason:
            problems.append(("truncated_text", f"{path_str(path)}: {reason}"))


def check_markers(record: dict, texts: list, out_path: tuple | None, problems: list) -> None:
    """marker_text: an R1 marker written inside a text (outside an answer's own think block)."""
    for path, text in texts:
        if "<" not in text or ("｜" not in text and "think>" not in text):  # every marker has '<' and one of these
            continue
        if is_answer_slot(record, path, out_path):
            text = outside_think_block(text)
        found = [marker for marker in MARKERS if marker in text]
        if found:
            problems.append(("marker_text", f"{path_str(path)}: {', '.join(found)}"))


def check_declared(checker, record: dict, answer: str | None, problems: list) -> None:
    """Number fields, reference fields and user checks, where the configuration declares any."""
    for key in checker.cfg.number_fields:
        value = record.get(key)
        if key in record and not is_empty(value) and parse_number(value) is None:
            problems.append(("number_invalid", f"'{key}' = {value!r}"))
    for key in checker.cfg.reference_fields:
        refs = record.get(key)
        for ref in (refs if isinstance(refs, list) else [refs] if refs is not None else []):
            if str(ref) not in record:
                problems.append(("reference_missing", f"'{key}' refers to '{ref}', which is not a field"))
    for check, regex, validator in checker.user_checks:
        user_check(check, regex, validator, record.get(check.field) if check.field else answer, problems)


def user_check(check, regex, validator, value, problems: list) -> None:
    rule = f"user:{check.name}"
    if value is None:
        problems.append((rule, f"no '{check.field or 'answer'}' to check"))
    elif regex is not None:
        if not regex.search(str(value)):
            problems.append((rule, f"does not match {check.regex!r}"))
    else:
        try:
            data = json.loads(json_body(value)) if isinstance(value, str) else value
        except json.JSONDecodeError as e:
            problems.append((rule, f"not JSON: {e.msg}"))
        else:
            error = next(iter(validator.iter_errors(data)), None)
            if error is not None:
                where = "/".join(map(str, error.absolute_path)) or "(root)"
                problems.append((rule, f"{where}: {error.message}"))


def check_pii(checker, record: dict, texts: list, problems: list, no_pii: frozenset = frozenset()) -> None:
    """Personal data still present in any text (counts per kind); `no_pii`: texts a scan cleared of it."""
    names = [str(record[f]) for f in checker.pii_name_fields if isinstance(record.get(f), str)]
    found: list[str] = []  # kinds, in order of appearance
    for _, text in texts:
        if text in no_pii:
            continue
        if not names and len(text) <= SHORT_TEXT:
            found += checker.pii_kinds_of(text)
        else:
            found += [m.kind for m in find_pii(text, checker.pii_kinds_checked, checker.pii_patterns, names)]
    if found:
        counts = Counter(found)
        checker.pii_kinds.update(counts)
        problems.append(("pii", ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))))
