"""Factorised space-time transformer predicting the next frame's latents over an autoencoder trained in
the same run, packed: note 000's ``vt_0_learn`` (frozen AE) and ``vt_0e_learn`` (``finetune_ae``).

Stage 1 (steps 0 .. len(channels) * stage_steps - 1) trains the AE: a ``stacked_ae`` of the same
config (``variant`` layerwise / joint: dense features, sparse: sparse ones) or, with ``variant:
causal3d``, a ``causal_ae3d`` (reconstruct) whose latent frame j summarises input frames j .. j + D
(D = (time_kernel - 1) * levels). Stage 2 trains the transformer: the tokens of a (latent) frame are
the positions of the AE's top latent grid (C features each, linearly projected to ``d_model``, plus
a learned position embedding and a sinusoidal frame embedding); ``spatial`` blocks attend within a
frame, ``temporal`` blocks causally across frames at one position (pre-LN, attention + MLP,
alternating S, T, S, T, ... until one kind runs out); a linear head predicts each position's latent
of the next frame. Loss: latent MSE (frozen AE, vt_0); with ``finetune_ae`` (2-D AEs), after
``finetune_after`` steps of vt_0, the decoded prediction's pixel loss (the AE's ``loss``) against the
next frame, gradients into the AE too ("end-to-end Transformer+AE fine-tuning on pixel-level next
frame prediction"). Rollouts feed predictions back as latents, or (``reencode``) decoded and
re-encoded; both are scored.

Judged in pixels (the note: "losses on sparse and dense latents cannot be compared"): from the
first T - 4 frames of each validation sequence, the next 4 latents open loop (each prediction fed
back as a latent), decoded, against copy-last-frame, and the predicted ball's intensity centroid
against the true frame's (motion predicted, or blurred in place?). A causal 3-D AE decodes a frame
from D + 1 consecutive latents: a predicted frame is decoded from its latent and the D before it
(context latents, then earlier predictions), the output the AE's trimmed loss trains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from trainables.models.base import Metric, PackedModel, TrainConfig
from trainables.models.causal_ae3d import CausalAE3d, CausalAE3dConfig
from trainables.models.frames import centroid, constant_velocity
from trainables.models.packed import PackedLayerNorm, PackedLinear, PackedMultiheadAttention, fold, unfold_seeds
from trainables.models.pixel_loss import pixel_loss
from trainables.models.registry import register
from trainables.models.stacked_ae import VARIANTS, StackedAE, StackedAEConfig

HORIZON = 4  # open-loop frames scored (the issue: horizons 1 and 4)
EVAL_SEQUENCES = 16  # validation sequences per evaluation chunk (memory, not numbers)
CAUSAL3D = "causal3d"  # the variant whose AE is a causal 3-D one (causal_ae3d, reconstruct)
AE_TERMS = {"layerwise": ("ae", "dec_z"), "sparse": ("ae",), "joint": ("dec", "enc"), CAUSAL3D: ("ae",)}


@dataclass
class STTransformerConfig(StackedAEConfig):
    """The stacked AE's fields (its defaults and sources) plus the predictor's. The note gives only
    "3 spatial + 4 temporal attention layers"; width, heads and order are our choices."""

    variant: str = (
        "layerwise"  # the AE under the transformer: layerwise | sparse | joint (stacked_ae) | causal3d (causal_ae3d)
    )
    time_kernel: int = (
        4  # causal3d only: the causal 3-D AE's time kernel (causal_ae3d's default, the code's kernel (4, 6, 6))
    )
    spatial_layers: int = 3  # note: "3 spatial + 4 temporal attention layers are tested"
    temporal_layers: int = 4  # note, as above
    d_model: int = 128  # proposal (seed-systems.md §4): d_model 128
    heads: int = 4  # proposal: 4 heads
    mlp_ratio: int = 4  # our choice: the usual transformer MLP width d_model * 4
    finetune_ae: bool = False  # vt_0e: stage 2 trains AE + transformer on the next frame's pixels (2-D AEs only)
    # vt_0e is a fine-tune of vt_0 (note: "end-to-end Transformer+AE fine-tuning"): the first finetune_after steps of
    # stage 2 train the transformer on the frozen AE's latents (vt_0), then the AE unfreezes and both train on the
    # next frame's pixels (the AE's `loss`). 0 = from a random transformer, which decodes to a saturated black frame
    # and stays there (docs/seed000.md). Ours: the note gives no schedule
    finetune_after: int = 2000
    # rollouts: each predicted latent fed back as is (false), or decoded and re-encoded (true; the note: "without
    # decoding-encoding ... makes things even worse"). pred_h4_* follow it; latent_h4_rel / reenc_h4_rel give both
    reencode: bool = False
    lr_tf: float = 10.0  # transformer LR multiplier (our choice: 1e-3 at the AE's lr 1e-4)

    def checks(self) -> dict[str, bool]:
        return {
            **super().checks(),
            "variant": self.variant in (*VARIANTS, CAUSAL3D),
            "time_kernel": self.time_kernel >= 1,
            "spatial_layers": self.spatial_layers >= 0,
            "temporal_layers": self.temporal_layers >= 1,
            "d_model": self.d_model >= 1,
            "heads": self.heads >= 1 and self.d_model % self.heads == 0,
            "mlp_ratio": self.mlp_ratio >= 1,
            "finetune_ae": not (
                self.finetune_ae and self.variant == CAUSAL3D
            ),  # a 3-D decoder mixes D + 1 latents per frame
            "finetune_after": self.finetune_after >= 0,
            "reencode": not (self.reencode and self.variant == CAUSAL3D),  # a 3-D latent frame spans D + 1 frames
            "lr_tf": self.lr_tf > 0,
        }

    def ae3d(self) -> CausalAE3dConfig:
        """The causal 3-D AE of ``variant: causal3d``: this config's levels, time kernel, stage length and training."""
        train = {f.name: getattr(self, f.name) for f in fields(TrainConfig)}
        return CausalAE3dConfig(
            **train,
            variant="reconstruct",
            channels=self.channels,
            time_kernel=self.time_kernel,
            stage_steps=self.stage_steps,
            loss=self.loss,
            fg_weight=self.fg_weight,
        )


