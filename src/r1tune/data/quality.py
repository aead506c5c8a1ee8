"""The quality report: consistency, completeness and correctness of a dataset, in numbers and examples.

    r1tune prepare check data.jsonl --out report/      # report/quality.json, report/report.md, report/problems.jsonl
    report = check_file("data.jsonl", "report/", CheckConfig(labels=["正面", "负面"], thresholds={"any": 0.05}))

One streaming pass (memory: about 40 bytes per distinct prompt, never the text, plus fixed-size memos of short
texts that repeat, such as labels). Rules:

  consistency   schema_mismatch, type_mismatch, label_not_in_set, label_variant, conflicting_labels,
                conflicting_outputs, output_language, output_format
  completeness  missing_field, empty_field, truncated_text, rare_label, class_imbalance
  correctness   label_invalid, format_invalid, json_invalid, number_invalid, reference_missing,
                user:<name> (regex or JSON schema)
  personal data pii (counts per kind)

`quality.json` is the machine-readable report; `report.md` the readable one (counts, a per-rule table,
examples of each problem); `problems.jsonl` lists every flagged record with its rules. A configured
threshold that is crossed sets `passed: false` and the command exits non-zero.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from r1tune.config import CheckConfig, PiiConfig
from r1tune.data.clean import parse_number
from r1tune.data.formats import detect_format, split_think, to_sample
from r1tune.data.hashindex import HashIndex, SourceTable
from r1tune.data.io import encode_sorted_json
from r1tune.data.lang import detect_language, strip_tag
from r1tune.data.parallel import chunk_results, workers_for
from r1tune.data.pii import compile_patterns, find_pii
from r1tune.data.records import (
    META_KEYS,
    OUTPUT_KEYS,
    PROMPT_KEYS,
    content_hash,
    flat_text_slots,
    get_path,
    label_key,
    origin,
    output_slot,
    path_str,
    prompt_slots,
    text_slots,
)
from r1tune.data.steplog import StepLog, read_input, read_input_lines
from r1tune.errors import DataError, R1TuneError

RULES: dict[str, tuple[str, str]] = {
    "schema_mismatch": ("consistency", "fields differ from the dataset's usual set of fields"),
    "type_mismatch": ("consistency", "a field's type differs from its type in most records"),
    "label_not_in_set": ("consistency", "label outside the declared label set"),
    "label_variant": ("consistency", "label differs from another label only in case, width or spacing"),
    "conflicting_labels": ("consistency", "the same input carries a different label in another record"),
    "conflicting_outputs": ("consistency", "the same input has a different answer in another record"),
    "output_language": ("consistency", "answer written in another language than its prompt"),
    "output_format": ("consistency", "answer format (JSON or text) differs from most answers"),
    "missing_field": ("completeness", "a required field is absent"),
    "empty_field": ("completeness", "a field is empty (null, blank text, empty list)"),
    "truncated_text": ("completeness", "text looks cut off (open bracket or code block, trailing ellipsis, "
                                       "cut at a round length, answer ending mid-sentence)"),
    "rare_label": ("completeness", "records whose label has too few examples"),
    "class_imbalance": ("completeness", "largest class is too many times the smallest"),
    "label_invalid": ("correctness", "label is null, blank, or not a single value"),
    "format_invalid": ("correctness", "record cannot become a training sample"),
    "json_invalid": ("correctness", "answer should be JSON but does not parse"),
    "number_invalid": ("correctness", "a value in a number field (declared, or numbers in 80% of records) "
                                      "does not parse"),
    "reference_missing": ("correctness", "a reference names a field the record does not have"),
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
SHORT_TEXT = 64  # texts up to this length are remembered (see _memo): short texts are the ones that repeat
# Bounded for a stream of any length: a full memo holds about 4096 × SHORT_TEXT characters.
_memo = lru_cache(maxsize=4096)


@dataclass
class Tally:
    """Count and examples of one rule."""

    count: int = 0
    examples: list = field(default_factory=list)

    def add(self, source: str, detail: str, limit: int) -> None:
        self.count += 1
        if len(self.examples) < limit:
            self.examples.append({"source": source, "detail": detail})


_TYPE_NAMES = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "text", list: "list",
               dict: "object"}


def _type_name(value) -> str:
    name = _TYPE_NAMES.get(type(value))  # the JSON types, by one lookup; subclasses below
    if name is not None:
        return name
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "text", list: "list", dict: "object"}.get(type(value), type(value).__name__)


def _count(counter: Counter, key, examples: dict[object, list], source: str, limit: int) -> None:
    """counter[key] += 1, keeping the source in examples[key] while that holds fewer than `limit`. The examples
    of a key grow with its count, so the count before this record says whether there is room (no len())."""
    n = counter[key]
    counter[key] = n + 1
    if n < limit:
        examples[key].append(source)


def _flat_prompt_and_answer(record: dict) -> tuple[str, tuple | None, object]:
    """(prompt text, answer path, answer value) of a record with no list values (so no turns): what
    `prompt_slots`, `output_slot` and `get_path` give there, without building paths."""
    prompt = "\n".join([strip_tag(value) for key in PROMPT_KEYS if isinstance(value := record.get(key), str)])
    for key in OUTPUT_KEYS:
        if key in record and not isinstance(value := record[key], (dict, list)):
            return prompt, (key,), value
    return prompt, None, None


def _is_empty(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, (list, dict))
                                                                                and not value)


def _plain_alpaca(record: dict) -> bool:
    """True only where `to_sample(record, loc, "alpaca")` surely succeeds, tested without building the sample:
    instruction and output non-blank text, no </think> in the output, input absent/null/text, and no system,
    history or reasoning to validate. False means "not sure": the caller runs to_sample."""
    instruction, output, extra = record.get("instruction"), record.get("output"), record.get("input")
    return (type(instruction) is str and type(output) is str and (extra is None or type(extra) is str)
            and instruction.strip() != "" and output.strip() != "" and "</think>" not in output
            and not record.get("system") and not record.get("history")
            and record.get("reasoning") in (None, "") and record.get("reasoning_content") in (None, ""))


def _answer_text(value: str) -> str:
    """The final answer of an R1-style output: the part after </think>."""
    return split_think(value)[1].strip() if "</think>" in value else value.strip()


def _json_body(text: str) -> str:
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


def _label_norm(label: str) -> str:
    import unicodedata

    return "".join(unicodedata.normalize("NFKC", label).casefold().split())


def _load_schema(schema, where: str):
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


class QualityChecker:
    """Accumulates the report over a stream of records; `report()` gives the result.

    A class because the state is real: counts, examples and the per-input label index grow as records
    stream past, and the dataset-level rules (schema, types, formats, balance) are decided at the end.
    """

    def __init__(self, config: CheckConfig | None = None, pii: PiiConfig | None = None, input_name: str = "",
                 defer_conflicts: bool = False):
        self.cfg = config or CheckConfig()
        self.pii_cfg = pii or PiiConfig()
        self.input_name = input_name
        self.limit = self.cfg.examples
        self.records = 0
        self.flagged_records = 0
        self.tallies: dict[str, Tally] = defaultdict(Tally)
        self.schemas: Counter = Counter()
        self.schema_examples: dict[frozenset, list[str]] = defaultdict(list)
        self.types: dict[str, Counter] = defaultdict(Counter)
        self.numeric: dict[str, list] = defaultdict(lambda: [0, 0, []])  # field → [parsed, not parsed, examples]
        self.type_examples: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.label_counts: Counter = Counter()
        self.label_examples: dict[str, list[str]] = defaultdict(list)
        self.output_formats: Counter = Counter()
        self.format_examples: dict[str, list[str]] = defaultdict(list)
        self.prompt_langs: Counter = Counter()
        self.output_langs: Counter = Counter()
        self.pii_kinds: Counter = Counter()
        # prompt hash → (label hash, answer hash, packed source): ~40 bytes per distinct prompt
        self.seen_inputs = HashIndex(columns=3)
        self.sources = SourceTable()
        self.label_text: dict[int, str] = {}
        # A parallel worker leaves conflicts to the parent: `check` keeps (position, prompt key, label hash,
        # answer hash, label) of the last record in deferred_conflict, and the parent calls `resolve`.
        self.defer_conflicts = defer_conflicts
        self.deferred_conflict: tuple | None = None
        self.labels = set(self.cfg.labels) if self.cfg.labels is not None else None
        self.rules = dict(RULES)
        self.user_checks = []
        for check in self.cfg.checks:
            if (check.regex is None) == (check.json_schema is None):
                raise R1TuneError(f"check '{check.name}': give exactly one of regex or json_schema")
            self.rules[f"user:{check.name}"] = ("correctness", f"user check: {check.regex or 'JSON schema'}")
            if check.regex is not None:
                try:
                    self.user_checks.append((check, re.compile(check.regex), None))
                except re.error as e:
                    raise R1TuneError(f"check '{check.name}': invalid regex: {e}") from None
            else:
                self.user_checks.append((check, None, _load_schema(check.json_schema, f"check '{check.name}'")))
        known = set(self.rules) | {"any"}
        unknown = [k for k in self.cfg.thresholds if k not in known]
        if unknown:
            raise R1TuneError(f"check.thresholds: unknown rule(s) {unknown}; rules are {sorted(known)}")
        self.pii_patterns = compile_patterns([p.model_dump() for p in self.pii_cfg.patterns])
        # settings read for every record, looked up once
        self.required_fields = self.cfg.required_fields
        self.number_fields = frozenset(self.cfg.number_fields)
        self.label_field = self.cfg.label_field
        self.json_output = self.cfg.json_output
        self.declared_labels = sorted(self.labels) if self.labels is not None else None
        self.declared_checks = bool(self.cfg.number_fields or self.cfg.reference_fields or self.user_checks)
        # results that depend on a short text alone, for the texts that repeat (labels, answers, instructions)
        self._parses_as_number = _memo(lambda text: parse_number(text) is not None)
        self._label_json = _memo(encode_sorted_json)
        self._hashes = _memo(content_hash)
        self._languages = _memo(lambda text: detect_language(text)["lang"])
        self._truncation = _memo(lambda text: truncation_reason(text, is_answer=False))
        self._answer_truncation = _memo(lambda text: truncation_reason(text, is_answer=True))
        self.pii_kinds_checked, self.pii_name_fields = self.pii_cfg.kinds, self.pii_cfg.name_fields
        kinds, patterns = self.pii_kinds_checked, self.pii_patterns
        self._pii_kinds = _memo(lambda text: tuple(m.kind for m in find_pii(text, kinds, patterns)))  # no names

    # -------------------------------------------------------------- per record

    def add(self, record: dict, source: str) -> list[dict]:
        """Check one record; returns its problems [{rule, detail}] (dataset-level rules come at the end)."""
        return [{"rule": rule, "detail": detail} for rule, detail in self.check(record, source)]

    def check(self, record: dict, source: str) -> list[tuple[str, str]]:
        """`add`, as (rule, detail) pairs in the order found."""
        self.records += 1
        self.deferred_conflict = None
        problems: list[tuple[str, str]] = []
        try:
            self._check_record(record, source, problems)
        finally:  # tallied even where a check raises (a value JSON cannot encode): a caller may go on
            tallies, limit = self.tallies, self.limit
            for rule, detail in problems:
                tallies[rule].add(source, detail, limit)
        if problems:
            self.flagged_records += 1
        return problems

    def _check_record(self, record: dict, source: str, problems: list[tuple[str, str]]) -> None:
        """The record-level rules: updates the dataset counts and appends (rule, detail) in report order."""
        limit = self.limit
        # One pass over the fields (r1tune's metadata excluded): schema, types, numeric columns, emptiness.
        fmt = detect_format(record)
        required = self.required_fields if self.required_fields is not None else REQUIRED_BY_FORMAT.get(fmt, [])
        keys = frozenset(record)
        if not META_KEYS.isdisjoint(keys):
            keys -= META_KEYS
        _count(self.schemas, keys, self.schema_examples, source, limit)
        empty_keys = []
        types, type_examples, numeric, number_fields = self.types, self.type_examples, self.numeric, self.number_fields
        parses_as_number = self._parses_as_number
        for key, value in record.items():
            if key in META_KEYS:
                continue
            t = _TYPE_NAMES.get(type(value)) or _type_name(value)
            if t != "null":  # null is judged as emptiness, not as a type
                counter = types[key]
                n = counter[t]
                counter[t] = n + 1
                if n < limit:  # see `_count`
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
                empty = _is_empty(value)
            if empty and (key not in OPTIONAL_FIELDS or key in required):
                empty_keys.append(key)

        # completeness: required, empty
        for key in required:
            if key in META_KEYS or key not in record:
                problems.append(("missing_field", f"'{key}' is absent"))
        for key in empty_keys:
            problems.append(("empty_field", f"'{key}' is empty"))
        if fmt is not None and not (fmt == "alpaca" and _plain_alpaca(record)):
            try:
                to_sample(record, _Loc(source), fmt)
            except DataError as e:
                problems.append(("format_invalid", f"{e.field + ': ' if e.field else ''}{e.problem}"))

        # labels
        lkey = label_key(record, self.label_field)
        label = None  # the label as JSON text, as conflicts compare it; None when empty
        if lkey is not None:
            if lkey not in record:
                problems.append(("missing_field", f"label field '{lkey}' is absent"))
            elif type(raw := record[lkey]) is str and raw.strip():  # the common case: one text label
                self._count_label(raw, source, problems)
                label = self._label_json(raw) if len(raw) <= SHORT_TEXT else encode_sorted_json(raw)
            else:
                values = raw if isinstance(raw, list) and raw and all(isinstance(v, (str, int)) for v in raw) else [raw]
                for value in values:
                    if value is None or isinstance(value, (dict, list, bool)) or (isinstance(value, str)
                                                                                  and not value.strip()):
                        problems.append(("label_invalid", f"label {value!r}"))
                        continue
                    self._count_label(str(value), source, problems)
                label = encode_sorted_json(raw) if not _is_empty(raw) else None

        # prompt and answer
        texts = flat_text_slots(record)  # None: the record has lists (turns, history), `text_slots` walks them
        if texts is not None:  # no lists, so no turns: the slots are top-level fields
            prompt, out_path, answer = _flat_prompt_and_answer(record)
        else:
            prompt = "\n".join([strip_tag(str(get_path(record, p))) for p in prompt_slots(record)])
            out_path = output_slot(record)
            answer = get_path(record, out_path) if out_path else None
        answer = _answer_text(answer) if isinstance(answer, str) else None

        prompt_lang = self._language(prompt) if prompt else None
        if prompt_lang:
            self.prompt_langs[prompt_lang] += 1
        if answer:
            body = _json_body(answer)
            parsed_ok = False
            if body[:1] in ("{", "[") or self.json_output == "always":
                try:
                    json.loads(body)
                    parsed_ok = True
                except json.JSONDecodeError as e:
                    if self.json_output != "never":
                        problems.append(("json_invalid", f"{e.msg} at line {e.lineno} column {e.colno}"))
            kind = "json" if parsed_ok else "text"
            _count(self.output_formats, kind, self.format_examples, source, limit)
            # language of prose answers only: JSON keys and class names are not prose
            is_label = lkey is not None and answer == str(record.get(lkey))
            if not parsed_ok and not is_label:
                answer_lang = self._language(answer)
                self.output_langs[answer_lang] += 1
                if (prompt_lang, answer_lang) in (("zh", "en"), ("en", "zh")):
                    problems.append(("output_language", f"prompt is {prompt_lang}, answer is {answer_lang}"))

        # conflicts: the same prompt with another label or another answer
        if prompt.strip():
            key = content_hash(" ".join(prompt.split()).casefold())
            answer_hash = self._hash(answer) if answer else 0  # 0: none
            label_hash = self._hash(label) if label is not None else 0
            if self.defer_conflicts:  # a parallel worker: the parent, which sees every record in order, decides
                self.deferred_conflict = (len(problems), key, label_hash, answer_hash, label)
            else:
                found = self.conflict(source, key, label_hash, answer_hash, label)
                if found:
                    problems.append(found)

        # truncation on every text, mid-sentence only for the answer
        if texts is None:
            texts = list(text_slots(record))
        for path, text in texts:
            if len(text) < 20:  # too short to judge: truncation_reason says None
                continue
            is_answer = out_path is not None and path == out_path
            if len(text) <= SHORT_TEXT:
                reason = (self._answer_truncation if is_answer else self._truncation)(text)
            else:
                reason = truncation_reason(text, is_answer)
            if reason:
                problems.append(("truncated_text", f"{path_str(path)}: {reason}"))

        # correctness of declared fields
        if self.declared_checks:
            self._declared_checks(record, answer, problems)

        # personal data still present
        if self.pii_cfg.enabled:
            names = [str(record[f]) for f in self.pii_name_fields if isinstance(record.get(f), str)]
            found: list[str] = []  # kinds, in order of appearance
            for _, text in texts:
                if not names and len(text) <= SHORT_TEXT:
                    found += self._pii_kinds(text)
                else:
                    found += [m.kind for m in find_pii(text, self.pii_kinds_checked, self.pii_patterns, names)]
            if found:
                counts = Counter(found)
                self.pii_kinds.update(counts)
                problems.append(("pii", ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))))

    def _declared_checks(self, record: dict, answer: str | None, problems: list) -> None:
        """Number fields, reference fields and user checks, where the configuration declares any."""
        for key in self.cfg.number_fields:
            value = record.get(key)
            if key in record and not _is_empty(value) and parse_number(value) is None:
                problems.append(("number_invalid", f"'{key}' = {value!r}"))
        for key in self.cfg.reference_fields:
            refs = record.get(key)
            for ref in (refs if isinstance(refs, list) else [refs] if refs is not None else []):
                if str(ref) not in record:
                    problems.append(("reference_missing", f"'{key}' refers to '{ref}', which is not a field"))
        for check, regex, validator in self.user_checks:
            self._user_check(check, regex, validator, record.get(check.field) if check.field else answer, problems)

    def _count_label(self, value: str, source: str, problems: list) -> None:
        _count(self.label_counts, value, self.label_examples, source, self.limit)
        if self.labels is not None and value not in self.labels:
            problems.append(("label_not_in_set", f"label '{value}' is not one of {self.declared_labels}"))

    def _language(self, text: str) -> str:
        return self._languages(text) if len(text) <= SHORT_TEXT else detect_language(text)["lang"]

    def _hash(self, text: str) -> int:
        return self._hashes(text) if len(text) <= SHORT_TEXT else content_hash(text)

    @staticmethod
    def _user_check(check, regex, validator, value, problems: list) -> None:
        rule = f"user:{check.name}"
        if value is None:
            problems.append((rule, f"no '{check.field or 'answer'}' to check"))
        elif regex is not None:
            if not regex.search(str(value)):
                problems.append((rule, f"does not match {check.regex!r}"))
        else:
            try:
                data = json.loads(_json_body(value)) if isinstance(value, str) else value
            except json.JSONDecodeError as e:
                problems.append((rule, f"not JSON: {e.msg}"))
            else:
                error = next(iter(validator.iter_errors(data)), None)
                if error is not None:
                    where = "/".join(map(str, error.absolute_path)) or "(root)"
                    problems.append((rule, f"{where}: {error.message}"))

    def conflict(self, source: str, key: int, label_hash: int, answer_hash: int,
                 label: str | None) -> tuple[str, str] | None:
        """Index this prompt; a problem when it came before with another label (or, unlabelled, another answer)."""
        if label is not None and label_hash not in self.label_text and len(self.label_text) < 10_000:
            self.label_text[label_hash] = label
        seen = self.seen_inputs.get(key)
        if seen is None:
            self.seen_inputs.put(key, (label_hash, answer_hash, self.sources.pack(source)))
            return None
        first_label, first_answer, first_source = seen
        first_source = self.sources.unpack(first_source)
        if label_hash and first_label and label_hash != first_label:
            return ("conflicting_labels",
                    f"label {label} here, {self.label_text.get(first_label, 'another')} at {first_source}")
        if not label_hash and answer_hash and first_answer and answer_hash != first_answer:
            return "conflicting_outputs", f"another answer to the same prompt at {first_source}"
        return None

    # -------------------------------------------------------------- parallel workers (see check_file)

    # What a worker's records add up to: counts and first examples, merged in file order by the parent.
    _MERGED_COUNTERS = ("schemas", "label_counts", "output_formats", "prompt_langs", "output_langs", "pii_kinds")
    _MERGED_EXAMPLES = ("schema_examples", "type_examples", "label_examples", "format_examples")

    def take_state(self) -> dict:
        """The counts and examples of the records checked since the last call (picklable), then start afresh."""
        state = {"records": self.records, "flagged_records": self.flagged_records, "tallies": dict(self.tallies),
                 "types": dict(self.types), "numeric": dict(self.numeric),
                 **{name: getattr(self, name) for name in self._MERGED_COUNTERS},
                 **{name: dict(getattr(self, name)) for name in self._MERGED_EXAMPLES}}
        self.records = self.flagged_records = 0
        self.tallies, self.types = defaultdict(Tally), defaultdict(Counter)
        self.numeric = defaultdict(lambda: [0, 0, []])
        for name in self._MERGED_COUNTERS:
            setattr(self, name, Counter())
        for name in self._MERGED_EXAMPLES:
            setattr(self, name, defaultdict(list))
        return state

    def merge(self, state: dict) -> None:
        """Add a worker's `take_state()` for the records that follow those already counted."""
        limit = self.limit

        def room(examples: list) -> int:
            return max(0, limit - len(examples))

        self.records += state["records"]
        self.flagged_records += state["flagged_records"]
        for rule, tally in state["tallies"].items():
            mine = self.tallies[rule]
            mine.count += tally.count
            mine.examples += tally.examples[:room(mine.examples)]
        for key, counter in state["types"].items():
            self.types[key].update(counter)
        for key, (parsed, failed, failures) in state["numeric"].items():
            mine = self.numeric[key]
            mine[0] += parsed
            mine[1] += failed
            mine[2] += failures[:room(mine[2])]
        for name in self._MERGED_COUNTERS:
            getattr(self, name).update(state[name])
        for name in self._MERGED_EXAMPLES:
            mine = getattr(self, name)
            for key, examples in state[name].items():
                mine[key] += examples[:room(mine[key])]

    def resolve(self, source: str, problems: list[tuple[str, str]], deferred: tuple | None) -> list[tuple[str, str]]:
        """A worker's problems for one record, with the conflict it deferred decided here, in file order."""
        if deferred is None:
            return problems
        at, *conflict = deferred
        found = self.conflict(source, *conflict)
        if found is None:
            return problems
        self.tallies[found[0]].add(source, found[1], self.limit)
        if not problems:
            self.flagged_records += 1
        return [*problems[:at], found, *problems[at:]]

    # -------------------------------------------------------------- dataset level

    def _dataset_rules(self) -> None:
        limit = self.limit
        if self.schemas:
            (main_schema, _), *others = self.schemas.most_common()
            tally = self.tallies["schema_mismatch"]
            for schema, count in others:
                missing, extra = sorted(main_schema - schema), sorted(schema - main_schema)
                detail = "; ".join(x for x in (f"missing {missing}" if missing else "",
                                                f"extra {extra}" if extra else "") if x)
                tally.count += count
                for src in self.schema_examples[schema][:max(0, limit - len(tally.examples))]:
                    tally.examples.append({"source": src, "detail": detail})
        for key, counter in self.types.items():
            if len(counter) > 1:
                (main_type, _), *others = counter.most_common()
                tally = self.tallies["type_mismatch"]
                for t, count in others:
                    tally.count += count
                    for src in self.type_examples[(key, t)][:max(0, limit - len(tally.examples))]:
                        tally.examples.append({"source": src, "detail": f"'{key}' is {t}, usually {main_type}"})
        for key, (parsed, failed, failures) in self.numeric.items():
            # a column that is numbers in at least 80% of records (and 5 of them): the rest do not parse
            if failed and parsed >= 5 and parsed / (parsed + failed) >= 0.8:
                tally = self.tallies["number_invalid"]
                tally.count += failed
                for src, value in failures[:max(0, limit - len(tally.examples))]:
                    tally.examples.append({"source": src, "detail": f"'{key}' = {value!r} in a column of numbers"})
        if len(self.output_formats) > 1:
            (main_fmt, _), *others = self.output_formats.most_common()
            tally = self.tallies["output_format"]
            for fmt, count in others:
                tally.count += count
                for src in self.format_examples[fmt][:max(0, limit - len(tally.examples))]:
                    tally.examples.append({"source": src, "detail": f"answer is {fmt}, most answers are {main_fmt}"})
        # labels: variants, rare labels, balance
        by_norm: dict[str, list[str]] = defaultdict(list)
        for label in self.label_counts:
            by_norm[_label_norm(label)].append(label)
        for variants in by_norm.values():
            if len(variants) > 1:
                main = max(variants, key=lambda v: self.label_counts[v])
                for v in variants:
                    if v != main:
                        tally = self.tallies["label_variant"]
                        tally.count += self.label_counts[v]
                        for src in self.label_examples[v][:max(0, limit - len(tally.examples))]:
                            tally.examples.append({"source": src, "detail": f"'{v}' looks like a variant of '{main}'"})
        if self.label_counts:
            for label, count in sorted(self.label_counts.items()):
                if count < self.cfg.min_label_count:
                    tally = self.tallies["rare_label"]
                    tally.count += count
                    if len(tally.examples) < limit:
                        tally.examples.append({"source": self.label_examples[label][0],
                                               "detail": f"label '{label}' has {count} example(s), "
                                                         f"fewer than {self.cfg.min_label_count}"})
            if len(self.label_counts) > 1:
                (big, big_n), (small, small_n) = self.label_counts.most_common()[0], self.label_counts.most_common()[-1]
                if big_n / small_n > self.cfg.max_imbalance:
                    self.tallies["class_imbalance"].add(
                        "(dataset)", f"'{big}' has {big_n} records, '{small}' {small_n}: "
                                     f"{big_n / small_n:.1f}× (maximum {self.cfg.max_imbalance:g}×)", limit)

    def report(self) -> dict:
        self._dataset_rules()
        n = max(self.records, 1)
        sections: dict[str, dict] = {s: {} for s in SECTIONS}
        for rule, (section, description) in self.rules.items():
            tally = self.tallies.get(rule, Tally())
            sections[section][rule] = {"count": tally.count, "rate": round(tally.count / n, 6),
                                       "description": description, "examples": tally.examples}
        thresholds = []
        for rule, max_rate in self.cfg.thresholds.items():
            count = self.flagged_records if rule == "any" else self.tallies.get(rule, Tally()).count
            rate = count / n
            thresholds.append({"rule": rule, "max_rate": max_rate, "rate": round(rate, 6), "crossed": rate > max_rate})
        return {
            "input": self.input_name,
            "records": self.records,
            "records_with_problems": self.flagged_records,
            "passed": not any(t["crossed"] for t in thresholds),
            "thresholds": thresholds,
            "sections": sections,
            "labels": {"field": self.cfg.label_field, "declared": self.cfg.labels,
                       "counts": dict(self.label_counts.most_common())},
            "languages": {"prompt": dict(self.prompt_langs.most_common()),
                          "answer": dict(self.output_langs.most_common())},
            "answer_formats": dict(self.output_formats),
            "schemas": [{"fields": sorted(s), "count": c} for s, c in self.schemas.most_common(10)],
            "personal_data": dict(self.pii_kinds.most_common()),
        }


