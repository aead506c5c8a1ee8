"""The R1 chat template: inference equals the official template byte for byte; training keeps reasoning;
one bos; labels cover exactly the answer and its eos, by position (pad == eos)."""

import jinja2
import pytest

from r1tune.errors import R1TuneError
from r1tune.model.template import (
    BOS,
    EOS,
    IGNORE,
    RESOURCES,
    bundled_template,
    render_prompt,
    render_training,
    template_name,
    tokenize_training,
)
from r1tune.train.data import collate

OFFICIAL = (RESOURCES.parent.parent.parent.parent / "shared" / "r1" / "chat_template.jinja")


def official(messages, add_generation_prompt, template="r1"):
    """The template rendered by plain jinja2, the way the hub tokenizer does, without our code."""
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(bundled_template(template)).render(
        messages=messages, bos_token=BOS, eos_token=EOS, add_generation_prompt=add_generation_prompt)


CASES = {
    "single": [{"role": "user", "content": "营收3.5亿元，同比增长12.3%，怎么看？"}],
    "system": [{"role": "system", "content": "你是一名谨慎的金融分析师。"},
               {"role": "user", "content": "Is NVDA overvalued?"}],
    "multi_turn_history_reasoning_dropped": [
        {"role": "user", "content": "患者头痛三天。"},
        {"role": "assistant", "content": "<think>\n考虑偏头痛。\n</think>\n\n建议就医。"},
        {"role": "user", "content": "Any tests?"}],
    "two_systems_last_wins": [{"role": "system", "content": "A"}, {"role": "system", "content": "B"},
                              {"role": "user", "content": "hi"}],
}


def test_bundled_template_is_the_shared_file_byte_for_byte():
    if OFFICIAL.exists():  # the checkout's shared/ copy of the R1-Distill tokenizer template
        assert bundled_template("r1") == OFFICIAL.read_text(encoding="utf-8")
    assert bundled_template("r1").endswith("{{'<｜Assistant｜><think>\\n'}}{% endif %}")
    assert template_name(bundled_template("r1-2025-01")) == "r1-2025-01"


@pytest.mark.parametrize("name", sorted(CASES))
def test_inference_rendering_equals_official_template(tiny_tokenizer, name):
    messages = CASES[name]
    ours = render_prompt(tiny_tokenizer, messages)
    assert ours == official(messages, True)
    assert ours.endswith("<｜Assistant｜><think>\n")
    assert ours.count(BOS) == 1


def test_history_turns_lose_their_reasoning_at_inference(tiny_tokenizer):
    text = render_prompt(tiny_tokenizer, CASES["multi_turn_history_reasoning_dropped"])
    assert "考虑偏头痛" not in text and "<｜Assistant｜>\n\n建议就医。<｜end▁of▁sentence｜>" in text


def test_first_release_template_has_no_think_in_generation_prompt(tiny_tokenizer):
    text = render_prompt(tiny_tokenizer, CASES["single"], template=bundled_template("r1-2025-01"))
    assert text == official(CASES["single"], True, "r1-2025-01") and text.endswith("<｜Assistant｜>")


def test_content_parts_are_flattened(tiny_tokenizer):
    parts = [{"role": "user", "content": [{"type": "text", "text": "你好"}, {"type": "text", "text": " world"}]}]
    assert render_prompt(tiny_tokenizer, parts) == official([{"role": "user", "content": "你好 world"}], True)


TRAIN = [{"role": "system", "content": "金融助手"}, {"role": "user", "content": "茅台涨了？"},
         {"role": "assistant", "content": "是的。"}, {"role": "user", "content": "Why?"},
         {"role": "assistant", "content": "Profits rose."}]


def test_training_keeps_reasoning_and_prompt_is_the_inference_prompt(tiny_tokenizer):
    text = render_training(tiny_tokenizer, TRAIN, "Check the Q1 report.", "keep")
    assert text.prompt == render_prompt(tiny_tokenizer, TRAIN[:-1])
    assert text.bridge == ""
    assert text.target == "Check the Q1 report.\n</think>\n\nProfits rose."
    # the stock template would have deleted the reasoning from the target
    stock = official(TRAIN[:-1] + [{"role": "assistant", "content": "<think>\nCheck the Q1 report.\n</think>\n\nProfits rose."}], False)
    assert "Check the Q1 report." not in stock


