"""Seed system 002: a transformer that interpolates the middle frame of a 5-frame window, packed.

Task (note 002, "N = 5", "middle frame target", "no middle input frame"): from frames 0, 1, 3, 4
of a window whose frames are ``frame_step`` apart (0: one frame repeated, the note's "no motion"),
predict frame 2. Window starts are drawn per seed (``draw``); validation windows are drawn once,
from a fixed generator, the same for every seed and configuration of a frame step.

Model (our reading of the note): the image is cut into ``patch`` x ``patch`` output patches; each
has a ``src`` x ``src`` source field centred on it (frames zero-padded). Every pixel of the source
field of each input frame is a token (a linear embedding of its RGB value) with a learned
embedding of its frame and position; the middle frame's ``src**2`` tokens are a learned mask token
(or, with ``middle_frame``, the noised middle frame's pixels). A pre-norm transformer encoder
(``depth`` blocks of ``d_model`` and ``heads``) runs over each field's ``5 * src**2`` tokens; the
middle frame's outputs, a [d_model, src, src] map, go through the note's conv head
``Conv2d(d_model, 3, 3, stride=src // patch, padding=1)`` to the [3, patch, patch] patch.

``loss_scope``: ``patch`` applies the head to each field's map alone (zero-padded at its edge) and
stitches the patches; ``image`` stitches the maps first and applies the head across them, so the
conv sees its neighbours' features at the seams (our reading of "adding a conv at end and
computing loss of recon image", 002:L16-17). Both minimise the same loss, the mean squared error of
the middle frame: patches tile the image, so the mean of per-patch MSEs is the image's MSE, and the
two scopes differ in what the head sees, not in how the error is weighed. ``patch_step`` is the
other reading of "[optimize loss over each patch]" (002:L27): one optimiser step per patch. Each
batch of sequences gets P steps (P = patches per image, ``steps_per_batch``); step i trains patch
i mod P (row-major) of fresh windows of the batch's sequences, running the encoder and the per-patch
head on that patch's field only. An epoch so costs about what a ``patch`` epoch costs and sees as
many patches, in P times the steps; evaluation is ``patch``'s.

``tokens``: ``rgb`` embeds each pixel's RGB value linearly; ``palette`` quantises each channel to
``palette_levels`` levels and embeds the colour's index (``palette_levels**3`` learned vectors, 512 at
8 levels): note 002's exp .2, "input is pixel quantization of dim 512" (002:L61). The output stays RGB.

Packing: parameters [S, ...] from the packed layers; tokens are [S, B * patches, L, d_model] and
attention folds the seeds into the batch of ``F.scaled_dot_product_attention`` (on a GPU under
the Pack's bf16 autocast: flash / memory-efficient kernels). Losses are reduced in fp32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from trainables.metrics import psnr_from_mse
from trainables.models.base import Metric, PackedModel, TrainConfig
from trainables.models.packed import (
    PackedConv,
    PackedLayerNorm,
    PackedLinear,
    PackedMultiheadAttention,
    fold,
    unfold_seeds,
)
from trainables.models.registry import register

WINDOW, MIDDLE = 5, 2  # "N = 5", "middle frame target" (002:L6-7)
CONTEXT = (0, 1, 3, 4)  # the input frames of a window
BORDER = 1  # pixels on each side of a seam between patches counted as "border" (psnr_border)
VAL_WINDOWS_SEED = 0  # the fixed generator of the validation windows' starts and middle-frame noise


@dataclass
class InterpConfig(TrainConfig):
    """Hyperparameters. "002:Lnn" cites note 002's line; "ours" marks a value the note does not give."""

    # temporal step between the window's frames; 0 = a static window ("no motion", 002:L4). The note's
    # "ts 20" / "ts 5" (002:L37, L46, undefined there) read as steps 4 / 1 of our 0.2 s frames
    frame_step: int = 1
    src: int = 16  # source field side around each output patch ("keep the src receptive field at 16x16", 002:L20)
    patch: int = 8  # output patch side ("the output receptive field is then 8x8", 002:L21)
    # ours: the note's only width is "d_model = 512" (002:L45), in its unrun table (a GPU size, sweeps/interp_gpu.yaml);
    # 64 keeps a 32 x 32 step of 3 seeds within a few GB on a CPU
    d_model: int = 64
    heads: int = 4  # ours: the note does not say
    depth: int = 2  # ours: encoder blocks; the note does not say
    ff_mult: int = 4  # ours: feed-forward width = ff_mult * d_model (the usual transformer ratio)
    input_noise: float = (
        0.0  # std of Gaussian noise on the four input frames in training ("WITH input noise", 002:L40; value ours)
    )
    middle_frame: bool = False  # give a noised middle frame as input too ("WITH middle frame", 002:L42)
    # std of the middle frame's noise, in training and evaluation (ours: the note gives none; at 0.5 the noised
    # frame alone scores ~6 dB, so the model still has to find the ball from its neighbours)
    middle_noise: float = 0.5
    # "patch" | "image" | "patch_step": the note's "[optimize loss over each patch]" / "over all image" (002:L26-27);
    # patch_step: one optimiser step per patch (the module docstring)
    loss_scope: str = "patch"
    # "rgb" | "palette": a pixel's token embeds its RGB value, or its colour quantised to palette_levels per channel
    # ("input is pixel quantization of dim 512", 002:L61: 8 levels, 8**3 = 512 colours)
    tokens: str = "rgb"
    palette_levels: int = 8
    lr: float = 3e-4  # ours: Adam; the note gives none
    # "small batch sizes (8 and 32)" (002:L5); its dynamic runs used 24 with one 16 x 16 field per image (002:L36),
    # at src 16 / patch 8 it ran 1 ("BS = 1 (OOM)", 002:L29)
    batch_size: int = 8

    def checks(self) -> dict[str, bool]:
        return {
            **super().checks(),
            "frame_step": self.frame_step >= 0,
            "patch": self.patch >= 1,
            "src": self.src >= self.patch and self.src % self.patch == 0 and (self.src - self.patch) % 2 == 0,
            "d_model": self.d_model >= 1 and self.d_model % self.heads == 0,
            "heads": self.heads >= 1,
            "depth": self.depth >= 1,
            "ff_mult": self.ff_mult >= 1,
            "input_noise": self.input_noise >= 0,
            "middle_noise": self.middle_noise > 0 or not self.middle_frame,  # a clean middle frame is the answer
            "loss_scope": self.loss_scope in ("patch", "image", "patch_step"),
            "tokens": self.tokens in ("rgb", "palette"),
            "palette_levels": self.palette_levels >= 2,
        }


