"""Pre-annotation: parsing model answers into spans at offsets, the model-backed predictor, the round trip."""

import json

import pytest
from annotate_builders import annotation, cli, read_jsonl, task, write_export

from r1tune.annotate import predict, prompts
from r1tune.annotate.importer import import_export
from r1tune.annotate.labelstudio import make_tasks
from r1tune.annotate.predict import (
    entities_from_answer,
    intent_from_answer,
    json_list,
    llm_predictor,
    locate,
    relations_from_answer,
)
from r1tune.model.reasoning import split_reasoning

T = "腾讯控股（00700）控股腾讯音乐，维持买入评级。"


@pytest.mark.parametrize("answer, expected", [
    ('[{"text": "a", "label": "b"}]', [{"text": "a", "label": "b"}]),
    ('```json\n[1, 2]\n```', [1, 2]),
    ('结果如下：[{"head": "x"}] 以上。', [{"head": "x"}]),
    ("[]", []),
    ('{"text": "a"}', None),
    ("腾讯控股是公司", None),
    ('[{"text": "a",]', None),
])
def test_json_list(answer, expected):
    assert json_list(answer) == expected


def test_locate_maps_repeated_mentions_in_order():
    text = "平安银行与平安银行"
    first = locate(text, "平安银行", set())
    second = locate(text, "平安银行", {first}, after=first[1])
    assert (first, second) == ((0, 4), (5, 9))
    assert locate(text, "平安银行", {first, second}) is None
    assert locate(text, "招商银行", set()) is None and locate(text, "", set()) is None


def test_entities_land_at_their_offsets(schema):
    answer = prompts.entity_answer([("腾讯控股", "公司"), ("00700", "股票代码"), ("腾讯音乐", "公司")])
    entities, failures = entities_from_answer(answer, T, schema)
    assert failures == []
    assert entities == [{"start": 0, "end": 4, "label": "公司", "text": "腾讯控股"},
                        {"start": 5, "end": 10, "label": "股票代码", "text": "00700"},
                        {"start": 13, "end": 17, "label": "公司", "text": "腾讯音乐"}]
    assert all(T[e["start"]:e["end"]] == e["text"] for e in entities)


def test_bad_entity_items_are_dropped_and_counted(schema):
    answer = json.dumps([{"text": "腾讯控股", "label": "公司"}, {"text": "微软", "label": "公司"},
                         {"text": "00700", "label": "代码"}, "腾讯音乐", {"text": " 腾讯音乐 ", "label": "公司"}],
                        ensure_ascii=False)
    entities, failures = entities_from_answer(answer, T, schema)
    assert [(e["text"], e["start"]) for e in entities] == [("腾讯控股", 0), ("腾讯音乐", 13)]
    assert failures == ["entities: '微软' is not in the text", "entities: label '代码' is not in the schema",
                        "entities: item is not a {text, label} object"]
    assert entities_from_answer("我觉得有腾讯", T, schema) == ([], ["entities: answer is not a JSON list"])


def test_relations_reuse_predicted_entities_and_add_missing_ends(schema):
    entities = [{"start": 0, "end": 4, "label": "公司", "text": "腾讯控股"}]
    answer = prompts.relation_answer([("腾讯控股", "控股", "腾讯音乐"), ("腾讯控股", "上市代码", "00700"),
                                      ("腾讯控股", "收购", "腾讯音乐"), ("腾讯控股", "控股", "网易")])
    relations, failures = relations_from_answer(answer, T, schema, entities)
    assert entities[1:] == [{"start": 13, "end": 17, "label": "公司", "text": "腾讯音乐"},
                            {"start": 5, "end": 10, "label": "股票代码", "text": "00700"}]
    assert relations == [{"head": 0, "tail": 1, "relation": "控股"}, {"head": 0, "tail": 2, "relation": "上市代码"}]
    assert failures == ["relations: type '收购' is not in the schema", "relations: '网易' is not in the text"]
    assert len(entities) == 3  # a failed relation adds no entity