def test_reasoning_modes(tiny_tokenizer):
    keep = render_training(tiny_tokenizer, TRAIN, "R", "keep")
    drop = render_training(tiny_tokenizer, TRAIN, "R", "drop")
    empty = render_training(tiny_tokenizer, TRAIN, "R", "empty")
    none = render_training(tiny_tokenizer, TRAIN, None, "keep")
    assert keep.target.startswith("R\n</think>")
    assert (drop.bridge, drop.target) == ("\n</think>\n\n", "Profits rose.")
    assert (empty.bridge, empty.target) == ("", "\n</think>\n\nProfits rose.")
    assert (none.bridge, none.target) == (drop.bridge, drop.target)  # no trace: answer only, not "skip thinking"
    # what the model sees is a well-formed R1 turn in every mode
    for t in (keep, drop, empty):
        assert (t.prompt + t.bridge + t.target).endswith("</think>\n\nProfits rose.")
    with pytest.raises(R1TuneError):
        render_training(tiny_tokenizer, TRAIN, "R", "sometimes")


def test_first_release_template_training_opens_think_in_target(tiny_tokenizer):
    t = render_training(tiny_tokenizer, TRAIN, "R", "keep", template=bundled_template("r1-2025-01"))
    assert t.prompt.endswith("<｜Assistant｜>") and t.target == "<think>\nR\n</think>\n\nProfits rose."


def test_exactly_one_bos_and_mask_covers_target_and_eos(tiny_tokenizer):
    tok = tiny_tokenizer
    text = render_training(tok, TRAIN, "Check the Q1 report.", "keep")
    sample = tokenize_training(tok, text, max_length=512)
    assert sample.input_ids.count(tok.bos_token_id) == 1
    prompt_ids = tok(text.prompt, add_special_tokens=False)["input_ids"]
    assert sample.input_ids[:len(prompt_ids)] == prompt_ids  # exactly the ids inference feeds
    trained = [i for i, lab in zip(sample.input_ids, sample.labels) if lab != IGNORE]
    assert trained == tok(text.target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert all(lab == IGNORE for lab in sample.labels[:len(prompt_ids)])
    assert tok.decode(trained) == text.target + EOS
    # the earlier assistant turn's eos is in the prompt and is *not* trained
    assert sample.input_ids[:len(prompt_ids)].count(tok.eos_token_id) == 1


def test_pad_equals_eos_but_final_eos_stays_trained_after_padding(tiny_tokenizer):
    tok = tiny_tokenizer
    assert tok.pad_token_id == tok.eos_token_id  # the R1 trap this test is about
    short = tokenize_training(tok, render_training(tok, TRAIN[-2:], None, "keep"), 512)
    long = tokenize_training(tok, render_training(tok, TRAIN, "a long reasoning trace " * 5, "keep"), 512)
    batch = collate([short, long], tok.pad_token_id)
    row = batch["labels"][0]
    n = len(short.input_ids)
    assert row[n - 1].item() == tok.eos_token_id  # the real end is learned …
    assert (row[n:] == IGNORE).all() and (batch["input_ids"][0, n:] == tok.eos_token_id).all()  # … padding is not
    assert batch["attention_mask"][0, n:].sum() == 0


def test_empty_label_mask_is_an_error_naming_the_sample(tiny_tokenizer):
    text = render_training(tiny_tokenizer, TRAIN, None, "keep")
    with pytest.raises(R1TuneError, match=r"sample data\.jsonl:7: empty label mask"):
        tokenize_training(tiny_tokenizer, text, max_length=10, source="data.jsonl:7")


def test_truncation_cuts_the_target_end_not_the_prompt(tiny_tokenizer):
    text = render_training(tiny_tokenizer, TRAIN, "x " * 200, "keep")
    prompt_len = len(tiny_tokenizer(text.prompt, add_special_tokens=False)["input_ids"])
    sample = tokenize_training(tiny_tokenizer, text, max_length=prompt_len + 5)
    assert sample.truncated and len(sample.input_ids) == prompt_len + 5 and sample.n_targets == 5
