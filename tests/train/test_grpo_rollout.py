"""GRPO rollouts (src/r1tune/train/rollout.py): the KV-cache sampler decodes what transformers decodes, its top-p
keeps transformers' nucleus, a seeded generator repeats a step exactly, and cut-off completions are flagged."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from r1tune.model.template import encode_generation_prompt
from r1tune.train.rollout import decode_completions, sample_completions, sample_next


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def prompts(tiny_tokenizer):
    questions = ["判断情感：宁德时代营收增长13.5%", "Tesla shares surge", "比亚迪发布公告，介绍公司经营情况以及未来三年的计划"]
    return [encode_generation_prompt(tiny_tokenizer, [{"role": "user", "content": q}]) for q in questions]


def test_near_zero_temperature_decodes_what_transformers_greedy_decodes(model, tiny_tokenizer, prompts):
    """Left padding, the prompt's cache copied G times, finished rows dropped from the batch: the same tokens."""
    eos, pad = tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id
    rollout = sample_completions(model, prompts, 2, 12, temperature=1e-6, top_p=1.0, eos_id=eos, pad_id=pad)
    for i, p in enumerate(prompts):
        ref = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                             max_new_tokens=12, do_sample=False, pad_token_id=pad, eos_token_id=eos)[0, len(p):]
        n = int(rollout.lengths[2 * i])
        assert rollout.completion_ids[2 * i, :n].tolist() == ref[:n].tolist()
        assert rollout.completion_ids[2 * i + 1, :n].tolist() == ref[:n].tolist()  # both of its group
        assert (n == 12) or ref[n - 1] == eos


def test_top_p_keeps_transformers_nucleus():
    from transformers.generation.logits_process import TopPLogitsWarper

    g = torch.Generator().manual_seed(0)
    for vocab in (50, 5000):  # 5000 flat-ish logits: the top-64 hold less than top_p, the search widens
        logits = torch.randn(2, vocab, generator=g) * (3.0 if vocab == 50 else 0.3)
        warped = TopPLogitsWarper(top_p=0.8)(None, logits / 0.7)
        allowed = [set(torch.isfinite(row).nonzero().squeeze(-1).tolist()) for row in warped]
        draws = [sample_next(logits, 0.7, 0.8, g) for _ in range(400 if vocab == 50 else 50)]
        for row in range(2):
            seen = {int(d[row]) for d in draws}
            assert seen <= allowed[row]
            if vocab == 50:
                assert seen == allowed[row]  # every token of a small nucleus turns up in 400 draws


@pytest.mark.parametrize("vocab, scale", [(50, 3.0), (200, 0.5)])
def test_top_p_samples_the_renormalised_nucleus(vocab, scale):
    """Within the top 64 (a peaked distribution) and by rejection from the whole one (a flat distribution over
    more than 64 tokens): the frequencies are transformers' warped distribution's."""
    from transformers.generation.logits_process import TopPLogitsWarper

    g = torch.Generator().manual_seed(vocab)
    logits = torch.randn(vocab, generator=g) * scale
    expected = torch.softmax(TopPLogitsWarper(top_p=0.9)(None, logits[None] / 0.7), dim=-1)[0]
    draws = sample_next(logits.expand(40_000, -1), 0.7, 0.9, g)
    frequencies = torch.bincount(draws, minlength=vocab) / draws.numel()
    standard_error = (expected * (1 - expected) / draws.numel()).sqrt()
    assert bool(((frequencies - expected).abs() <= 5 * standard_error + 1e-4).all())
    assert bool((frequencies[expected == 0] == 0).all())  # nothing outside the nucleus, ever


def test_a_seeded_generator_repeats_a_step(model, tiny_tokenizer, prompts):
    eos, pad = tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id

    def run(seed):
        return sample_completions(model, prompts, 4, 10, 1.0, 0.95, eos, pad, torch.Generator().manual_seed(seed))

    a, b, c = run(7), run(7), run(8)
    assert torch.equal(a.completion_ids, b.completion_ids) and torch.equal(a.completion_mask, b.completion_mask)
    assert not torch.equal(a.completion_ids, c.completion_ids)
    assert a.completion_ids.shape[0] == 12 and a.prompt_ids.shape[0] == 12
    assert torch.equal(a.prompt_ids[0], a.prompt_ids[3]) and not torch.equal(a.prompt_ids[3], a.prompt_ids[4])


def test_cut_completions_are_flagged_and_masks_cover_the_eos(model, tiny_tokenizer, prompts):
    eos, pad = tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id
    rollout = sample_completions(model, prompts, 4, 6, 1.0, 1.0, eos, pad, torch.Generator().manual_seed(1),
                                 batch_rows=4)  # one prompt's group per batch
    lengths = rollout.lengths
    for row in range(len(lengths)):
        n = int(lengths[row])
        ids = rollout.completion_ids[row]
        ended = n > 0 and int(ids[n - 1]) == eos
        assert bool(rollout.truncated[row]) == (not ended) and (ended or n == 6)
        assert rollout.completion_mask[row, :n].all() and not rollout.completion_mask[row, n:].any()
    done = decode_completions(tiny_tokenizer, rollout)
    assert [c.n_tokens for c in done] == lengths.tolist()
    assert all(c.parsed.unclosed or c.parsed.closed for c in done)  # parsed as starting inside the reasoning
