"""Per-seed error sums and trivial baselines on folded tensors, shared by the families of note 000
(``stacked_ae``, ``causal_ae3d``, ``st_transformer``): every error is judged against a trivial
predictor on the same validation frames (the mean frame, the last frame seen), and a predicted
ball against the true one by the intensity centroid ("is motion predicted or blurred?").

Folded layout as ``trainables.models.packed``: [N, S*C, *spatial]."""

from __future__ import annotations

import torch

from trainables.models.packed import per_seed_sum


def per_seed_mean_se(pred: torch.Tensor, target: torch.Tensor, S: int, dims: int = 2) -> torch.Tensor:
    """Each seed's mean squared error over its own elements (``nn.MSELoss()`` per seed) -> [S], fp32."""
    e = (pred.float() - target.float()).square()
    return per_seed_sum(e, S, dims) / (e.numel() // S)


class Moments:
    """Running per-element sums of a folded tensor over frames, for the mean-frame baseline: the MSE
    of predicting every frame by the per-element mean over all frames (= the mean variance), per seed."""

    def __init__(self):
        self.n, self.sum, self.sq = 0, None, None

    def add(self, h: torch.Tensor) -> None:
        """h [N, S*C, *spatial]: N more frames."""
        h = h.detach().double()
        s, q = h.sum(0), h.square().sum(0)
        self.sum, self.sq = (s, q) if self.sum is None else (self.sum + s, self.sq + q)
        self.n += len(h)

    def mean_baseline(self, S: int) -> torch.Tensor:
        """Per seed: the mean over elements of the variance over frames -> [S] (float64)."""
        var = (self.sq / self.n - (self.sum / self.n).square()).clamp(min=0)
        return var.unflatten(0, (S, -1)).flatten(1).mean(1)


def trivial_mse(x: torch.Tensor, first: int) -> dict[str, float]:
    """Validation sequences [N, T, 3, H, W] scored from frame ``first`` on: the per-pixel MSE of the
    trivial outputs ``mean_frame`` (the per-pixel mean of the scored frames), ``black`` and ``copy_last``
    (the frame before each; scored from frame max(first, 1), the first with one before it)."""
    target = x[:, first:].double()
    after = max(first, 1)
    return {
        "mean_frame": float(target.flatten(0, 1).var(0, correction=0).mean()),
        "black": float(target.square().mean()),
        "copy_last": float((x[:, after - 1 : -1].double() - x[:, after:].double()).square().mean()),
    }
