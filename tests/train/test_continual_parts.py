"""The parts of continual fine-tuning (issue 15): the mixed batch stream, the L2 / EWC anchor, Fisher, lineage."""

import json
from dataclasses import dataclass

import pytest
import torch

from r1tune.errors import R1TuneError
from r1tune.train.anchor import Anchor, estimate_fisher, load_fisher, save_fisher
from r1tune.train.lineage import newest_promoted, read_lineage, write_lineage
from r1tune.train.mix import MixedStream, MixSource, mix_line


@dataclass(frozen=True)
class Sample:
    source: str
    index: int


def test_mixed_stream_draws_each_source_by_its_share_and_is_a_function_of_the_seed():
    train = [Sample("train", i) for i in range(50)]
    sources = [MixSource("replay", [Sample("replay", i) for i in range(7)], 0.25),
               MixSource("general", [Sample("general", i) for i in range(300)], 0.15)]
    stream = MixedStream(train, sources, global_batch=16, seed=3)
    batches = [stream.batch(k) for k in range(400)]
    drawn = [s for b in batches for s in b]
    share = {name: sum(s.source == name for s in drawn) / len(drawn) for name in ("train", "replay", "general")}
    assert share == pytest.approx({"train": 0.60, "replay": 0.25, "general": 0.15}, abs=0.02)
    assert stream.counts(400) == [sum(s.source == n for s in drawn) for n in ("train", "replay", "general")]
    # each source's samples come round evenly: every replay sample appears as often as the others (± 1)
    per_replay = [sum(s == Sample("replay", i) for s in drawn) for i in range(7)]
    assert max(per_replay) - min(per_replay) <= 1
    # a resumed run (a fresh stream asked for batch k first) gets the same batches; another seed does not
    again = MixedStream(train, sources, global_batch=16, seed=3)
    assert again.batch(250) == batches[250] and again.batch(17) == batches[17]
    assert MixedStream(train, sources, global_batch=16, seed=4).batch(17) != batches[17]
    assert "replay" in mix_line(stream, 400) and "general" in mix_line(stream, 400)


def test_anchor_gradient_equals_autograd_of_the_l2_and_ewc_penalty():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    fisher = {n: torch.rand_like(p) for n, p in model.named_parameters()}
    anchor = Anchor(model, l2=0.3, ewc=2.0, fisher=fisher)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    reference = [torch.autograd.grad(0.5 * ((0.3 + 2.0 * fisher[n]) * (p - start[n]) ** 2).sum(), p)[0]
                 for n, p in model.named_parameters()]
    penalty = anchor.add_gradients()
    total = sum(0.5 * float(((0.3 + 2.0 * fisher[n]) * (p.detach() - start[n]) ** 2).sum())
                for n, p in model.named_parameters())
    assert penalty == pytest.approx(total, rel=1e-5)
    for (_, p), ref in zip(model.named_parameters(), reference):
        torch.testing.assert_close(p.grad, ref)
    with pytest.raises(R1TuneError, match="does not cover"):
        Anchor(model, l2=0.0, ewc=1.0, fisher={"0.weight": fisher["0.weight"]})


def test_fisher_of_a_tiny_model_round_trips(tiny_model_dir, tiny_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    from r1tune.model.template import render_training, resolve_template, tokenize_training

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    template = resolve_template(tiny_tokenizer)
    samples = [tokenize_training(tiny_tokenizer, render_training(
        tiny_tokenizer, [{"role": "user", "content": f"第{i}条新闻"}, {"role": "assistant", "content": "positive"}],
        None, "empty", template), 64) for i in range(3)]
    fisher = estimate_fisher(model, samples, 3, tiny_tokenizer.pad_token_id, "cpu")
    assert set(fisher) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert all((f >= 0).all() for f in fisher.values()) and sum(float(f.sum()) for f in fisher.values()) > 0
    save_fisher(fisher, tmp_path)
    back = load_fisher(tmp_path)
    assert all(torch.equal(back[n], fisher[n]) for n in fisher)


def test_lineage_digest_and_newest_promoted(tmp_path):
    def run(name, increments, promoted):
        folder = tmp_path / name
        (folder / "final").mkdir(parents=True)
        incs = [{"name": f"r{i}", "promoted": True} for i in range(increments - 1)]
        write_lineage(folder, {"increments": [*incs, {"name": name, "promoted": promoted}]})
        return folder

    run("m1", 1, True)
    run("m2", 2, True)
    run("m3", 3, False)  # longest, but its gate said no
    assert newest_promoted(tmp_path) == tmp_path / "m2"
    assert read_lineage(tmp_path / "m2")["increments"][-1]["name"] == "m2"
    edited = json.loads((tmp_path / "m3" / "lineage.json").read_text(encoding="utf-8"))
    edited["increments"][-1]["promoted"] = True  # promoting a run by hand
    (tmp_path / "m3" / "lineage.json").write_text(json.dumps(edited), encoding="utf-8")
    with pytest.raises(R1TuneError, match="edited by hand"):
        read_lineage(tmp_path / "m3")
    assert newest_promoted(tmp_path) == tmp_path / "m2"  # a tampered lineage is never served
