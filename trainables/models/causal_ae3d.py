"""Causal 3-D convolutional autoencoders, packed: note 000's ``ae_3t_3d_learn`` (``reconstruct``) and
its predictive use (``predict``: "pass shifted input to reconstruction loss").

Each level is the author's ``Conv3DAEBlock``: Conv3d(kernel (4, 6, 6), stride (1, 2, 2), padding
(0, 2, 2)) + Sigmoid down, ConvTranspose3d (same geometry) + Sigmoid up: H and W halve, time keeps
its stride but, without temporal padding, each level's z is ``dt = 3`` frames shorter and the
reconstruction ``dt`` longer again. The loss is trimmed as in the code, MSE(x[2D + dx:], r[D:-D])
with D = dt * levels: the kept outputs are those that saw a full window, and output D + i then
depends on input frames i .. i + 2D only, i.e. reconstructs frame i + 2D from frames up to it
(``dx = 0``) or, fed x[:-1] (``dx = 1``), predicts frame i + 2D + 1 from the frames before it.

Training is level by level (the step decides the stage, ``stage_steps`` per level, lower levels
frozen); each level's loss is the same trimmed loss on its input features, under ``loss`` on the
decoder's logits (``pixel_loss.py``; bce by default, MSE = the code's). ``causal: false`` is note 000's
non-causal ``ae_3``: temporal padding (time_kernel - 1) // 2, nothing trimmed, every frame scored.
Activations are folded [N, S*C, T, H, W]."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from trainables.models.base import Metric, PackedModel, TrainConfig
from trainables.models.frame_stats import LevelStack, Moments, trivial_mse
from trainables.models.packed import PackedConv, fold, per_seed_sum
from trainables.models.pixel_loss import LOSSES, per_seed_pixel_loss
from trainables.models.registry import register

STRIDE, PADDING = (1, 2, 2), (0, 2, 2)  # code: Conv3DAEBlock(..., kernel_size=(4,6,6), stride=(1,2,2), padding=(0,2,2))
SPACE_KERNEL = 6  # code: kernel (4, 6, 6)
VARIANTS = ("reconstruct", "predict")
EVAL_SEQUENCES = 16  # validation sequences per evaluation chunk (memory, not numbers)


@dataclass
class CausalAE3dConfig(TrainConfig):
    """Defaults: note 000 and the author's code as quoted in research/seed-systems.md §4 unless the
    comment says otherwise (see docs/seed000.md)."""

    variant: str = (
        "reconstruct"  # reconstruct | predict (input shifted by one frame, "pass shifted input to reconstruction loss")
    )
    # features per level; code Conv3DAEBlock(3, 6*m): m = 1 "2x features for 2x H/W compression without T compression";
    # the predictive AE uses m = 2 ("4x features for 2x H/W (no compression)"): [12, 24, ...]
    channels: tuple[int, ...] = (6, 12, 24)
    time_kernel: int = 4  # code: kernel (4, 6, 6); each level trims time_kernel - 1 frames at both ends
    stage_steps: int = 2000  # optimiser steps per level (our choice; the note gives none)
    lr: float = 2e-5  # code: Adam lr 2e-5
    batch_size: int = 1  # code: batch 1 (one clip)
    # the decoder's training loss on its logits (trainables/models/pixel_loss.py): bce | fg_mse | mse (the code's; on
    # ball frames MSE after a sigmoid sits on the black frame, with time kernel 4 through a whole quickstart).
    # bce by measurement (docs/seed000.md, "The loss")
    loss: str = "bce"
    fg_weight: float = 21.0  # fg_mse only: weight of elements whose target exceeds FG_THRESHOLD (research probe P1: 21)
    # true: ae_3t (no temporal padding, the trimmed loss); false: note 000's ae_3 "Non-causal 3D convolution" (ours:
    # temporal padding (time_kernel - 1) // 2 each side, every frame reconstructed and scored, edges included: the
    # note's "side effects have considerable impact"); reconstruct only
    causal: bool = True

    def checks(self) -> dict[str, bool]:
        return {
            **super().checks(),
            "variant": self.variant in VARIANTS,
            "channels": len(self.channels) >= 1 and min(self.channels) >= 1,
            "time_kernel": self.time_kernel >= 1,
            "stage_steps": self.stage_steps >= 1,
            "loss": self.loss in LOSSES,
            "fg_weight": self.fg_weight > 0,
            "causal": self.causal or self.variant == "reconstruct",  # a non-causal predictor would see the frame
        }

    def shrink(self) -> int:
        """Frames each level's z loses in time (causal: time_kernel - 1; non-causal: 0 or 1)."""
        return self.time_kernel - 1 - (0 if self.causal else 2 * ((self.time_kernel - 1) // 2))


class CausalAE3d(LevelStack, PackedModel):
    """S seeds of a stack of ``len(channels)`` causal 3-D conv AE levels."""

    metrics = (
        Metric(
            "mean_frame_rel",
            "lower",
            "straight (all levels) MSE on the scored frames / MSE of their per-pixel mean frame",
        ),
        Metric("copy_last_rel", "lower", "straight MSE / MSE of copying the last frame before each scored frame"),
        Metric(
            "straight_mse",
            "lower",
            "straight per-pixel MSE of reconstruction (reconstruct) or one-step prediction (predict)",
        ),
        Metric("l0_rel", "lower", "level 0 alone: trimmed MSE / MSE of the per-pixel mean of its scored frames"),
        Metric("mean_frame_mse", "lower", "baseline: MSE of the scored frames' per-pixel mean frame"),
        Metric("copy_last_mse", "lower", "baseline: MSE of each scored frame predicted by the frame before it"),
        Metric(
            "black_mse",
            "lower",
            "baseline: MSE of an all-black frame (the plateau a sigmoid AE on ball frames reaches first)",
        ),
    )
    success = {
        "metric": "mean_frame_rel",
        "below": 0.2,
    }  # seed-systems.md §4 proposal for AEs; predict: copy_last_rel below 0.5
    scheduler_metric = "mean_frame_rel"
    # data keys and config fields for tests/test_models.py: a few seconds on a CPU
    test_sizes = {
        "frames": 9,
        "image_size": 16,
        "channels": [4, 8],
        "time_kernel": 2,
        "stage_steps": 4,
        "batch_size": 4,
        "lr": 1e-3,
    }

    def __init__(self, cfg: CausalAE3dConfig, gens: list[torch.Generator], image_size: int):
        super().__init__(cfg, gens, image_size)
        # dt: frames trimmed per level at each end of the output (0 non-causal: the transposed conv restores T)
        self.L, self.dx = len(cfg.channels), int(cfg.variant == "predict")
        self.dt = cfg.time_kernel - 1 if cfg.causal else 0
        ins, kernel = [3, *cfg.channels[:-1]], (cfg.time_kernel, SPACE_KERNEL, SPACE_KERNEL)
        pad = PADDING if cfg.causal else ((cfg.time_kernel - 1) // 2, *PADDING[1:])
        self.enc, self.dec = nn.ModuleList(), nn.ModuleList()
        for l, c in enumerate(cfg.channels):
            self.enc.append(PackedConv(gens, ins[l], c, kernel, STRIDE, pad, dims=3))
            self.dec.append(PackedConv(gens, c, ins[l], kernel, STRIDE, pad, dims=3, transpose=True))

    @classmethod
    def check_data(cls, cfg: CausalAE3dConfig, data: dict) -> None:
        L, dx = len(cfg.channels), int(cfg.variant == "predict")
        if cfg.causal:
            need = 2 * (cfg.time_kernel - 1) * L + dx + 1
            rule = f"2*(time_kernel-1)*len(channels) + {dx + 1}"
        else:  # z keeps T - shrink * L >= 1 frames; 2 frames for the copy-last baseline
            need, rule = max(cfg.shrink() * L + 1, 2), "max((time_kernel-1) % 2 * len(channels) + 1, 2) (non-causal)"
        if data["frames"] < need:
            raise ValueError(f"config key 'frames' ({data['frames']}) must be at least {rule} = {need}")
        if data["image_size"] % 2**L:
            raise ValueError(
                f"config key 'image_size' ({data['image_size']}) must be divisible by 2**len(channels) = {2**L}"
            )

    def param_groups(self):
        return [(list(self.parameters()), 1.0)]

    # -- building blocks --

    def clips(self, x: torch.Tensor) -> torch.Tensor:
        """[S, B, T, 3, H, W] -> folded clips [B, S*3, T, H, W]."""
        return fold(x.transpose(2, 3))

    def encode(self, l: int, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.enc[l](h))

    def decode_logits(self, l: int, z: torch.Tensor) -> torch.Tensor:
        return self.dec[l](z)

    def decode(self, l: int, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(l, z))

    def run(self, h: torch.Tensor, levels: range, logits: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Levels ``levels`` on features h [N, S*C, T, H, W]: (output trimmed to its kept frames, the
        matching targets of h) per the module docstring; ``logits``: the last decoder's before its sigmoid."""
        D, dx = self.dt * len(levels), self.dx
        z = self.decode_all(self.encode_all(h[:, :, : h.shape[2] - dx], levels)[-1], levels, logits)
        return z[:, :, D : z.shape[2] - D], h[:, :, 2 * D + dx :]

    def stage(self, step: int) -> int:
        return min(step // self.cfg.stage_steps, self.L - 1)

    # -- training --

    def losses(self, x: torch.Tensor, rand: dict, step: int) -> dict[str, torch.Tensor]:
        """The trimmed loss of the level of this step's stage on its input features, per seed [S]."""
        l, h = self.stage(step), self.clips(x)
        with torch.no_grad():  # lower levels frozen
            for k in range(l):
                h = self.encode(k, h)
        out, target = self.run(h, range(l, l + 1), logits=True)
        ae = per_seed_pixel_loss(out, target, self.S, self.cfg.loss, self.cfg.fg_weight, dims=3)
        return {"ae": ae, "total": ae}

    # -- evaluation --

    @staticmethod
    def baselines(cfg: CausalAE3dConfig, x: torch.Tensor, y: torch.Tensor) -> dict[str, dict[str, float]]:
        """``mean_frame``, ``black`` and ``copy_last`` as the straight output, on evaluate's scored frames."""
        dt, dx = (cfg.time_kernel - 1 if cfg.causal else 0), int(cfg.variant == "predict")
        start = 2 * dt * len(cfg.channels) + dx  # as evaluate: the first output frame, then the first scored one
        mse = trivial_mse(x, start + int(start == 0))
        rel = lambda v: {"mean_frame_rel": v / mse["mean_frame"], "copy_last_rel": v / mse["copy_last"]}  # noqa: E731
        return {k: {"straight_mse": v, **rel(v)} for k, v in mse.items()}

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        S, dev = self.S, x.device
        f64 = lambda: torch.zeros(S, dtype=torch.float64, device=dev)  # noqa: E731
        se, se0, copy, black = f64(), f64(), f64(), f64()
        n = n0 = 0
        frames_m, frames_m0 = Moments(), Moments()
        start = 2 * self.dt * self.L + self.dx  # the straight run's first output frame
        skip = int(start == 0)  # time_kernel 1, reconstruct: frame 0 has no frame before it to copy; score from frame 1
        first = start + skip  # the first scored frame
        for i in range(0, len(x), EVAL_SEQUENCES):
            h = self.clips(x[i : i + EVAL_SEQUENCES].unsqueeze(0).expand(S, -1, -1, -1, -1, -1))
            out, target = (t[:, :, skip:] for t in self.run(h, range(self.L)))
            se += per_seed_sum((out.float() - target).square().double(), S, 3)
            copy += per_seed_sum((h[:, :, first - 1 : -1] - target).square().double(), S, 3)
            black += per_seed_sum(target.square().double(), S, 3)
            frames_m.add(target.transpose(1, 2).flatten(0, 1))  # frames as samples
            n += target.numel() // S
            out0, target0 = self.run(h, range(1))
            se0 += per_seed_sum((out0.float() - target0).square().double(), S, 3)
            frames_m0.add(target0.transpose(1, 2).flatten(0, 1))
            n0 += target0.numel() // S
        straight, mean_frame, copy_last = se / n, frames_m.mean_baseline(S), copy / n
        out = {
            "mean_frame_rel": straight / mean_frame,
            "copy_last_rel": straight / copy_last,
            "straight_mse": straight,
            "l0_rel": se0 / n0 / frames_m0.mean_baseline(S),
            "mean_frame_mse": mean_frame,
            "copy_last_mse": copy_last,
            "black_mse": black / n,
        }
        return {k: v.cpu() for k, v in out.items()}


register("causal_ae3d", CausalAE3dConfig, CausalAE3d)
