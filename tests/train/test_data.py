"""Length-grouped batches and the token cap that splits a micro-batch into pieces; loading the training set:
huge records cut before tokenizing, prompts longer than max_length skipped and counted (or cut from the left),
and what samples without a reasoning trace train."""

import pytest

from r1tune.config import DataConfig
from r1tune.data.formats import ChatSample
from r1tune.errors import R1TuneError
from r1tune.model.encode import chars_per_token
from r1tune.model.template import BOS, CUT_SLACK_TOKENS, EOS, IGNORE, TokenizedSample, bundled_template
from r1tune.train.data import length_grouped_batches, load_training_data, reasoning_plan, token_capped_pieces


def sample(n: int) -> TokenizedSample:
    return TokenizedSample(list(range(n)), [-100] * (n - 1) + [1])


def test_pieces_keep_every_sample_once_and_respect_the_cap():
    lengths = [700, 30, 1024, 512, 64, 900, 200, 1500]
    samples = [sample(n) for n in lengths]
    pieces = token_capped_pieces(samples, 2048)
    assert sorted(len(s.input_ids) for p in pieces for s in p) == sorted(lengths)
    for p in pieces:
        width = max(len(s.input_ids) for s in p)
        assert len(p) * width <= 2048 or len(p) == 1  # a row longer than the cap is a piece of its own
    assert [len(s.input_ids) for s in pieces[0]] == [1500]  # longest first: rows of a piece are alike
    assert len(pieces) < len(samples)  # short rows share a piece


def test_small_batches_and_no_cap_stay_whole():
    samples = [sample(n) for n in (10, 20, 30)]
    assert token_capped_pieces(samples, 2048) == [samples]
    assert token_capped_pieces(samples, None) == [samples]
    assert token_capped_pieces(samples, 0) == [samples]


def test_length_grouped_batches_are_a_permutation_and_reproducible():
    lengths = list(range(1, 101))
    a = length_grouped_batches(lengths, 8, seed=3, epoch=1)
    assert sorted(i for b in a for i in b) == list(range(100))
    assert a == length_grouped_batches(lengths, 8, seed=3, epoch=1)
    assert a != length_grouped_batches(lengths, 8, seed=3, epoch=2)


# ---------------------------------------------------------------- loading: long samples, trace-less samples


def qa(question: str, answer: str, reasoning: str | None = None) -> dict:
    record = {"instruction": question, "output": answer}
    if reasoning is not None:
        record["reasoning"] = reasoning
    return record


def load(path, tokenizer, **data) -> "TrainingData":  # noqa: F821
    cfg = DataConfig(train=str(path), val_split=0.0, **data)
    return load_training_data(cfg, tokenizer, bundled_template("r1"), seed=0)


def trained_text(tokenizer, sample: TokenizedSample) -> str:
    return tokenizer.decode([i for i, lab in zip(sample.input_ids, sample.labels) if lab != IGNORE])


LONG = "这是一段很长的背景材料，" * 40  # ~ 100+ tokens


@pytest.mark.parametrize("on_error", ["stop", "skip"])
def test_prompts_longer_than_max_length_are_skipped_and_counted(tiny_tokenizer, jsonl, tmp_path, on_error):
    path = jsonl(tmp_path / "train.jsonl", [qa("营收增长", "正面"), qa(LONG, "负面"), qa("利润下滑", "负面"),
                                            qa(LONG + "？", "中性"), qa("持平", "中性")])
    data = load(path, tiny_tokenizer, max_length=48, on_error=on_error)
    assert len(data.train) == 3 and data.prompt_too_long == 2 and data.prompt_cut == 0
    assert [s["source"] for s in data.skipped] == [f"{path}:2", f"{path}:4"]
    for entry in data.skipped:
        assert entry["reason"].startswith("prompt longer than max_length (") and entry["max_length"] == 48
        assert entry["prompt_tokens"] >= 48


def test_truncate_left_trains_them_with_their_question_and_answer(tiny_tokenizer, jsonl, tmp_path):
    path = jsonl(tmp_path / "train.jsonl", [qa("营收增长", "正面"), qa(LONG + "结论？", "负面")])
    data = load(path, tiny_tokenizer, max_length=48, truncate="left")
    assert len(data.train) == 2 and data.prompt_too_long == 0 and data.prompt_cut == 1 and not data.skipped
    cut = data.train[1]
    assert cut.prompt_cut and len(cut.input_ids) == 48
    text = tiny_tokenizer.decode(cut.input_ids)
    assert text.startswith(BOS + "<｜User｜>") and text.count(BOS) == 1
    assert text.endswith("结论？<｜Assistant｜><think>\n\n</think>\n\n负面" + EOS)
    assert trained_text(tiny_tokenizer, cut).endswith("负面" + EOS)