@dataclass(frozen=True)
class _Loc:
    """Stands in for io.Location so `to_sample` errors name the record's origin."""

    source: str

    def error(self, field, problem):
        return DataError(self.source, None, field, problem)

    def __str__(self) -> str:
        return self.source


# ------------------------------------------------------------------ rendering

def render_markdown(report: dict) -> str:
    n = report["records"]
    status = "PASSED" if report["passed"] else "FAILED"
    lines = [f"# Data quality report: {report['input']}", "",
             f"**{n} records**, {report['records_with_problems']} with at least one record-level problem "
             f"({report['records_with_problems'] / max(n, 1):.1%}). Thresholds: **{status}**.", ""]
    if report["thresholds"]:
        lines += ["## Thresholds", "", "| rule | rate | maximum | result |", "|---|---:|---:|---|"]
        for t in report["thresholds"]:
            lines.append(f"| {t['rule']} | {t['rate']:.2%} | {t['max_rate']:.2%} | "
                         f"{'**crossed**' if t['crossed'] else 'ok'} |")
        lines.append("")
    limits = {t["rule"]: t for t in report["thresholds"]}
    lines += ["## Rules", "", "| section | rule | checks that | count | rate | status |", "|---|---|---|---:|---:|---|"]
    for section, rules in report["sections"].items():
        for rule, r in rules.items():
            state = "—" if r["count"] == 0 else ("**over threshold**" if limits.get(rule, {}).get("crossed")
                                                 else "found")
            lines.append(f"| {section} | `{rule}` | {r['description']} | {r['count']} | {r['rate']:.2%} | {state} |")
    lines.append("")
    for section, rules in report["sections"].items():
        found = {rule: r for rule, r in rules.items() if r["count"]}
        lines += [f"## {section.capitalize()}", ""]
        if not found:
            lines += ["No problems found.", ""]
            continue
        for rule, r in found.items():
            lines.append(f"### `{rule}` — {r['count']} ({r['rate']:.2%})")
            lines.append("")
            lines += [f"- `{ex['source']}` — {ex['detail']}" for ex in r["examples"]]
            lines.append("")
    labels = report["labels"]["counts"]
    if labels:
        total = sum(labels.values())
        lines += ["## Labels", "", "| label | records | share |", "|---|---:|---:|"]
        lines += [f"| {k} | {v} | {v / total:.1%} |" for k, v in labels.items()]
        lines.append("")
    lines += ["## Languages", "", "| side | " + " | ".join(("zh", "en", "mixed", "other", "unknown")) + " |",
              "|---|" + "---:|" * 5]
    for side, counts in report["languages"].items():
        cells = " | ".join(str(counts.get(k, 0)) for k in ("zh", "en", "mixed", "other", "unknown"))
        lines.append(f"| {side} | {cells} |")
    lines += ["", "## Personal data", ""]
    if report["personal_data"]:
        lines += ["| kind | occurrences |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in report["personal_data"].items()]
    else:
        lines.append("None found.")
    lines.append("")
    if len(report["schemas"]) > 1:
        lines += ["## Schemas", "", "| fields | records |", "|---|---:|"]
        lines += [f"| {', '.join(s['fields'])} | {s['count']} |" for s in report["schemas"]]
        lines.append("")
    if report.get("pipeline"):
        lines += ["## Pipeline", "", "| step | read | written | dropped | changed |", "|---|---:|---:|---:|---:|"]
        for s in report["pipeline"]:
            lines.append(f"| {s['step']} | {s['read']} | {s['written']} | {s['dropped']} | {s['changed']} |")
        lines.append("")
    if report.get("leakage"):
        leak = report["leakage"]
        lines += ["## Train / evaluation leakage", "",
                  f"{leak['exact']} exact and {leak['near']} near-duplicate prompts of validation/test records "
                  f"also appear in train (listed in `{leak['log']}`).", ""]
    return "\n".join(lines)


def write_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "quality.json", out_dir / "report.md"
    json_path.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return json_path, md_path


def check_file(in_path: str | Path, out_dir: str | Path, config: CheckConfig | None = None,
               pii: PiiConfig | None = None, on_error: str = "skip", write: bool = True, workers: int = 1) -> dict:
    """Stream a file through the checker; writes quality.json, report.md and problems.jsonl in out_dir.

    `workers` > 1 (0 = every core) checks a JSONL input on that many processes, with the same report and log.
    """
    out_dir = Path(out_dir)
    checker = QualityChecker(config, pii, input_name=str(in_path))
    workers = workers_for(in_path, workers)
    with StepLog("check", out_dir / "problems.jsonl", log_path=out_dir / "problems.jsonl") as log:
        if workers > 1:
            for items, state in chunk_results(in_path, _check_chunk, workers, _start_check_worker,
                                              (config, pii, str(in_path), on_error), log):
                checker.merge(state)
                for item in items:
                    if isinstance(item, str):  # log lines of unreadable records, in their place
                        log.append(item)
                        continue
                    source, problems, deferred = item
                    for rule, detail in checker.resolve(source, problems, deferred):
                        log.flagged(source, rule, detail)
        else:
            for loc, record in read_input(in_path, log, on_error):
                source = origin(loc, record)
                for rule, detail in checker.check(record, source):
                    log.flagged(source, rule, detail)
        unreadable = log.dropped_by.get("unreadable", 0)
    report = checker.report()
    report["unreadable_records"] = unreadable
    report["problems_log"] = str(log.path)
    if write:
        write_report(report, out_dir)
    return report


# A parallel worker's checker, made once per process by `_start_check_worker` (see `data/parallel.py`).
_worker: dict = {}


def _start_check_worker(config: CheckConfig | None, pii: PiiConfig | None, input_name: str, on_error: str) -> None:
    _worker.update(checker=QualityChecker(config, pii, input_name, defer_conflicts=True), on_error=on_error)


def _check_chunk(name: str, first_line: int, lines: list[bytes]) -> tuple[dict, tuple[list, dict]]:
    """One chunk of a JSONL file: (log counts, ([log text | (source, problems, deferred conflict)] in file
    order, the checker's counts for these records))."""
    checker, log = _worker["checker"], StepLog("check", stream=io.StringIO())
    items: list = []
    logged = 0

    def take_log() -> None:  # unreadable lines the reader logged since the last record
        nonlocal logged
        text = log.entries()
        if len(text) > logged:
            items.append(text[logged:])
            logged = len(text)

    for loc, record in read_input_lines(name, first_line, lines, log, _worker["on_error"]):
        take_log()
        source = origin(loc, record)
        items.append((source, checker.check(record, source), checker.deferred_conflict))
    take_log()
    return log.counts(), (items, checker.take_state())
