"""`r1tune annotate import`: hand-built Label Studio exports → per-layer samples and per-task problems."""

import json

import pytest
from annotate_builders import annotation, choice, cli, read_jsonl, region, relation, task, write_export

from r1tune.annotate import prompts
from r1tune.annotate.export import read_export
from r1tune.annotate.importer import import_export
from r1tune.data.formats import load_samples
from r1tune.errors import DataError, R1TuneError

T1 = "腾讯控股（00700）控股腾讯音乐，维持买入评级。"


def full_annotation(aid, by, updated="2026-01-01T10:00:00Z", intent="买入建议", **kw):
    return annotation(aid, [
        region("a", T1, "腾讯控股", "公司"),
        region("b", T1, "00700", "股票代码"),
        region("c", T1, "腾讯音乐", "公司"),
        relation("a", "c", "控股"),
        relation("a", "b", "上市代码"),
        choice(intent),
    ], by=by, updated=updated, **kw)


def run_import(tmp_path, schema, tasks, **kw):
    export = write_export(tmp_path / "export.json", tasks)
    counts = import_export(export, schema, tmp_path / "out", **kw)
    out = tmp_path / "out"
    files = {name: read_jsonl(out / f"{name}.jsonl") for name in ("entities", "relations", "intents", "problems")}
    return counts, files


def test_agreeing_annotators_become_one_sample_per_layer(tmp_path, schema):
    tasks = [task(1, T1, [full_annotation(11, by=1), full_annotation(12, by=2),
                          annotation(13, [], by=3, cancelled=True)])]
    counts, files = run_import(tmp_path, schema, tasks)
    assert counts["imported"] == 1 and counts["problems"] == 0 and counts["cancelled_annotations"] == 1
    [ent], [rel], [intent] = files["entities"], files["relations"], files["intents"]
    assert ent["messages"] == [
        {"role": "user", "content": prompts.entity_prompt(schema, T1)},
        {"role": "assistant", "content": '[{"text": "腾讯控股", "label": "公司"}, {"text": "00700", "label": "股票代码"}, '
                                         '{"text": "腾讯音乐", "label": "公司"}]'}]
    assert json.loads(rel["messages"][1]["content"]) == [  # in text order of head, then tail
        {"head": "腾讯控股", "relation": "上市代码", "tail": "00700"},
        {"head": "腾讯控股", "relation": "控股", "tail": "腾讯音乐"}]
    assert rel["messages"][0]["content"] == prompts.relation_prompt(schema, T1)
    assert intent["messages"][1] == {"role": "assistant", "content": "买入建议"}
    assert intent["label"] == "买入建议" and intent["task_id"] == 1
    assert files["problems"] == []


def test_offsets_into_chinese_text_pick_the_right_occurrence(tmp_path, schema):
    # "控股" occurs inside 腾讯控股 and as a verb; the region is the second one, at code-point offsets 11-13
    text = "腾讯控股（00700）控股腾讯音乐"
    assert text[11:13] == "控股"
    tasks = [task(1, text, [annotation(1, [region("x", text, "腾讯音乐", "公司"),
                                           region("y", text, "腾讯控股", "公司", start=0, end=4)])])]
    exported = read_export(write_export(tmp_path / "e.json", tasks), schema)
    spans = exported[0].annotations[0].entities
    assert [(s.start, s.end, s.text) for s in spans] == [(0, 4, "腾讯控股"), (13, 17, "腾讯音乐")]


def test_samples_load_as_training_data(tmp_path, schema):
    run_import(tmp_path, schema, [task(1, T1, [full_annotation(1, by=1)])])
    for layer in ("entities", "relations", "intents"):
        samples, skipped = load_samples(tmp_path / "out" / f"{layer}.jsonl")
        assert len(samples) == 1 and not skipped
        assert samples[0].meta["task_id"] == 1


