"""Fixtures for the annotation tests: a finance schema (in memory and as a YAML file).

Builders of Label Studio export records live in annotate_builders.py.
"""

from __future__ import annotations

import pytest

from r1tune.annotate.schema import AnnotationSchema

FINANCE = {
    "entities": ["公司", "股票代码", "人物"],
    "relations": [{"name": "控股", "head": "公司", "tail": "公司"},
                  {"name": "上市代码", "head": "公司", "tail": "股票代码"}],
    "intents": ["买入建议", "持有建议", "卖出建议"],
}


@pytest.fixture
def schema() -> AnnotationSchema:
    return AnnotationSchema.model_validate(FINANCE)


@pytest.fixture
def schema_file(tmp_path):
    import yaml

    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(FINANCE, allow_unicode=True), encoding="utf-8")
    return path