@pytest.mark.parametrize("answer, intent", [
    ("买入建议", "买入建议"), ("“持有建议”。", "持有建议"), ("意图：卖出建议", "卖出建议"), ("Buy", None),
    ("买入建议或卖出建议", None)])
def test_intent_answers(schema, answer, intent):
    got, failures = intent_from_answer(answer, schema)
    assert got == intent and bool(failures) == (intent is None)


def scripted(answers: dict[str, str], seen: list | None = None):
    """A `complete` that answers each question by its layer, as R1 output (reasoning, then </think>)."""
    def complete(conversations):
        outs = []
        for conv in conversations:
            question = conv[-1]["content"]
            if seen is not None:
                seen.append(question)
            layer = ("entities" if question.startswith("从下面的文本中抽取实体。") else
                     "relations" if question.startswith("从下面的文本中抽取实体之间的关系") else "intents")
            outs.append(split_reasoning("先找公司名。\n</think>\n\n" + answers[layer]))
        return outs
    return complete


def test_llm_predictor_asks_one_question_per_layer(schema):
    seen = []
    complete = scripted({"entities": prompts.entity_answer([("腾讯控股", "公司")]),
                         "relations": prompts.relation_answer([("腾讯控股", "控股", "腾讯音乐")]),
                         "intents": "买入建议"}, seen)
    [p] = llm_predictor(complete, schema)([T])
    assert seen == [prompts.entity_prompt(schema, T), prompts.relation_prompt(schema, T), prompts.intent_prompt(schema, T)]
    assert p == {"entities": [{"start": 0, "end": 4, "label": "公司", "text": "腾讯控股"},
                              {"start": 13, "end": 17, "label": "公司", "text": "腾讯音乐"}],
                 "relations": [{"head": 0, "tail": 1, "relation": "控股"}], "intent": "买入建议", "failures": []}


def test_llm_predictor_counts_unfinished_and_unparsable_outputs(schema):
    def complete(conversations):
        return [split_reasoning("想了很久还没想完"), split_reasoning("好\n</think>\n\n不是 JSON"),
                split_reasoning("</think>\n\n")] * (len(conversations) // 3)
    [p] = llm_predictor(complete, schema)([T])
    assert p == {"entities": [], "relations": [], "intent": None, "failures": [
        "entities: no answer (output ended before </think>)", "relations: answer is not a JSON list",
        "intents: no answer (empty answer)"]}


def test_round_trip_import_answers_are_what_pre_annotation_parses(tmp_path, schema):
    """A model that reproduces the imported training answers pre-annotates exactly the annotated spans."""
    from annotate_builders import choice, region, relation

    result = [region("a", T, "腾讯控股", "公司"), region("b", T, "00700", "股票代码"), region("c", T, "腾讯音乐", "公司"),
              relation("a", "c", "控股"), relation("a", "b", "上市代码"), choice("买入建议")]
    export = write_export(tmp_path / "export.json", [task(1, T, [annotation(1, result)])])
    import_export(export, schema, tmp_path / "out")
    answers = {layer: read_jsonl(tmp_path / "out" / f"{layer}.jsonl")[0]["messages"]
               for layer in ("entities", "relations", "intents")}
    perfect = {layer: msgs[1]["content"] for layer, msgs in answers.items()}
    [p] = llm_predictor(scripted(perfect), schema)([T])
    assert p["failures"] == []
    assert sorted((e["start"], e["end"], e["label"]) for e in p["entities"]) == [(0, 4, "公司"), (5, 10, "股票代码"),
                                                                                 (13, 17, "公司")]
    assert sorted((p["entities"][r["head"]]["text"], r["relation"], p["entities"][r["tail"]]["text"])
                  for r in p["relations"]) == [("腾讯控股", "上市代码", "00700"), ("腾讯控股", "控股", "腾讯音乐")]
    assert p["intent"] == "买入建议"
    # and the prompts the predictor asked are the user turns of the imported samples
    assert prompts.entity_prompt(schema, T) == answers["entities"][0]["content"]


def test_real_model_path_on_the_tiny_model_degrades_gracefully(tmp_path, schema, tiny_model_dir):
    predictor, version = predict.model_predictor(tiny_model_dir, schema, max_new_tokens=6, batch_size=4)
    assert version == f"r1tune:{tiny_model_dir.name}"
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in [T, "平安银行建议持有"]),
                     encoding="utf-8")
    tasks, stats = make_tasks(texts, schema, predictor=predictor, model_version=version)
    # random weights never close </think> in 6 tokens: every question fails, counted, and no span is invented
    assert stats["tasks"] == 2 and stats["with_predictions"] == 0
    assert stats["failures_by_layer"] == {"entities": 2, "relations": 2, "intents": 2}
    assert all("predictions" not in t for t in tasks)


