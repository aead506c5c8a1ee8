"""`r1tune annotate agreement`: kappa for intents, span F1 for entities and relations, the review list."""

import json
from collections import Counter

import pytest
from annotate_builders import annotation, choice, cli, region, relation, task, write_export

from r1tune.annotate.agreement import agreement_report, cohen_kappa, fleiss_kappa, span_f1

T = "腾讯控股（00700）控股腾讯音乐，维持买入评级。"


def test_cohen_kappa_textbook_example():
    # 50 items: both yes 20, A yes / B no 5, A no / B yes 10, both no 15 → p_o 0.7, p_e 0.5, kappa 0.4
    a = ["yes"] * 20 + ["yes"] * 5 + ["no"] * 10 + ["no"] * 15
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)


def test_cohen_kappa_edges():
    assert cohen_kappa(["a", "b", "a"], ["a", "b", "a"]) == pytest.approx(1.0)
    assert cohen_kappa(["a", "b"], ["b", "a"]) == pytest.approx(-1.0)
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None  # one label throughout: chance agreement is 1
    assert cohen_kappa([], []) is None
    with pytest.raises(ValueError):
        cohen_kappa(["a"], ["a", "b"])


def test_fleiss_kappa_textbook_example():
    # Fleiss (1971) as tabulated on Wikipedia: 10 items, 14 raters, 5 categories → 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    items = [Counter({f"c{j}": n for j, n in enumerate(row) if n}) for row in table]
    assert fleiss_kappa(items) == pytest.approx(0.2099, abs=1e-4)


def test_fleiss_equals_cohen_style_agreement_cases():
    assert fleiss_kappa([{"a": 2}, {"b": 2}, {"a": 2}]) == pytest.approx(1.0)
    assert fleiss_kappa([{"a": 1}]) is None  # one rating per item: nothing to agree on
    assert fleiss_kappa([{"a": 3}, {"a": 2}]) is None


def test_span_f1_is_symmetric_micro_f1():
    pairs = [({(0, 4, "公司"), (5, 10, "股票代码")}, {(0, 4, "公司")}), ({(1, 2, "人物")}, {(1, 2, "人物")})]
    assert span_f1(pairs) == {"f1": pytest.approx(2 * 2 / 5), "matched": 2, "items": 5, "tasks": 2}
    assert span_f1([(set(), set())])["f1"] is None


def ann(aid, by, intent, entities, rels=()):
    result = [region(rid, T, sub, label) for rid, sub, label in entities]
    result += [relation(a, b, name) for a, b, name in rels]
    if intent:
        result.append(choice(intent))
    return annotation(aid, result, by=by)


COMPANY, CODE, MUSIC = ("a", "腾讯控股", "公司"), ("b", "00700", "股票代码"), ("c", "腾讯音乐", "公司")


@pytest.fixture
def export(tmp_path):
    tasks = [
        # both agree on everything
        task(1, T, [ann(1, 1, "买入建议", [COMPANY, CODE], [("a", "b", "上市代码")]),
                    ann(2, 2, "买入建议", [COMPANY, CODE], [("a", "b", "上市代码")])]),
        # intents and entities differ; annotator 2 labelled twice (the later one counts)
        task(2, T, [ann(3, 1, "买入建议", [COMPANY, CODE]),
                    {**ann(4, 2, "卖出建议", [COMPANY]), "updated_at": "2026-01-01T09:00:00Z"},
                    {**ann(5, 2, "持有建议", [COMPANY]), "updated_at": "2026-01-02T09:00:00Z"}]),
        # agree on entities and intent, differ on relations
        task(3, T, [ann(6, 1, "持有建议", [COMPANY, MUSIC], [("a", "c", "控股")]),
                    ann(7, 2, "持有建议", [COMPANY, MUSIC])]),
        # one annotator only, and a cancelled second one: not compared
        task(4, T, [ann(8, 1, "卖出建议", [COMPANY]), annotation(9, [], by=2, cancelled=True)]),
        # an annotation with a problem is left out of the comparison
        task(5, T, [ann(10, 1, "买入建议", [COMPANY]), ann(11, 2, "观望", [COMPANY])]),
    ]
    return write_export(tmp_path / "export.json", tasks)


def test_agreement_report(export, schema):
    report = agreement_report(export, schema)
    assert report["annotators"] == ["1", "2"]
    assert report["tasks_with_two_or_more"] == 3 and report["annotations_with_problems"] == 1
    intents = report["intents"]
    # pairs on tasks 1-3: (买入,买入), (买入,持有), (持有,持有): p_o 2/3, p_e (2·1 + 1·2)/9 = 4/9 → 0.4
    assert intents["cohen"] == [{"annotators": ["1", "2"], "tasks": 3, "kappa": pytest.approx(0.4)}]
    assert intents["fleiss_tasks"] == 3
    assert intents["fleiss"] == pytest.approx(fleiss_kappa([{"买入建议": 2}, {"买入建议": 1, "持有建议": 1}, {"持有建议": 2}]))
    # entities: task1 2+2 shared 2, task2 2+1 shared 1, task3 2+2 shared 2 → 2·5 / 11
    assert report["entities"]["overall"] == {"f1": pytest.approx(10 / 11), "matched": 5, "items": 11, "tasks": 3}
    # relations: task1 1+1 shared 1, task3 1+0 → 2·1 / 3
    assert report["relations"]["overall"]["f1"] == pytest.approx(2 / 3)
    review = {item["task_id"]: item for item in report["review"]}
    assert sorted(review) == [2, 3]
    assert review[2]["layers"] == ["entities", "intents"]
    assert review[2]["annotations"] == [
        {"annotator": "1", "annotation_id": 3, "entities": ["腾讯控股/公司@0-4", "00700/股票代码@5-10"], "intents": "买入建议"},
        {"annotator": "2", "annotation_id": 5, "entities": ["腾讯控股/公司@0-4"], "intents": "持有建议"}]
    assert review[3]["layers"] == ["relations"]
    assert review[3]["annotations"][0]["relations"] == ["腾讯控股 -控股-> 腾讯音乐"]


def test_cli_agreement_prints_and_writes_the_report(export, schema_file, tmp_path, capsys):
    assert cli("annotate", "agreement", export, "--schema", schema_file, "--out", tmp_path / "report.json") == 0
    printed = capsys.readouterr().out
    assert "intents: Fleiss' kappa" in printed and "Cohen's kappa 1 vs 2: 0.400 (3 tasks)" in printed
    assert "entities: span F1 0.909" in printed and "review: 2 tasks where annotators disagree" in printed
    assert "  task 2: entities, intents" in printed
    saved = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert [item["task_id"] for item in saved["review"]] == [2, 3]
