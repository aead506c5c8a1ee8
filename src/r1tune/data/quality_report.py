"""The quality report as files: quality.json (machine-readable) and report.md (lines read, unreadable and
untrainable, a per-rule table, examples of each problem, labels, languages, personal data, and the pipeline's
counts when there are any).

    report = build_report(checker)          # the dict that quality.json holds
    write_report(report, "report/")         # report/quality.json, report/report.md
"""

from __future__ import annotations

import json
from pathlib import Path

from r1tune.data.formats import columns_problem
from r1tune.data.quality_dataset_rules import answer_classes
from r1tune.data.quality_rules import SECTIONS, Tally
from r1tune.files import OutputSet


def gate_failures(checker) -> list[str]:
    """Why the data fails whatever the thresholds: no line of it can be trained on."""
    lines = checker.records + checker.unreadable
    if checker.records - checker.untrainable > 0:
        return []
    if checker.unreadable == lines:
        first = checker.tallies["unreadable"].examples[:1]
        where = f" (first: {first[0]['source']}: {first[0]['detail']})" if first else ""
        return [f"all {lines} lines are unreadable{where}"]
    unknown = sum(checker.unknown_fields.values())
    if unknown == checker.records:  # named as the reader names them, with the mapping that would read them
        return [f"no record can be trained on: {columns_problem(checker.unknown_fields.most_common(1)[0][0])}"]
    return [f"no record can be trained on: {checker.unreadable} unreadable, {unknown} with no training format, "
            f"{checker.untrainable - unknown} that cannot become a sample (see format_invalid)"]


def build_report(checker) -> dict:
    """The report of a checker whose dataset-level rules have run: lines, sections of rules with counts, rates and
    examples (shares of every line read), the thresholds and whether any is crossed, what fails the data whatever
    the thresholds, labels, languages, formats, schemas, personal data."""
    lines = checker.records + checker.unreadable
    n = max(lines, 1)
    sections: dict[str, dict] = {s: {} for s in SECTIONS}
    for rule, (section, description) in checker.rules.items():
        tally = checker.tallies.get(rule, Tally())
        sections[section][rule] = {"count": tally.count, "rate": round(tally.count / n, 6),
                                   "description": description, "examples": tally.examples}
    thresholds = []
    special = {"any": checker.flagged_records, "untrainable": checker.unreadable + checker.untrainable}
    for rule, max_rate in checker.cfg.thresholds.items():
        count = special[rule] if rule in special else checker.tallies.get(rule, Tally()).count
        rate = count / n
        thresholds.append({"rule": rule, "max_rate": max_rate, "rate": round(rate, 6), "crossed": rate > max_rate})
    failures = gate_failures(checker)
    classes = None if checker.label_counts else answer_classes(checker)
    label_counts = classes[0] if classes is not None else checker.label_counts
    return {
        "input": checker.input_name,
        "records": lines,
        "readable_records": checker.records,
        "unreadable_records": checker.unreadable,
        "untrainable_records": checker.untrainable,
        "trainable_records": checker.records - checker.untrainable,
        "records_with_problems": checker.flagged_records,
        "passed": not failures and not any(t["crossed"] for t in thresholds),
        "failures": failures,
        "thresholds": thresholds,
        "sections": sections,
        "labels": {"field": checker.cfg.label_field, "declared": checker.cfg.labels,
                   "taken_from": "short answers" if classes is not None else "label field",
                   "counts": dict(label_counts.most_common())},
        "languages": {"prompt": dict(checker.prompt_langs.most_common()),
                      "answer": dict(checker.output_langs.most_common())},
        "answer_formats": dict(checker.output_formats),
        "schemas": [{"fields": sorted(s), "count": c} for s, c in checker.schemas.most_common(10)],
        "personal_data": dict(checker.pii_kinds.most_common()),
    }


def render_markdown(report: dict) -> str:
    n = report["records"]
    status = "PASSED" if report["passed"] else "FAILED"
    lines = [f"# Data quality report: {report['input']}", "",
             f"**{n} lines**: {report['unreadable_records']} unreadable, {report['untrainable_records']} "
             f"untrainable; {report['records_with_problems']} with at least one record-level problem "
             f"({report['records_with_problems'] / max(n, 1):.1%}, unreadable lines included). "
             f"Quality gate: **{status}**.", "",
             "| lines | readable | unreadable | untrainable | trainable |", "|---:|---:|---:|---:|---:|",
             f"| {n} | {report['readable_records']} | {report['unreadable_records']} | "
             f"{report['untrainable_records']} | {report['trainable_records']} |", ""]
    if report["failures"]:
        lines += ["## Failed whatever the thresholds", ""] + [f"- {f}" for f in report["failures"]] + [""]
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
        lines += ["## Labels", ""]
        if report["labels"]["taken_from"] != "label field":
            lines += ["No label field: the short answers are the classes.", ""]
        lines += ["| label | records | share |", "|---|---:|---:|"]
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
    """quality.json and report.md, put in place together (both or neither)."""
    out_dir = Path(out_dir)
    json_path, md_path = out_dir / "quality.json", out_dir / "report.md"
    text, page = json.dumps(report, ensure_ascii=False, indent=2), render_markdown(report)
    with OutputSet() as outputs:
        outputs.open(json_path).write(text)
        outputs.open(md_path).write(page)
    return json_path, md_path

