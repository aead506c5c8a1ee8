"""Labeling config and import tasks: what r1tune hands to Label Studio."""

import json
import xml.etree.ElementTree as ET

import pytest
from annotate_builders import cli

from r1tune.annotate.labelstudio import label_config, make_tasks, prediction_result
from r1tune.annotate.schema import AnnotationSchema
from r1tune.errors import DataError


def test_config_has_one_control_per_layer(schema):
    root = ET.fromstring(label_config(schema))
    assert root.tag == "View"
    assert [r.get("value") for r in root.find("Relations")] == ["控股", "上市代码"]
    labels = root.find("Labels")
    assert labels.get("name") == "entity" and labels.get("toName") == "text"
    assert [lab.get("value") for lab in labels] == ["公司", "股票代码", "人物"]
    assert len({lab.get("background") for lab in labels}) == 3
    assert root.find("Text").attrib == {"name": "text", "value": "$text"}
    choices = root.find("Choices")
    assert choices.get("toName") == "text" and choices.get("choice") == "single-radio"
    assert [c.get("value") for c in choices] == ["买入建议", "持有建议", "卖出建议"]


def test_config_of_partial_schema_and_odd_labels():
    schema = AnnotationSchema(intents=['Buy "strong"', "R&D <risk>"], text_field="content")
    xml = label_config(schema)
    root = ET.fromstring(xml)
    assert root.find("Labels") is None and root.find("Relations") is None
    assert [c.get("value") for c in root.find("Choices")] == ['Buy "strong"', "R&D <risk>"]
    assert root.find("Text").get("value") == "$content"


def test_a_relation_name_on_several_type_pairs_appears_once():
    schema = AnnotationSchema(entities=["药物", "疾病", "症状"], relations=[
        {"name": "治疗", "head": "药物", "tail": "疾病"}, {"name": "治疗", "head": "药物", "tail": "症状"}])
    assert [r.get("value") for r in ET.fromstring(label_config(schema)).find("Relations")] == ["治疗"]


def texts_file(tmp_path, rows):
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_tasks_without_model_keep_the_record(tmp_path, schema):
    path = texts_file(tmp_path, [{"id": "n1", "text": "腾讯控股维持买入", "source": "研报"}])
    tasks, stats = make_tasks(path, schema)
    assert tasks == [{"data": {"id": "n1", "source": "研报", "text": "腾讯控股维持买入"}}]
    assert stats["tasks"] == 1 and stats["with_predictions"] == 0


def test_tasks_read_another_field_into_the_schema_field(tmp_path, schema):
    path = texts_file(tmp_path, [{"content": "阿里巴巴建议持有"}])
    tasks, _ = make_tasks(path, schema, field="content")
    assert tasks == [{"data": {"text": "阿里巴巴建议持有"}}]


def test_record_without_text_is_located(tmp_path, schema):
    path = texts_file(tmp_path, [{"text": "ok"}, {"body": "no text"}])
    with pytest.raises(DataError) as err:
        make_tasks(path, schema)
    assert str(err.value) == f"{path}:2: field 'text': missing"


def fake_predictor(texts):
    """Finds 公司 names by a fixed list, links the first two, and reads the advice word."""
    out = []
    for text in texts:
        entities = [{"start": text.index(n), "end": text.index(n) + len(n), "label": "公司", "text": n}
                    for n in ("腾讯控股", "腾讯音乐") if n in text]
        relations = [{"head": 0, "tail": 1, "relation": "控股"}] if len(entities) == 2 else []
        intent = "买入建议" if "买入" in text else None
        out.append({"entities": entities, "relations": relations, "intent": intent,
                    "failures": [] if intent else ["intent: answer '?' is not one of the schema's intents"]})
    return out


def test_tasks_with_predictions_in_label_studio_result_format(tmp_path, schema):
    path = texts_file(tmp_path, [{"text": "腾讯控股（00700）控股腾讯音乐，维持买入评级。"}, {"text": "天气不错"}])
    tasks, stats = make_tasks(path, schema, predictor=fake_predictor, model_version="r1tune:ner-v1")
    assert tasks[0]["predictions"] == [{"model_version": "r1tune:ner-v1", "result": [
        {"id": "e0", "from_name": "entity", "to_name": "text", "type": "labels",
         "value": {"start": 0, "end": 4, "text": "腾讯控股", "labels": ["公司"]}},
        {"id": "e1", "from_name": "entity", "to_name": "text", "type": "labels",
         "value": {"start": 13, "end": 17, "text": "腾讯音乐", "labels": ["公司"]}},
        {"from_id": "e0", "to_id": "e1", "type": "relation", "direction": "right", "labels": ["控股"]},
        {"id": "intent", "from_name": "intent", "to_name": "text", "type": "choices",
         "value": {"choices": ["买入建议"]}}]}]
    assert "predictions" not in tasks[1]  # nothing predicted: the annotator starts blank
    assert stats == {"tasks": 2, "with_predictions": 1, "prediction_failures": 1, "failures_by_layer": {"intent": 1}}


def test_predictor_is_called_in_batches(tmp_path, schema):
    path = texts_file(tmp_path, [{"text": f"文本{i}"} for i in range(5)])
    calls = []

    def predictor(texts):
        calls.append(len(texts))
        return [{"entities": [], "relations": [], "intent": None, "failures": []} for _ in texts]

    tasks, _ = make_tasks(path, schema, predictor=predictor, batch_size=2)
    assert calls == [2, 2, 1] and [t["data"]["text"] for t in tasks] == [f"文本{i}" for i in range(5)]


def test_prediction_result_of_an_empty_prediction():
    assert prediction_result({"entities": [], "relations": [], "intent": None}) == []


def test_cli_config_and_tasks(tmp_path, schema_file, capsys):
    assert cli("annotate", "config", schema_file, "--out", tmp_path / "config.xml") == 0
    assert ET.parse(tmp_path / "config.xml").getroot().find("Labels") is not None
    assert cli("annotate", "config", schema_file) == 0
    assert "<Label value=\"公司\"" in capsys.readouterr().out
    path = texts_file(tmp_path, [{"text": "腾讯控股维持买入"}])
    assert cli("annotate", "tasks", path, "--schema", schema_file, "--out", tmp_path / "tasks.json") == 0
    assert f"wrote 1 tasks to {tmp_path / 'tasks.json'}" in capsys.readouterr().out
    assert json.loads((tmp_path / "tasks.json").read_text(encoding="utf-8")) == [{"data": {"text": "腾讯控股维持买入"}}]
    assert cli("annotate", "config", tmp_path / "missing.yaml") == 2
    assert "error: schema file not found" in capsys.readouterr().err
