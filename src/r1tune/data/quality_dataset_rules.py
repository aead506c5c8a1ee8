"""The quality check's dataset-level rules, decided at the end of the stream from the counts the record-level
rules (quality_rules.py) kept: the usual schema, types, numeric columns and answer format, then the labels
(rare labels, class imbalance) — over a label field, or over the answers when they are the file's classes.

    dataset_rules(checker)   # QualityChecker.finish, once
"""

from __future__ import annotations

from collections import Counter, defaultdict

from r1tune.data.quality_rules import label_norm

# A label (or short answer) under this share of the records, and this many times rarer than every frequent one,
# is a suspect label even with enough examples: `neutral??` among thousands of `neutral`.
RARE_LABEL_SHARE, RARE_LABEL_FACTOR = 0.01, 10
# The answers of a file without a label field are its classes when frequent short answers make up this share.
ANSWER_CLASSES_SHARE = 0.9


def dataset_rules(checker) -> None:
    """The rules decided over the whole stream: the usual schema, types, numeric columns and answer format
    (schema_mismatch, type_mismatch, number_invalid, output_format), then the labels."""
    limit, tallies = checker.limit, checker.tallies
    if checker.schemas:
        (main_schema, _), *others = checker.schemas.most_common()
        tally = tallies["schema_mismatch"]
        for schema, count in others:
            missing, extra = sorted(main_schema - schema), sorted(schema - main_schema)
            detail = "; ".join(x for x in (f"missing {missing}" if missing else "",
                                            f"extra {extra}" if extra else "") if x)
            tally.count += count
            for src in checker.schema_examples[schema][:max(0, limit - len(tally.examples))]:
                tally.examples.append({"source": src, "detail": detail})
    for key, counter in checker.types.items():
        if len(counter) > 1:
            (main_type, _), *others = counter.most_common()
            tally = tallies["type_mismatch"]
            for t, count in others:
                tally.count += count
                for src in checker.type_examples[(key, t)][:max(0, limit - len(tally.examples))]:
                    tally.examples.append({"source": src, "detail": f"'{key}' is {t}, usually {main_type}"})
    for key, (parsed, failed, failures) in checker.numeric.items():
        # a column that is numbers in at least 80% of records (and 5 of them): the rest do not parse
        if failed and parsed >= 5 and parsed / (parsed + failed) >= 0.8:
            tally = tallies["number_invalid"]
            tally.count += failed
            for src, value in failures[:max(0, limit - len(tally.examples))]:
                tally.examples.append({"source": src, "detail": f"'{key}' = {value!r} in a column of numbers"})
    if len(checker.output_formats) > 1:
        (main_fmt, _), *others = checker.output_formats.most_common()
        tally = tallies["output_format"]
        for fmt, count in others:
            tally.count += count
            for src in checker.format_examples[fmt][:max(0, limit - len(tally.examples))]:
                tally.examples.append({"source": src, "detail": f"answer is {fmt}, most answers are {main_fmt}"})
    label_rules(checker)


def answer_classes(checker) -> tuple[Counter, dict] | None:
    """The short answers as classes (counts, sources) in a file without a label field whose answers are class
    names: the frequent short answers (`min_label_count` or more each) make up most of its text answers."""
    if checker.label_counts or not checker.short_answers or not checker.unlabelled_answers:
        return None
    frequent = sum(entry[0] for entry in checker.short_answers.values() if entry[0] >= checker.cfg.min_label_count)
    if frequent < ANSWER_CLASSES_SHARE * checker.unlabelled_answers:
        return None
    counts = Counter({answer: entry[0] for answer, entry in checker.short_answers.items()})
    return counts, {answer: entry[1] for answer, entry in checker.short_answers.items()}


def label_rules(checker) -> None:
    """label_variant, rare_label and class_imbalance, from the label counts, or from the short answers of a file
    without labels whose answers are its classes."""
    limit, tallies, cfg = checker.limit, checker.tallies, checker.cfg
    label_counts, label_examples, what = checker.label_counts, checker.label_examples, "label"
    if not label_counts:
        classes = answer_classes(checker)
        if classes is None:
            return
        (label_counts, label_examples), what = classes, "answer"
    by_norm: dict[str, list[str]] = defaultdict(list)
    for label in label_counts:
        by_norm[label_norm(label)].append(label)
    main_of: dict[str, str] = {}
    for variants in by_norm.values():
        if len(variants) > 1:
            main = max(variants, key=lambda v: label_counts[v])
            for v in variants:
                if v != main:
                    main_of[v] = main
                    tally = tallies["label_variant"]
                    tally.count += label_counts[v]
                    for src in label_examples[v][:max(0, limit - len(tally.examples))]:
                        tally.examples.append({"source": src, "detail": f"{what} '{v}' looks like a variant of "
                                                                        f"'{main}'"})
    total = sum(label_counts.values())
    frequent = [n for n in label_counts.values() if n >= cfg.min_label_count and n >= total * RARE_LABEL_SHARE]
    for label, count in sorted(label_counts.items()):
        if count < cfg.min_label_count:
            why = f"fewer than {cfg.min_label_count}"
        elif frequent and count < total * RARE_LABEL_SHARE and count * RARE_LABEL_FACTOR <= min(frequent):
            why = f"{count / total:.2%} of the records, each frequent {what} has {min(frequent)} or more"
        else:
            continue
        tally = tallies["rare_label"]
        tally.count += count
        if len(tally.examples) < limit:
            hint = f"; a variant of '{main_of[label]}'?" if label in main_of else ""
            tally.examples.append({"source": label_examples[label][0],
                                   "detail": f"{what} '{label}' has {count} example(s), {why}{hint}"})
    if len(label_counts) > 1:
        (big, big_n), (small, small_n) = label_counts.most_common()[0], label_counts.most_common()[-1]
        if big_n / small_n > cfg.max_imbalance:
            tallies["class_imbalance"].add(
                "(dataset)", f"'{big}' has {big_n} records, '{small}' {small_n}: "
                             f"{big_n / small_n:.1f}× (maximum {cfg.max_imbalance:g}×)", limit)
