"""Reconstruction losses for the sigmoid-output families of note 000 (``stacked_ae``, ``causal_ae3d``, and
``st_transformer`` through its AE), taken on the decoder's *logits* (before its sigmoid).

Ball frames are ~97 % black. Under mean MSE after a sigmoid, the cheapest first move is to drive every
logit negative; there dL/dlogit = 2(σ−y)σ(1−σ) vanishes and training sits on the black frame for a
seed-dependent number of steps (docs/seed000.md: the plateau). Two losses keep a gradient there:

- ``bce``: binary cross-entropy on the logits (dL/dlogit = σ − y, no σ' factor). Note 004: "BCE is
  helpful to prevent collapse";
- ``fg_mse``: MSE after the sigmoid with every element whose target exceeds ``FG_THRESHOLD`` (the ball;
  on a latent level, the active features) weighted ``fg_weight`` (note 004: "probably achievable via
  MSE + weight tweaking too");
- ``mse``: the note's own loss (mean MSE after the sigmoid), kept as an option.

Each returns each seed's mean over its own elements ([S], fp32), so a packed seed trains as alone.
Folded layout as ``trainables.models.packed``: [N, S*C, *spatial].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainables.models.frames import FG_THRESHOLD
from trainables.models.packed import per_seed_sum

LOSSES = ("mse", "bce", "fg_mse")


def pixel_loss(logits: torch.Tensor, target: torch.Tensor, loss: str, fg_weight: float = 1.0) -> torch.Tensor:
    """Elementwise ``loss`` of ``sigmoid(logits)`` against ``target`` (in [0, 1]), fp32, same shape."""
    logits, target = logits.float(), target.float()
    if loss == "bce":
        e = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    elif loss in ("mse", "fg_mse"):
        e = (torch.sigmoid(logits) - target).square()
        if loss == "fg_mse":
            e = e * torch.where(target > FG_THRESHOLD, fg_weight, 1.0)
    else:
        raise ValueError(f"unknown loss {loss!r}; one of {LOSSES}")
    return e


def per_seed_pixel_loss(
    logits: torch.Tensor, target: torch.Tensor, S: int, loss: str, fg_weight: float = 1.0, dims: int = 2
) -> torch.Tensor:
    """Folded [N, S*C, *spatial] (``dims`` spatial dims): each seed's mean ``pixel_loss`` -> [S], fp32."""
    e = pixel_loss(logits, target, loss, fg_weight)
    return per_seed_sum(e, S, dims) / (e.numel() // S)
