"""`r1tune human-eval export | import`: the blind A/B round trip of human evaluation.

    r1tune human-eval export runs/eval --out runs/eval/human --n 100      # sheet.csv + Label Studio tasks, key.json
    r1tune human-eval import runs/eval/human filled/alice.csv filled/bob.csv

Export writes a shuffled, blinded sheet of two systems' answers from an `r1tune evaluate` folder; import scores
the filled sheets against the key (mean ratings, win rate with bootstrap intervals, Krippendorff's alpha),
writes human.json and renders that evaluation's report again with the human results in it
(`evaluate/human.py` holds the parts).
"""

from __future__ import annotations

import json
from pathlib import Path

from r1tune.errors import R1TuneError
from r1tune.evaluate.human import export_sheet, human_report, read_filled
from r1tune.evaluate.report import render_report
from r1tune.files import check_outputs, write_text


def export_sheets(evaluation: str | Path, out: str | Path, systems: list[str] | None = None, n: int | None = None,
                  seed: int = 0, with_reasoning: bool = False) -> dict:
    info = export_sheet(evaluation, out, systems, n=n, seed=seed, with_reasoning=with_reasoning)
    print(f"wrote {info['items']} blind A/B items ({info['systems'][0]} vs {info['systems'][1]}) to {out}; "
          f"keep {Path(out) / 'key.json'} from the raters")
    return info


def import_sheets(sheet_dir: str | Path, filled: list[str | Path], resamples: int = 1000, seed: int = 0) -> dict:
    """Score filled sheets against the sheet's key; write human.json there and into the evaluation folder,
    and render that evaluation's report again with the human results in it."""
    sheet_dir = Path(sheet_dir)
    if not (sheet_dir / "key.json").exists():
        raise R1TuneError(f"{sheet_dir}: no key.json (export the sheet with `r1tune human-eval export`)")
    if not filled:
        raise R1TuneError("give at least one filled sheet (CSV) or Label Studio export (JSON)")
    missing = [str(p) for p in filled if not Path(p).exists()]
    if missing:
        raise R1TuneError(f"filled sheet not found: {', '.join(missing)}")
    key = json.loads((sheet_dir / "key.json").read_text(encoding="utf-8"))
    eval_dir = Path(key["evaluation"])
    check_outputs([sheet_dir / "human.json", eval_dir / "human.json", eval_dir / "report.html"],
                  inputs=[sheet_dir / "key.json", *filled])
    judgements = [j for path in filled for j in read_filled(path)]
    if not judgements:
        raise R1TuneError("the filled sheets hold no ratings")
    summary = human_report(key, judgements, resamples=resamples, seed=seed)
    text = json.dumps(summary, ensure_ascii=False, indent=1)
    write_text(sheet_dir / "human.json", text)
    if (eval_dir / "metrics.json").exists():
        write_text(eval_dir / "human.json", text)
        results = json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8"))
        render_report(results, eval_dir / "report.html", human=summary)
        summary["report"] = str(eval_dir / "report.html")
    print_summary(summary, sheet_dir)
    return summary


def print_summary(summary: dict, sheet_dir: Path) -> None:
    for system, means in summary["means"].items():
        print(f"{system}: " + ", ".join(f"{c} {m['value']:.2f}" for c, m in means.items()))
    if "win_rate" in summary:
        print(f"win rate of {summary['candidate']}: {summary['win_rate']['value']:.3f} "
              f"[{summary['win_rate']['low']:.3f}, {summary['win_rate']['high']:.3f}]")
    print("agreement (Krippendorff's alpha): " + ", ".join(
        f"{k} {'–' if v is None else f'{v:.3f}'}" for k, v in summary["agreement"].items()))
    print(f"wrote {sheet_dir / 'human.json'}" + (f"; report: {summary['report']}" if "report" in summary else ""))
