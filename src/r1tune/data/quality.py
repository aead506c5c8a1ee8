"""The quality report: consistency, completeness and correctness of a dataset, in numbers and examples.

    r1tune prepare check data.jsonl --out report/      # report/quality.json, report/report.md, report/problems.jsonl
    report = check_file("data.jsonl", "report/", CheckConfig(labels=["正面", "负面"], thresholds={"any": 0.05}))

One streaming pass (memory: about 40 bytes per distinct prompt and 24 per distinct record, never the text, plus
fixed-size memos of short texts that repeat, such as labels, and at most 10,000 distinct short answers). Rules:

  consistency   schema_mismatch, type_mismatch, label_not_in_set, label_variant, conflicting_labels,
                conflicting_outputs, exact_duplicate, duplicate_prompt, output_language, output_format
  completeness  missing_field, empty_field, truncated_text, rare_label, class_imbalance
  correctness   unreadable, format_unknown, format_invalid, label_invalid, json_invalid, number_invalid,
                reference_missing, marker_text, user:<name> (regex or JSON schema)
  personal data pii (counts per kind)

Every line counts: `records` is the lines read (unreadable ones included), and the shares, the thresholds and
`records_with_problems` are over all of them. An unreadable line, a record with no training format
(format_unknown) or one that cannot become a sample (format_invalid) is a problem; a file in which no line can
be trained on fails (`passed: false`, with the reason in `failures`) whatever the thresholds.

`quality.json` is the machine-readable report; `report.md` the readable one (counts, a per-rule table,
examples of each problem); `problems.jsonl` lists every flagged record with its rules (an answer's language,
which waits for the end of the file when the answer may be a class name, comes last). A configured threshold
that is crossed sets `passed: false` and the command exits non-zero.

This module holds the checker's state (counts, examples, memos, the duplicate indexes) and its flow over a file,
on one process or several; the rules are named functions in `quality_rules.py`, and `quality_report.py` turns
the state into quality.json and report.md.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path

from r1tune.config import CheckConfig, PiiConfig
from r1tune.data import scan
from r1tune.data.clean_scan import pii_scan
from r1tune.data.formats import detect_format
from r1tune.data.hashindex import HashIndex, SourceTable
from r1tune.data.io import encode_sorted_json, json_encoder
from r1tune.data.lang import detect_language
from r1tune.data.numbers import parse_number
from r1tune.data.parallel import chunk_results, workers_for
from r1tune.data.pii import compile_patterns, find_pii
from r1tune.data.quality_dataset_rules import answer_classes, dataset_rules
from r1tune.data.quality_report import build_report, write_report
from r1tune.data.quality_rules import (
    REQUIRED_BY_FORMAT,
    RULES,
    SHORT_TEXT,
    Tally,
    check_answer,
    check_completeness,
    check_declared,
    check_duplicates,
    check_labels,
    check_markers,
    check_pii,
    check_truncation,
    compile_user_checks,
    count_fields,
    prompt_and_answer,
    truncation_reason,
)
from r1tune.data.records import content_hash, origin, text_slots
from r1tune.data.scan import scan_texts
from r1tune.data.steplog import StepLog, read_input_hinted, read_input_lines_hinted
from r1tune.errors import R1TuneError

# Bounded for a stream of any length: a full memo holds about 4096 × SHORT_TEXT characters.
_memo = lru_cache(maxsize=4096)
# Short answers counted for the file's classes; an answer first seen after this many others is not a class.
MAX_SHORT_ANSWERS = 10_000


class QualityChecker:
    """Accumulates the report over a stream of records; `report()` gives the result.

    A class because the state is real: counts, examples and the per-input label index grow as records
    stream past, and the dataset-level rules (schema, types, formats, balance) are decided at the end.
    """

    def __init__(self, config: CheckConfig | None = None, pii: PiiConfig | None = None, input_name: str = "",
                 parallel_worker: bool = False):
        # dedup's record hash and text normaliser, so "duplicate" means here what `prepare dedupe` drops
        # (imported here: dedup loads numpy, which `import quality` does not need)
        from r1tune.data.dedup import exact_key, normalize_for_hash

        self.cfg = config or CheckConfig()
        self.pii_cfg = pii or PiiConfig()
        self.input_name = input_name
        self.limit = self.cfg.examples
        self.records = 0  # readable records; the report's `records` adds the unreadable lines
        self.flagged_records = 0  # lines with a problem, unreadable ones included
        self.unreadable = 0
        self.untrainable = 0  # records with format_unknown or format_invalid
        self.unknown_fields: Counter = Counter()  # the fields, in order, of records with no training format
        self.unlabelled_answers = 0  # text answers of records without a label field
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
        # record hash (dedup's exact_key) → packed source: ~24 bytes per distinct record
        self.seen_records = HashIndex(columns=1)
        self.sources = SourceTable()
        self.label_text: dict[int, str] = {}
        # short answer of a record without a label field → [count, first sources, the records where its language
        # differs from the prompt's as (position, source, detail, no other problem), or None once it is frequent]
        self.short_answers: dict[str, list] = {}
        self.settled = 0  # records settled so far: the position of a record in the file
        self.finished = False
        self.encode_sorted = json_encoder(sort_keys=True)  # this checker's own: the same text, faster
        self.exact_key = lambda record: exact_key(record, None, self.encode_sorted)
        self.normalized_long, self.normalized_short = normalize_for_hash, _memo(normalize_for_hash)
        # What `settle` decides on for the last record: (position in its problems, record key, prompt key,
        # label hash, answer hash, label, short answer, language problem). A parallel worker leaves it to the
        # parent, which sees every record in file order.
        self.parallel_worker = parallel_worker
        self.deferred: tuple | None = None
        self.labels = set(self.cfg.labels) if self.cfg.labels is not None else None
        self.user_checks = compile_user_checks(self.cfg.checks)
        self.rules = dict(RULES) | {f"user:{check.name}": ("correctness", f"user check: {check.regex or 'JSON schema'}")
                                    for check, _, _ in self.user_checks}
        known = set(self.rules) | {"any", "untrainable"}
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
        self.parses_as_number = _memo(lambda text: parse_number(text) is not None)
        self.label_json = _memo(encode_sorted_json)
        self._hashes = _memo(content_hash)
        self._languages = _memo(lambda text: detect_language(text)["lang"])
        self.truncation = _memo(lambda text: truncation_reason(text, is_answer=False))
        self.answer_truncation = _memo(lambda text: truncation_reason(text, is_answer=True))
        self.pii_kinds_checked, self.pii_name_fields = self.pii_cfg.kinds, self.pii_cfg.name_fields
        kinds, patterns = self.pii_kinds_checked, self.pii_patterns
        self.pii_kinds_of = _memo(lambda text: tuple(m.kind for m in find_pii(text, kinds, patterns)))  # no names

    # -------------------------------------------------------------- per record

    def add(self, record: dict, source: str) -> list[dict]:
        """Check one record; returns its problems [{rule, detail}] (dataset-level rules come at the end)."""
        return [{"rule": rule, "detail": detail} for rule, detail in self.check(record, source)]

    def check(self, record: dict, source: str, no_pii: frozenset | None = None) -> list[tuple[str, str]]:
        """`add`, as (rule, detail) pairs in the order found (in a parallel worker, without what `settle`
        decides: the parent settles `deferred`). `no_pii`: texts a scan cleared of personal data (`pii_hints`)."""
        self.records += 1
        self.deferred = None
        problems: list[tuple[str, str]] = []
        try:
            self._check_record(record, source, problems, no_pii or frozenset())
        finally:  # tallied even where a check raises (a value JSON cannot encode): a caller may go on
            tallies, limit = self.tallies, self.limit
            for rule, detail in problems:
                tallies[rule].add(source, detail, limit)
        if problems:
            self.flagged_records += 1
        if self.parallel_worker:
            return problems
        return self.settle(source, problems, self.deferred)

    def _check_record(self, record: dict, source: str, problems: list[tuple[str, str]], no_pii: frozenset) -> None:
        """The record-level rule families (see quality_rules.py), in report order."""
        fmt = detect_format(record)
        required = self.required_fields if self.required_fields is not None else REQUIRED_BY_FORMAT.get(fmt, [])
        empty_keys = count_fields(self, record, source, required)
        check_completeness(self, record, source, fmt, required, empty_keys, problems)
        lkey, label = check_labels(self, record, source, problems)
        prompt, out_path, answer, texts = prompt_and_answer(record)
        language = check_answer(self, record, source, prompt, answer, lkey, problems)
        check_duplicates(self, record, answer, label, language, problems)
        if texts is None:
            texts = list(text_slots(record))
        check_truncation(self, texts, out_path, problems)
        check_markers(record, texts, out_path, problems)
        if self.declared_checks:
            check_declared(self, record, answer, problems)
        if self.pii_cfg.enabled:
            check_pii(self, record, texts, problems, no_pii)

    def hints(self):
        """`pii_hints` where a scan can spare work (scans on, personal data checked without names or patterns),
        else None: the plain path."""
        if not (scan.VECTORISED and self.pii_cfg.enabled) or self.pii_patterns or self.pii_name_fields:
            return None
        return self.pii_hints

    def pii_hints(self, records: list[dict]) -> list[frozenset]:
        """For each record of a batch, its longer texts that cannot hold personal data: those in which a vectorised
        scan finds neither an '@' nor a long number (`find_pii`'s first test; see clean_scan.pii_scan). Short texts
        have their answer memoised (`pii_kinds_of`). Empty where the texts cannot go into Arrow."""
        texts = [[text for _, text in text_slots(record) if len(text) > SHORT_TEXT] for record in records]
        found = scan_texts([text for record_texts in texts for text in record_texts])
        if found is None:
            return [frozenset()] * len(records)
        may_hold_pii, at, hints = found.search(pii_scan()), 0, []
        for record_texts in texts:
            end = at + len(record_texts)
            hints.append(frozenset(text for text, may in zip(record_texts, may_hold_pii[at:end]) if not may))
            at = end
        return hints

    # memos for the short texts that repeat (see __init__); longer texts are worked out each time
    def text_language(self, text: str) -> str:
        return self._languages(text) if len(text) <= SHORT_TEXT else detect_language(text)["lang"]

    def text_hash(self, text: str) -> int:
        return self._hashes(text) if len(text) <= SHORT_TEXT else content_hash(text)

    def normalize_text(self, text: str) -> str:
        return self.normalized_short(text) if len(text) <= SHORT_TEXT else self.normalized_long(text)

    def unreadable_line(self, source: str, reason: str) -> None:
        """A line the reader could not read (see `ProblemsLog`): a line, and a problem."""
        self.unreadable += 1
        self.flagged_records += 1
        self.tallies["unreadable"].add(source, reason, self.limit)

    # -------------------------------------------------------------- decided in file order

    def settle(self, source: str, problems: list[tuple[str, str]], deferred: tuple | None) -> list[tuple[str, str]]:
        """A record's problems with those that depend on the records before it (duplicates, conflicts, the
        language of an answer that is not a class name) put in at their place; counted and tallied here."""
        if deferred is None:
            return problems
        at, record_key, prompt_key, label_hash, answer_hash, label, short, language = deferred
        self.settled += 1
        found: list[tuple[str, str]] = []
        entry = self.count_short_answer(short, source) if short is not None else None
        pending = False
        if language is not None:
            if entry is None:  # prose, or a short answer past the ones counted: not a class name
                found.append(("output_language", language))
            elif entry[2] is not None:  # a short answer not (yet) frequent: decided at the end (`finish`)
                pending = True
        first = self.seen_records.get(record_key)
        if first is not None:
            found.append(("exact_duplicate", f"same record as {self.sources.unpack(first[0])}"))
        else:
            packed = self.sources.pack(source)
            self.seen_records.put(record_key, (packed,))
            if prompt_key:
                same_prompt = self.conflict(packed, prompt_key, label_hash, answer_hash, label)
                if same_prompt is not None:
                    found.append(same_prompt)
        if pending:
            entry[2].append((self.settled, source, language, not problems and not found))
        if not found:
            return problems
        for rule, detail in found:
            self.tallies[rule].add(source, detail, self.limit)
        if not problems:
            self.flagged_records += 1
        return [*problems[:at], *found, *problems[at:]]

    def count_short_answer(self, answer: str, source: str) -> list | None:
        """Count a short answer (see `short_answers`); None once MAX_SHORT_ANSWERS others are counted."""
        entry = self.short_answers.get(answer)
        if entry is None:
            if len(self.short_answers) >= MAX_SHORT_ANSWERS:
                return None
            entry = self.short_answers[answer] = [0, [], []]
        entry[0] += 1
        if len(entry[1]) < self.limit:
            entry[1].append(source)
        if entry[0] >= self.cfg.min_label_count:
            entry[2] = None  # frequent: a class name, whatever its language
        return entry

    def conflict(self, packed_source: int, key: int, label_hash: int, answer_hash: int,
                 label: str | None) -> tuple[str, str] | None:
        """Index this prompt; a problem when it came before: with another label, another answer (same or no
        label), or the same answer and label (a duplicate prompt in a record that differs elsewhere)."""
        if label is not None and label_hash not in self.label_text and len(self.label_text) < 10_000:
            self.label_text[label_hash] = label
        seen = self.seen_inputs.get(key)
        if seen is None:
            self.seen_inputs.put(key, (label_hash, answer_hash, packed_source))
            return None
        first_label, first_answer, first_source = seen
        first_source = self.sources.unpack(first_source)
        if label_hash and first_label and label_hash != first_label:
            return ("conflicting_labels",
                    f"label {label} here, {self.label_text.get(first_label, 'another')} at {first_source}")
        if label_hash != first_label:  # one record has a label, the other not: not comparable
            return None
        if answer_hash and first_answer and answer_hash != first_answer:
            return "conflicting_outputs", f"another answer to the same prompt at {first_source}"
        if answer_hash == first_answer:
            return "duplicate_prompt", f"same prompt and answer as {first_source}"
        return None

    def finish(self) -> list[tuple[str, str, str]]:
        """After the last record: the answers whose language differed from their prompt's and that turned out not
        to be class names, as (source, rule, detail) in file order (once; for problems.jsonl)."""
        if self.finished:
            return []
        self.finished = True
        if answer_classes(self) is not None:  # the answers are the file's classes: rare ones are rare labels
            return []
        late = sorted(item for entry in self.short_answers.values() if entry[2] for item in entry[2])
        tally = self.tallies["output_language"] if late else None
        for _, source, detail, alone in late:
            tally.add(source, detail, self.limit)
            self.flagged_records += alone
        return [(source, "output_language", detail) for _, source, detail, _ in late]

    # -------------------------------------------------------------- parallel workers (see check_file)

    # What a worker's records add up to: counts and first examples, merged in file order by the parent.
    _MERGED_NUMBERS = ("records", "flagged_records", "unreadable", "untrainable", "unlabelled_answers")
    _MERGED_COUNTERS = ("schemas", "label_counts", "output_formats", "prompt_langs", "output_langs", "pii_kinds",
                        "unknown_fields")
    _MERGED_EXAMPLES = ("schema_examples", "type_examples", "label_examples", "format_examples")

    def take_state(self) -> dict:
        """The counts and examples of the records checked since the last call (picklable), then start afresh."""
        state = {"tallies": dict(self.tallies), "types": dict(self.types), "numeric": dict(self.numeric),
                 **{name: getattr(self, name) for name in self._MERGED_NUMBERS},
                 **{name: getattr(self, name) for name in self._MERGED_COUNTERS},
                 **{name: dict(getattr(self, name)) for name in self._MERGED_EXAMPLES}}
        for name in self._MERGED_NUMBERS:
            setattr(self, name, 0)
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

        for name in self._MERGED_NUMBERS:
            setattr(self, name, getattr(self, name) + state[name])
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

    # -------------------------------------------------------------- the report

    def report(self) -> dict:
        """The dataset-level rules, then the whole report (see quality_report.build_report)."""
        self.finish()
        dataset_rules(self)
        return build_report(self)


class ProblemsLog(StepLog):
    """problems.jsonl: the check's StepLog, through which the reader's unreadable lines also reach the report."""

    def __init__(self, checker: QualityChecker, *args, **kwargs):
        super().__init__("check", *args, **kwargs)
        self.checker = checker

    def dropped(self, source: str, rule: str, reason: str, **detail) -> None:
        super().dropped(source, rule, reason, **detail)
        if rule == "unreadable":
            self.checker.unreadable_line(source, reason)


def check_file(in_path: str | Path, out_dir: str | Path, config: CheckConfig | None = None,
               pii: PiiConfig | None = None, on_error: str = "skip", write: bool = True, workers: int = 1) -> dict:
    """Stream a file through the checker; writes quality.json, report.md and problems.jsonl in out_dir.

    `workers` > 1 (0 = every core) checks a JSONL input on that many processes, with the same report and log.
    """
    out_dir = Path(out_dir)
    checker = QualityChecker(config, pii, input_name=str(in_path))
    workers = workers_for(in_path, workers)
    with ProblemsLog(checker, out_dir / "problems.jsonl", log_path=out_dir / "problems.jsonl") as log:
        if workers > 1:
            if checker.hints() is not None:  # the scan and pyarrow made once, here: forked workers inherit them
                checker.pii_hints([])
            for items, state in chunk_results(in_path, _check_chunk, workers, _start_check_worker,
                                              (config, pii, str(in_path), on_error), log):
                checker.merge(state)
                for item in items:
                    if isinstance(item, str):  # log lines of unreadable records, in their place
                        log.append(item)
                        continue
                    source, problems, deferred = item
                    for rule, detail in checker.settle(source, problems, deferred):
                        log.flagged(source, rule, detail)
        else:
            for loc, record, no_pii in read_input_hinted(in_path, log, checker.hints(), on_error):
                source = origin(loc, record)
                for rule, detail in checker.check(record, source, no_pii):
                    log.flagged(source, rule, detail)
        for source, rule, detail in checker.finish():
            log.flagged(source, rule, detail)
    report = checker.report()
    report["problems_log"] = str(log.path)
    if write:
        write_report(report, out_dir)
    return report


# A parallel worker's checker, made once per process by `_start_check_worker` (see `data/parallel.py`).
_worker: dict = {}


def _start_check_worker(config: CheckConfig | None, pii: PiiConfig | None, input_name: str, on_error: str) -> None:
    _worker.update(checker=QualityChecker(config, pii, input_name, parallel_worker=True), on_error=on_error)


def _check_chunk(name: str, first_line: int, lines: list[bytes]) -> tuple[dict, tuple[list, dict]]:
    """One chunk of a JSONL file: (log counts, ([log text | (source, problems, what to settle)] in file
    order, the checker's counts for these records, its unreadable lines included))."""
    checker = _worker["checker"]
    log = ProblemsLog(checker, stream=io.StringIO())
    items: list = []
    logged = 0

    def take_log() -> None:  # unreadable lines the reader logged since the last record
        nonlocal logged
        text = log.entries()
        if len(text) > logged:
            items.append(text[logged:])
            logged = len(text)

    for loc, record, no_pii in read_input_lines_hinted(name, first_line, lines, log, checker.hints(),
                                                        _worker["on_error"]):
        take_log()
        source = origin(loc, record)
        items.append((source, checker.check(record, source, no_pii), checker.deferred))
    take_log()
    return log.counts(), (items, checker.take_state())
