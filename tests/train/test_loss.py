"""Chunked target-only loss equals the plain full-logits loss; accumulation weighs tokens, not batches."""

import torch
from transformers import AutoModelForCausalLM

from r1tune.model.template import TokenizedSample
from r1tune.train.data import collate
from r1tune.train.loss import target_loss


def samples():
    g = torch.Generator().manual_seed(0)
    out = []
    for n, n_target in ((12, 3), (30, 20), (7, 2)):
        ids = torch.randint(5, 1000, (n,), generator=g).tolist()
        out.append(TokenizedSample(ids, [-100] * (n - n_target) + ids[n - n_target:]))
    return out


def test_chunked_loss_matches_full_logits(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    batch = collate(samples(), pad_id=0)
    loss_sum, n, _ = target_loss(model, **batch, chunk_size=4)
    reference = model(**batch).loss  # HF: mean over labelled next-token positions
    assert n == 3 + 20 + 2  # every labelled token is predicted from the position before it
    torch.testing.assert_close(loss_sum / n, reference, rtol=1e-5, atol=1e-5)


def test_accumulation_normalised_by_all_target_tokens(tiny_model_dir):
    """Two micro-batches with different target counts give the gradient of the one big batch."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    s = samples()

    def grads(parts):
        model.zero_grad()
        total = sum(x.n_targets for part in parts for x in part)
        for part in parts:
            loss, _, _ = target_loss(model, **collate(part, 0))
            (loss / total).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    torch.testing.assert_close(grads([s[:1], s[1:]]), grads([s]), rtol=1e-4, atol=1e-6)


def test_frozen_head_fused_loss_equals_the_recomputed_path():
    """The fused path (frozen head: gradient wrt hidden computed in forward) gives the loss, correct count and
    input gradient of plain autograd through full logits; a trained head takes the checkpointed path."""
    from r1tune.train.loss import FrozenHeadLoss, head_loss

    g = torch.Generator().manual_seed(1)
    head = torch.nn.Linear(16, 300, bias=False)
    head.weight.data = torch.randn(300, 16, generator=g)
    hidden = torch.randn(37, 16, generator=g, requires_grad=True)
    targets = torch.randint(0, 300, (37,), generator=g)

    logits = hidden @ head.weight.t()
    ref = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    (ref_grad,) = torch.autograd.grad(3 * ref, hidden)
    ref_correct = int((logits.argmax(-1) == targets).sum())

    head.weight.requires_grad_(False)
    calls = []
    original = FrozenHeadLoss.forward
    FrozenHeadLoss.forward = staticmethod(lambda *a: calls.append(1) or original(*a))
    try:
        loss, correct = head_loss(head, hidden, targets, chunk_size=8)
    finally:
        FrozenHeadLoss.forward = staticmethod(original)
    (3 * loss).backward()
    assert calls and int(correct) == ref_correct
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(hidden.grad, ref_grad, rtol=1e-5, atol=1e-5)

    # bf16 autocast: the head weight is cast once, the loss stays fp32 and close to the fp32 result
    hidden.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss16, _ = head_loss(head, hidden, targets, chunk_size=8)
    loss16.backward()
    assert loss16.dtype == torch.float32 and hidden.grad.dtype == torch.float32
    torch.testing.assert_close(loss16, ref.detach(), rtol=2e-2, atol=1e-1)
    assert torch.nn.functional.cosine_similarity(hidden.grad.flatten(), ref_grad.flatten() / 3, dim=0) > 0.99

    # a trained head gets its own gradient (checkpointed path)
    head.weight.requires_grad_(True)
    hidden.grad = None
    loss, _ = head_loss(head, hidden, targets, chunk_size=8)
    loss.backward()
    assert head.weight.grad is not None
    torch.testing.assert_close(hidden.grad, ref_grad / 3, rtol=1e-5, atol=1e-5)


def test_sharded_engine_loss_is_the_same_target_token_sum(tiny_model_dir):
    """Under FSDP / DeepSpeed the recipe takes the model's own loss (the engine must run the wrapped forward);
    with num_items_in_batch = 1 it must be the same sum over target tokens as the chunked path."""
    from r1tune.train.loss import sharded_loss

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    batch = collate(samples(), pad_id=0)
    ours, n, _ = target_loss(model, **batch)
    torch.testing.assert_close(sharded_loss(model, batch), ours, rtol=1e-5, atol=1e-4)
