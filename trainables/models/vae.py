"""Seed system 003: a convolutional VAE of frames (or of short clips as 3-D volumes), packed.

The note's question: with the data term mean-reduced the VAE "failed to learn how to reconstruct
the data" and "just output (nearly) 0 for everything" (posterior collapse); sum-reduced, it
learned. How often does each setting of reduction x beta x depth collapse, seed by seed?

Model (after the author's ``atompaint/autoencoders/vae.py``): the encoder maps an input to a
latent grid of means and stds (``std = softplus(s) + min_std``, or ``exp(s / 2)`` with
``std_param: logvar``), z = mean + eps * std, the decoder maps z back. Encoder: ``depth``
stages of conv k3 s2 p1 + ReLU (channels ``widths[:depth]``), then conv k3 p1 to 2 x
``latent_channels``; decoder mirrored (channels times ``decoder_width_mult``): conv k3 p1 + ReLU, ``depth``
transposed convs k4 s2 p1 (or, ``upsample: nearest``, nearest x2 + conv k3 p1; ReLU between, linear
output). Clips (``clip_frames > 1``) use the same layers in 3-D with kernel
3 and stride 1 over time (space is down-sampled, time is not).

Loss per sample: data = squared error summed over the sample's elements (``reduction: sum``) or
averaged over them (``mean``); prior = KL(q(z|x) || N(0, I)) summed over latent elements; total =
data + beta * prior, each averaged over the batch (so the balance does not move with batch size;
the author's ``F.mse_loss(..., reduction='sum')`` also summed over the batch). Under Adam, ``sum``
with beta equals ``mean`` with beta / elements-per-sample up to Adam's eps and gradient clipping.
Inputs are standardised per channel (``standardize``), as the note's data were ("The MSE loss
term hovered around 1", an all-zero output of standardised voxels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from trainables.figures import frame_rows
from trainables.metrics import psnr_from_mse
from trainables.models.base import Metric, PackedModel, TrainConfig
from trainables.models.frames import (
    ChannelStandardiser,
    RunningMoments,
    foreground,
    take_windows,
    val_windows,
    window_starts,
)
from trainables.models.packed import PackedConv, fold, per_seed_sum, unfold_seeds
from trainables.models.registry import register

COLLAPSE_NMSE = 0.9  # the default success: nmse below this = not collapsed (docs/vae.md "Metrics and success")
GOOD_NMSE = 0.1  # reported beside it: a good reconstruction (the earlier default)
ACTIVE_VAR = (
    0.01  # a latent unit is active when the variance of its mean across the data exceeds this (Burda et al. 2016)
)


@dataclass
class VAEConfig(TrainConfig):
    """VAE hyperparameters. Sources: note 003 (quoted by line), the author's public
    ``atompaint/autoencoders/vae.py`` ("code"), or our choice where both are silent."""

    # "2-layer" vs "3-layer" models (003:L71): down/up-sampling stages. "The 2-layer models produced much better results"
    depth: int = 2
    # channels after each down-sampling stage (the first ``depth`` are used). Ours: the note's encoder is
    # SO(3)-equivariant ("frequency=2 Fourier field types", 003:L79), not transferable; doubling widths as in SPS
    widths: tuple[int, ...] = (32, 64, 128)
    # channels of the latent grid: the note's knob for compression ("lower frequency fields", 003:L81). 4 gives 12x at
    # depth 2 on 32x32 frames, near the author's later "~14x compression" ((4,19,19,19) -> (16,5,5,5))
    latent_channels: int = 4
    # decoder settings, the note's interest ("I'm particularly interested in decoder hyperparameters", 003:L13-14).
    # decoder_width_mult: the decoder's channels are the encoder's ``widths`` (mirrored) times this. upsample: "transpose" (transposed conv k4 s2 p1) or "nearest" (nearest-neighbour
    # x2, then conv k3 p1). Ours: the note names no value
    decoder_width_mult: float = 1.0
    upsample: str = "transpose"
    # "sum" | "mean": the data term summed or averaged over a sample's elements. "mean" collapsed (2024/10/29), "I'm going
    # to switch the MSE loss term from being mean-reduced to sum-reduced" (003:L45), which learned (2024/12/17)
    reduction: str = "sum"
    beta: float = 1.0  # code: VaeLoss(..., beta=1); "I can adjust $\beta$ accordingly" (003:L60)
    # "softplus" | "logvar": code: std = softplus(s) + min_std; logvar: std = exp(s / 2) (the usual VAE parameterisation)
    std_param: str = "softplus"
    min_std: float = 1e-5  # code: min_std = 1e-5 (softplus only)
    # per-channel standardisation of the input (first-batch statistics per seed). Our reading of "The MSE loss term
    # hovered around 1" (003:L49): standardised data, where an all-zero output scores 1
    standardize: bool = True
    # 1: a VAE of frames (2-D convs). >1: of clips of this many frames as 3-D volumes (3-D convs), the nearest analogue
    # of the note's voxel grids (35^3, 003:L47)
    clip_frames: int = 1
    lr: float = 1e-3  # Adam; the note does not give one (torch's default)
    batch_size: int = 32  # samples (one window per sequence) per seed per step; the note does not give one

    def checks(self) -> dict[str, bool]:
        return {
            **super().checks(),
            "depth": self.depth in (2, 3),
            "widths": len(self.widths) >= self.depth and min(self.widths) >= 1,
            "latent_channels": self.latent_channels >= 1,
            "decoder_width_mult": self.decoder_width_mult > 0,
            "upsample": self.upsample in ("transpose", "nearest"),
            "reduction": self.reduction in ("sum", "mean"),
            "beta": self.beta >= 0,
            "std_param": self.std_param in ("softplus", "logvar"),
            "min_std": self.min_std >= 0,
            "clip_frames": self.clip_frames >= 1,
        }


class VAE(PackedModel):
    metrics = (
        Metric(
            "nmse",
            "lower",
            "reconstruction MSE / per-pixel variance of the validation frames (mean frame = 1: collapsed)",
        ),
        Metric("psnr", "higher", "PSNR of the reconstruction (dB, frames in [0, 1])"),
        Metric(
            "fg_nmse", "lower", "squared error on foreground (ball) pixels / that of a black output (1 = ball missing)"
        ),
        Metric("kl", "lower", "KL(q(z|x) || N(0, I)) per sample, summed over latent elements (0 = posterior collapse)"),
        Metric("active_channels", "higher", "latent channels whose mean varies across the data (variance > 0.01)"),
        Metric("compression", "higher", "input elements / latent elements (a property of the configuration)"),
    )
    # not collapsed (docs/vae.md, measured on the quickstart's data): every output that ignores the input scores >= 1
    # (validation mean frame 1, training mean frame 1.006, black 1.11), every collapsed seed (KL < 0.2, no active
    # channel) 1.08-1.15, depth-3 seeds at beta <= 8 (sum) 0.18-0.47; 0.9 = 10% of the pixel variance explained.
    # 0.1 ("reconstructs well", the old rule) is reported beside it
    success = {"metric": "nmse", "below": COLLAPSE_NMSE, "also": [GOOD_NMSE]}
    scheduler_metric = "nmse"
    # data keys and config fields for tests/test_models.py: a few seconds on a CPU
    test_sizes = {"frames": 4, "image_size": 16, "widths": [4, 8], "latent_channels": 2, "batch_size": 16}

    def __init__(self, cfg: VAEConfig, gens: list[torch.Generator], image_size: int):
        super().__init__(cfg, gens, image_size)
        d, L = cfg.depth, cfg.clip_frames
        self.dims = 3 if L > 1 else 2
        k, s = (3, (1, 2, 2)) if self.dims == 3 else (3, 2)  # down-sampling conv
        kt = (3, 4, 4) if self.dims == 3 else 4  # up-sampling transposed conv
        conv = lambda c_in, c_out, **kw: PackedConv(gens, c_in, c_out, dims=self.dims, **kw)  # noqa: E731
        widths = cfg.widths[:d]
        dec = [max(1, round(w * cfg.decoder_width_mult)) for w in widths]
        self.norm = ChannelStandardiser(self.S, 3, cfg.standardize)
        self.down = torch.nn.ModuleList(
            conv(c_in, c_out, kernel=k, stride=s, padding=1) for c_in, c_out in zip((3, *widths), widths)
        )
        self.to_latent = conv(widths[-1], 2 * cfg.latent_channels, kernel=3, padding=1)
        self.from_latent = conv(cfg.latent_channels, dec[-1], kernel=3, padding=1)
        self.scale = (1, 2, 2) if self.dims == 3 else 2  # nearest up-sampling (space only)
        self.up = torch.nn.ModuleList(
            conv(c_in, c_out, kernel=kt, stride=s, padding=1, transpose=True)
            if cfg.upsample == "transpose"
            else conv(c_in, c_out, kernel=3, padding=1)
            for c_in, c_out in zip(dec[::-1], (*dec[::-1][1:], 3))
        )
        side = image_size // 2**d
        self.latent_shape = (cfg.latent_channels, *((L,) if L > 1 else ()), side, side)
        self.compression = 3 * L * image_size**2 / math.prod(self.latent_shape)

    @classmethod
    def check_data(cls, cfg: VAEConfig, data: dict) -> None:
        if cfg.clip_frames > data["frames"]:
            raise ValueError(
                f"config key 'clip_frames' ({cfg.clip_frames}) must be at most 'frames' ({data['frames']})"
            )
        if data["image_size"] % 2**cfg.depth:
            raise ValueError(
                f"config key 'image_size' ({data['image_size']}) must be divisible by 2**depth ({2**cfg.depth})"
            )

    # -- the network, on folded tensors [N, S*C, (L,) H, W] --

    def fold(self, clips: torch.Tensor) -> torch.Tensor:
        """Standardised clips [S, N, L, 3, H, W] -> [N, S*3, (L,) H, W]."""
        x = clips[:, :, 0] if self.dims == 2 else clips.transpose(2, 3)  # [S, N, 3, (L,) H, W]
        return fold(x, self.channels_last and self.dims == 2)

    def unfold(self, x: torch.Tensor) -> torch.Tensor:
        """[N, S*3, (L,) H, W] -> [S, N, L, 3, H, W]."""
        x = unfold_seeds(x, self.S)
        return x.unsqueeze(2) if self.dims == 2 else x.transpose(2, 3)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[N, S*3, ...] -> mean, std [S, N, latent_channels, ...]."""
        for layer in self.down:
            x = F.relu(layer(x))
        out = unfold_seeds(self.to_latent(x), self.S).unflatten(2, (2, -1))  # [S, N, 2, C, ...]
        mean, s = out[:, :, 0], out[:, :, 1]
        std = F.softplus(s) + self.cfg.min_std if self.cfg.std_param == "softplus" else torch.exp(0.5 * s)
        return mean, std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [S, N, latent_channels, ...] -> standardised reconstruction [N, S*3, ...]."""
        x = F.relu(self.from_latent(fold(z)))
        for i, layer in enumerate(self.up):
            if self.cfg.upsample == "nearest":
                x = F.interpolate(x, scale_factor=self.scale, mode="nearest")
            x = layer(x)
            x = F.relu(x) if i < len(self.up) - 1 else x
        return x

    # -- training --

    def draw(self, g: torch.Generator, batch: int, frames: int, step: int) -> dict[str, torch.Tensor]:
        """One window per sequence (its start) and the latent noise eps."""
        return {
            "start": window_starts(g, batch, frames, self.cfg.clip_frames),
            "eps": torch.randn(batch, *self.latent_shape, generator=g),
        }

    def losses(self, x: torch.Tensor, rand: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """x [S, B, T, 3, H, W] -> per-seed ``data``, ``kl`` (times beta) and ``total`` [S], means over the batch."""
        cfg, B = self.cfg, x.shape[1]
        if self.training:
            self.norm.observe(x)
        target = self.fold(self.norm(take_windows(x, rand["start"], cfg.clip_frames)))
        mean, std = self.encode(target)
        recon = self.decode(mean + rand["eps"] * std).float()
        data = per_seed_sum((recon - target.float()).square(), self.S, self.dims) / B
        if cfg.reduction == "mean":
            data = data / target[0, :3].numel()  # elements per sample
        kl = cfg.beta * kl_normal(mean.float(), std.float()) / B
        return {"data": data, "kl": kl, "total": data + kl}

    # -- evaluation --

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every declared metric per seed on the validation windows (frames, or non-overlapping
        clips), reconstructing from the latent mean."""
        clips = val_windows(x, self.cfg.clip_frames)  # [M, L, 3, H, W]
        M = len(clips)
        se = fg_se = kl = 0
        moments = RunningMoments()  # of the latent means across the data, in float64
        for i in range(0, M, self.cfg.batch_size):
            chunk = clips[i : i + self.cfg.batch_size]
            recon, mean, std = self.reconstruct(chunk)
            err = (recon - chunk).square()  # [S, n, L, 3, H, W]
            se = se + err.flatten(1).sum(1).double()
            fg_se = fg_se + (err * foreground(chunk)).flatten(1).sum(1).double()
            kl = kl + kl_normal(mean, std).double()
            moments.add(mean)
        var = clips.double().var(0, correction=0).mean()  # per-pixel variance: the mean frame's MSE
        fg_black = (clips.double().square() * foreground(clips)).sum()  # a black output's foreground error
        mse = se / clips[0].numel() / M
        unit_var = moments.var()  # [S, C, ...]
        active = (unit_var.flatten(2).mean(-1) > ACTIVE_VAR).sum(-1)
        return {
            "nmse": mse / var,
            "psnr": torch.tensor([psnr_from_mse(float(m)) for m in mse], dtype=torch.float64),
            "fg_nmse": fg_se / fg_black,
            "kl": kl / M,
            "active_channels": active.double(),
            "compression": torch.full((self.S,), self.compression, dtype=torch.float64),
        }

    @staticmethod
    def baselines(cfg: VAEConfig, x: torch.Tensor, y: torch.Tensor) -> dict[str, dict[str, float]]:
        """Outputs that ignore the input, on evaluate's windows: ``mean_frame`` (the validation windows'
        per-pixel mean: nmse 1 by construction) and ``black``."""
        clips = val_windows(x, cfg.clip_frames).double()
        fg = foreground(clips)
        var, fg_black = clips.var(0, correction=0).mean(), (clips.square() * fg).sum()
        out = {}
        for name, output in (("mean_frame", clips.mean(0, keepdim=True)), ("black", torch.zeros_like(clips[:1]))):
            err = (output - clips).square()
            mse = float(err.mean())
            out[name] = {
                "nmse": mse / float(var),
                "psnr": psnr_from_mse(mse),
                "fg_nmse": float((err * fg).sum() / fg_black),
            }
        return out

    def reconstruct(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Clips [n, L, 3, H, W] (the same for every seed) -> every seed's reconstruction from the
        latent mean [S, n, L, 3, H, W] in pixel units, and the latent mean and std [S, n, C, ...]."""
        x = self.norm(clips.unsqueeze(0).expand(self.S, *clips.shape))
        mean, std = self.encode(self.fold(x))
        recon = self.norm.inverse(self.unfold(self.decode(mean)).float())
        return recon, mean.float(), std.float()

    def artefacts(self, seed_index: int, x: torch.Tensor, y: torch.Tensor, folder: Path) -> list[Path]:
        """``reconstructions.png``: validation frames (a clip's first frame) over their reconstructions."""
        clips = val_windows(x, self.cfg.clip_frames)[:: max(1, len(x) // 8)][:8]
        recon = self.reconstruct(clips)[0][seed_index]
        rows = {"original": clips[:, 0], "reconstruction": recon[:, 0].clamp(0, 1)}
        return [
            frame_rows(
                rows, Path(folder) / "reconstructions.png", f"VAE seed index {seed_index}: originals vs reconstructions"
            )
        ]


def kl_normal(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, std^2) || N(0, 1)) summed over all but the first two dims [S, N, ...] -> per seed [S]
    (summed over the batch too: divide by it for a per-sample mean)."""
    var = std.square()
    return 0.5 * (var + mean.square() - 1 - torch.log(var)).flatten(1).sum(1)


register("vae", VAEConfig, VAE)
