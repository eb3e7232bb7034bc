"""Pieces the frame models (``vae``, ``video_predictor``) share: per-seed windows of a sequence,
per-channel standardisation, the ball-specific measures on frames (foreground, centroid), and the
constant-velocity predictor the predictors' baselines use.

Frames are [..., 3, H, W] in [0, 1]; the worlds draw bodies on a black background, so a pixel
belongs to the foreground when its brightest channel exceeds ``FG_THRESHOLD``.
"""

from __future__ import annotations

import torch
from torch import nn

FG_THRESHOLD = 0.05  # foreground: brightest channel above this (the ball's soft 1-px edge starts at 0)


def window_starts(g: torch.Generator, batch: int, frames: int, length: int) -> torch.Tensor:
    """One seed's random window starts [batch] in [0, frames - length] (from its generator)."""
    return torch.randint(0, frames - length + 1, (batch,), generator=g)


def take_windows(x: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    """x [S, B, T, ...], starts [S, B] -> windows [S, B, length, ...] (frames start..start+length-1)."""
    idx = starts.unsqueeze(-1) + torch.arange(length, device=x.device)  # [S, B, L]
    return torch.take_along_dim(x, idx.view(*idx.shape, *(1,) * (x.dim() - 3)), dim=2)


def val_windows(x: torch.Tensor, length: int) -> torch.Tensor:
    """Validation sequences [N, T, ...] -> the non-overlapping windows [N * (T // length), length, ...]
    starting at frames 0, length, 2 * length, ... (the same for every seed and every run)."""
    n = x.shape[1] // length
    return x[:, : n * length].reshape(x.shape[0] * n, length, *x.shape[2:])


class ChannelStandardiser(nn.Module):
    """Per-seed, per-channel standardisation ``(x - mean) / std`` ("standardizzazione per canale",
    note 001) with the statistics of the seed's first training batch (all its frames), frozen
    after it: buffers ``mean``, ``std`` [S, C] (saved in checkpoints). The first batch is the
    seed's own, so a seed standardises the same way packed as alone. ``on=False``: the identity.
    The check for the first batch stays on the device (``torch.where``), without a host sync."""

    def __init__(self, S: int, C: int = 3, on: bool = True):
        super().__init__()
        self.on = on
        self.register_buffer("mean", torch.zeros(S, C))
        self.register_buffer("std", torch.ones(S, C))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        """Set the statistics from x [S, ..., C, H, W] unless a batch has already set them."""
        if not self.on:
            return
        flat = x.movedim(-3, 1).reshape(x.shape[0], x.shape[-3], -1).float()  # [S, C, everything else]
        mean, std = flat.mean(-1), flat.std(-1, correction=0).clamp_min(1e-3)
        self.mean.copy_(torch.where(self.ready, self.mean, mean))
        self.std.copy_(torch.where(self.ready, self.std, std))
        self.ready.fill_(True)

    def _shape(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return t.view(t.shape[0], *(1,) * (x.dim() - 4), t.shape[1], 1, 1).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [S, ..., C, H, W] -> standardised, same shape."""
        return (x - self._shape(x, self.mean)) / self._shape(x, self.std) if self.on else x

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised [S, ..., C, H, W] -> pixel values."""
        return x * self._shape(x, self.std) + self._shape(x, self.mean) if self.on else x


def foreground(x: torch.Tensor) -> torch.Tensor:
    """Frames [..., 3, H, W] -> foreground mask [..., 1, H, W] (bool)."""
    return x.amax(-3, keepdim=True) > FG_THRESHOLD


def centroid(x: torch.Tensor) -> torch.Tensor:
    """Intensity centroid (row, col) in pixels of each frame [..., 3, H, W] -> [..., 2]: pixels
    weighted by how far their brightest channel exceeds ``FG_THRESHOLD``, so a dim haze over the
    background does not pull it to the centre. A frame with no such pixel gives the image centre."""
    w = (x.amax(-3) - FG_THRESHOLD).clamp_min(0).float()  # [..., H, W]
    H, W = w.shape[-2:]
    rows = torch.arange(H, device=x.device, dtype=w.dtype) + 0.5
    cols = torch.arange(W, device=x.device, dtype=w.dtype) + 0.5
    total = w.sum((-2, -1))
    r = (w.sum(-1) * rows).sum(-1) / total.clamp_min(1e-12)
    c = (w.sum(-2) * cols).sum(-1) / total.clamp_min(1e-12)
    empty = total <= 0
    return torch.stack([torch.where(empty, H / 2, r), torch.where(empty, W / 2, c)], -1)


def constant_velocity(prev: torch.Tensor, last: torch.Tensor, steps: int) -> torch.Tensor:
    """Trivial predictor: the last frame [..., 3, H, W] translated by the ball's centroid velocity (last
    minus prev) times 1..``steps``, rounded to whole pixels; pixels shifted in from outside repeat the
    edge -> [..., steps, 3, H, W]."""
    v = centroid(last) - centroid(prev)  # [..., 2] (rows, cols)
    H, W = last.shape[-2:]
    out = []
    for k in range(1, steps + 1):
        d = (v * k).round().long()
        rows = (torch.arange(H, device=last.device) - d[..., :1]).clamp(0, H - 1)  # source row of each row
        cols = (torch.arange(W, device=last.device) - d[..., 1:]).clamp(0, W - 1)
        moved = last.gather(-2, rows[..., None, :, None].expand(last.shape))
        out.append(moved.gather(-1, cols[..., None, None, :].expand(last.shape)))
    return torch.stack(out, -4)


class RunningMoments:
    """Mean and variance over dim ``dim`` of chunks (default [S, n, ...], over n) in float64, merged
    chunk by chunk with Chan et al.'s pairwise update (each chunk two-pass). E[x^2] - E[x]^2 over
    float32 sums cancels when the mean dwarfs the spread (a nearly constant background): a seed packed
    and the same seed alone, whose outputs differ by float rounding, then differ by percents (1.6% in
    the video predictor's diversity metric). The one moments helper of the model families."""

    def __init__(self, dim: int = 1):
        self.dim, self.n, self.mean, self.m2 = dim, 0, 0.0, 0.0

    def add(self, chunk: torch.Tensor) -> None:
        chunk = chunk.detach().double()
        n = chunk.shape[self.dim]
        mean = chunk.mean(self.dim)
        m2 = (chunk - mean.unsqueeze(self.dim)).square().sum(self.dim)
        total = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta.square() * (self.n * n / total)
        self.n = total

    def var(self) -> torch.Tensor:
        """The population variance (correction 0) [S, ...]."""
        return self.m2 / self.n
