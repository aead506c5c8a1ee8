import math

import torch

from r1tune.train.schedule import effective_warmup, make_scheduler, warmup_cosine


def test_warmup_then_cosine_to_floor():
    lrs = [warmup_cosine(s, 100, 10, 0.1) for s in range(100)]
    assert lrs[:10] == [(i + 1) / 10 for i in range(10)]
    assert lrs[10] == 1.0 and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert math.isclose(warmup_cosine(100, 100, 10, 0.1), 0.1)


def test_warmup_capped_for_short_runs():
    assert effective_warmup(500, 300) == 30
    assert effective_warmup(500, 100_000) == 500
    assert effective_warmup(0, 300) == 0


def test_scheduler_drives_optimizer():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    sched = make_scheduler(opt, total_steps=20, warmup_steps=500)  # capped to 2
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[0] == 0.5 and seen[1] == 1.0 and seen[-1] < 0.01
