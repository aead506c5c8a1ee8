"""The official `openai` client against a live server on 127.0.0.1: plain and streamed completions, reasoning
returned apart from the answer, usage, n, and model selection (run / base / another adapter) that gives
exactly what the same weights give outside the server."""

import pytest

from r1tune.evaluate.generate import generate
from r1tune.model.runs import load_for_inference

QUESTION = "判断这条财经新闻的情感倾向，只回答 positive、negative 或 neutral。\n\n药明康德一季度净利润同比增长43%，超出市场预期"


@pytest.fixture(scope="module")
def client(server_url):
    import openai

    return openai.OpenAI(base_url=server_url + "/v1", api_key="unused", max_retries=0, timeout=60)


def reference(path, question, max_new_tokens, base=False):
    """Greedy output of the same weights through r1tune.evaluate (no server): the ground truth."""
    model, tokenizer = load_for_inference(path)
    if base:
        with model.disable_adapter():
            return generate(model, tokenizer, [[{"role": "user", "content": question}]], max_new_tokens)[0]
    return generate(model, tokenizer, [[{"role": "user", "content": question}]], max_new_tokens)[0]


def ask(client, model, question=QUESTION, **kw):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                          temperature=0, **kw)


def test_models_lists_run_base_and_adapter(client):
    ids = [m.id for m in client.models.list().data]
    assert ids == ["tuned", "base", "other"]
    assert client.models.retrieve("other").id == "other"


def test_plain_completion_matches_the_weights_outside_the_server(client, lora_run):
    r = ask(client, "tuned", max_tokens=24)
    ref = reference(lora_run, QUESTION, 24)
    choice = choice0 = r.choices[0]
    assert r.object == "chat.completion" and r.model == "tuned" and r.id.startswith("chatcmpl-")
    assert choice.message.role == "assistant"
    assert choice.message.content == ref.answer
    assert choice.message.reasoning_content == ref.reasoning  # DeepSeek-style field, separate from the answer
    assert choice0.finish_reason == ("stop" if ref.new_tokens < 24 else "length")
    assert r.usage.completion_tokens == ref.new_tokens
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert 0 <= r.usage.completion_tokens_details.reasoning_tokens <= r.usage.completion_tokens


def test_streamed_completion_equals_plain_and_ends_properly(client):
    plain = ask(client, "tuned", max_tokens=24).choices[0]
    stream = ask(client, "tuned", max_tokens=24, stream=True, stream_options={"include_usage": True})
    reasoning, content, finish, usage, roles = "", "", [], None, []
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            roles += [c.delta.role] if c.delta.role else []
            reasoning += getattr(c.delta, "reasoning_content", None) or ""
            content += c.delta.content or ""
            finish += [c.finish_reason] if c.finish_reason else []
    assert roles == ["assistant"]
    assert reasoning == plain.message.reasoning_content and content == plain.message.content
    assert finish == [plain.finish_reason]
    assert usage is not None and usage.completion_tokens > 0


def test_base_and_other_adapter_by_name_match_their_weights(client, lora_run, other_run, tiny_model_dir):
    base = ask(client, "base", max_tokens=16).choices[0].message
    ref = reference(lora_run, QUESTION, 16, base=True)
    assert (base.reasoning_content, base.content) == (ref.reasoning, ref.answer)
    plain_base = reference(tiny_model_dir, QUESTION, 16)
    assert (plain_base.reasoning, plain_base.answer) == (ref.reasoning, ref.answer)
    other = ask(client, "other", max_tokens=16).choices[0].message
    ref_other = reference(other_run, QUESTION, 16)
    assert (other.reasoning_content, other.content) == (ref_other.reasoning, ref_other.answer)
    tuned = ask(client, "tuned", max_tokens=16).choices[0].message
    assert (tuned.reasoning_content, tuned.content) != (other.reasoning_content, other.content)


def test_n_choices_and_sampling_with_seed(client):
    r = client.chat.completions.create(model="tuned", messages=[{"role": "user", "content": "hello"}], n=3,
                                       max_tokens=12, temperature=1.0, seed=11)
    assert [c.index for c in r.choices] == [0, 1, 2]
    again = client.chat.completions.create(model="tuned", messages=[{"role": "user", "content": "hello"}], n=3,
                                           max_tokens=12, temperature=1.0, seed=11)
    texts = [(c.message.reasoning_content, c.message.content) for c in r.choices]
    assert texts == [(c.message.reasoning_content, c.message.content) for c in again.choices]  # seeded: reproducible
    stream = client.chat.completions.create(model="tuned", messages=[{"role": "user", "content": "hello"}], n=2,
                                            max_tokens=8, stream=True)
    finished = sorted(c.index for chunk in stream for c in chunk.choices if c.finish_reason)
    assert finished == [0, 1]


def test_history_list_content_and_system_prompt_are_accepted(client):
    r = client.chat.completions.create(model="tuned", max_tokens=8, temperature=0, messages=[
        {"role": "system", "content": "You are a financial analyst."},
        {"role": "user", "content": [{"type": "text", "text": "Is this good news?"}]},
        {"role": "assistant", "content": "thinking</think>\n\npositive", "reasoning_content": "dropped"},
        {"role": "user", "content": "And now?"}])
    assert r.choices[0].finish_reason in ("stop", "length")
