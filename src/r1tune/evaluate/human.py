"""Human evaluation round trip: a blind, shuffled A/B sheet out; filled sheets in; means, win rate, agreement.

    r1tune human-eval export runs/eval --out runs/eval/human [--systems base,tuned] [--n 50]
    # raters fill sheet.csv (one copy each) or label in Label Studio with the exported tasks and config
    r1tune human-eval import runs/eval/human filled/alice.csv filled/bob.csv   # or a Label Studio JSON export

Export reads the outputs an `r1tune evaluate` run wrote (OUT/predictions/*.jsonl), takes two systems,
and writes, for each prompt, both answers as "A" and "B" in an order drawn per item (seeded), with the
rows shuffled: raters cannot tell which model wrote what. `key.json` holds the unblinding key; do not hand
it to raters. Each answer gets 1–5 on accuracy, fluency and domain fit (rubric.md), and each item a
preference (A, B or tie; left blank it follows the higher mean rating).

Import maps A/B back to systems and reports each system's mean per criterion (with a bootstrap interval
over items), the candidate's win rate against the baseline (ties count half), and inter-rater agreement
(Krippendorff's alpha: ordinal for ratings, nominal for preferences). It writes `human.json` beside the
sheet, and into the evaluation folder, whose report.html is rendered again with a human evaluation section.
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np

from r1tune.data.io import read_records
from r1tune.errors import R1TuneError
from r1tune.evaluate.bootstrap import MetricStats, confidence_interval, resample_weights
from r1tune.files import OutputSet, check_outputs

CRITERIA = ("accuracy", "fluency", "domain_fit")
RUBRIC = {
    "accuracy": ("Is the answer correct and complete for this prompt? 1 = wrong or harmful, 3 = partly right, "
                 "5 = fully correct. / 答案对这个问题是否正确、完整？1 错误或有害，3 部分正确，5 完全正确。"),
    "fluency": ("Is it clear, natural language in the prompt's language? 1 = hard to read, 3 = understandable "
                "with effort, 5 = natural. / 语言是否通顺自然（与提问语言一致）？1 难以阅读，3 费力能懂，5 自然流畅。"),
    "domain_fit": ("Does it use the domain's terms, format and conventions as an expert would? 1 = not at all, "
                   "3 = partly, 5 = as an expert would. / "
                   "是否符合领域术语、格式与规范？1 完全不符，3 部分符合，5 专业水准。"),
}
PREFERENCES = ("A", "B", "tie")
SHEET_COLUMNS = ["item", "prompt", "response_a", "response_b",
                 *(f"{side}_{c}" for side in ("a", "b") for c in CRITERIA), "preference", "comment", "rater"]


def read_predictions(eval_dir: Path, system: str) -> list[dict]:
    path = eval_dir / "predictions" / f"{system}.jsonl"
    if not path.exists():
        available = sorted(p.stem for p in (eval_dir / "predictions").glob("*.jsonl"))
        raise R1TuneError(f"{path}: no outputs of system '{system}' (this evaluation has: {', '.join(available)})")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _response(record: dict, with_reasoning: bool) -> str:
    if with_reasoning and record.get("reasoning"):
        return f"[reasoning / 思考过程]\n{record['reasoning']}\n\n[answer / 回答]\n{record['answer']}"
    return record["answer"]


def label_studio_config() -> str:
    """Label Studio labeling config: the prompt, both responses with three 1–5 ratings each, a preference."""
    ratings = {side: "\n".join(f'    <Header value="{c.replace("_", " ")} (1-5)" size="6"/>\n'
                               f'    <Rating name="{side}_{c}" toName="response_{side}" maxRating="5" required="true"/>'
                               for c in CRITERIA) for side in ("a", "b")}
    return f"""<View>
  <Header value="Prompt"/>
  <Text name="prompt" value="$prompt"/>
  <View style="display: flex; gap: 1em">
   <View style="flex: 1">
    <Header value="Response A"/>
    <Text name="response_a" value="$response_a"/>
{ratings["a"]}
   </View>
   <View style="flex: 1">
    <Header value="Response B"/>
    <Text name="response_b" value="$response_b"/>
{ratings["b"]}
   </View>
  </View>
  <Header value="Which response is better?"/>
  <Choices name="preference" toName="prompt" choice="single" required="true">
    <Choice value="A"/>
    <Choice value="B"/>
    <Choice value="tie"/>
  </Choices>
  <TextArea name="comment" toName="prompt" placeholder="optional comment"/>