@pytest.mark.parametrize("result, reason", [
    ([region("r1", T1, "腾讯控股", "公司", start=20, end=40)],
     "region r1: span 20-40 is outside the text (length 25)"),
    ([region("r1", T1, "腾讯控股", "公司", start=-1, end=3)],
     "region r1: span -1-3 is outside the text (length 25)"),
    ([region("r1", T1, "腾讯控股", "公司", start=1, end=5)],
     "region r1: span 1-5 reads '讯控股（' but the annotation says '腾讯控股'"),
    ([region("r1", T1, "腾讯控股", "公司", start=4, end=4)], "region r1: empty span 4-4"),
    ([region("r1", T1, "腾讯控股", "集团")],
     "region r1 ('腾讯控股'): entity label '集团' is not in the schema (entities: 公司, 股票代码, 人物)"),
    ([{"id": "r1", "from_name": "entity", "to_name": "text", "type": "labels",
       "value": {"start": 0, "end": 4, "text": "腾讯控股", "labels": []}}], "region r1 ('腾讯控股') has no label"),
    ([{"id": "r1", "type": "labels", "value": {"x": 10, "y": 20, "labels": ["公司"]}}],
     "region r1 is not a text span (value.start/value.end are not whole numbers)"),
    ([region("a", T1, "腾讯控股", "公司"), relation("a", "zz", "控股")],
     "relation a→zz joins regions that are not in this annotation: zz"),
    ([relation("p", "q", "控股")], "relation p→q joins regions that are not in this annotation: p, q"),
    ([region("a", T1, "腾讯控股", "公司"), region("c", T1, "腾讯音乐", "公司"), relation("a", "c", "持有")],
     "relation a→c: relation type '持有' is not in the schema (relations: 控股, 上市代码)"),
    ([region("a", T1, "腾讯控股", "公司"), region("b", T1, "00700", "股票代码"), relation("a", "b", "控股")],
     "relation a→b: '控股' links 公司 '腾讯控股' → 股票代码 '00700'; the schema allows 公司 → 公司"),
    ([region("a", T1, "腾讯控股", "公司"), region("c", T1, "腾讯音乐", "公司"), relation("a", "c", None)],
     "relation a→c has no relation type"),
    ([choice("观望")], "intent '观望' is not in the schema (intents: 买入建议, 持有建议, 卖出建议)"),
    ([choice(["买入建议", "卖出建议"])], "several intents chosen: 买入建议, 卖出建议 (an intent is one label per text)"),
])
def test_malformed_annotations_give_a_clear_per_task_reason(tmp_path, schema, result, reason):
    good = task(1, T1, [full_annotation(1, by=1)])
    bad = task(2, T1, [annotation(7, result, by=1)])
    counts, files = run_import(tmp_path, schema, [good, bad])
    assert files["problems"] == [{"task_id": 2, "annotation_id": 7, "reason": reason}]
    # the task with a problem is left out of every layer; the good one still imports
    assert [s["task_id"] for s in files["entities"]] == [1]
    assert [s["task_id"] for s in files["relations"]] == [1]
    assert [s["task_id"] for s in files["intents"]] == [1]
    assert counts["imported"] == 1 and counts["with_problems"] == 1


def test_every_problem_of_a_task_is_listed(tmp_path, schema):
    result = [region("r1", T1, "腾讯控股", "公司", start=30, end=34), region("r2", T1, "00700", "代码"),
              relation("r9", "r8", "控股"), choice("观望")]
    _, files = run_import(tmp_path, schema, [task(5, T1, [annotation(3, result)])])
    assert [p["reason"] for p in files["problems"]] == [
        "region r1: span 30-34 is outside the text (length 25)",
        "region r2 ('00700'): entity label '代码' is not in the schema (entities: 公司, 股票代码, 人物)",
        "relation r9→r8 joins regions that are not in this annotation: r9, r8",
        "intent '观望' is not in the schema (intents: 买入建议, 持有建议, 卖出建议)"]
    assert all(p["task_id"] == 5 and p["annotation_id"] == 3 for p in files["problems"])


def test_a_relation_to_a_region_with_its_own_problem_is_not_reported_twice(tmp_path, schema):
    result = [region("a", T1, "腾讯控股", "公司"), region("c", T1, "腾讯音乐", "集团"), relation("a", "c", "控股")]
    _, files = run_import(tmp_path, schema, [task(1, T1, [annotation(1, result)])])
    assert [p["reason"] for p in files["problems"]] == [
        "region c ('腾讯音乐'): entity label '集团' is not in the schema (entities: 公司, 股票代码, 人物)"]


def test_cancelled_and_unlabelled_tasks_are_counted_not_problems(tmp_path, schema):
    tasks = [task(1, T1, [full_annotation(1, by=1)]),
             task(2, T1, [annotation(2, [], by=1, cancelled=True), annotation(3, [], by=2, cancelled=True)]),
             task(3, T1, [])]
    counts, files = run_import(tmp_path, schema, tasks)
    assert counts == {**counts, "tasks": 3, "imported": 1, "cancelled_only": 1, "unlabelled": 1,
                      "cancelled_annotations": 2, "with_problems": 0, "problems": 0}
    assert files["problems"] == []


