"""The annotation schema: the three label layers a domain team annotates, read from a YAML file.

    # configs/annotate/finance-schema.yaml
    language: zh                 # language of the instructions in the training samples (zh | en)
    entities: [公司, 股票代码]     # base layer: spans in the text
    relations:                   # middle layer: directed links between two entity spans
      - {name: 控股, head: 公司, tail: 公司}
    intents: [买入建议, 持有建议, 卖出建议]   # application layer: one label per text

    schema = load_schema("configs/annotate/finance-schema.yaml")

Every `r1tune annotate` command reads it. Validation names the key that is wrong: a relation's head and tail
must be declared entities, labels are unique within a layer, and at least one layer is declared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from r1tune.config import Section, read_yaml
from r1tune.errors import R1TuneError


class RelationType(Section):
    name: str = Field(..., min_length=1, description="Relation label, e.g. 控股 or treats.")
    head: str = Field(..., min_length=1, description="Entity label the relation starts from.")
    tail: str = Field(..., min_length=1, description="Entity label the relation points to.")

    @field_validator("name", "head", "tail")
    @classmethod
    def _stripped(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


class AnnotationSchema(Section):
    entities: list[str] = Field(default_factory=list, description="Base layer: entity labels (spans).")
    relations: list[RelationType] = Field(default_factory=list, description="Middle layer: typed links.")
    intents: list[str] = Field(default_factory=list, description="Application layer: one label per text.")
    language: Literal["zh", "en"] = Field("zh", description="Language of the instructions in training samples.")
    text_field: str = Field("text", min_length=1, description="Task data field that holds the text.")

    @field_validator("entities", "intents")
    @classmethod
    def _unique_labels(cls, labels: list[str]) -> list[str]:
        cleaned = []
        for label in labels:
            if not isinstance(label, str) or not label.strip():
                raise ValueError("labels must be non-empty text")
            if label.strip() in cleaned:
                raise ValueError(f"duplicate label '{label.strip()}'")
            cleaned.append(label.strip())
        return cleaned

    @model_validator(mode="after")
    def _layers_fit_together(self) -> AnnotationSchema:
        if not (self.entities or self.relations or self.intents):
            raise ValueError("declare at least one of entities, relations, intents")
        seen = set()
        for rel in self.relations:
            for end in ("head", "tail"):
                if getattr(rel, end) not in self.entities:
                    raise ValueError(f"relation '{rel.name}': {end} '{getattr(rel, end)}' is not a declared entity "
                                     f"(entities: {', '.join(self.entities) or 'none'})")
            # one name may link several type pairs (治疗: 药物→疾病 and 药物→症状); the same triple twice is a typo
            key = (rel.name, rel.head, rel.tail)
            if key in seen:
                raise ValueError(f"duplicate relation '{rel.name}' ({rel.head} → {rel.tail})")
            seen.add(key)
        return self

    @property
    def relation_names(self) -> list[str]:
        """Distinct relation labels, in declaration order."""
        return list(dict.fromkeys(rel.name for rel in self.relations))

    def allows(self, relation: str, head_label: str, tail_label: str) -> bool:
        return any(r.name == relation and r.head == head_label and r.tail == tail_label for r in self.relations)


def load_schema(path: str | Path) -> AnnotationSchema:
    """Read and validate a schema YAML file; errors name the file and the key."""
    path = Path(path)
    raw = read_yaml(path, "schema")
    if not isinstance(raw, dict):
        raise R1TuneError(f"{path}: a schema is a mapping with entities, relations and/or intents")
    try:
        return AnnotationSchema.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join((f"{'.'.join(str(p) for p in err['loc'])}: " if err["loc"] else "")
                             + err["msg"].removeprefix("Value error, ") for err in e.errors())
        raise R1TuneError(f"{path}: {problems}") from None
