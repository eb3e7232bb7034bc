"""Seed system 001: a convolutional video predictor, past frames -> future frames, packed.

The note's observations: predictions "molto sfocati" (very blurred, 001:L54), "sovrapposti"
(superposed) outputs "segno del problema dei modelli deterministici" (001:L33: with A->B and
A->C, "la rete darà A->(B+C)", 001:L7), and "le previsioni del modello siano tutte molto simili
tra di loro" (all predictions alike, 001:L36). On the ball these are measurable per seed: is the
prediction better than copying the last frame, is the ball where it should be (or a blur between
possible places), do predictions differ across clips? With one past frame the velocity is
unknown, so blur is expected; with two or more it need not be.

Model (our reading of "Bottleneck: Resnet 64-128-256-512", "Decoder: ConvTranspose3d +
BatchNorm", 001:L30-31): the ``n_past`` frames, standardised per channel (001:L22), stacked
along the channels, a conv k3 stem and one residual block per width (ResNet-18's BasicBlock:
conv k3 - BN - ReLU - conv k3 - BN, plus a 1x1 projection when the shape changes; stride 1 in the
first, 2 in the others), then per block after the first a transposed conv k4 s2 p1 + BN + ReLU
back up, and a conv k3 to 3 x ``n_future`` channels: the future frames, standardised. Time is
folded into channels (a 2-D network) instead of the note's 3-D convolutions, so the k_past ->
k_future mapping is a channel count (the note's "Filtri più grossi -> da errore dimensione",
001:L85, is this arithmetic in 3-D). Loss: MSE on standardised frames, averaged (the note
does not name one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from trainables.figures import frame_rows
from trainables.metrics import psnr_from_mse
from trainables.models.base import Metric, PackedModel, TrainConfig
from trainables.models.frames import (
    ChannelStandardiser,
    RunningMoments,
    centroid,
    constant_velocity,
    take_windows,
    val_windows,
    window_starts,
)
from trainables.models.packed import PackedBatchNorm, PackedConv, fold, unfold_seeds
from trainables.models.registry import register

# Default success (docs/video_predictor.md): MSE at most half of copy-last-frame's (repeating the last frame and
# predicting the mean future frame both score 0.6-1.2 on the ball), and the ball's centroid at horizon 1 off by at most
# half of copy-last-frame's centroid error (the ball's own motion: ~1 px per frame at 16 px, ~1.75 px at 32 px)
COPY_RATIO_MAX = 0.5
CENTROID_RATIO_MAX = 0.5


@dataclass
class VideoPredictorConfig(TrainConfig):
    """Video predictor hyperparameters. Sources: note 001 (quoted by line) or our choice where it is silent."""

    # (frame_past, frame_future) "(4-6), (6, 2)" (001:L54); "capire k frame passato per ottenere un buon frame
    # prossimo futuro" (001:L44)
    n_past: int = 4
    n_future: int = 6
    widths: tuple[int, ...] = (
        64,
        128,
        256,
        512,
    )  # "Bottleneck: Resnet 64-128-256-512" (001:L30); blocks 2.. halve H, W
    batchnorm: bool = True  # "Decoder: ConvTranspose3d + BatchNorm" (001:L31); ResNet blocks have it too
    standardize: bool = True  # "Implementata la standardizzazione per canale del dataset in input" (001:L22)
    lr: float = 1e-3  # Adam; the note does not give one (torch's default)
    batch_size: int = 32  # clips per seed per step; the note: "Ridotto la batch size" (001:L73), no number
    # loss_osc's window: the last this many training steps. "Si nota una periodicità nella loss (picchi)" (001:L59),
    # "La loss non oscilla più se: aumento il num. di frames futuri + riduco la batch size" (001:L80); ours: 64
    osc_window: int = 64

    def checks(self) -> dict[str, bool]:
        return {
            **super().checks(),
            "n_past": self.n_past >= 1,
            "n_future": self.n_future >= 1,
            "widths": len(self.widths) >= 1 and min(self.widths) >= 1,
            "osc_window": self.osc_window >= 2,
        }


class Block(nn.Module):
    """S independent ResNet BasicBlocks on [N, S*C, H, W] (BatchNorm optional)."""

    def __init__(self, gens, c_in: int, c_out: int, stride: int, batchnorm: bool):
        super().__init__()
        S, bias = len(gens), not batchnorm
        norm = lambda: PackedBatchNorm(S, c_out) if batchnorm else nn.Identity()  # noqa: E731
        self.conv1 = PackedConv(gens, c_in, c_out, 3, stride, 1, bias=bias)
        self.bn1 = norm()
        self.conv2 = PackedConv(gens, c_out, c_out, 3, 1, 1, bias=bias)
        self.bn2 = norm()
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(PackedConv(gens, c_in, c_out, 1, stride, 0, bias=bias), norm())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(h + (x if self.shortcut is None else self.shortcut(x)))


class VideoPredictor(PackedModel):
    metrics = (
        Metric("mse", "lower", "MSE of the predicted future frames, all horizons (pixels in [0, 1])"),
        Metric("mse_h1", "lower", "MSE of the first predicted frame"),
        Metric("mse_last", "lower", "MSE of the last predicted frame (horizon n_future)"),
        Metric("psnr", "higher", "PSNR of the predicted frames, all horizons (dB)"),
        Metric("copy_ratio", "lower", "mse / MSE of repeating the last past frame on the same clips (1 = no better)"),
        Metric(
            "centroid_h1",
            "lower",
            "distance (px) of the predicted ball's intensity centroid from the true frame's, horizon 1",
        ),
        Metric(
            "centroid_ratio",
            "lower",
            "centroid_h1 / that of copy-last-frame (the ball's motion; 1 = as if it stood still)",
        ),
        Metric(
            "diversity",
            "higher",
            "std of predictions across clips / std of the true frames across clips (0 = all alike)",
        ),
        Metric(
            "loss_osc",
            "lower",
            "std / mean of the training loss (standardised MSE) over the last osc_window steps: the note's oscillation",
        ),
        Metric(
            "score",
            "lower",
            f"max(copy_ratio / {COPY_RATIO_MAX}, centroid_ratio / {CENTROID_RATIO_MAX}): below 1 = the default success",
        ),
    )
    success = {"metric": "score", "below": 1.0}
    scheduler_metric = "mse"
    # data keys and config fields for tests/test_models.py: a few seconds on a CPU
    test_sizes = {"frames": 4, "image_size": 16, "n_past": 2, "n_future": 2, "widths": [4, 8], "batch_size": 16}

    def __init__(self, cfg: VideoPredictorConfig, gens: list[torch.Generator], image_size: int):
        super().__init__(cfg, gens, image_size)
        S, w, bn = self.S, cfg.widths, cfg.batchnorm
        self.norm = ChannelStandardiser(S, 3, cfg.standardize)
        self.stem = PackedConv(gens, 3 * cfg.n_past, w[0], 3, 1, 1, bias=not bn)
        self.stem_bn = PackedBatchNorm(S, w[0]) if bn else nn.Identity()
        self.blocks = nn.ModuleList(
            Block(gens, c_in, c_out, 1 if i == 0 else 2, bn) for i, (c_in, c_out) in enumerate(zip((w[0], *w), w))
        )
        self.up = nn.ModuleList(
            PackedConv(gens, c_in, c_out, 4, 2, 1, transpose=True, bias=not bn)
            for c_in, c_out in zip(w[::-1], w[::-1][1:])
        )
        self.up_bn = nn.ModuleList(PackedBatchNorm(S, c) if bn else nn.Identity() for c in w[::-1][1:])
        self.head = PackedConv(gens, w[0], 3 * cfg.n_future, 3, 1, 1)
        # the last osc_window steps' training losses per seed (slot step mod window; NaN = not yet), for loss_osc
        self.register_buffer("recent_loss", torch.full((self.S, cfg.osc_window), math.nan))

    @classmethod
    def check_data(cls, cfg: VideoPredictorConfig, data: dict) -> None:
        if cfg.n_past + cfg.n_future > data["frames"]:
            raise ValueError(
                f"config key 'frames' ({data['frames']}) must be at least n_past + n_future ({cfg.n_past + cfg.n_future})"
            )
        if data["image_size"] % 2 ** (len(cfg.widths) - 1):
            raise ValueError(
                f"config key 'image_size' ({data['image_size']}) must be divisible by 2**(len(widths) - 1)"
            )

    def predict(self, past: torch.Tensor) -> torch.Tensor:
        """Standardised past frames [S, N, n_past, 3, H, W] -> standardised future [S, N, n_future, 3, H, W]."""
        S, N, P, C, H, W = past.shape
        x = fold(past.reshape(S, N, P * C, H, W), self.channels_last)
        x = F.relu(self.stem_bn(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        for up, bn in zip(self.up, self.up_bn):
            x = F.relu(bn(up(x)))
        return unfold_seeds(self.head(x), S).unflatten(2, (self.cfg.n_future, C))

    def draw(self, g: torch.Generator, batch: int, frames: int, step: int) -> dict[str, torch.Tensor]:
        """Each sequence's clip start (the clip is n_past + n_future frames)."""
        return {"start": window_starts(g, batch, frames, self.cfg.n_past + self.cfg.n_future)}

    def losses(self, x: torch.Tensor, rand: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """x [S, B, T, 3, H, W] -> per-seed ``mse`` (= ``total``) [S] on standardised future frames."""
        if self.training:
            self.norm.observe(x)
        clips = self.norm(take_windows(x, rand["start"], self.cfg.n_past + self.cfg.n_future))
        past, future = clips[:, :, : self.cfg.n_past], clips[:, :, self.cfg.n_past :]
        mse = (self.predict(past).float() - future.float()).square().flatten(1).mean(1)
        if self.training:
            self.recent_loss[:, step % self.cfg.osc_window] = mse.detach()
        return {"mse": mse, "total": mse}

    def forecast(self, clips: torch.Tensor) -> torch.Tensor:
        """Validation clips [n, n_past + n_future, 3, H, W] (the same for every seed) -> every seed's
        predicted future in pixel units [S, n, n_future, 3, H, W]."""
        past = self.norm(clips[:, : self.cfg.n_past].unsqueeze(0).expand(self.S, -1, -1, -1, -1, -1))
        return self.norm.inverse(self.predict(past).float())

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every declared metric per seed on the non-overlapping validation clips."""
        P = self.cfg.n_past
        clips = val_windows(x, P + self.cfg.n_future)  # [M, P + F, 3, H, W]
        future, M = clips[:, P:], len(clips)
        se_h = dist = 0
        moments = RunningMoments()  # of the predictions across clips, in float64 (stable: packed = alone)
        for i in range(0, M, self.cfg.batch_size):
            pred = self.forecast(clips[i : i + self.cfg.batch_size])  # [S, n, F, 3, H, W]
            true = future[i : i + self.cfg.batch_size]
            se_h = se_h + (pred - true).square().sum((1, 3, 4, 5)).double()  # [S, F]
            dist = dist + (centroid(pred[:, :, 0]) - centroid(true[:, 0])).norm(dim=-1).sum(1).double()
            moments.add(pred)
        mse_h = se_h / future[:, 0].numel()  # [S, F]
        mse = mse_h.mean(1)
        last = clips[:, P - 1]
        copy = (future - last.unsqueeze(1)).double().square().mean()
        copy_centroid = (centroid(last) - centroid(future[:, 0])).norm(dim=-1).double().mean()
        pred_std = moments.var().sqrt().flatten(1).mean(1)
        true_std = future.double().std(0, correction=0).mean()
        copy_ratio, centroid_h1 = mse / copy, dist / M
        centroid_ratio = centroid_h1 / copy_centroid
        return {
            "mse": mse,
            "mse_h1": mse_h[:, 0],
            "mse_last": mse_h[:, -1],
            "psnr": torch.tensor([psnr_from_mse(float(m)) for m in mse], dtype=torch.float64),
            "copy_ratio": copy_ratio,
            "centroid_h1": centroid_h1,
            "centroid_ratio": centroid_ratio,
            "diversity": pred_std / true_std,
            "loss_osc": self.loss_osc(),
            "score": torch.maximum(copy_ratio / COPY_RATIO_MAX, centroid_ratio / CENTROID_RATIO_MAX),
        }

    @staticmethod
    def baselines(cfg: VideoPredictorConfig, x: torch.Tensor, y: torch.Tensor) -> dict[str, dict[str, float]]:
        """``copy_last`` (the last past frame for every future frame) and, with 2 or more past frames,
        ``constant_velocity`` (the last frame moved on at the ball's last velocity), on evaluate's clips."""
        P = cfg.n_past
        clips = val_windows(x, P + cfg.n_future)
        future, last = clips[:, P:], clips[:, P - 1]
        preds = {"copy_last": last.unsqueeze(1).expand_as(future)}
        if P >= 2:
            preds["constant_velocity"] = constant_velocity(clips[:, P - 2], last, cfg.n_future)
        copy = (future - last.unsqueeze(1)).double().square().mean()
        copy_centroid = (centroid(last) - centroid(future[:, 0])).norm(dim=-1).double().mean()
        true_std = future.double().std(0, correction=0).mean()
        out = {}
        for name, pred in preds.items():
            mse_h = (pred - future).double().square().mean((0, 2, 3, 4))
            centroid_h1 = (centroid(pred[:, 0]) - centroid(future[:, 0])).norm(dim=-1).double().mean()
            copy_ratio, centroid_ratio = mse_h.mean() / copy, centroid_h1 / copy_centroid
            scores = {
                "mse": mse_h.mean(),
                "mse_h1": mse_h[0],
                "mse_last": mse_h[-1],
                "psnr": psnr_from_mse(float(mse_h.mean())),
                "copy_ratio": copy_ratio,
                "centroid_h1": centroid_h1,
                "centroid_ratio": centroid_ratio,
                "diversity": pred.double().std(0, correction=0).mean() / true_std,
                "score": torch.maximum(copy_ratio / COPY_RATIO_MAX, centroid_ratio / CENTROID_RATIO_MAX),
            }
            out[name] = {k: float(v) for k, v in scores.items()}
        return out

    def loss_osc(self) -> torch.Tensor:
        """Per seed: std / mean (population std, float64) of the recorded training losses; NaN before any step."""
        recent = self.recent_loss.double()
        n = (~recent.isnan()).sum(1)
        mean = recent.nansum(1) / n
        std = ((recent - mean.unsqueeze(1)).square().nansum(1) / n).sqrt()
        return std / mean

    def artefacts(self, seed_index: int, x: torch.Tensor, y: torch.Tensor, folder: Path) -> list[Path]:
        """``prediction.png``: for one validation clip, the past frames, the true future and the prediction."""
        P = self.cfg.n_past
        clip = val_windows(x, P + self.cfg.n_future)[:1]
        pred = self.forecast(clip)[seed_index, 0].clamp(0, 1)
        rows = {"past": clip[0, :P], "true future": clip[0, P:], "predicted": pred}
        return [frame_rows(rows, Path(folder) / "prediction.png", f"video predictor seed index {seed_index}")]


register("video_predictor", VideoPredictorConfig, VideoPredictor)
