"""The `r1tune annotate` flows: schema → Label Studio config and tasks → export → training samples.

    r1tune annotate config configs/annotate/finance-schema.yaml --out config.xml
    r1tune annotate tasks configs/annotate/finance-texts.jsonl --schema configs/annotate/finance-schema.yaml \
        --out tasks.json [--model runs/finance-ner]
    r1tune annotate import export.json --schema configs/annotate/finance-schema.yaml --out data/annotated
    r1tune annotate agreement export.json --schema configs/annotate/finance-schema.yaml [--out agreement.json]

Each function reads the schema, does one step and returns the summary the command prints.
"""

from __future__ import annotations

from pathlib import Path

from r1tune.annotate.agreement import agreement_report, format_report
from r1tune.annotate.importer import import_export
from r1tune.annotate.labelstudio import label_config, make_tasks, write_json
from r1tune.annotate.predict import model_predictor
from r1tune.annotate.schema import load_schema
from r1tune.errors import R1TuneError
from r1tune.files import check_outputs, write_text


def write_label_config(schema_path: str | Path, out: str | Path | None = None) -> str:
    """The labeling config XML, written to `out` (returned as the printout when `out` is None)."""
    if out is not None:
        check_outputs([out], inputs=[schema_path])
    xml = label_config(load_schema(schema_path))
    if out is None:
        return xml.rstrip("\n")
    write_text(out, xml)
    return f"wrote Label Studio labeling config to {out}"


def write_tasks(data: str | Path, schema_path: str | Path, out: str | Path, model: str | Path | None = None,
                field: str | None = None, max_new_tokens: int = 1024, batch_size: int = 8) -> str:
    check_outputs([out], inputs=[data, schema_path])
    schema = load_schema(schema_path)
    predictor, version = None, "r1tune"
    if model is not None:

        predictor, version = model_predictor(model, schema, max_new_tokens=max_new_tokens, batch_size=batch_size)
    tasks, stats = make_tasks(data, schema, field=field, predictor=predictor, model_version=version,
                              batch_size=batch_size)
    write_json(out, tasks)
    line = f"wrote {stats['tasks']} tasks to {out}"
    if model is not None:
        by_layer = ", ".join(f"{k} {v}" for k, v in sorted(stats["failures_by_layer"].items()))
        line += (f"; {stats['with_predictions']} with pre-annotations from {version}; "
                 f"{stats['prediction_failures']} predicted items could not be used"
                 + (f" ({by_layer})" if by_layer else ""))
    return line


def import_annotations(export: str | Path, schema_path: str | Path, out: str | Path,
                       on_disagreement: str = "problem", strict: bool = False) -> str:
    counts = import_export(export, load_schema(schema_path), out, on_disagreement=on_disagreement)
    written = ", ".join(f"{layer} {counts[layer]}" for layer in ("entities", "relations", "intents") if layer in counts)
    line = (f"imported {counts['imported']} of {counts['tasks']} tasks into {out} (samples: {written}); "
            f"{counts['problems']} problems in {counts['with_problems']} tasks, left out "
            f"(see {Path(out) / 'problems.jsonl'}); "
            f"{counts['cancelled_only']} tasks only skipped by annotators, {counts['unlabelled']} not labelled")
    if counts["ignored_results"]:
        line += f"; {counts['ignored_results']} results of other types (not labels, relation, choices) ignored"
    if strict and counts["problems"]:
        raise R1TuneError(line)
    return line


def report_agreement(export: str | Path, schema_path: str | Path, out: str | Path | None = None) -> str:
    check_outputs([out], inputs=[export, schema_path])
    report = agreement_report(export, load_schema(schema_path))
    text = format_report(report)
    if out is not None:
        write_json(out, report)
        text += f"\nfull report: {out}"
    return text