def test_cancelled_annotation_is_not_checked(tmp_path, schema):
    # a skipped task may carry half-made regions: they are not the annotator's answer
    bad = [region("r1", T1, "腾讯控股", "公司", start=50, end=54)]
    counts, files = run_import(tmp_path, schema, [task(1, T1, [annotation(1, bad, cancelled=True)])])
    assert files["problems"] == [] and counts["cancelled_only"] == 1


def test_disagreeing_annotators_are_a_problem_unless_one_is_ground_truth(tmp_path, schema):
    tasks = [task(1, T1, [full_annotation(1, by=1, intent="买入建议"), full_annotation(2, by=2, intent="持有建议")]),
             task(2, T1, [full_annotation(3, by=1, intent="买入建议"),
                          full_annotation(4, by=2, intent="卖出建议", ground_truth=True)])]
    counts, files = run_import(tmp_path, schema, tasks)
    assert files["problems"] == [{"task_id": 1, "annotation_id": None, "reason":
                                  "annotators disagree on intents (annotations 1 by 1, 2 by 2); mark one as ground "
                                  "truth in Label Studio, see `r1tune annotate agreement`, or import with "
                                  "--on-disagreement latest"}]
    assert [(s["task_id"], s["label"]) for s in files["intents"]] == [(2, "卖出建议")]
    assert files["intents"][0]["annotation_id"] == 4


def test_on_disagreement_latest_takes_the_last_edited_annotation(tmp_path, schema):
    tasks = [task(1, T1, [full_annotation(1, by=1, intent="买入建议", updated="2026-03-02T09:00:00Z"),
                          full_annotation(2, by=2, intent="持有建议", updated="2026-03-01T09:00:00Z")])]
    counts, files = run_import(tmp_path, schema, tasks, on_disagreement="latest")
    assert files["problems"] == [] and [s["label"] for s in files["intents"]] == ["买入建议"]


def test_hand_configured_project_imports_by_result_type(tmp_path, schema):
    # other control names, another data field, extra result types (a rating, a comment): still imports
    text = "阿里巴巴控股蚂蚁集团，建议持有。"
    result = [region("x1", text, "阿里巴巴", "公司", control="ner"), region("x2", text, "蚂蚁集团", "公司", control="ner"),
              relation("x1", "x2", "控股"), choice("持有建议", control="advice"),
              {"id": "rt", "from_name": "quality", "to_name": "doc", "type": "rating", "value": {"rating": 4}},
              {"id": "tx", "from_name": "note", "to_name": "doc", "type": "textarea", "value": {"text": ["ok"]}}]
    for r in result:
        if "to_name" in r:
            r["to_name"] = "doc"
    counts, files = run_import(tmp_path, schema, [task(1, text, [annotation(1, result)], field="content")])
    assert files["problems"] == [] and counts["ignored_results"] == 2
    assert json.loads(files["entities"][0]["messages"][1]["content"]) == [
        {"text": "阿里巴巴", "label": "公司"}, {"text": "蚂蚁集团", "label": "公司"}]
    assert json.loads(files["relations"][0]["messages"][1]["content"]) == [
        {"head": "阿里巴巴", "relation": "控股", "tail": "蚂蚁集团"}]
    assert files["intents"][0]["label"] == "持有建议"


def test_relation_direction_left_and_bi(tmp_path, schema):
    left = [region("a", T1, "腾讯控股", "公司"), region("b", T1, "00700", "股票代码"), relation("b", "a", "上市代码", "left")]
    bi = [region("a", T1, "腾讯控股", "公司"), region("b", T1, "00700", "股票代码"), relation("b", "a", "上市代码", "bi")]
    _, files = run_import(tmp_path, schema, [task(1, T1, [annotation(1, left)]), task(2, T1, [annotation(2, bi)])])
    assert files["problems"] == []
    for sample in files["relations"]:
        assert json.loads(sample["messages"][1]["content"]) == [{"head": "腾讯控股", "relation": "上市代码", "tail": "00700"}]


def test_empty_annotation_is_a_negative_example_without_intent(tmp_path, schema):
    _, files = run_import(tmp_path, schema, [task(1, "今天天气不错。", [annotation(1, [])])])
    assert files["entities"][0]["messages"][1]["content"] == "[]"
    assert files["relations"][0]["messages"][1]["content"] == "[]"
    assert files["intents"] == []


