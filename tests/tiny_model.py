"""A test-only model family, to show that a family is one file and one ``register`` line: a packed
linear autoencoder of each sequence's time-averaged, 4x4-pooled frame.

``tests/conftest.py`` names this file in ``SEEDSWEEP_MODELS``, so every process of the test run
(pytest, the ``seedsweep`` CLI it starts and that CLI's Ray workers) registers ``model: tiny``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainables.models import Metric, PackedModel, TrainConfig, register

POOL = 4  # frames are average-pooled to POOL x POOL before encoding
FAIL_WHILE = (
    "TINY_FAIL_WHILE"  # tests: while the file this variable names exists, a pack of width 2 fails its evaluations
)


@dataclass
class TinyConfig(TrainConfig):
    """Test values, chosen for speed only."""

    width: int = 4  # code size
    noise: float = 0.01  # std of the Gaussian noise added to the code in training (exercises draw)
    decoder_lr: float = 0.5  # the decoder's learning-rate multiplier (exercises param_groups)
    lr: float = 1e-2  # Adam
    batch_size: int = 8  # sequences per seed per step

    def checks(self) -> dict[str, bool]:
        return {
            **super().checks(),
            "width": self.width >= 1,
            "noise": self.noise >= 0,
            "decoder_lr": self.decoder_lr > 0,
        }


class TinyAE(PackedModel):
    metrics = (
        Metric("pooled_mse", "lower", "per-element MSE of the reconstructed pooled mean frame"),
        Metric("code_std", "higher", "std of the code over validation sequences, averaged over code dims"),
    )
    success = {"metric": "pooled_mse", "below": 0.01}  # test value
    scheduler_metric = "pooled_mse"
    # data keys and config fields for tests/test_models.py: a few seconds on a CPU
    test_sizes = {"frames": 4, "image_size": 8}

    def __init__(self, cfg: TinyConfig, gens: list[torch.Generator], image_size: int):
        super().__init__(cfg, gens, image_size)
        d = 3 * POOL * POOL
        init = lambda shape, g: torch.randn(shape, generator=g) / math.sqrt(shape[-1])  # noqa: E731
        per_seed = [(init((cfg.width, d), g), init((d, cfg.width), g)) for g in gens]
        self.enc = nn.Parameter(torch.stack([e for e, _ in per_seed]))  # [S, width, d]
        self.dec = nn.Parameter(torch.stack([w for _, w in per_seed]))  # [S, d, width]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[S, B, T, 3, H, W] -> [S, B, 3*POOL*POOL]: the mean frame, pooled."""
        S, B = x.shape[:2]
        return F.adaptive_avg_pool2d(x.mean(2).flatten(0, 1), POOL).reshape(S, B, -1)

    def draw(self, g: torch.Generator, batch: int, frames: int, step: int) -> dict[str, torch.Tensor]:
        return {"noise": torch.randn(batch, self.cfg.width, generator=g) * self.cfg.noise}

    def losses(self, x, rand, step):
        f = self.features(x)
        z = torch.bmm(f, self.enc.transpose(1, 2)) + rand["noise"]
        recon = ((torch.bmm(z, self.dec.transpose(1, 2)) - f) ** 2).sum(-1).mean(-1)
        return {"recon": recon, "total": recon}

    def param_groups(self):
        return [([self.enc], 1.0), ([self.dec], self.cfg.decoder_lr)]

    def evaluate(self, x, y):
        if self.cfg.width == 2 and os.path.exists(os.environ.get(FAIL_WHILE, "")):
            raise RuntimeError(f"test failure: {os.environ[FAIL_WHILE]} exists")
        f = self.features(x.unsqueeze(0).expand(self.S, *x.shape))
        z = torch.bmm(f, self.enc.transpose(1, 2))
        mse = ((torch.bmm(z, self.dec.transpose(1, 2)) - f) ** 2).mean((1, 2))
        return {"pooled_mse": mse, "code_std": z.std(1).mean(-1)}


register("tiny", TinyConfig, TinyAE)
