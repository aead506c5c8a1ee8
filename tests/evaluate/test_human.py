"""Human evaluation round trip: a blind shuffled A/B sheet out, filled sheets (CSV or Label Studio) back in."""

import csv
import json
import shutil

import pytest

from r1tune.errors import R1TuneError
from r1tune.evaluate.human import CRITERIA, export_sheet, label_studio_config
from r1tune.recipes.human_eval import import_sheets


def read_sheet(path):
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def fill(rows, key, rater, tuned_score=5, base_score=2, preference=True):
    """A rater who rates the tuned answers higher (through the key, as the test knows the answers)."""
    filled = []
    for row in rows:
        sides = key["items"][row["item"]]
        out = dict(row, rater=rater)
        for side in ("a", "b"):
            score = tuned_score if sides[side.upper()] == "tuned" else base_score
            out.update({f"{side}_{c}": str(score) for c in CRITERIA})
        out["preference"] = ("A" if sides["A"] == "tuned" else "B") if preference else ""
        filled.append(out)
    return filled


def write_sheet(path, rows):
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_export_is_blind_and_shuffled(classification_eval, tmp_path):
    info = export_sheet(classification_eval["dir"], tmp_path / "sheet", n=40, seed=3)
    assert info == {"items": 40, "systems": ["base", "tuned"], "out": str(tmp_path / "sheet")}
    rows = read_sheet(tmp_path / "sheet" / "sheet.csv")
    key = json.loads((tmp_path / "sheet" / "key.json").read_text(encoding="utf-8"))
    assert len(rows) == 40 and set(rows[0]) >= {"item", "prompt", "response_a", "response_b", "a_accuracy",
                                                 "b_domain_fit", "preference"}
    sheet_text = (tmp_path / "sheet" / "sheet.csv").read_text(encoding="utf-8-sig")
    assert "tuned" not in sheet_text and "base" not in sheet_text  # nothing names a system
    tuned_side = [key["items"][r["item"]]["A"] == "tuned" for r in rows]
    assert 10 < sum(tuned_side) < 30  # the tuned answer is A about half the time
    ids = [key["items"][r["item"]]["id"] for r in rows]
    original = [json.loads(line)["id"] for line in
                (classification_eval["dir"] / "predictions" / "base.jsonl").read_text(encoding="utf-8").splitlines()]
    assert ids != sorted(ids, key=original.index)  # shuffled
    for row in rows[:10]:  # each side shows the right system's answer for that prompt
        record = {r["id"]: r for r in map(json.loads, (classification_eval["dir"] / "predictions" /
                  f"{key['items'][row['item']]['A']}.jsonl").read_text(encoding="utf-8").splitlines())}
        assert row["response_a"] == record[key["items"][row["item"]]["id"]]["answer"]
    tasks = json.loads((tmp_path / "sheet" / "label_studio_tasks.json").read_text(encoding="utf-8"))
    assert [t["data"]["item"] for t in tasks] == [r["item"] for r in rows]
    assert 'name="a_accuracy"' in label_studio_config() and "$response_b" in label_studio_config()
    assert (tmp_path / "sheet" / "rubric.md").read_text(encoding="utf-8").count("1") >= 3


def test_import_csv_sheets_reports_means_win_rate_and_agreement(classification_eval, tmp_path):
    evaluation = shutil.copytree(classification_eval["dir"], tmp_path / "eval")  # import writes into it
    export_sheet(evaluation, tmp_path / "sheet", n=30, seed=1)
    rows = read_sheet(tmp_path / "sheet" / "sheet.csv")
    key = json.loads((tmp_path / "sheet" / "key.json").read_text(encoding="utf-8"))
    alice = write_sheet(tmp_path / "alice.csv", fill(rows, key, "alice"))
    bob_rows = fill(rows, key, "bob", preference=False)  # bob leaves preference blank: ratings decide
    bob_rows[0]["comment"] = "清楚"
    bob = write_sheet(tmp_path / "bob.csv", bob_rows)
    summary = import_sheets(tmp_path / "sheet", [alice, bob], resamples=200)
    assert summary["raters"] == ["alice", "bob"] and summary["items"] == 30 and summary["judgements"] == 60
    assert summary["means"]["tuned"]["accuracy"]["value"] == 5.0
    assert summary["means"]["base"]["fluency"]["value"] == 2.0
    assert summary["win_rate"]["value"] == 1.0 and summary["outcomes"] == {"win": 60, "tie": 0, "loss": 0}
    assert summary["agreement"]["accuracy"] == 1.0  # identical ratings
    # the evaluation's report now has a human section
    html = (evaluation / "report.html").read_text(encoding="utf-8")
    assert "Human evaluation" in html and "Krippendorff" in html and "Win rate of <b>tuned</b>" in html
    assert json.loads((evaluation / "human.json").read_text(encoding="utf-8"))["items"] == 30


def test_label_studio_export_round_trip_and_disagreement(classification_eval, tmp_path):
    export_sheet(shutil.copytree(classification_eval["dir"], tmp_path / "eval"), tmp_path / "sheet", n=20, seed=2)
    key = json.loads((tmp_path / "sheet" / "key.json").read_text(encoding="utf-8"))
    tasks = json.loads((tmp_path / "sheet" / "label_studio_tasks.json").read_text(encoding="utf-8"))
    for number, task in enumerate(tasks):
        sides = key["items"][task["data"]["item"]]
        annotations = []
        for rater, noisy in ((1, False), (2, True)):
            result = []
            for side in ("a", "b"):
                score = 4 if sides[side.upper()] == "tuned" else 3
                if noisy and number % 2:
                    score = 7 - score  # rater 2 disagrees on every other item
                result += [{"from_name": f"{side}_{c}", "to_name": f"response_{side}", "type": "rating",
                            "value": {"rating": score}} for c in CRITERIA]
            choice = "tie" if noisy and number % 2 else ("A" if sides["A"] == "tuned" else "B")
            result.append({"from_name": "preference", "to_name": "prompt", "type": "choices",
                           "value": {"choices": [choice]}})
            annotations.append({"completed_by": {"id": rater, "email": f"r{rater}@example.com"}, "result": result})
        task["annotations"] = annotations
    export = tmp_path / "project.json"
    export.write_text(json.dumps(tasks), encoding="utf-8")
    summary = import_sheets(tmp_path / "sheet", [export], resamples=200)
    assert summary["raters"] == ["r1@example.com", "r2@example.com"]
    assert summary["outcomes"] == {"win": 30, "tie": 10, "loss": 0}
    assert summary["win_rate"]["value"] == 0.875
    assert summary["means"]["tuned"]["accuracy"]["value"] == pytest.approx((4 * 30 + 3 * 10) / 40)
    assert summary["agreement"]["accuracy"] < 0.5  # half the items rated the other way round
    assert summary["agreement"]["preference"] < 1.0


def test_bad_sheets_are_rejected_with_the_place(classification_eval, tmp_path):
    export_sheet(classification_eval["dir"], tmp_path / "sheet", n=5, seed=0)
    rows = read_sheet(tmp_path / "sheet" / "sheet.csv")
    rows[1]["a_accuracy"] = "9"
    bad = write_sheet(tmp_path / "bad.csv", rows)
    with pytest.raises(R1TuneError, match=r"bad\.csv:3: a_accuracy: 9 is outside 1–5"):
        import_sheets(tmp_path / "sheet", [bad])
    with pytest.raises(R1TuneError, match="two different systems"):
        export_sheet(classification_eval["dir"], tmp_path / "x", systems=["tuned", "tuned"])