class Block(nn.Module):
    """S independent pre-norm ``nn.TransformerEncoderLayer(d, heads, ff, dropout=0, activation="gelu",
    batch_first=True, norm_first=True)`` on [S, B, L, d]; built in nn's order, so each seed's init
    equals that layer built alone under the seed's generator stream."""

    def __init__(self, gens, d: int, heads: int, ff: int):
        super().__init__()
        self.attn = PackedMultiheadAttention(gens, d, heads)
        self.linear1, self.linear2 = PackedLinear(gens, d, ff), PackedLinear(gens, ff, d)
        self.norm1, self.norm2 = PackedLayerNorm(len(gens), d), PackedLayerNorm(len(gens), d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


def windows(x: torch.Tensor, t0: torch.Tensor, step: int) -> torch.Tensor:
    """Sequences x [..., T, C, H, W] and window starts t0 [...] (long) -> windows [..., 5, C, H, W]
    of frames t0, t0 + step, ..., t0 + 4 * step."""
    idx = t0.unsqueeze(-1) + step * torch.arange(WINDOW, device=t0.device)  # [..., 5]
    idx = idx.view(*idx.shape, 1, 1, 1).expand(*idx.shape, *x.shape[-3:])
    return torch.gather(x, x.dim() - 4, idx)


def draw_starts(g: torch.Generator, n: int, frames: int, step: int) -> torch.Tensor:
    """n window starts uniform over every window that fits in ``frames`` frames."""
    return torch.randint(0, frames - (WINDOW - 1) * step, (n,), generator=g)


def blend(w: torch.Tensor) -> torch.Tensor:
    """Baseline: the mean of frames 1 and 3 of windows [..., 5, C, H, W]."""
    return 0.5 * (w[..., 1, :, :, :] + w[..., 3, :, :, :])


def copy_nearest(w: torch.Tensor) -> torch.Tensor:
    """Baseline: frame 1, the nearest earlier frame (frames 1 and 3 are equally near)."""
    return w[..., 1, :, :, :]


def trivial(w: torch.Tensor) -> dict[str, torch.Tensor]:
    """The trivial middle frames of windows [N, 5, C, H, W]: ``blend``, ``copy`` (nearest) and ``black``."""
    return {"blend": blend(w), "copy": copy_nearest(w), "black": torch.zeros_like(w[:, MIDDLE])}


def seam_mask(size: int, patch: int, border: int = BORDER) -> torch.Tensor:
    """[size, size] bool: pixels within ``border`` of a seam between two patches (not the image edge)."""
    i = torch.arange(size)
    near = torch.zeros(size, dtype=torch.bool)
    for seam in range(patch, size, patch):
        near |= (i >= seam - border) & (i < seam + border)
    return near[:, None] | near[None, :]


def centroids(img: torch.Tensor) -> torch.Tensor:
    """Intensity centroids (row, col) in pixels of images [..., C, H, W]: weights are the channel
    mean above half the image's maximum (the ball, not a dim background); a blank image -> its centre."""
    i = img.clamp(0, 1).mean(-3)
    w = (i - 0.5 * i.amax((-2, -1), keepdim=True)).clamp(min=0)
    total = w.sum((-2, -1))
    H, W = i.shape[-2:]
    rows = torch.arange(H, dtype=w.dtype, device=w.device)
    cols = torch.arange(W, dtype=w.dtype, device=w.device)
    r = (w.sum(-1) * rows).sum(-1) / total
    c = (w.sum(-2) * cols).sum(-1) / total
    out = torch.stack([r, c], -1)
    centre = torch.tensor([(H - 1) / 2, (W - 1) / 2], dtype=w.dtype, device=w.device)
    return torch.where((total > 0).unsqueeze(-1), out, centre)


class InterpTransformer(PackedModel):
    """S seeds of the interpolation transformer in one module (see the module docstring)."""

    metrics = (
        Metric("psnr", "higher", "PSNR (dB) of the predicted middle frame over the validation windows"),
        Metric("psnr_blend", "higher", "baseline: PSNR (dB) of the mean of frames 1 and 3 on the same windows"),
        Metric("psnr_copy", "higher", "baseline: PSNR (dB) of copying frame 1 (nearest frame) on the same windows"),
        Metric(
            "psnr_black", "higher", "baseline: PSNR (dB) of an all-black frame (the background) on the same windows"
        ),
        Metric("psnr_gain", "higher", "psnr minus the best baseline's PSNR (dB)"),
        Metric("psnr_gain_black", "higher", "psnr minus the black frame's PSNR (dB): past the background?"),
        Metric("psnr_border", "higher", "PSNR (dB) on pixels next to a seam between patches (edge effects)"),
        Metric("psnr_interior", "higher", "PSNR (dB) on the other pixels"),
        Metric(
            "centroid_error", "lower", "mean distance (px) between the predicted and true middle frame's ball centroid"
        ),
        Metric("centroid_error_blend", "lower", "the same for the blend baseline"),
    )
    # better than the better baseline by 1 dB: several times the seed-to-seed and window-sampling spread
    # of psnr_gain measured on the quickstart (docs/interp_transformer.md)
    success = {"metric": "psnr_gain", "above": 1.0}
    scheduler_metric = "psnr_gain"
    # data keys and config fields for tests/test_models.py: a few seconds on a CPU
    test_sizes = {
        "frames": 6,
        "image_size": 8,
        "src": 8,
        "patch": 4,
        "d_model": 8,
        "heads": 2,
        "depth": 1,
        "batch_size": 8,
    }

    def __init__(self, cfg: InterpConfig, gens: list[torch.Generator], image_size: int):
        super().__init__(cfg, gens, image_size)
        self.size, self.grid = image_size, image_size // cfg.patch
        self.steps_per_batch = self.grid**2 if cfg.loss_scope == "patch_step" else 1
        d, n_tokens = cfg.d_model, WINDOW * cfg.src**2
        if cfg.tokens == "palette":  # a colour's index -> its token: N(0, 1) as nn.Embedding
            self.palette = nn.Parameter(torch.stack([torch.randn(cfg.palette_levels**3, d, generator=g) for g in gens]))
        else:
            self.embed = PackedLinear(gens, 3, d)  # a pixel's RGB -> its token
        # learned embeddings of each token's (frame, position) and the masked middle frame's token: N(0, 0.02) (ours, as GPT-2/ViT)
        self.pos = nn.Parameter(torch.stack([torch.randn(n_tokens, d, generator=g) * 0.02 for g in gens]))
        self.mask = nn.Parameter(torch.stack([torch.randn(d, generator=g) * 0.02 for g in gens]))
        self.blocks = nn.ModuleList(Block(gens, d, cfg.heads, cfg.ff_mult * d) for _ in range(cfg.depth))
        self.norm = PackedLayerNorm(self.S, d)
        # the note's head "Conv2d(ic,3,1) -> Conv2d(ic,3,3,2,1)" (002:L30): stride src // patch maps the field to the patch
        self.head = PackedConv(gens, d, 3, kernel=3, stride=cfg.src // cfg.patch, padding=1)

    @classmethod
    def check_data(cls, cfg: InterpConfig, data: dict) -> None:
        span = (WINDOW - 1) * cfg.frame_step + 1
        if data["frames"] < span:
            raise ValueError(f"config key 'frames' ({data['frames']}) must be at least 4 * frame_step + 1 = {span}")
        if data["image_size"] % cfg.patch:
            raise ValueError(
                f"config key 'image_size' ({data['image_size']}) must be a multiple of 'patch' ({cfg.patch})"
            )

    # -- the network --

    def fields(self, frames: torch.Tensor, patch: int | None = None) -> torch.Tensor:
        """Frames [S, B, F, 3, H, W] -> each patch's source field [S, B * P, F * src * src, 3]
        (P = patches per image, row-major; zero padding outside the image); with ``patch`` (its
        row-major index) that patch's field of each image only, [S, B, F * src * src, 3], cut from
        the padded frames before anything is copied."""
        S, B, Fr = frames.shape[:3]
        src, size = self.cfg.src, self.cfg.patch
        m = (src - size) // 2
        x = F.pad(frames, (m, m, m, m))
        if patch is not None:
            row, col = divmod(patch, self.grid)
            x = x[..., row * size : row * size + src, col * size : col * size + src]  # [S, B, F, 3, src, src]
            return x.permute(0, 1, 2, 4, 5, 3).reshape(S, B, Fr * src * src, 3)
        x = x.unfold(-2, src, size).unfold(-2, src, size)  # [S, B, F, 3, g, g, src, src]
        return x.permute(0, 1, 4, 5, 2, 6, 7, 3).reshape(S, B * self.grid**2, Fr * src * src, 3)

    def tokenise(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels [S, N, L, 3] -> tokens [S, N, L, d_model]: a linear embedding of RGB, or the palette
        vector of the colour quantised to ``palette_levels`` per channel."""
        if self.cfg.tokens == "rgb":
            return self.embed(pixels)
        k = self.cfg.palette_levels
        q = (pixels.float().clamp(0, 1) * (k - 1)).round().long()  # [S, N, L, 3] levels
        index = (q[..., 0] * k + q[..., 1]) * k + q[..., 2]  # [S, N, L]
        return self.palette[torch.arange(self.S, device=index.device).view(-1, 1, 1), index]

    def forward(self, context: torch.Tensor, middle: torch.Tensor | None, patch: int | None = None) -> torch.Tensor:
        """context [S, B, 4, 3, H, W] (frames 0, 1, 3, 4), middle [S, B, 3, H, W] or None (masked)
        -> the predicted middle frame [S, B, 3, H, W]; with ``patch`` (row-major index), that patch
        only [S, B, 3, patch, patch], from its field alone."""
        S, B = context.shape[:2]
        cfg, src, g = self.cfg, self.cfg.src, self.grid
        tokens = self.tokenise(self.fields(context, patch))  # [S, B*P, 4*src*src, d]
        if middle is None:
            mid = self.mask.view(S, 1, 1, -1).expand(S, tokens.shape[1], src * src, -1)
        else:
            mid = self.tokenise(self.fields(middle.unsqueeze(2), patch))
        h = torch.cat([tokens[:, :, : 2 * src * src], mid, tokens[:, :, 2 * src * src :]], 2) + self.pos.unsqueeze(1)
        for block in self.blocks:
            h = block(h)
        h = self.norm(h[:, :, MIDDLE * src * src : (MIDDLE + 1) * src * src])  # the middle frame's tokens
        maps = h.unflatten(2, (src, src)).permute(0, 1, 4, 2, 3)  # [S, B*P, d, src, src]
        if patch is not None:  # one patch per image: the per-patch head
            return unfold_seeds(self.head(fold(maps, self.channels_last)), S)
        if cfg.loss_scope == "image":  # stitch the maps, then one conv across the seams
            maps = maps.unflatten(1, (B, g, g)).permute(0, 1, 4, 2, 5, 3, 6).reshape(S, B, -1, g * src, g * src)
            return unfold_seeds(self.head(fold(maps, self.channels_last)), S)
        out = unfold_seeds(self.head(fold(maps, self.channels_last)), S)  # [S, B*P, 3, patch, patch]
        p = cfg.patch
        return out.unflatten(1, (B, g, g)).permute(0, 1, 4, 2, 5, 3, 6).reshape(S, B, 3, g * p, g * p)

    # -- training --

    def draw(self, g: torch.Generator, batch: int, frames: int, step: int) -> dict[str, torch.Tensor]:
        """Window starts, the input frames' noise (``input_noise``) and the middle frame's (``middle_frame``)."""
        cfg, shape = self.cfg, (batch, 3, self.size, self.size)
        out = {"t0": draw_starts(g, batch, frames, cfg.frame_step)}
        if cfg.input_noise > 0:
            out["noise"] = torch.randn(batch, len(CONTEXT), *shape[1:], generator=g) * cfg.input_noise
        if cfg.middle_frame:
            out["middle_noise"] = torch.randn(shape, generator=g) * cfg.middle_noise
        return out

    def losses(self, x: torch.Tensor, rand: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """x [S, B, T, 3, H, W] -> per-seed MSE of the middle frame [S] (``mse`` = ``total``)."""
        w = windows(x, rand["t0"], self.cfg.frame_step)
        context = w[:, :, list(CONTEXT)]
        context = context + rand["noise"] if "noise" in rand else context
        middle = w[:, :, MIDDLE] + rand["middle_noise"] if self.cfg.middle_frame else None
        target = w[:, :, MIDDLE]
        if self.cfg.loss_scope == "patch_step":  # one step per patch: patch (step mod P), row-major
            patch, p = step % self.grid**2, self.cfg.patch
            r, c = divmod(patch, self.grid)
            pred, target = self(context, middle, patch), target[..., r * p : (r + 1) * p, c * p : (c + 1) * p]
        else:
            pred = self(context, middle)
        mse = (pred.float() - target).square().mean((1, 2, 3, 4))
        return {"mse": mse, "total": mse}

    # -- evaluation --

    def val_windows(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Validation sequences [N, T, 3, H, W] -> the fixed windows [N, 5, 3, H, W] and, with
        ``middle_frame``, the fixed middle-frame noise [N, 3, H, W]: the same for every seed."""
        g = torch.Generator().manual_seed(VAL_WINDOWS_SEED)
        t0 = draw_starts(g, len(x), x.shape[1], self.cfg.frame_step).to(x.device)  # as in ``baselines``
        noise = None
        if self.cfg.middle_frame:
            noise = (torch.randn(len(x), 3, self.size, self.size, generator=g) * self.cfg.middle_noise).to(x.device)
        return windows(x, t0, self.cfg.frame_step), noise

    def predict(self, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """Windows [N, 5, 3, H, W] (shared by the seeds) -> every seed's middle frame [S, N, 3, H, W] in [0, 1],
        in chunks of ``batch_size`` windows."""
        outs = []
        for i in range(0, len(w), self.cfg.batch_size):
            chunk = w[i : i + self.cfg.batch_size].unsqueeze(0).expand(self.S, -1, -1, -1, -1, -1)
            context = chunk[:, :, list(CONTEXT)]
            middle = None
            if noise is not None:
                middle = chunk[:, :, MIDDLE] + noise[i : i + self.cfg.batch_size]
            outs.append(self(context, middle).float().clamp(0, 1))
        return torch.cat(outs, 1)

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        w, noise = self.val_windows(x)
        target = w[:, MIDDLE]
        pred = self.predict(w, noise)
        se = (pred - target).square()  # [S, N, 3, H, W]
        psnr = lambda mse: torch.tensor([psnr_from_mse(v) for v in mse.tolist()])  # noqa: E731
        seam = seam_mask(self.size, self.cfg.patch).to(x.device)
        border = se[..., seam].mean((1, 2, 3)) if seam.any() else torch.full((self.S,), math.nan)
        base = trivial(w)
        base_psnr = {k: psnr_from_mse(float((b - target).square().mean())) for k, b in base.items()}
        model_psnr = psnr(se.mean((1, 2, 3, 4)))
        true_c = centroids(target)
        dist = lambda p: (centroids(p) - true_c).norm(dim=-1).mean(-1)  # noqa: E731
        full = lambda v: torch.full((self.S,), v)  # noqa: E731
        return {
            "psnr": model_psnr,
            "psnr_blend": full(base_psnr["blend"]),
            "psnr_copy": full(base_psnr["copy"]),
            "psnr_black": full(base_psnr["black"]),
            "psnr_gain": model_psnr - max(base_psnr.values()),
            "psnr_gain_black": model_psnr - base_psnr["black"],
            "psnr_border": psnr(border),
            "psnr_interior": psnr(se[..., ~seam].mean((1, 2, 3))),
            "centroid_error": dist(pred).cpu(),
            "centroid_error_blend": full(float(dist(base["blend"]))),
        }

    @staticmethod
    def baselines(cfg: InterpConfig, x: torch.Tensor, y: torch.Tensor) -> dict[str, dict[str, float]]:
        """``blend``, ``copy`` and ``black`` on evaluate's windows, scored as a seed's middle frame is."""
        g = torch.Generator().manual_seed(VAL_WINDOWS_SEED)
        w = windows(x, draw_starts(g, len(x), x.shape[1], cfg.frame_step).to(x.device), cfg.frame_step)
        target, preds = w[:, MIDDLE], trivial(w)
        psnr = {k: psnr_from_mse(float((p - target).square().mean())) for k, p in preds.items()}
        true_c = centroids(target)
        return {
            k: {
                "psnr": psnr[k],
                "psnr_gain": psnr[k] - max(psnr.values()),
                "psnr_gain_black": psnr[k] - psnr["black"],
                "centroid_error": float((centroids(p) - true_c).norm(dim=-1).mean()),
            }
            for k, p in preds.items()
        }

    def artefacts(self, seed_index: int, x: torch.Tensor, y: torch.Tensor, folder: Path) -> list[Path]:
        """A strip of eight validation windows: frame 1, the prediction, the true middle frame, frame 3, the blend."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        w, noise = self.val_windows(x[:8])
        pred = self.predict(w, noise)[seed_index]
        rows = {
            "frame 1": w[:, 1],
            "predicted": pred,
            "true middle": w[:, MIDDLE],
            "frame 3": w[:, 3],
            "blend 1,3": blend(w),
        }
        fig, axes = plt.subplots(len(rows), len(w), figsize=(1.2 * len(w), 1.3 * len(rows)), squeeze=False)
        for r, (name, imgs) in enumerate(rows.items()):
            for c in range(len(w)):
                axes[r, c].imshow(imgs[c].permute(1, 2, 0).clamp(0, 1).cpu().numpy(), interpolation="nearest")
                axes[r, c].set_xticks([]), axes[r, c].set_yticks([])
            axes[r, 0].set_ylabel(name, fontsize=7)
        fig.tight_layout()
        path = Path(folder) / "interpolation.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        return [path]


register("interp_transformer", InterpConfig, InterpTransformer)