def test_utf16_offsets_of_older_label_studio_are_converted(tmp_path, schema):
    text = "📈腾讯控股🚀维持买入"
    # JavaScript counted each emoji as two units: 腾讯控股 at 2-6 instead of 1-5
    result = [region("a", text, "腾讯控股", "公司", start=2, end=6)]
    _, files = run_import(tmp_path, schema, [task(1, text, [annotation(1, result)])])
    assert files["problems"] == []
    spans = read_export(tmp_path / "export.json", schema)[0].annotations[0].entities
    assert [(s.start, s.end) for s in spans] == [(1, 5)]


def test_task_without_text_field_is_a_problem(tmp_path, schema):
    bad = {"id": 4, "data": {"title": "a", "body": "b"}, "annotations": [annotation(1, [])]}
    _, files = run_import(tmp_path, schema, [task(1, T1, [full_annotation(2, by=1)]), bad])
    assert files["problems"] == [{"task_id": 4, "annotation_id": None, "reason":
                                  "task data has no text in field 'text' (fields: title, body); set text_field in the schema"}]


def test_json_min_export_is_refused_with_advice(tmp_path, schema):
    path = tmp_path / "min.json"
    path.write_text(json.dumps([{"id": 1, "text": T1, "label": [{"start": 0, "end": 4, "labels": ["公司"]}]}]))
    with pytest.raises(DataError, match="export the project as 'JSON', not 'JSON-MIN'"):
        import_export(path, schema, tmp_path / "out")


def test_unknown_disagreement_policy_is_a_user_error(tmp_path, schema):
    write_export(tmp_path / "e.json", [])
    with pytest.raises(R1TuneError, match="--on-disagreement must be one of problem, latest"):
        import_export(tmp_path / "e.json", schema, tmp_path / "out", on_disagreement="vote")


def test_only_declared_layers_are_written(tmp_path):
    from r1tune.annotate.schema import AnnotationSchema

    intents_only = AnnotationSchema(intents=["买入建议", "卖出建议"])
    export = write_export(tmp_path / "export.json", [task(1, T1, [annotation(1, [choice("买入建议")])])])
    counts = import_export(export, intents_only, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["intents.jsonl", "problems.jsonl"]
    assert counts["intents"] == 1


def test_cli_import_prints_a_summary_and_strict_fails_on_problems(tmp_path, schema_file, capsys):
    export = write_export(tmp_path / "export.json", [
        task(1, T1, [full_annotation(1, by=1)]),
        task(2, T1, [annotation(2, [region("r1", T1, "腾讯控股", "公司", start=0, end=99)])]),
        task(3, T1, [annotation(3, [], cancelled=True)])])
    assert cli("annotate", "import", export, "--schema", schema_file, "--out", tmp_path / "out") == 0
    printed = capsys.readouterr().out
    assert f"imported 1 of 3 tasks into {tmp_path / 'out'} (samples: entities 1, relations 1, intents 1); " in printed
    assert "1 problems in 1 tasks, left out" in printed and "1 tasks only skipped by annotators" in printed
    assert cli("annotate", "import", export, "--schema", schema_file, "--out", tmp_path / "o2", "--strict") == 2
    assert "error: imported 1 of 3 tasks" in capsys.readouterr().err


def test_a_genuine_label_studio_export(tmp_path, schema):
    """An export written by Label Studio 1.23.2 itself (saved from test_annotate_labelstudio_server.py)."""
    from pathlib import Path

    export = Path(__file__).parent / "data" / "labelstudio-1.23.2-export.json"
    counts = import_export(export, schema, tmp_path / "out")
    assert {k: counts[k] for k in ("tasks", "imported", "with_problems", "cancelled_only", "problems")} == {
        "tasks": 5, "imported": 3, "with_problems": 1, "cancelled_only": 1, "problems": 1}
    intents = read_jsonl(tmp_path / "out" / "intents.jsonl")
    assert [(s["task_id"], s["label"]) for s in intents] == [(1, "买入建议"), (2, "持有建议"), (5, "卖出建议")]
    entities = read_jsonl(tmp_path / "out" / "entities.jsonl")
    assert json.loads(entities[2]["messages"][1]["content"]) == [{"text": "贵州茅台", "label": "公司"},
                                                                 {"text": "600519", "label": "股票代码"}]
    assert read_jsonl(tmp_path / "out" / "problems.jsonl") == [{"task_id": 4, "annotation_id": 6, "reason":
        "region a ('中国平安'): entity label '集团' is not in the schema (entities: 公司, 股票代码, 人物)"}]