def test_when_every_prompt_is_too_long_the_error_says_what_to_do(tiny_tokenizer, jsonl, tmp_path, cli, tiny_model_dir):
    path = jsonl(tmp_path / "train.jsonl", [qa(LONG, "负面"), qa(LONG + "？", "中性")])
    with pytest.raises(R1TuneError, match=r"no trainable samples \(2 skipped.*2 with a prompt longer than max_length: "
                                          r"set data\.truncate=left"):
        load(path, tiny_tokenizer, max_length=48)
    code, out, err = cli("finetune", "--model", tiny_model_dir, "--data", path, "--out", tmp_path / "run",
                         "--max-length", 48, "--max-steps", 1)
    assert code == 2 and "error:" in err and "data.truncate=left" in err, (out, err)
    code, out, err = cli("finetune", "--model", tiny_model_dir, "--data", path, "--out", tmp_path / "run",
                         "--set", "data.truncate=right")
    assert code == 2 and "truncate" in err and "Traceback" not in err, err


def test_a_30mb_record_is_cut_before_tokenizing(tiny_tokenizer, jsonl, tmp_path):
    class Spy:
        def __init__(self, tokenizer):
            self.tokenizer, self.longest = tokenizer, 0

        def __call__(self, text, **kwargs):
            self.longest = max([self.longest] + [len(t) for t in ([text] if isinstance(text, str) else text)])
            return self.tokenizer(text, **kwargs)

        def __getattr__(self, name):
            return getattr(self.tokenizer, name)

    huge = "营收增长，利润下滑，" * 3_000_000  # 30 M characters
    path = jsonl(tmp_path / "train.jsonl", [qa("总结这份年报", huge), qa(huge + "结论？", "负面"), qa("持平", "中性")])
    spy = Spy(tiny_tokenizer)
    data = load(path, spy, max_length=128)
    assert spy.longest <= (128 + CUT_SLACK_TOKENS) * chars_per_token(tiny_tokenizer) < len(huge) // 1000
    assert len(data.train) == 2 and data.truncated == 1 and data.prompt_too_long == 1
    assert len(data.train[0].input_ids) == 128 and data.train[0].n_targets > 100  # the huge answer trains its start
    spy.longest = 0
    data = load(path, spy, max_length=128, truncate="left")
    assert spy.longest <= (128 + CUT_SLACK_TOKENS) * chars_per_token(tiny_tokenizer)
    assert len(data.train) == 3 and data.prompt_cut == 1
    assert trained_text(tiny_tokenizer, data.train[1]) == "\n</think>\n\n负面" + EOS  # trace-less data: auto


def test_a_trace_less_majority_trains_the_empty_think_block(tiny_tokenizer, jsonl, tmp_path):
    path = jsonl(tmp_path / "train.jsonl", [qa("营收增长", "正面"), qa("利润下滑", "负面"),
                                            qa("持平", "中性", reasoning="没有变化。")])
    data = load(path, tiny_tokenizer)  # data.reasoning left at its default: auto
    assert data.reasoning == {"setting": "auto", "with_trace": 1, "without_trace": 2, "traced": "keep",
                              "traceless": "empty"}
    assert data.without_reasoning == 2
    assert trained_text(tiny_tokenizer, data.train[0]) == "\n</think>\n\n正面" + EOS  # it learns to close the block
    assert trained_text(tiny_tokenizer, data.train[2]) == "没有变化。\n</think>\n\n中性" + EOS  # traces still train


def test_a_traced_majority_trains_trace_less_answers_only(tiny_tokenizer, jsonl, tmp_path):
    records = [qa("营收增长", "正面", "增长。"), qa("利润下滑", "负面", "下滑。"), qa("持平", "中性")]
    path = jsonl(tmp_path / "train.jsonl", records)
    data = load(path, tiny_tokenizer)
    assert (data.reasoning["traced"], data.reasoning["traceless"]) == ("keep", "drop")
    assert trained_text(tiny_tokenizer, data.train[2]) == "中性" + EOS
    assert trained_text(tiny_tokenizer, data.train[0]) == "增长。\n</think>\n\n正面" + EOS
    # an explicit choice is taken as it is, whatever the data
    traceless = jsonl(tmp_path / "plain.jsonl", [qa("营收增长", "正面"), qa("利润下滑", "负面")])
    keep = load(traceless, tiny_tokenizer, reasoning="keep")
    assert keep.reasoning["traceless"] == "drop" and trained_text(tiny_tokenizer, keep.train[0]) == "正面" + EOS
    empty = load(path, tiny_tokenizer, reasoning="empty")
    assert trained_text(tiny_tokenizer, empty.train[0]) == "\n</think>\n\n正面" + EOS  # traces dropped too


def test_reasoning_plan_counts_a_blank_trace_as_none():
    samples = [ChatSample([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], r)
               for r in (None, "  \n ", "real", None)]
    assert reasoning_plan("auto", samples) == {"setting": "auto", "with_trace": 1, "without_trace": 3,
                                               "traced": "keep", "traceless": "empty"}
    assert reasoning_plan("auto", samples[1:3])["traceless"] == "drop"  # half is not most
    assert reasoning_plan("drop", samples)["traced"] == "drop"