def frame_embedding(T: int, d: int, device) -> torch.Tensor:
    """Sinusoidal embedding of frame indices 0..T-1 -> [T, d] (Vaswani et al.)."""
    pos = torch.arange(T, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    out = torch.zeros(T, d, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return out


class Block(nn.Module):
    """Pre-LN transformer block over [S, B, L, d]: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, gens, d: int, heads: int, mlp_ratio: int, causal: bool):
        super().__init__()
        S = len(gens)
        self.causal = causal
        self.ln1, self.ln2 = PackedLayerNorm(S, d), PackedLayerNorm(S, d)
        self.attn = PackedMultiheadAttention(gens, d, heads)
        self.fc1, self.fc2 = PackedLinear(gens, d, d * mlp_ratio), PackedLinear(gens, d * mlp_ratio, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), is_causal=self.causal)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class STTransformer(PackedModel):
    """S seeds of (AE, space-time transformer); the AE is ``self.ae`` (a StackedAE or a CausalAE3d)."""

    metrics = (
        Metric("pred_h1_rel", "lower", "open-loop prediction MSE of the next frame / copy-last-frame MSE"),
        Metric("pred_h4_rel", "lower", "open-loop prediction MSE of the 4th frame ahead / copy-last-frame MSE"),
        Metric("pred_h1_mse", "lower", "per-pixel MSE of the decoded prediction 1 frame ahead"),
        Metric("pred_h4_mse", "lower", "per-pixel MSE of the decoded prediction 4 frames ahead (open loop)"),
        Metric("copy_last_h1_mse", "lower", "baseline: MSE of the last context frame as the next frame"),
        Metric("copy_last_h4_mse", "lower", "baseline: MSE of the last context frame as the 4th frame ahead"),
        Metric(
            "centroid_h1_px",
            "lower",
            "distance (pixels) of the predicted frame's intensity centroid from the true frame's, 1 ahead",
        ),
        Metric("centroid_h4_px", "lower", "as centroid_h1_px, 4 frames ahead"),
        Metric(
            "copy_centroid_h1_px",
            "lower",
            "baseline: centroid distance of the last context frame from the next frame",
        ),
        Metric(
            "copy_centroid_h4_px",
            "lower",
            "baseline: centroid distance of the last context frame from the 4th frame ahead",
        ),
        Metric("centroid_h1_ratio", "lower", "centroid_h1_px / copy_centroid_h1_px (below 1: the ball moved)"),
        Metric("centroid_h4_ratio", "lower", "centroid_h4_px / copy_centroid_h4_px"),
        Metric("latent_h4_rel", "lower", "pred_h4_rel of the rollout that feeds latents back as they are"),
        Metric("reenc_h4_rel", "lower", "pred_h4_rel of the rollout that decodes and re-encodes each prediction"),
        Metric(
            "ae_floor_h1_rel",
            "lower",
            "the AE's own reconstruction of the next frame (true latents) / copy-last MSE: a perfect latent predictor",
        ),
        Metric("ae_floor_centroid_h1_px", "lower", "centroid distance of that reconstruction from the true frame"),
        Metric("ae_straight_rel", "lower", "stage 1: the AE's straight reconstruction MSE / mean-frame MSE"),
    )
    # The ball's centroid one frame ahead at most half as far from the truth as the last frame's: motion predicted,
    # not a blur in place (video_predictor's rule). Threshold and baselines: docs/seed000.md, "Success rules"
    success = {"metric": "centroid_h1_ratio", "below": 0.5}
    scheduler_metric = "pred_h1_rel"
    # data keys and config fields for tests/test_models.py: a few seconds on a CPU
    test_sizes = {
        "frames": 6,
        "image_size": 16,
        "channels": [4, 8],
        "zsteps": 2,
        "lr_z": [30.0],
        "stage_steps": 2,
        "batch_size": 4,
        "lr": 1e-3,
        "d_model": 16,
        "heads": 2,
        "spatial_layers": 1,
        "temporal_layers": 1,
        "lr_tf": 1.0,
    }

    def __init__(self, cfg: STTransformerConfig, gens: list[torch.Generator], image_size: int):
        super().__init__(cfg, gens, image_size)
        self.is3d = cfg.variant == CAUSAL3D
        # the AE first: its init draws come first, as trained alone
        self.ae = CausalAE3d(cfg.ae3d(), gens, image_size) if self.is3d else StackedAE(cfg, gens, image_size)
        self.L = len(cfg.channels)
        C = self.ae.enc[-1].weight.shape[1]
        self.side = image_size // 2**self.L
        d = cfg.d_model
        self.tok_in = PackedLinear(gens, C, d)
        self.pos = nn.Parameter(
            torch.stack([torch.randn(self.side**2, d, generator=g) * 0.02 for g in gens])
        )  # [S, P, d]
        kinds = []
        for i in range(max(cfg.spatial_layers, cfg.temporal_layers)):
            kinds += (["spatial"] if i < cfg.spatial_layers else []) + (["temporal"] if i < cfg.temporal_layers else [])
        self.kinds = kinds
        self.blocks = nn.ModuleList(Block(gens, d, cfg.heads, cfg.mlp_ratio, causal=k == "temporal") for k in kinds)
        self.ln_out = PackedLayerNorm(len(gens), d)
        self.tok_out = PackedLinear(gens, d, C)

    @classmethod
    def check_data(cls, cfg: STTransformerConfig, data: dict) -> None:
        if cfg.variant == CAUSAL3D:
            CausalAE3d.check_data(cfg.ae3d(), data)
            D = (cfg.time_kernel - 1) * len(cfg.channels)
            need = HORIZON + max(
                2 * D, D + 1
            )  # context: D + 1 latents at least (D of them decode the first prediction)
        else:
            StackedAE.check_data(cfg, data)
            need = HORIZON + 2
        if data["frames"] < need:
            raise ValueError(
                f"config key 'frames' ({data['frames']}) must be at least {need} (context, then {HORIZON} frames ahead)"
            )

    def param_groups(self):
        ae = {id(p) for p in self.ae.parameters()}
        return [*self.ae.param_groups(), ([p for p in self.parameters() if id(p) not in ae], self.cfg.lr_tf)]

    # -- latents as tokens --

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Frames [S, B, T, 3, H, W] -> top latents as tokens [S, B, T - D, P, C] (latent frame j: input frames j .. j + D)."""
        S, B, T = x.shape[:3]
        if self.is3d:
            z = self.ae.encode_all(self.ae.clips(x))[-1]  # clips [B, S*3, T, H, W] -> [B, S*C, T', h, w]
            return unfold_seeds(z, S).permute(0, 1, 3, 4, 5, 2).flatten(3, 4)  # [S, B, C, T', h, w] -> [S, B, T', P, C]
        z = unfold_seeds(self.ae.encode_all(self.ae.frames(x))[-1], S)  # [S, B*T, C, h, w]
        return z.flatten(3).transpose(2, 3).unflatten(1, (B, T))

    def pixels(self, context: torch.Tensor, new: torch.Tensor, logits: bool = False) -> torch.Tensor:
        """Decoded frames [S, B, n, 3, H, W] of the n tokens ``new`` [S, B, n, P, C] that follow the
        tokens ``context`` [S, B, c, P, C] (a 3-D AE decodes each frame from its latent and the D
        before it; a 2-D one reads ``new`` alone). ``logits`` (2-D): the bottom decoder's before its sigmoid."""
        S, B, n, P, C = new.shape
        if self.is3d:
            tok = torch.cat([context, new], 2)
            m = tok.shape[2]
            z = fold(tok.unflatten(3, (self.side, self.side)).permute(0, 1, 5, 2, 3, 4))  # [B, S*C, m, h, w]
            z = self.ae.decode_all(z)  # -> [B, S*3, m + D, H, W]; output j reconstructs input frame j + D
            return unfold_seeds(z[:, :, m - n : m], S).transpose(2, 3)
        z = fold(new.flatten(1, 2).transpose(2, 3).unflatten(3, (self.side, self.side)), self.ae.channels_last)
        z = self.ae.decode_all(z, logits=logits)
        return unfold_seeds(z, S).unflatten(1, (B, n))

    def predict(self, tok: torch.Tensor) -> torch.Tensor:
        """Tokens [S, B, T, P, C] of frames 0..T-1 -> predicted tokens of frames 1..T, [S, B, T, P, C]."""
        S, B, T, P, _ = tok.shape
        d = self.cfg.d_model
        h = self.tok_in(tok) + self.pos[:, None, None] + frame_embedding(T, d, tok.device)[:, None]
        for kind, block in zip(self.kinds, self.blocks):
            if kind == "spatial":  # within a frame
                h = block(h.reshape(S, B * T, P, d)).reshape(S, B, T, P, d)
            else:  # across frames at one position, causal
                h = block(h.transpose(2, 3).reshape(S, B * P, T, d)).reshape(S, B, P, T, d).transpose(2, 3)
        return self.tok_out(self.ln_out(h))

    def ae_stage(self, step: int) -> bool:
        return step < self.L * self.cfg.stage_steps

    def finetuning(self, step: int) -> bool:
        """vt_0e's fine-tune phase: stage 2 after ``finetune_after`` steps of vt_0."""
        return self.cfg.finetune_ae and step >= self.L * self.cfg.stage_steps + self.cfg.finetune_after

    # -- training --

    def losses(self, x: torch.Tensor, rand: dict, step: int) -> dict[str, torch.Tensor]:
        """Stage 1: the AE's terms (``pred`` 0); stage 2: ``pred`` (latent MSE on the frozen AE's latents; with
        ``finetune_ae``, after ``finetune_after`` steps of that, the decoded prediction's pixel loss (the AE's
        ``loss``) with gradients into the AE too), the AE's terms 0."""
        zero = torch.zeros(self.S, device=x.device)
        if self.ae_stage(step):
            return {**self.ae.losses(x, rand, step), "pred": zero}
        if self.finetuning(step):
            tok = self.tokens(x[:, :, :-1])
            logits = self.pixels(tok[:, :, :0], self.predict(tok).float(), logits=True)
            pred = pixel_loss(logits, x[:, :, 1:], self.cfg.loss, self.cfg.fg_weight).flatten(1).mean(1)
        else:
            with torch.no_grad():
                tok = self.tokens(x)
            pred = (self.predict(tok[:, :, :-1]).float() - tok[:, :, 1:].float()).square().flatten(1).mean(1)
        return {**{k: zero for k in AE_TERMS[self.cfg.variant]}, "pred": pred, "total": pred}

    # -- evaluation --

    def rollout(self, tok: torch.Tensor, steps: int, reencode: bool = False) -> torch.Tensor:
        """Open loop: from context tokens [S, B, c, P, C], the next ``steps`` frames' tokens, each
        prediction fed back as a latent, or (``reencode``, 2-D AEs) decoded and re-encoded -> [S, B, steps, P, C]."""
        for _ in range(steps):
            new = self.predict(tok)[:, :, -1:]
            if reencode:
                new = self.tokens(self.pixels(tok[:, :, :0], new))
            tok = torch.cat([tok, new], 2)
        return tok[:, :, -steps:]

    @staticmethod
    def baselines(cfg: STTransformerConfig, x: torch.Tensor, y: torch.Tensor) -> dict[str, dict[str, float]]:
        """``copy_last`` and ``constant_velocity`` (the last context frame moved on at the ball's last
        velocity) for the HORIZON frames after the context, scored as evaluate scores a seed's rollout."""
        c = x.shape[1] - HORIZON
        truth, last = x[:, c:], x[:, c - 1]
        preds = {
            "copy_last": last.unsqueeze(1).expand_as(truth),
            "constant_velocity": constant_velocity(x[:, c - 2], last, HORIZON),
        }
        mse = lambda p: (p - truth).double().square().mean((0, 2, 3, 4))  # noqa: E731  per horizon
        dist = lambda p: (centroid(p) - centroid(truth)).norm(dim=-1).double().mean(0)  # noqa: E731
        copy, copy_dist = mse(preds["copy_last"]), dist(preds["copy_last"])
        out = {}
        for name, p in preds.items():
            m, d = mse(p), dist(p)
            scores = {
                "pred_h1_rel": m[0] / copy[0],
                "pred_h4_rel": m[-1] / copy[-1],
                "pred_h1_mse": m[0],
                "pred_h4_mse": m[-1],
            }
            scores.update(centroid_h1_px=d[0], centroid_h4_px=d[-1], centroid_h1_ratio=d[0] / copy_dist[0])
            out[name] = {k: float(v) for k, v in {**scores, "centroid_h4_ratio": d[-1] / copy_dist[-1]}.items()}
        return out

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        S, dev = self.S, x.device
        N, T = x.shape[:2]
        c = T - HORIZON
        f64 = lambda *shape: torch.zeros(*shape, dtype=torch.float64, device=dev)  # noqa: E731
        modes = (False, True) if not self.is3d else (False,)  # rollouts: latents fed back; re-encoded (2-D AEs)
        se, dist = {m: f64(S, HORIZON) for m in modes}, {m: f64(S, HORIZON) for m in modes}
        floor_se, floor_dist, copy_se, copy_dist = f64(S), f64(S), f64(HORIZON), f64(HORIZON)
        for i in range(0, N, EVAL_SEQUENCES):
            xs = x[i : i + EVAL_SEQUENCES]
            truth, last = xs[:, c:], xs[:, c - 1 : c]  # [n, H, 3, h, w], [n, 1, ...]
            every = self.tokens(xs.unsqueeze(0).expand(S, *xs.shape))  # true latents of every frame
            tok = self.tokens(xs[:, :c].unsqueeze(0).expand(S, *xs[:, :c].shape))
            D = c - tok.shape[2]  # latent frame j summarises input frames j .. j + D
            for m in modes:
                frames = self.pixels(tok, self.rollout(tok, HORIZON, reencode=m)).float()  # [S, n, HORIZON, 3, H, W]
                se[m] += (frames - truth).square().sum((1, 3, 4, 5)).double()
                dist[m] += (centroid(frames) - centroid(truth)).norm(dim=-1).sum(1).double()
            floor = self.pixels(every[:, :, : c - D], every[:, :, c - D : c - D + 1]).float()[:, :, 0]  # frame c
            floor_se += (floor - truth[:, 0]).square().sum((1, 2, 3, 4)).double()
            floor_dist += (centroid(floor) - centroid(truth[:, 0])).norm(dim=-1).sum(1).double()
            copy_se += (last - truth).square().sum((0, 2, 3, 4)).double()
            copy_dist += (centroid(last) - centroid(truth)).norm(dim=-1).sum(0).double()
        pixels = x[0, 0].numel()
        copy, copy_dist = (copy_se / (N * pixels)).expand(S, -1), (copy_dist / N).expand(S, -1)
        mse = {m: se[m] / (N * pixels) for m in modes}
        main = self.cfg.reencode
        rel_h4 = {m: mse[m][:, -1] / copy[:, -1] for m in modes}
        dist_main = dist[main] / N
        ae = self.ae.evaluate(x, y)["mean_frame_rel" if self.is3d else "straight_rel"]
        nan = torch.full((S,), math.nan, dtype=torch.float64, device=dev)
        out = {
            "pred_h1_rel": mse[main][:, 0] / copy[:, 0],
            "pred_h4_rel": rel_h4[main],
            "pred_h1_mse": mse[main][:, 0],
            "pred_h4_mse": mse[main][:, -1],
            "copy_last_h1_mse": copy[:, 0],
            "copy_last_h4_mse": copy[:, -1],
            "centroid_h1_px": dist_main[:, 0],
            "centroid_h4_px": dist_main[:, -1],
            "copy_centroid_h1_px": copy_dist[:, 0],
            "copy_centroid_h4_px": copy_dist[:, -1],
            "centroid_h1_ratio": dist_main[:, 0] / copy_dist[:, 0],
            "centroid_h4_ratio": dist_main[:, -1] / copy_dist[:, -1],
            "latent_h4_rel": rel_h4[False],
            "reenc_h4_rel": rel_h4[True] if True in rel_h4 else nan,
            "ae_floor_h1_rel": floor_se / (N * pixels) / copy[:, 0],
            "ae_floor_centroid_h1_px": floor_dist / N,
            "ae_straight_rel": ae.to(dev),
        }
        return {k: v.cpu() for k, v in out.items()}


register("st_transformer", STTransformerConfig, STTransformer)
