"""The question and answer format of annotation training samples, shared by import and pre-annotation.

`r1tune annotate import` writes samples whose user turn is `entity_prompt(schema, text)` (or the relation /
intent one) and whose answer is `entity_answer(...)`; `r1tune annotate tasks --model RUN` asks the model the
very same questions and parses the same answer format. Keeping both in this one file is what makes a model
fine-tuned on the imported samples produce exactly what pre-annotation reads.

    entity answer    [{"text": "腾讯控股", "label": "公司"}, {"text": "00700", "label": "股票代码"}]
    relation answer  [{"head": "腾讯控股", "relation": "控股", "tail": "腾讯音乐"}]
    intent answer    买入建议
"""

from __future__ import annotations

import json

from r1tune.annotate.schema import AnnotationSchema

_ENTITY = {
    "zh": ("从下面的文本中抽取实体。实体类型：{labels}。\n"
           "以 JSON 列表回答，每项为 {{\"text\": 原文中的实体, \"label\": 实体类型}}，按在文中出现的顺序排列；"
           "没有实体时回答 []。\n\n文本：\n{text}"),
    "en": ("Extract the entities from the text below. Entity types: {labels}.\n"
           "Answer with a JSON list of {{\"text\": entity as written in the text, \"label\": entity type}} "
           "objects in the order they appear; answer [] if there are none.\n\nText:\n{text}"),
}
_RELATION = {
    "zh": ("从下面的文本中抽取实体之间的关系。关系类型：{labels}。\n"
           "以 JSON 列表回答，每项为 {{\"head\": 头实体原文, \"relation\": 关系类型, \"tail\": 尾实体原文}}；"
           "没有关系时回答 []。\n\n文本：\n{text}"),
    "en": ("Extract the relations between entities in the text below. Relation types: {labels}.\n"
           "Answer with a JSON list of {{\"head\": head entity as written, \"relation\": relation type, "
           "\"tail\": tail entity as written}} objects; answer [] if there are none.\n\nText:\n{text}"),
}
_INTENT = {
    "zh": "判断下面文本的意图，只能从以下标签中选一个：{labels}。只回答标签。\n\n文本：\n{text}",
    "en": "Classify the intent of the text below. Choose exactly one of: {labels}. Answer with the label only.\n\n"
          "Text:\n{text}",
}


def _join(schema: AnnotationSchema, labels: list[str]) -> str:
    return ("、" if schema.language == "zh" else ", ").join(labels)


def entity_prompt(schema: AnnotationSchema, text: str) -> str:
    return _ENTITY[schema.language].format(labels=_join(schema, schema.entities), text=text)


def relation_prompt(schema: AnnotationSchema, text: str) -> str:
    kinds = [f"{r.name}({r.head}→{r.tail})" for r in schema.relations]
    return _RELATION[schema.language].format(labels=_join(schema, kinds), text=text)


def intent_prompt(schema: AnnotationSchema, text: str) -> str:
    return _INTENT[schema.language].format(labels=_join(schema, schema.intents), text=text)


def entity_answer(entities: list[tuple[str, str]]) -> str:
    """[(text, label), …] in text order → the JSON answer."""
    return json.dumps([{"text": text, "label": label} for text, label in entities], ensure_ascii=False)


def relation_answer(triples: list[tuple[str, str, str]]) -> str:
    """[(head text, relation, tail text), …] → the JSON answer."""
    return json.dumps([{"head": h, "relation": r, "tail": t} for h, r, t in triples], ensure_ascii=False)


def chat(prompt: str, answer: str | None = None) -> list[dict]:
    """The conversation of one sample (no system prompt: R1 is trained without one)."""
    messages = [{"role": "user", "content": prompt}]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages
