"""Stacked 2-D convolutional autoencoders with latent (z) optimisation, packed: note 000's
``ae_0_stack_z_learn`` (``layerwise``), ``ae_1_sparse_learn`` (``sparse``) and ``ae_2_allz_learn``
(``joint``).

Each level is the author's ``ConvAEBlock``: Conv2d(kernel 6, stride 2, padding 2) + Sigmoid down,
ConvTranspose2d(6, 2, 2) + Sigmoid up, halving H and W and doubling the features; the sparse block
(``ConvAEBlockSparse``) has ``channels[l]`` blocks of ``block_channels`` features with a softmax per
block at each position. Every frame of a sequence is one sample.

- ``layerwise``: level after level (the step decides the stage: ``stage_steps`` steps per level,
  lower levels frozen, i.e. out of the graph). Each step trains the level as an AE (loss ``ae``) and
  its decoder on z* (``dec_z``): z* = ``zsteps`` steps of plain gradient descent on z, from the
  encoder's z, at step size ``lr_z`` (the note's "`z` SGD for decoder training alternated with whole
  AE layer training"; our reading: both terms in every step).
- ``sparse``: level after level, plain AE (the note: "`z` is not optimized").
- ``joint``: every level from the start; all z (levels 1..L) optimised together on the sum of the
  levels' reconstruction errors (z_0 = the frame), the decoders trained on z* (per-level errors
  weighted by element count), each encoder regressed onto the optimised z of its level.

z-optimisation runs in fp32 (autocast off) on the gradient of the *sum over seeds* of each seed's
own mean error, so each seed's z gets exactly the gradient it would get alone. The decoders train
under ``loss`` on their logits (``pixel_loss.py``; bce by default: MSE after the sigmoid, the note's,
sits on the black frame of ball frames for a seed-dependent time); z-SGD keeps the code's MSE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from trainables.models.base import Metric, PackedModel, TrainConfig
from trainables.models.frame_stats import LevelStack, Moments, per_seed_mean_se, trivial_mse
from trainables.models.packed import PackedConv, fold, per_seed_sum
from trainables.models.pixel_loss import LOSSES, per_seed_pixel_loss
from trainables.models.registry import register

KERNEL, STRIDE, PADDING = 6, 2, 2  # author's code: ConvAEBlock(in, out, kernel_size=6, stride=2, padding=2)
MAX_LEVELS = 4  # the note's levels L-0..L-3; the metrics are declared per level
VARIANTS = ("layerwise", "sparse", "joint")
EVAL_FRAMES = 256  # validation frames per evaluation chunk (memory, not numbers)


@dataclass
class StackedAEConfig(TrainConfig):
    """Defaults: note 000 and the author's code as quoted in research/seed-systems.md §4 unless the
    comment says otherwise (see docs/seed000.md)."""

    variant: str = "layerwise"  # ae_0 (layerwise + z-SGD) | ae_1 (sparse, no z-SGD) | ae_2 (joint z-SGD of all levels)
    # features per level; code: blocks (3,6),(6,12),(12,24),(24,48), "2x features for 2x compression over H and over W".
    # sparse: blocks per level (code: 6x12, 12x12, 24x12, 64x12 channels, so [6, 12, 24, 64])
    channels: tuple[int, ...] = (6, 12, 24, 48)
    block_channels: int = 12  # sparse only: features per softmax block (code: channels_per_block 12)
    zsteps: int = 25  # z-SGD steps per decoder update (code: 25 in ae_0, 20 in ae_2); 0 = no z-optimisation
    # z-SGD step size on each frame's mean error, one value or one per level (code: lr_z 3e3; ae_2 "#lr_z=250"). The code's
    # frames are 320x240: the step per element scales with 1/elements, so smaller frames want a smaller lr_z (docs/seed000.md)
    lr_z: tuple[float, ...] = (3000.0,)
    stage_steps: int = 2000  # layerwise / sparse: optimiser steps per level (our choice; the note gives none)
    lr: float = 1e-4  # code: Adam lr 1e-4
    lr_enc: float = (
        1.0  # encoders' LR multiplier (ae_2: own Adam, "z SGD, decoder, encoder training have their own speeds")
    )
    lr_dec: float = 1.0  # decoders' LR multiplier
    batch_size: int = 1  # code: batch 1 (here one sequence: its T frames are the batch)
    # decoders' training loss on their logits (trainables/models/pixel_loss.py): bce | fg_mse | mse (the note's; on ball
    # frames, ~97 % black, MSE after a sigmoid sits on the black frame for a seed-dependent time). bce by measurement
    # (docs/seed000.md, "The loss"). z-SGD keeps the code's MSE (its lr_z is an MSE step)
    loss: str = "bce"
    fg_weight: float = 21.0  # fg_mse only: weight of elements whose target exceeds FG_THRESHOLD (research probe P1: 21)

    def checks(self) -> dict[str, bool]:
        return {
            **super().checks(),
            "variant": self.variant in VARIANTS,
            "loss": self.loss in LOSSES,
            "fg_weight": self.fg_weight > 0,
            "channels": 1 <= len(self.channels) <= MAX_LEVELS and min(self.channels) >= 1,
            "block_channels": self.block_channels >= 2,
            "zsteps": self.zsteps >= 0,
            "lr_z": len(self.lr_z) in (1, len(self.channels)) and min(self.lr_z) > 0,
            "stage_steps": self.stage_steps >= 1,
            "lr_enc": self.lr_enc > 0,
            "lr_dec": self.lr_dec > 0,
        }


def z_sgd(z0: list[torch.Tensor], objective, lrs, steps: int) -> list[torch.Tensor]:
    """``steps`` steps of gradient descent on the latents ``z0`` (from their values, detached) for
    ``objective(zs) -> [S]`` (each seed's own error), step size ``lrs[i]`` for ``z0[i]``. The gradient
    is of the sum over seeds, so each seed's z moves exactly as alone. fp32, autocast off, with
    grad enabled also under ``torch.no_grad`` (evaluation). Returns the optimised z, detached."""
    if not z0:
        return []
    with torch.enable_grad(), torch.autocast(z0[0].device.type, enabled=False):
        zs = [z.detach().float().requires_grad_(True) for z in z0]
        for _ in range(steps):
            grads = torch.autograd.grad(objective(zs).sum(), zs)
            zs = [(z - lr * g).detach().requires_grad_(True) for z, g, lr in zip(zs, grads, lrs)]
    return [z.detach() for z in zs]


class StackedAE(LevelStack, PackedModel):
    """S seeds of a stack of ``len(channels)`` conv AE levels; activations folded [N, S*C, H, W]."""

    metrics = (
        Metric(
            "straight_rel",
            "lower",
            "straight reconstruction (encode through all levels, decode through all) MSE / mean-frame MSE",
        ),
        Metric("straight_mse", "lower", "straight reconstruction per-pixel MSE"),
        Metric("mean_frame_mse", "lower", "baseline: MSE of the per-pixel mean of the validation frames"),
        *(
            m
            for l in range(MAX_LEVELS)
            for m in (
                Metric(
                    f"l{l}_ae_rel",
                    "lower",
                    f"level {l} alone: MSE of D(E(h)) vs its input h / MSE of h's mean (NaN: no level {l})",
                ),
                Metric(
                    f"l{l}_zopt_rel",
                    "lower",
                    f"level {l} alone: MSE of D(z*) after zsteps z-SGD steps from E(h) / MSE of h's mean (NaN: zsteps 0)",
                ),
            )
        ),
    )
    success = {
        "metric": "straight_rel",
        "below": 0.2,
    }  # research/seed-systems.md §4 proposal: straight <= 0.2 x trivial baseline
    scheduler_metric = "straight_rel"
    # data keys and config fields for tests/test_models.py: a few seconds on a CPU
    test_sizes = {
        "frames": 4,
        "image_size": 16,
        "channels": [4, 8],
        "zsteps": 3,
        "lr_z": [30.0],
        "stage_steps": 4,
        "batch_size": 4,
        "lr": 1e-3,
    }

    def __init__(self, cfg: StackedAEConfig, gens: list[torch.Generator], image_size: int):
        super().__init__(cfg, gens, image_size)
        self.L = len(cfg.channels)
        outs = [c * cfg.block_channels for c in cfg.channels] if cfg.variant == "sparse" else list(cfg.channels)
        ins = [3, *outs[:-1]]
        self.enc, self.dec = nn.ModuleList(), nn.ModuleList()
        for l in range(self.L):  # per level: Conv2d then ConvTranspose2d, as ConvAEBlock builds them
            self.enc.append(PackedConv(gens, ins[l], outs[l], KERNEL, STRIDE, PADDING))
            self.dec.append(PackedConv(gens, outs[l], ins[l], KERNEL, STRIDE, PADDING, transpose=True))
        self.lr_z = cfg.lr_z * self.L if len(cfg.lr_z) == 1 else cfg.lr_z

    @classmethod
    def check_data(cls, cfg: StackedAEConfig, data: dict) -> None:
        if data["image_size"] % 2 ** len(cfg.channels):
            raise ValueError(
                f"config key 'image_size' ({data['image_size']}) must be divisible by 2**len(channels) = {2 ** len(cfg.channels)}"
            )

    def param_groups(self):
        return [(list(self.enc.parameters()), self.cfg.lr_enc), (list(self.dec.parameters()), self.cfg.lr_dec)]

    # -- building blocks --

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """[S, B, T, 3, H, W] -> every frame a sample, folded [B*T, S*3, H, W]."""
        return fold(x.flatten(1, 2), self.channels_last)

    def encode(self, l: int, h: torch.Tensor) -> torch.Tensor:
        a = self.enc[l](h)
        if self.cfg.variant != "sparse":
            return torch.sigmoid(a)
        N, _, H, W = a.shape  # softmax per block at each position: [N, S*blocks, block_channels, H, W]
        return a.view(N, -1, self.cfg.block_channels, H, W).softmax(2).view(N, -1, H, W)

    def decode_logits(self, l: int, z: torch.Tensor) -> torch.Tensor:
        """Level l's decoder before its sigmoid (the losses take logits)."""
        return self.dec[l](z)

    def decode(self, l: int, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(l, z))

    def recon_loss(self, l: int, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Level l's decoder on z against h under the config's ``loss`` -> [S]."""
        return per_seed_pixel_loss(self.decode_logits(l, z), h, self.S, self.cfg.loss, self.cfg.fg_weight)

    def zopt_level(self, l: int, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """z* of level l: z-SGD from ``z`` so that D_l(z*) reconstructs h. The objective is each
        frame's own mean error, summed over frames: each frame's z moves as in the code's batches
        of one frame, whatever the batch."""
        return z_sgd(
            [z], lambda zs: len(h) * per_seed_mean_se(self.decode(l, zs[0]), h, self.S), [self.lr_z[l]], self.cfg.zsteps
        )[0]

    def joint_error(self, x: torch.Tensor, zs: list[torch.Tensor]) -> torch.Tensor:
        """ae_2's z objective: sum over levels of each level's reconstruction of the z below
        (z_0 = x), per frame as in ``zopt_level`` -> [S]."""
        below = [x, *zs[:-1]]
        return len(x) * sum(per_seed_mean_se(self.decode(l, zs[l]), below[l], self.S) for l in range(self.L))

    def stage(self, step: int) -> int:
        """The level trained at ``step`` (layerwise / sparse)."""
        return min(step // self.cfg.stage_steps, self.L - 1)

    # -- training --

    def losses(self, x: torch.Tensor, rand: dict, step: int) -> dict[str, torch.Tensor]:
        """layerwise / sparse: ``ae`` (and ``dec_z``) of the level of this step's stage; joint:
        ``dec`` (decoders on z*) and ``enc`` (encoders onto z*). Per seed [S], fp32."""
        return (
            self.level_losses(self.frames(x), self.stage(step))
            if self.cfg.variant != "joint"
            else self.joint_losses(self.frames(x))
        )

    def level_losses(self, h: torch.Tensor, l: int) -> dict[str, torch.Tensor]:
        with torch.no_grad():  # lower levels frozen: out of the graph
            for k in range(l):
                h = self.encode(k, h)
        z = self.encode(l, h)
        terms = {"ae": self.recon_loss(l, z, h)}
        if self.cfg.variant == "layerwise":
            zs = self.zopt_level(l, z, h) if self.cfg.zsteps else z.detach()
            terms["dec_z"] = self.recon_loss(l, zs, h)
        terms["total"] = sum(terms.values())
        return terms

    def joint_losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        S = self.S
        with torch.no_grad():
            z0 = self.encode_all(x)
        zs = z_sgd(z0, lambda zs: self.joint_error(x, zs), self.lr_z, self.cfg.zsteps)
        below = [x, *zs[:-1]]
        weight = lambda t: t.numel() / x.numel()  # noqa: E731  element count relative to the frame
        dec = sum(weight(below[l]) * self.recon_loss(l, zs[l], below[l]) for l in range(self.L))
        enc = sum(per_seed_mean_se(self.encode(l, below[l]), zs[l], S) for l in range(self.L))
        return {"dec": dec, "enc": enc, "total": dec + enc}

    # -- evaluation --

    @staticmethod
    def baselines(cfg: StackedAEConfig, x: torch.Tensor, y: torch.Tensor) -> dict[str, dict[str, float]]:
        """``mean_frame``, ``black`` and ``copy_last`` (frames 1..T-1) as the straight reconstruction."""
        mse = trivial_mse(x, 0)
        return {k: {"straight_mse": v, "straight_rel": v / mse["mean_frame"]} for k, v in mse.items()}

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per level: D_l(E_l(h_l)) and D_l(z*) vs h_l (h_0 = the frame, h_{l+1} = E_l(h_l)), each
        relative to the MSE of h_l's per-element mean over the validation frames; the straight
        reconstruction relative to the mean frame's MSE."""
        S, dev = self.S, x.device
        frames = x.flatten(0, 1)  # [N*T, 3, H, W], the same for every seed
        se = {
            k: torch.zeros(S, dtype=torch.float64, device=dev)
            for k in ("straight", *(f"{k}{l}" for l in range(self.L) for k in ("ae", "zopt")))
        }
        count = [0] * self.L  # elements per seed per level
        moments = [Moments() for _ in range(self.L)]
        for i in range(0, len(frames), EVAL_FRAMES):
            h0 = fold(frames[i : i + EVAL_FRAMES].unsqueeze(0).expand(S, -1, -1, -1, -1), self.channels_last)
            h = h0
            for l in range(self.L):
                moments[l].add(h)
                count[l] += h.numel() // S
                z = self.encode(l, h)
                se[f"ae{l}"] += per_seed_sum((self.decode(l, z).float() - h).square().double(), S)
                if self.cfg.zsteps:
                    zs = self.zopt_level(l, z, h)
                    se[f"zopt{l}"] += per_seed_sum((self.decode(l, zs).float() - h).square().double(), S)
                h = z
            se["straight"] += per_seed_sum((self.decode_all(h).float() - h0).square().double(), S)
        nan = torch.full((S,), math.nan, dtype=torch.float64, device=dev)
        base = [m.mean_baseline(S) for m in moments]
        straight = se["straight"] / count[0]
        out = {"straight_rel": straight / base[0], "straight_mse": straight, "mean_frame_mse": base[0]}
        for l in range(MAX_LEVELS):
            out[f"l{l}_ae_rel"] = se[f"ae{l}"] / count[l] / base[l] if l < self.L else nan
            out[f"l{l}_zopt_rel"] = se[f"zopt{l}"] / count[l] / base[l] if l < self.L and self.cfg.zsteps else nan
        return {k: v.cpu() for k, v in out.items()}


register("stacked_ae", StackedAEConfig, StackedAE)
