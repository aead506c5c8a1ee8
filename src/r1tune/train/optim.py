"""AdamW parameter groups: no weight decay on norms and biases, optional layer-wise learning-rate decay.

With `layerwise_lr_decay = d`, decoder layer l of L trains at lr × d^(L-1-l): the top layer at the full rate,
lower layers (more general knowledge) progressively slower. Parameters outside the decoder layers
(embeddings, LM head, prompt encoders) train at the full rate.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from r1tune.model.methods import layer_of


def param_groups(model, lr: float, weight_decay: float, n_layers: int,
                 layerwise_lr_decay: float | None = None, lr_of: Callable[[str], float] | None = None) -> list[dict]:
    """`lr_of(name)`: a parameter's own base rate (issue 19: a vision model's tower and projector), else `lr`."""
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = weight_decay if p.ndim >= 2 else 0.0  # decaying norms and biases only hurts
        scale = 1.0
        layer = layer_of(name)
        if layerwise_lr_decay is not None and layer is not None:
            scale = layerwise_lr_decay ** (n_layers - 1 - layer)
        groups.setdefault(((lr_of(name) if lr_of else lr) * scale, decay), []).append(p)
    return [{"params": ps, "lr": rate, "weight_decay": decay} for (rate, decay), ps in sorted(groups.items())]