</View>
"""


def export_sheet(eval_dir: str | Path, out: str | Path, systems: list[str] | None = None, n: int | None = None,
                 seed: int = 0, with_reasoning: bool = False) -> dict:
    """Write sheet.csv, label_studio_tasks.json, label_studio_config.xml, rubric.md and key.json into `out`."""
    eval_dir, out = Path(eval_dir), Path(out)
    metrics_path = eval_dir / "metrics.json"
    if not metrics_path.exists():
        raise R1TuneError(f"{eval_dir}: not an evaluation folder (no metrics.json); run `r1tune evaluate` first")
    known = json.loads(metrics_path.read_text(encoding="utf-8"))["systems"]
    systems = systems or known[:2]
    if len(systems) != 2 or systems[0] == systems[1]:
        raise R1TuneError(f"a human A/B sheet compares two different systems, got {systems} (have: {known})")
    names = ("sheet.csv", "label_studio_tasks.json", "label_studio_config.xml", "rubric.md", "key.json")
    check_outputs([out / name for name in names],
                  inputs=[metrics_path, *(eval_dir / "predictions" / f"{s}.jsonl" for s in systems)])
    baseline, candidate = (read_predictions(eval_dir, s) for s in systems)
    if [r["id"] for r in baseline] != [r["id"] for r in candidate]:
        raise R1TuneError(f"{systems[0]} and {systems[1]} were not evaluated on the same samples")
    rng = random.Random(seed)
    chosen = list(range(len(baseline)))
    if n is not None and n < len(chosen):
        chosen = sorted(rng.sample(chosen, n))
    rng.shuffle(chosen)
    rows, tasks, key = [], [], {}
    for number, index in enumerate(chosen, 1):
        item = f"h{number:04d}"
        flip = rng.random() < 0.5
        a, b = (candidate[index], baseline[index]) if flip else (baseline[index], candidate[index])
        key[item] = {"id": baseline[index]["id"], "A": systems[1] if flip else systems[0],
                     "B": systems[0] if flip else systems[1]}
        prompt = baseline[index].get("prompt") or ""
        data = {"item": item, "prompt": prompt, "response_a": _response(a, with_reasoning),
                "response_b": _response(b, with_reasoning)}
        rows.append({**data, **{c: "" for c in SHEET_COLUMNS[4:]}})
        tasks.append({"id": number, "data": data})
    rubric = ["# Rating rubric / 评分标准", "",
              "Rate each response 1–5 on every criterion; then pick the better response (A, B or tie).",
              "每个回答按以下标准各打 1–5 分，再选出更好的回答（A、B 或 tie）。", ""]
    rubric += [f"- **{c}**: {text}" for c, text in RUBRIC.items()]
    # one set: a sheet never lands without the key that unblinds it
    with OutputSet() as outputs:
        # utf-8 with a byte-order mark: Excel then opens Chinese text correctly
        writer = csv.DictWriter(outputs.open(out / "sheet.csv", encoding="utf-8-sig", newline=""),
                                fieldnames=SHEET_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        outputs.open(out / "label_studio_tasks.json").write(json.dumps(tasks, ensure_ascii=False, indent=1))
        outputs.open(out / "label_studio_config.xml").write(label_studio_config())
        outputs.open(out / "rubric.md").write("\n".join(rubric) + "\n")
        outputs.open(out / "key.json").write(json.dumps({"evaluation": str(eval_dir.resolve()), "baseline": systems[0],
                                                         "candidate": systems[1], "items": key},
                                                        ensure_ascii=False, indent=1))
    return {"items": len(rows), "systems": systems, "out": str(out)}


def _score(value, where: str) -> float | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        score = float(str(value).strip())
    except ValueError:
        raise R1TuneError(f"{where}: '{value}' is not a 1–5 rating") from None
    if not 1 <= score <= 5:
        raise R1TuneError(f"{where}: {value} is outside 1–5")
    return score


def _preference(value, where: str) -> str | None:
    text = str(value or "").strip()
    if not text:
        return None
    normalised = {"a": "A", "b": "B", "tie": "tie", "same": "tie", "equal": "tie", "平": "tie", "一样": "tie"}
    if text.lower() not in normalised:
        raise R1TuneError(f"{where}: preference '{value}' must be A, B or tie")
    return normalised[text.lower()]


def read_filled(path: str | Path) -> list[dict]:
    """Judgements from a filled CSV sheet or a Label Studio JSON export:
    [{"rater", "item", "A": {criterion: score}, "B": {…}, "preference"}]."""
    path = Path(path)
    judgements = []
    if path.suffix.lower() == ".json":
        for _, task in read_records(path):  # the shared reader: bad JSON stops with file:line: problem
            item = task.get("data", {}).get("item")
            for number, annotation in enumerate(task.get("annotations") or [], 1):
                if annotation.get("was_cancelled"):
                    continue
                rater = annotation.get("completed_by")
                rater = rater.get("email") or rater.get("id") if isinstance(rater, dict) else rater
                judgement = {"rater": str(rater if rater is not None else f"annotator{number}"), "item": item,
                             "A": {}, "B": {}, "preference": None}
                for result in annotation.get("result") or []:
                    name, value = result.get("from_name", ""), result.get("value", {})
                    where = f"{path}: item {item}, {name}"
                    if "rating" in value and name[:2] in ("a_", "b_") and name[2:] in CRITERIA:
                        judgement[name[0].upper()][name[2:]] = _score(value["rating"], where)
                    elif "choices" in value and name == "preference":
                        judgement["preference"] = _preference((value["choices"] or [""])[0], where)
                judgements.append(judgement)
        return judgements
    with open(path, encoding="utf-8-sig", newline="") as f:
        for line, row in enumerate(csv.DictReader(f), 2):
            where = f"{path}:{line}"
            judgement = {"rater": (row.get("rater") or "").strip() or path.stem, "item": row.get("item"),
                         "A": {c: _score(row.get(f"a_{c}"), f"{where}: a_{c}") for c in CRITERIA},
                         "B": {c: _score(row.get(f"b_{c}"), f"{where}: b_{c}") for c in CRITERIA},
                         "preference": _preference(row.get("preference"), f"{where}: preference")}
            if any(v is not None for side in ("A", "B") for v in judgement[side].values()) or judgement["preference"]:
                judgements.append(judgement)  # a row nobody filled in is not a judgement
    return judgements


def _alpha(reliability: np.ndarray, level: str) -> float | None:
    """Krippendorff's alpha over a raters × units matrix (nan = not rated); None without two ratings of a unit."""
    import krippendorff

    pairable = (np.sum(~np.isnan(reliability), axis=0) >= 2).sum()
    if reliability.shape[0] < 2 or pairable == 0:
        return None
    if len(np.unique(reliability[~np.isnan(reliability)])) < 2:
        return 1.0  # everyone gave the same value everywhere: perfect agreement (alpha's formula is 0/0)
    return float(krippendorff.alpha(reliability_data=reliability, level_of_measurement=level))


