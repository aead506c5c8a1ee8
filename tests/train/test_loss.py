"""Chunked target-only loss equals the plain full-logits loss; accumulation weighs tokens, not batches."""

import torch
from transformers import AutoModelForCausalLM

from r1tune.data.batching import collate
from r1tune.model.template import TokenizedSample
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
