"""The annotation schema: Chinese labels load from YAML, and every inconsistency names its key."""

from pathlib import Path

import pytest

from r1tune.annotate.schema import load_schema
from r1tune.errors import R1TuneError

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "schema.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_issue_example_loads(tmp_path):
    schema = load_schema(write(tmp_path, "entities: [公司, 股票代码]\n"
                                         "relations: [{name: 控股, head: 公司, tail: 公司}]\n"
                                         "intents: [买入建议, 持有建议, 卖出建议]\n"))
    assert schema.entities == ["公司", "股票代码"]
    assert schema.relations[0].name == "控股" and schema.relations[0].head == "公司"
    assert schema.intents == ["买入建议", "持有建议", "卖出建议"]
    assert schema.language == "zh" and schema.text_field == "text"
    assert schema.allows("控股", "公司", "公司") and not schema.allows("控股", "公司", "股票代码")


@pytest.mark.parametrize("name", ["finance-schema.yaml", "medical-schema.yaml"])
def test_shipped_schemas_load(name):
    schema = load_schema(ROOT / "configs" / "annotate" / name)
    assert schema.entities and schema.relations and schema.intents
    first_line = (ROOT / "configs" / "annotate" / name).read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith("# r1tune annotate config configs/annotate/" + name)


def test_one_relation_name_may_link_several_type_pairs():
    schema = load_schema(ROOT / "configs" / "annotate" / "medical-schema.yaml")
    assert schema.relation_names.count("治疗") == 1
    assert schema.allows("治疗", "药物", "疾病") and schema.allows("治疗", "药物", "症状")


@pytest.mark.parametrize("text, message", [
    ("entities: [公司]\nrelations: [{name: 控股, head: 公司, tail: 集团}]\n",
     "relation '控股': tail '集团' is not a declared entity (entities: 公司)"),
    ("entities: [公司, 公司]\n", "entities: duplicate label '公司'"),
    ("intents: [买入建议, ' 买入建议 ']\n", "intents: duplicate label '买入建议'"),
    ("entities: [公司]\nrelations: [{name: 控股, head: 公司, tail: 公司}, {name: 控股, head: 公司, tail: 公司}]\n",
     "duplicate relation '控股' (公司 → 公司)"),
    ("entities: []\n", "declare at least one of entities, relations, intents"),
    ("entities: [公司]\nlabels: [x]\n", "labels: Extra inputs are not permitted"),
    ("entities: [公司]\nrelations: [{name: 控股, head: 公司}]\n", "relations.0.tail: Field required"),
    ("entities: ['']\n", "entities: labels must be non-empty text"),
    ("- 公司\n", "a schema is a mapping"),
    ("entities: [公司\n", "invalid YAML"),
])
def test_bad_schemas_say_what_is_wrong(tmp_path, text, message):
    with pytest.raises(R1TuneError) as err:
        load_schema(write(tmp_path, text))
    assert message in str(err.value)
    assert str(tmp_path / "schema.yaml") in str(err.value)


def test_missing_schema_file(tmp_path):
    with pytest.raises(R1TuneError, match="schema file not found"):
        load_schema(tmp_path / "nope.yaml")