def human_report(key: dict, judgements: list[dict], resamples: int = 1000, seed: int = 0) -> dict:
    items = key["items"]
    unknown = sorted({j["item"] for j in judgements} - set(items))
    if unknown:
        raise R1TuneError("filled sheets name items that are not in this sheet's key: "
                          + ", ".join(map(str, unknown[:5])))
    baseline, candidate = key["baseline"], key["candidate"]
    per_item: dict[str, dict] = defaultdict(lambda: {"scores": defaultdict(list), "wins": []})
    raters = sorted({j["rater"] for j in judgements})
    for j in judgements:
        side_of = {items[j["item"]]["A"]: "A", items[j["item"]]["B"]: "B"}
        for system in (baseline, candidate):
            for c in CRITERIA:
                if j[side_of[system]].get(c) is not None:
                    per_item[j["item"]]["scores"][(system, c)].append(j[side_of[system]][c])
        preference = j["preference"]
        if preference is None:  # blank: the higher mean rating, if both sides were rated
            means = {s: np.mean([v for v in j[s].values() if v is not None]) for s in ("A", "B")
                     if any(v is not None for v in j[s].values())}
            if len(means) == 2:
                preference = "tie" if means["A"] == means["B"] else max(means, key=means.get)
        if preference is not None:
            won = 0.5 if preference == "tie" else float(items[j["item"]][preference] == candidate)
            per_item[j["item"]]["wins"].append(won)
    rated = sorted(per_item)
    summary: dict = {"baseline": baseline, "candidate": candidate, "raters": raters, "items": len(rated),
                     "judgements": len(judgements), "means": {}, "agreement": {}}
    for system in (baseline, candidate):
        summary["means"][system] = {}
        for c in CRITERIA:
            values = [np.mean(per_item[i]["scores"][(system, c)]) for i in rated if per_item[i]["scores"][(system, c)]]
            if values:
                stats = MetricStats.mean(c, values)
                summary["means"][system][c] = confidence_interval(stats, resample_weights(len(values), resamples, seed))
    wins = [np.mean(per_item[i]["wins"]) for i in rated if per_item[i]["wins"]]
    all_wins = [w for i in rated for w in per_item[i]["wins"]]
    if wins:
        summary["win_rate"] = confidence_interval(MetricStats.mean("win_rate", wins),
                                                  resample_weights(len(wins), resamples, seed))
        summary["outcomes"] = {"win": sum(w == 1.0 for w in all_wins), "tie": sum(w == 0.5 for w in all_wins),
                               "loss": sum(w == 0.0 for w in all_wins)}
    # agreement: one row per rater, one column per rated unit
    index = {r: k for k, r in enumerate(raters)}
    for c in CRITERIA:
        units = [(i, side) for i in rated for side in ("A", "B")]
        matrix = np.full((len(raters), len(units)), np.nan)
        column = {u: k for k, u in enumerate(units)}
        for j in judgements:
            for side in ("A", "B"):
                if j[side].get(c) is not None:
                    matrix[index[j["rater"]], column[(j["item"], side)]] = j[side][c]
        summary["agreement"][c] = _alpha(matrix, "ordinal")
    matrix = np.full((len(raters), len(rated)), np.nan)
    column = {i: k for k, i in enumerate(rated)}
    for j in judgements:
        if j["preference"] is not None:
            matrix[index[j["rater"]], column[j["item"]]] = PREFERENCES.index(j["preference"])
    summary["agreement"]["preference"] = _alpha(matrix, "nominal")
    return summary
