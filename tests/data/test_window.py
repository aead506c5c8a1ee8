"""Sliding windows by the model's tokens: full coverage, exact stride, intact target, aggregation."""

import pytest

from r1tune.data.window import aggregate_windows, sliding_windows, window_file, window_record
from r1tune.errors import R1TuneError

REPORT = ("贵州茅台2023年实现营业收入1,476.9亿元，同比增长18.0%；归母净利润747.3亿元，同比增长19.2%。"
          "The board proposed a cash dividend of RMB 30.876 per share. 公司直销渠道收入占比提升至45.2%，"
          "i茅台数字营销平台贡献显著，经营活动现金流量净额665.9亿元。")


@pytest.mark.parametrize("n, window, stride", [(0, 8, 4), (5, 8, 4), (8, 8, 4), (9, 8, 4), (100, 8, 4),
                                               (100, 10, 10), (101, 10, 3), (512, 512, 256), (1000, 512, 256)])
def test_sliding_windows_cover_every_token_with_the_exact_stride(n, window, stride):
    spans = sliding_windows(n, window, stride)
    covered = set()
    for start, end in spans:
        assert 0 <= start < end <= n or n == 0
        assert end - start <= window
        covered.update(range(start, end))
    assert covered == set(range(n))
    starts = [s for s, _ in spans]
    assert all(b - a == stride for a, b in zip(starts, starts[1:]))
    assert spans[-1][1] == n
    assert len(spans) == 1 or spans[-2][1] < n  # no window after the one that reaches the end


def test_default_sizes_and_bad_sizes():
    assert sliding_windows(1000) == [(0, 512), (256, 768), (512, 1000)]
    with pytest.raises(R1TuneError, match="larger than the window"):
        sliding_windows(100, 8, 9)
    with pytest.raises(R1TuneError, match="positive"):
        sliding_windows(100, 0, 1)


def test_window_round_trip_on_the_models_tokenizer(tiny_tokenizer):
    text = REPORT * 3
    record = {"instruction": "总结这份年报的要点。", "input": text, "output": "营收与利润均增长。", "label": "正面"}
    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    window, stride = 32, 16
    assert len(ids) > 3 * window
    pieces = window_record(record, tiny_tokenizer, window, stride, source="raw.jsonl:7")
    assert len(pieces) == len(sliding_windows(len(ids), window, stride))
    covered = set()
    for i, piece in enumerate(pieces):
        w = piece["window"]
        assert (w["index"], w["count"], w["field"], w["source"]) == (i, len(pieces), "input", "raw.jsonl:7")
        start, end = w["tokens"]
        covered.update(range(start, end))
        assert start == i * stride and end - start <= window
        c0, c1 = w["chars"]
        assert piece["input"] == text[c0:c1]  # an exact span of the original: no character split or re-encoded
        # the target and everything else is intact
        assert (piece["instruction"], piece["output"], piece["label"]) == (record["instruction"], record["output"], "正面")
        # re-tokenised alone, BPE may merge a little differently at the two cuts, never much more
        assert len(tiny_tokenizer(piece["input"], add_special_tokens=False)["input_ids"]) <= window * 1.25
    assert covered == set(range(len(ids)))  # every token of the input is in some window
    # the windows' characters cover the whole input, in order
    chars = set()
    for piece in pieces:
        chars.update(range(*piece["window"]["chars"]))
    assert chars == set(range(len(text)))
    assert record["input"] == text  # the original record is not modified


def test_short_inputs_and_chat_records(tiny_tokenizer):
    short = {"instruction": "问", "input": "营收增长。", "output": "好"}
    assert window_record(short, tiny_tokenizer, 512, 256) == [short]
    chat = {"messages": [{"role": "user", "content": "背景"}, {"role": "assistant", "content": "好"},
                         {"role": "user", "content": REPORT * 2}, {"role": "assistant", "content": "摘要"}]}
    pieces = window_record(chat, tiny_tokenizer, 40, 20)
    assert len(pieces) > 1
    assert all(p["window"]["field"] == "messages[2].content" for p in pieces)
    assert all(p["messages"][0]["content"] == "背景" and p["messages"][3]["content"] == "摘要" for p in pieces)


def test_window_file_logs_each_split_record(tiny_tokenizer, tmp_path, jsonl, read):
    data = jsonl(tmp_path / "in.jsonl", [{"instruction": "总结", "input": REPORT * 2, "output": "增长"},
                                         {"instruction": "总结", "input": "短文本。", "output": "无"}])
    summary = window_file(data, tmp_path / "out.jsonl", window=48, stride=24, tokenizer=tiny_tokenizer)
    out = read(tmp_path / "out.jsonl")
    assert summary["read"] == 2 and summary["written"] == len(out) == summary["windows"] + 1
    assert all(r["provenance"] == {"file": str(data), "line": 1} for r in out[:-1])
    [entry] = read(tmp_path / "out.log.jsonl")
    assert entry["action"] == "changed" and entry["windows"] == summary["windows"] and entry["source"].endswith(":1")


def test_evaluation_aggregates_over_windows():
    rows = [{"window": {"source": "a:1", "index": i}, "prediction": p, "score": s}
            for i, (p, s) in enumerate([("正面", 0.9), ("负面", 0.2), ("正面", 0.7)])]
    rows += [{"window": {"source": "b:2", "index": 1}, "prediction": "负面", "score": 0.4},
             {"window": {"source": "b:2", "index": 0}, "prediction": "中性", "score": 0.6},
             {"provenance": {"file": "c", "line": 3}, "prediction": "中性", "score": 1.0}]
    assert aggregate_windows(rows) == {"a:1": "正面", "b:2": "中性", "c:3": "中性"}  # tie: earliest window
    assert aggregate_windows(rows, "score", "mean") == pytest.approx({"a:1": 0.6, "b:2": 0.5, "c:3": 1.0})
    assert aggregate_windows(rows, "score", "max")["a:1"] == 0.9
    with pytest.raises(R1TuneError):
        aggregate_windows(rows, how="median")
