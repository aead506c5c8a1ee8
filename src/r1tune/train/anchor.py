"""Pulls toward the parent run's weights against forgetting: L2 and EWC, and the Fisher information EWC needs
(issue 15).

    anchor = Anchor(model, l2=0.01, ewc=0.0, fisher=None)      # snapshot of the trained parameters as they start
    ...backward of the step's loss...
    penalty = anchor.add_gradients()                            # after the gradient all-reduce, before clipping
    fisher = estimate_fisher(model, samples, 64, pad_id, device)
    save_fisher(fisher, "RUN/final")                            # RUN/final/fisher.safetensors

The penalty is (l2/2)·Σ(θ−θ₀)² + (ewc/2)·Σ F·(θ−θ₀)² over the parameters the method trains, θ₀ their values when
the run starts (the parent's). Its gradient, l2·(θ−θ₀) + ewc·F·(θ−θ₀), is added to the parameters' gradients
in closed form: no extra autograd graph, and every process adds the same term after the all-reduce.
F is the diagonal empirical Fisher: the mean over samples of the squared gradient of the sample's mean token
loss, computed with the model in eval mode (no dropout) at the end of the parent's training.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from r1tune.errors import R1TuneError
from r1tune.train.data import collate
from r1tune.train.loss import target_loss

FISHER_FILE = "fisher.safetensors"


class Anchor:
    def __init__(self, model, l2: float, ewc: float, fisher: dict[str, torch.Tensor] | None):
        self.l2, self.ewc = l2, ewc
        self.params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.start = {n: p.detach().clone() for n, p in self.params}
        self.fisher = {}
        if ewc:
            if fisher is None:
                raise R1TuneError("continual.ewc > 0 needs the parent's Fisher information")
            missing = [n for n, _ in self.params if n not in fisher]
            if missing:
                raise R1TuneError(f"the parent's {FISHER_FILE} does not cover the parameters this run trains "
                                  f"(e.g. {missing[0]}): was it written for another method?")
            self.fisher = {n: fisher[n].to(p.device, torch.float32) for n, p in self.params}

    @torch.no_grad()
    def add_gradients(self) -> float:
        """Add the penalty's gradient to each parameter's; returns the penalty."""
        penalty = 0.0
        for n, p in self.params:
            delta = p.detach().float() - self.start[n].float()
            weight = self.l2 + (self.ewc * self.fisher[n] if self.ewc else 0.0)
            grad = weight * delta
            penalty += 0.5 * float((grad * delta).sum())
            if p.grad is None:
                p.grad = grad.to(p.dtype)
            else:
                p.grad.add_(grad.to(p.grad.dtype))
        return penalty


def estimate_fisher(model, samples: list, n: int, pad_id: int, device) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher of the trained parameters over the first `n` of `samples` (one at a time)."""
    was_training = model.training
    model.eval()
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    fisher = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params}
    chosen = samples[:n]
    for sample in chosen:
        model.zero_grad(set_to_none=True)
        batch = {k: v.to(device) for k, v in collate([sample], pad_id).items()}
        loss, n_targets, _ = target_loss(model, **batch)
        (loss / max(1, n_targets)).backward()
        for name, p in params:
            if p.grad is not None:
                fisher[name] += p.grad.detach().float() ** 2
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return {name: (f / max(1, len(chosen))).contiguous().cpu() for name, f in fisher.items()}


def save_fisher(fisher: dict[str, torch.Tensor], folder: str | Path) -> Path:
    """FOLDER/fisher.safetensors, written beside and renamed into place."""
    path = Path(folder) / FISHER_FILE
    temp = path.with_name(f".{path.name}.{os.getpid()}.partial")  # several processes may write the same file
    save_file(fisher, str(temp))
    temp.replace(path)
    return path


def load_fisher(folder: str | Path) -> dict[str, torch.Tensor] | None:
    path = Path(folder) / FISHER_FILE
    return load_file(str(path)) if path.is_file() else None
