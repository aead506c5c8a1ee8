"""Differential test: r1tune's GRPO loss and gradients equal TRL's GRPOTrainer's (trl 1.16, `_compute_loss`) on the
same prompts, completions, advantages, old / reference log-probs and weights — for each loss type both have, with
and without the KL term, with an asymmetric clip (epsilon_high ≠ epsilon) and old log-probs ≠ current ones (a
later pass), with a trained and a frozen LM head (r1tune's fused frozen-head path). And the group advantages equal
TRL's formula on the same rewards. No generation: the tiny model, hand-built inputs."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from r1tune.model.template import encode_generation_prompt
from r1tune.train.grpo import completion_logprobs, group_advantages, policy_objective, reduce_loss

MAX_COMPLETION = 12
TEMPERATURE = 0.7
G = 3


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def inputs(tokenizer):
    """Two prompts × G completions: left-padded prompts, right-padded completions of varied lengths (some end
    with eos, one is cut), rewards with variance."""
    questions = ["判断情感：宁德时代营收增长13.5%", "Tesla shares surge 38% on record profit, tone?"]
    prompts = [encode_generation_prompt(tokenizer, [{"role": "user", "content": q}]) for q in questions]
    g = torch.Generator().manual_seed(0)
    rows = [(p, torch.randint(10, 3000, (n,), generator=g).tolist()) for p in prompts for n in (5, 9, MAX_COMPLETION)]
    rows = [(p, c[:-1] + [tokenizer.eos_token_id] if len(c) < MAX_COMPLETION else c) for p, c in rows]
    width = max(len(p) for p, _ in rows)
    pad = tokenizer.pad_token_id
    prompt_ids = torch.tensor([[pad] * (width - len(p)) + p for p, _ in rows])
    prompt_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p, _ in rows])
    completion_ids = torch.tensor([c + [pad] * (MAX_COMPLETION - len(c)) for _, c in rows])
    completion_mask = torch.tensor([[1] * len(c) + [0] * (MAX_COMPLETION - len(c)) for _, c in rows])
    rewards = torch.tensor([1.0, 0.0, 2.0, 0.5, 0.5, 1.5])
    return dict(prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=completion_ids,
                completion_mask=completion_mask, rewards=rewards)


def trl_advantages(rewards: torch.Tensor, scale: str) -> torch.Tensor:
    """TRL 1.16 `_generate_and_score_completions`, sum_then_normalize, the lines that turn rewards into advantages."""
    from trl.trainer.utils import nanstd

    mean_grouped_rewards = torch.nanmean(rewards.view(-1, G), dim=1).repeat_interleave(G, dim=0)
    if scale in ["group", "none"]:
        std_rewards = nanstd(rewards.view(-1, G), dim=1).repeat_interleave(G, dim=0)
    else:
        std_rewards = nanstd(rewards).expand_as(rewards)
    advantages = rewards - mean_grouped_rewards
    if scale != "none":
        advantages = advantages / (std_rewards + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_advantages_equal_trls_formula(inputs, scale):
    rewards = torch.tensor([1.0, 0.0, 2.0, 0.5, 0.5, 0.5, 3.0, float("nan"), 1.0])
    ours, zero_std = group_advantages(rewards, G, scale)
    torch.testing.assert_close(ours, trl_advantages(rewards, scale), rtol=0, atol=1e-6)  # a few fp32 ulps: reductions differ with the thread count
    assert zero_std.tolist() == [False, True, False]  # the middle group's rewards are all equal: no signal


def trainer(model, tokenizer, tmp_path, loss_type: str, beta: float):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=2 * G, num_generations=G,
                      max_completion_length=MAX_COMPLETION, loss_type=loss_type, beta=beta, epsilon=0.2,
                      epsilon_high=0.28, temperature=TEMPERATURE, use_cpu=True, report_to="none",
                      save_strategy="no", gradient_accumulation_steps=1,
                      bf16=False)  # TRL's config turns bf16 autocast on by default, on CPU too: compare in fp32
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": "x"}]}] * (2 * G))
    t = GRPOTrainer(model=model, reward_funcs=lambda completions, **_: [0.0] * len(completions), args=args,
                    train_dataset=dataset, processing_class=tokenizer)
    t.current_gradient_accumulation_steps = 1  # set by the training loop, which this test does not run
    t.model.train()
    return t


def gradients(model) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("head", ["trained", "frozen"])
@pytest.mark.parametrize("beta", [0.0, 0.05])
@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "dr_grpo"])
def test_loss_and_gradients_equal_trls(tiny_model_dir, tokenizer, inputs, tmp_path, loss_type, beta, head):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    if head == "frozen":  # LoRA-family and freeze runs: r1tune's fused frozen-head log-prob path
        model.get_output_embeddings().weight.requires_grad_(False)
    t = trainer(model, tokenizer, tmp_path, loss_type, beta)
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    width = inputs["prompt_ids"].shape[1]
    completion_mask = inputs["completion_mask"]
    advantages = group_advantages(inputs["rewards"], G, "group")[0]
    with torch.no_grad():
        current = completion_logprobs(t.model, ids, mask, width, TEMPERATURE)[0]
    g = torch.Generator().manual_seed(1)
    # a later pass: old log-probs off by up to ±0.4, so both clip regions are hit; a reference elsewhere again
    old = (current + (torch.rand(current.shape, generator=g) - 0.5) * 0.8) * completion_mask
    ref = (current + (torch.rand(current.shape, generator=g) - 0.5) * 0.6) * completion_mask
    batch = dict(prompt_ids=inputs["prompt_ids"], prompt_mask=inputs["prompt_mask"],
                 completion_ids=inputs["completion_ids"], completion_mask=completion_mask, advantages=advantages,
                 old_per_token_logps=old, num_items_in_batch=completion_mask.sum())
    if beta:
        batch["ref_per_token_logps"] = ref

    theirs = t._compute_loss(t.model, batch)
    theirs.backward()
    trl_grads = gradients(t.model)

    logps, _ = completion_logprobs(t.model, ids, mask, width, TEMPERATURE)
    per_token, stats = policy_objective(logps, old, advantages, 0.2, 0.28, beta, ref if beta else None)
    ours = reduce_loss(per_token, completion_mask.float(), loss_type, n_sequences=len(ids),
                       n_tokens=int(completion_mask.sum()), max_completion_length=MAX_COMPLETION)
    ours.backward()
    our_grads = gradients(t.model)

    assert float(stats["clipped_low"].sum()) > 0 and float(stats["clipped_high"].sum()) > 0
    torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=1e-5, atol=1e-5)
    assert our_grads.keys() == trl_grads.keys() and len(our_grads) > 10
    assert ("lm_head.weight" in our_grads) == (head == "trained")
    for name, grad in our_grads.items():  # to 1e-5, as the issue asks (the largest entries are ~1e-1)
        torch.testing.assert_close(grad, trl_grads[name], rtol=0, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


def test_pieces_add_up_to_the_whole_step(tiny_model_dir, tokenizer, inputs):
    """A step run in pieces (micro-batches, processes) gives the loss and gradients of the whole step at once."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    width, cmask = inputs["prompt_ids"].shape[1], inputs["completion_mask"].float()
    advantages = group_advantages(inputs["rewards"], G, "group")[0]
    for loss_type in ("dapo", "grpo", "dr_grpo"):
        totals = dict(n_sequences=len(ids), n_tokens=int(cmask.sum()), max_completion_length=MAX_COMPLETION)
        logps, _ = completion_logprobs(model, ids, mask, width)
        whole = reduce_loss(policy_objective(logps, logps.detach(), advantages, 0.2, 0.2)[0], cmask, loss_type,
                            **totals)
        whole.backward()
        expected = gradients(model)
        parts = 0.0
        for rows in ([0, 3], [1, 2, 5], [4]):
            logps, _ = completion_logprobs(model, ids[rows], mask[rows], width)
            part = reduce_loss(policy_objective(logps, logps.detach(), advantages[rows], 0.2, 0.2)[0], cmask[rows],
                               loss_type, **totals)
            part.backward()
            parts += float(part)
        got = gradients(model)
        assert parts == pytest.approx(float(whole), abs=1e-6)
        for name, grad in expected.items():
            torch.testing.assert_close(got[name], grad, rtol=1e-4, atol=1e-6, msg=f"{loss_type} {name}")
