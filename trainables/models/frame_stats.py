"""Per-seed error sums, trivial baselines and the encode/decode of a level stack on folded tensors,
shared by the families of note 000 (``stacked_ae``, ``causal_ae3d``, ``st_transformer``): every error is judged against a trivial
predictor on the same validation frames (the mean frame, the last frame seen), and a predicted
ball against the true one by the intensity centroid ("is motion predicted or blurred?").

Folded layout as ``trainables.models.packed``: [N, S*C, *spatial]."""

from __future__ import annotations

import torch

from trainables.models.frames import RunningMoments
from trainables.models.packed import per_seed_sum


def per_seed_mean_se(pred: torch.Tensor, target: torch.Tensor, S: int, dims: int = 2) -> torch.Tensor:
    """Each seed's mean squared error over its own elements (``nn.MSELoss()`` per seed) -> [S], fp32."""
    e = (pred.float() - target.float()).square()
    return per_seed_sum(e, S, dims) / (e.numel() // S)


class LevelStack:
    """Encoding and decoding through a stack of autoencoder levels, one definition for note 000's
    families (``StackedAE``, ``CausalAE3d``; ``STTransformer`` through its AE): a family gives
    ``L``, ``encode(l, h)``, ``decode(l, z)`` and ``decode_logits(l, z)`` (``decode`` before its sigmoid)."""

    def encode_all(self, h: torch.Tensor, levels: range | None = None) -> list[torch.Tensor]:
        """[h_1, ..., h_last]: the encoders' outputs of ``levels`` (default all), level after level."""
        out = []
        for l in range(self.L) if levels is None else levels:
            h = self.encode(l, h)
            out.append(h)
        return out

    def decode_all(self, z: torch.Tensor, levels: range | None = None, logits: bool = False) -> torch.Tensor:
        """``z`` decoded down through ``levels`` (default all, to pixels); ``logits``: the lowest
        decoder's output before its sigmoid."""
        levels = range(self.L) if levels is None else levels
        for l in reversed(levels):
            z = self.decode_logits(l, z) if logits and l == levels[0] else self.decode(l, z)
        return z


class Moments(RunningMoments):
    """``RunningMoments`` of a folded tensor [N, S*C, *spatial] over its frames (dim 0), for the
    mean-frame baseline: the MSE of predicting every frame by the per-element mean over all frames
    (= the mean variance), per seed."""

    def __init__(self):
        super().__init__(dim=0)

    def mean_baseline(self, S: int) -> torch.Tensor:
        """Per seed: the mean over elements of the variance over frames -> [S] (float64)."""
        return self.var().unflatten(0, (S, -1)).flatten(1).mean(1)


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