def test_model_predictor_with_scripted_generation_through_the_cli(tmp_path, schema_file, tiny_model_dir,
                                                                  monkeypatch, capsys):
    """The real `--model` path (model loading, batching, parsing) with generation replaced by a script."""
    import r1tune.evaluate.generate as generation

    answers = {"entities": prompts.entity_answer([("平安银行", "公司"), ("000001", "股票代码"), ("平安银行", "公司")]),
               "relations": prompts.relation_answer([("平安银行", "上市代码", "000001")]),
               "intents": "持有建议"}
    script = scripted(answers)

    def fake_generate(model, tokenizer, conversations, max_new_tokens=256, batch_size=16, **kw):
        assert tokenizer is not None and model is not None
        return [generation.Generation(text="", parsed=p, new_tokens=0, seconds=0.0) for p in script(conversations)]

    monkeypatch.setattr(generation, "generate", fake_generate)
    text = "平安银行（000001）：平安银行息差企稳，维持持有。"
    data = tmp_path / "texts.jsonl"
    data.write_text(json.dumps({"text": text}, ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "tasks.json"
    assert cli("annotate", "tasks", data, "--schema", schema_file, "--out", out, "--model", tiny_model_dir) == 0
    assert "1 with pre-annotations from r1tune:" in capsys.readouterr().out
    [t] = json.loads(out.read_text(encoding="utf-8"))
    result = t["predictions"][0]["result"]
    spans = [(r["value"]["start"], r["value"]["end"], r["value"]["labels"][0]) for r in result if r["type"] == "labels"]
    assert spans == [(0, 4, "公司"), (5, 11, "股票代码"), (13, 17, "公司")]  # the second 平安银行 is its second mention
    assert all(text[s:e] == r["value"]["text"] for (s, e, _), r in zip(spans, result))
    assert [r for r in result if r["type"] == "relation"] == [
        {"from_id": "e0", "to_id": "e1", "type": "relation", "direction": "right", "labels": ["上市代码"]}]
    assert [r["value"]["choices"] for r in result if r["type"] == "choices"] == [["持有建议"]]


def test_english_instructions_and_the_parser_agree():
    from r1tune.annotate.schema import AnnotationSchema

    schema = AnnotationSchema(entities=["drug", "disease"], intents=["diagnosis request", "medication question"],
                              language="en")
    text = "Can metformin treat type 2 diabetes?"
    assert prompts.entity_prompt(schema, text).startswith("Extract the entities from the text below. "
                                                          "Entity types: drug, disease.")
    assert prompts.intent_prompt(schema, text).endswith("Answer with the label only.\n\nText:\n" + text)
    answer = prompts.entity_answer([("metformin", "drug"), ("type 2 diabetes", "disease")])
    assert [(e["start"], e["end"]) for e in entities_from_answer(answer, text, schema)[0]] == [(4, 13), (20, 35)]
    assert intent_from_answer("Medication question.", schema) == ("medication question", [])
    assert intent_from_answer("a question", schema) == (None, [
        "intent: answer 'a question' is not one of the schema's intents"])
