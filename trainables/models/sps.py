"""SPS (Self-supervised learning via Physical Symmetry), packed: S seeds in one module.

A VAE encodes each frame to a small latent z, an RNN predicts the next z, and symmetry
augmentation applies one random group action g to a sequence of z fed to the RNN and g^-1 to
what the RNN predicts, so the learned dynamics must commute with the group. Losses (summed
over pixels / latent dims and time, averaged over sequences, as in the SPS code up to the
1/batch scale): self-reconstruction, image prediction from the RNN's z, z prediction, the
symmetry terms (z consistency and decoded images of the un-transformed predictions), KL * beta.

Packing: every parameter has a leading seed dimension S (layers: ``trainables.models.packed``).
Convolutions fold the seeds into the channels (``groups=S``), linear layers are batched matmuls,
the RNN cell is written out and looped over time. Activations are [N, S*C, H, W] in the conv
stacks and [S, N, F] elsewhere. Nothing mixes seeds, and every random number is drawn per seed
(``draw``) from that seed's own generator, so a seed gives the same numbers packed with others as
alone.

Mixed precision: under ``torch.autocast`` (bf16) the convolutions and matmuls run in bf16, while
the RNN state and every loss term are kept and reduced in fp32 (``.float()`` before each loss
formula; a no-op in fp32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainables.figures import latent_plot, traversal_grid
from trainables.metrics import linear_projection, psnr_from_mse
from trainables.models.base import Metric, PackedModel, TrainConfig
from trainables.models.hand_code import sps_baselines
from trainables.models.packed import PackedConv, PackedLinear, PackedRNNCell, fold, per_seed_sum
from trainables.models.registry import register
from trainables.models.symmetry import (
    COMBINE,
    apply_group,
    branch_groups,
    identity_where,
    parse_symmetry,
    sample_action,
)


@dataclass
class SPSConfig(TrainConfig):
    """SPS hyperparameters. Defaults: the authors' public ``sps_video/exp/sps_ball/train_config.py``
    and ``sps_video/trainer_symmetry.py`` / ``normal_rnn.py`` unless the comment says otherwise."""

    # architecture
    z_dim: int = 3  # latent_code_num = 3 (ball); 6 for two-body "both" (lab notes' two-body runs)
    # encoder convs k4 s2 p1 (32x32 -> 4x4), decoder mirrored: normal_rnn.py FIRST_CH_NUM = 64 -> 64/128/256
    channels: tuple[int, ...] = (64, 128, 256)
    dec_hidden: tuple[int, ...] = (16, 32, 64)  # decoder MLP z -> 16 -> 32 -> 64 -> conv features (SPS fc3)
    # "rnn" (tanh) | "gru". normal_rnn.py builds nn.RNN (its rnn_type key is never read), as every paper
    # experiment and Dan Chin's re-implementation; lab notes 10/27, 12/10: a stronger prior hurts
    rnn_cell: str = "rnn"
    rnn_width: int = 256  # rnn_hidden_size = 256, rnn_num_layers = 1
    use_rnn: bool = True  # False: beta-VAE baseline (reconstruction + beta * KL only)
    deterministic: bool = False  # True: AE (z = mu, no sampling, no KL term; beta is ignored)
    # reparameterisation noise: "vae" z = mu + eps * exp(logvar / 2), the sd the KL term assumes (Kingma &
    # Welling); "sps" z = mu + eps * 0.5 * exp(logvar), as normal_rnn.py line 78 (sd 0.5 at logvar 0)
    reparam: str = "vae"
    # losses
    # "bce" | "mse": pixel loss of every image term. SPS code: BCELoss(reduction='sum'); lab notes 12/9: MSE as good
    loss: str = "bce"
    beta: float = 0.01  # kld_loss_scalar
    z_loss_weight: float = 2.0  # z_rnn_loss_scalar: RNN's z vs the encoder's next z (0 turns it off)
    symmetry_loss_weight: float = 2.0  # z_symm_loss_scalar
    # "none" | T<n> | R<n> and combos (T2R2, T3R2, ...), acting on the first n dims of z, one augmented
    # branch per letter; a suffix x<m> (T3R3x2) acts with the same element on m slices of n dims
    # (0:n, n:2n, ...), as the lab notes' two-body runs. SPS ball: translations of the horizontal
    # plane + rotations about the vertical axis (symmetry.py)
    symmetry: str = "T2R2"
    t_range: tuple[float, float] = (-1.0, 1.0)  # t_range: translations uniform in this range per dim
    r_range: tuple[float, float] = (-math.pi, math.pi)  # r_range: R2 angles uniform in this range (R3+ are Haar-random)
    k: int = 1  # augmented copies K of each batch per symmetry letter (t_batch_multiple = r_batch_multiple = 1)
    # how letters make augmented branches (12/14: "now we have SAMPLE_TRANS | COMPOSE_TRANS"; todo: "compare
    # SAMPLE_TRANS vs COMPOSE_TRANS"). "branches": a branch of k copies per letter (trainer_symmetry.py). "sample":
    # one branch, each copy's element one letter drawn uniformly per sequence (Dan Chin's SAMPLE_TRANS, per batch
    # there; 6/23: "stochastically sample one tranformation ... # of trajs is thus controlled across groups").
    # "compose": one branch, each copy's element every letter in order, T then R (COMPOSE_TRANS)
    symmetry_combine: str = "branches"
    # P(a copy's element is the identity), per sequence and branch (todo: "test whether identity aug helps";
    # 6/29 "I:T = 1:13 变成 0:13"; Dan Chin's identity_prob, 0.1 in his templates). 0: never (the authors')
    p_identity: float = 0.0
    # RNN context and scheduled sampling
    rnn_min_context: int = 5  # base_len: inputs before this frame are always the encoder's z
    scheduled_sampling: bool = True  # enable_sample
    tf_steps: tuple[float, float] = (
        2200.0,
        8000.0,
    )  # (alpha, beta): P(teacher forcing) = a / (a + exp((step + b) / a))
    # "sigmoid": tf_steps' schedule (the authors'). "linear": P(the RNN is fed its own prediction instead of
    # the encoder's z) rises linearly from 0 to 1 over tf_linear_steps steps (Dan Chin's LinearScheduledSampling;
    # lab notes 12/13: "No significant diff. using linear sched samp.")
    tf_schedule: str = "sigmoid"
    tf_linear_steps: int = 40000  # lab notes 10/22: "we need 40k sched samp" (here optimiser steps, Pack.step)
    # encoder stop-gradient in the z terms (z_pred, sym_z). "none" (the authors'). "target": the encoder's next z
    # is a constant (10/22: "idea: z pred loss may need to stop grad from encoder"; Dan's jepa_stop_grad_r_encoder).
    # "both": the RNN's input z too, in a second RNN pass for the z terms (10/23: "try detaching the encoder from
    # RNN input too"; 10/25: "We have now detached both encoders. It seems to work! less collapse.")
    stop_grad: str = "none"
    # distinct training sequences: the first train_size of the n_train, tiled to n_train (None: all). At fixed
    # n_train and epochs every size trains the same steps x batch (Dan Chin's train_size_c_max_batch; notes: "测试
    # data efficiency 时， 能不能： 总图片数不变， sequence 数减少？", keep the images seen, cut the sequences)
    train_size: int | None = None
    # optimisation
    lr: float = 1e-3  # learning_rate (Adam)
    # lr * lr_decay**step. trainer_symmetry.py's LambdaLR reads a constant iter_num, so its
    # scheduler_base_num 0.99999 never applies (lab notes 12/13): the LR is constant
    lr_decay: float = 1.0
    batch_size: int = 32  # BATCH_SIZE = 32 (lab notes 12/14: 16 slightly better, 32 kept for speed)
    grad_clip: float | None = None  # per-seed max grad norm; SPS code: none (lab notes tried 0.03 and 1)
    # evaluation
    # what the latent is projected onto. Two-body: "relative" (r1 - r2, for a 3-D z) or "both" (r1, r2, for a 6-D z).
    # A lone ball: its position either way
    projection_target: str = "relative"

    def __post_init__(self):
        super().__post_init__()
        parse_symmetry(self.symmetry, self.z_dim)

    def checks(self) -> dict[str, bool]:
        return {
            **super().checks(),
            "z_dim": self.z_dim >= 1,
            "channels": len(self.channels) >= 1 and min(self.channels) >= 1,
            "dec_hidden": all(c >= 1 for c in self.dec_hidden),
            "rnn_cell": self.rnn_cell in ("gru", "rnn"),
            "reparam": self.reparam in ("vae", "sps"),
            "rnn_width": self.rnn_width >= 1,
            "loss": self.loss in ("bce", "mse"),
            "beta": self.beta >= 0,
            "t_range": self.t_range[0] <= self.t_range[1],
            "r_range": self.r_range[0] <= self.r_range[1],
            "k": self.k >= 0,
            "rnn_min_context": self.rnn_min_context >= 1,
            "tf_steps": self.tf_steps[0] > 0,
            "tf_schedule": self.tf_schedule in ("sigmoid", "linear"),
            "tf_linear_steps": self.tf_linear_steps >= 1,
            "symmetry_combine": self.symmetry_combine in COMBINE,
            "p_identity": 0 <= self.p_identity <= 1,
            "stop_grad": self.stop_grad in ("none", "target", "both"),
            "train_size": self.train_size is None or self.train_size >= 1,
            "projection_target": self.projection_target in ("relative", "both"),
        }


def teacher_forcing_prob(step: int, tf_steps: tuple[float, float], linear_steps: int | None = None) -> float:
    """Scheduled sampling: P(feed the encoder's z rather than the RNN's own prediction). SPS's sigmoid
    in ``tf_steps``, or with ``linear_steps`` 1 - step / linear_steps down to 0 (Dan Chin's linear one)."""
    if linear_steps is not None:
        return max(0.0, 1.0 - step / linear_steps)
    a, b = tf_steps
    x = (step + b) / a
    return 0.0 if x > 700 else a / (a + math.exp(x))


# ---- the model ----


class SPS(PackedModel):
    """S seeds of SPS in one module; ``gens`` are the seeds' generators (used here for the init)."""

    metrics = (
        Metric(
            "linear_proj_mse",
            "lower",
            "held-out MSE of the standardised true positions fitted linearly from the latent mean (no information: ~1)",
        ),
        Metric("linear_proj_r2", "higher", "held-out R^2 of that linear fit, averaged over the position's dimensions"),
        Metric("recon_mse", "lower", "per-pixel MSE of the frames reconstructed from the latent mean"),
        Metric(
            "pred_mse",
            "lower",
            "per-pixel MSE of the frames the RNN predicts open loop after rnn_min_context frames (NaN without RNN)",
        ),
        Metric("psnr", "higher", "PSNR (dB) of the reconstruction"),
    )
    success = {"metric": "linear_proj_mse", "below": 0.2}  # lab notes 10/21: linear proj MSE < 0.2 "means kinda good"
    scheduler_metric = "linear_proj_mse"
    baselines = staticmethod(sps_baselines)  # the image-plane hand code and a constant latent (hand_code.py)
    test_sizes = dict(  # data keys and config fields for tests/test_models.py: a few seconds on a CPU
        frames=6, image_size=16, channels=[4, 8], dec_hidden=[8], rnn_width=8, batch_size=16, rnn_min_context=2
    )

    def __init__(self, cfg: SPSConfig, gens: list[torch.Generator], image_size: int):
        super().__init__(cfg, gens, image_size)
        depth = len(cfg.channels)
        self.side = image_size // 2**depth
        ch = (3, *cfg.channels)
        feat = ch[-1] * self.side**2
        self.encoder = nn.ModuleList(PackedConv(gens, ch[i], ch[i + 1], 4, stride=2, padding=1) for i in range(depth))
        self.fc_mu = PackedLinear(gens, feat, cfg.z_dim)
        self.fc_logvar = PackedLinear(gens, feat, cfg.z_dim)
        if cfg.use_rnn:
            self.rnn = PackedRNNCell(gens, cfg.z_dim, cfg.rnn_width, cfg.rnn_cell)
            self.rnn_out = PackedLinear(gens, cfg.rnn_width, cfg.z_dim)
        dims = (cfg.z_dim, *cfg.dec_hidden, feat)
        self.dec_fc = nn.ModuleList(PackedLinear(gens, dims[i], dims[i + 1]) for i in range(len(dims) - 1))
        self.decoder = nn.ModuleList(
            PackedConv(gens, ch[i + 1], ch[i], 4, stride=2, padding=1, transpose=True) for i in reversed(range(depth))
        )
        self.actions = parse_symmetry(cfg.symmetry, cfg.z_dim) if cfg.use_rnn and cfg.k > 0 else []
        self.groups = branch_groups(len(self.actions), cfg.symmetry_combine)  # augmented branches: action indices

    # -- building blocks --

    def fold(self, x: torch.Tensor) -> torch.Tensor:
        """[S, B, T, C, H, W] -> [B*T, S*C, H, W] (seeds folded into channels)."""
        return fold(x.flatten(1, 2), self.channels_last)

    def encode(self, xf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Folded frames [N, S*3, H, W] -> mu, logvar [S, N, z_dim]."""
        h = xf
        for conv in self.encoder:
            h = F.relu(conv(h))
        h = h.unflatten(1, (self.S, -1)).flatten(2).transpose(0, 1)  # [S, N, C*h*w], nn's flatten order
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [S, N, z_dim] -> pixel logits [N, S*3, H, W]."""
        h = z
        for i, fc in enumerate(self.dec_fc):
            h = fc(h)
            h = F.relu(h) if i < len(self.dec_fc) - 1 else h
        N = h.shape[1]
        h = h.transpose(0, 1).reshape(N, -1, self.side, self.side)  # [N, S*C, side, side]
        if self.channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        for i, conv in enumerate(self.decoder):
            h = conv(h)
            h = F.relu(h) if i < len(self.decoder) - 1 else h
        return h

    def rollout(self, z: torch.Tensor, use_pred: torch.Tensor | None) -> torch.Tensor:
        """RNN over z [S, M, T, z_dim] -> predictions of frames 1..T-1 [S, M, T-1, z_dim]. At input
        t >= rnn_min_context the RNN's own previous prediction replaces z where ``use_pred``
        [S, M, T-1] (bool) is set; ``None`` = open loop from rnn_min_context on."""
        S, M, T, _ = z.shape
        h = torch.zeros(S, M, self.cfg.rnn_width, device=z.device)  # fp32 state, also under autocast
        outs = []
        for t in range(T - 1):
            inp = z[:, :, t]
            if outs and t >= self.cfg.rnn_min_context:
                inp = outs[-1] if use_pred is None else torch.where(use_pred[:, :, t, None], outs[-1], inp)
            h = self.rnn(inp, h)
            outs.append(self.rnn_out(h))
        return torch.stack(outs, 2)

    def pixel_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Elementwise BCE (on logits, stable) or squared error; broadcasts."""
        if self.cfg.loss == "bce":
            return F.softplus(logits) - logits * target
        return (torch.sigmoid(logits) - target) ** 2

    def per_seed(self, e: torch.Tensor) -> torch.Tensor:
        """Sum of a folded [..., S*C, H, W] tensor per seed -> [S]."""
        return per_seed_sum(e, self.S)

    # -- training --

    def draw(self, g: torch.Generator, batch: int, frames: int, step: int) -> dict[str, torch.Tensor]:
        """One seed's random numbers for one step, from its generator (CPU): reparameterisation
        noise, scheduled-sampling choices per branch, symmetry actions (each copy's element with the
        letters ``symmetry_combine`` leaves out, and with probability ``p_identity`` all, set to the identity)."""
        cfg, out = self.cfg, {}
        if not cfg.deterministic:
            out["eps"] = torch.randn(batch, frames, cfg.z_dim, generator=g)
        if cfg.use_rnn:
            coins = torch.rand(
                1 + len(self.groups), frames - 1, generator=g
            )  # one per branch and input frame, shared by the batch
            linear = cfg.tf_linear_steps if cfg.tf_schedule == "linear" else None
            p_tf = teacher_forcing_prob(step, cfg.tf_steps, linear) if cfg.scheduled_sampling else 1.0
            out["use_pred"] = (coins > p_tf) & (torch.arange(frames - 1) >= cfg.rnn_min_context)
            keep = [torch.ones(cfg.k, batch, dtype=torch.bool) for _ in self.actions]
            if cfg.symmetry_combine == "sample" and self.actions:
                pick = torch.randint(len(self.actions), (cfg.k, batch), generator=g)
                keep = [pick == i for i in range(len(self.actions))]
            if cfg.p_identity > 0:  # no draw at 0: the authors' streams stay as they were
                for group in self.groups:
                    moved = torch.rand(cfg.k, batch, generator=g) >= cfg.p_identity
                    for i in group:
                        keep[i] = keep[i] & moved
            for i, (kind, n, _) in enumerate(self.actions):
                out[f"action{i}"] = identity_where(kind, sample_action(kind, n, (cfg.k, batch), cfg, g), keep[i])
        return out

    def branches(self, zs: torch.Tensor, rand: dict[str, torch.Tensor]) -> torch.Tensor:
        """The RNN on z [S, B, T, z_dim] (the identity branch) and on K copies per augmented branch
        (``groups``: g applied to the input sequence, g^-1 to the predictions), in one batched pass ->
        predictions of frames 1..T-1 in the original frame, [S, 1 + G*K, B, T-1, z_dim]."""
        S, B, T, D = zs.shape
        K = self.cfg.k
        steps = [[(self.actions[i][0], rand[f"action{i}"], self.actions[i][2]) for i in group] for group in self.groups]
        inputs, masks = [zs.unsqueeze(1)], [rand["use_pred"][:, :1]]
        for j, group_steps in enumerate(steps):
            inputs.append(apply_group(zs.unsqueeze(1), group_steps))
            masks.append(rand["use_pred"][:, 1 + j : 2 + j].expand(-1, K, -1))  # the K copies share a schedule
        z_in = torch.cat(inputs, 1)  # [S, R, B, T, D]
        R = z_in.shape[1]
        use_pred = torch.cat(masks, 1).unsqueeze(2).expand(-1, -1, B, -1)  # [S, R, B, T-1]
        pred = self.rollout(z_in.reshape(S, R * B, T, D), use_pred.reshape(S, R * B, T - 1)).reshape(S, R, B, T - 1, D)
        out = [pred[:, :1]]
        for j, group_steps in enumerate(steps):
            out.append(apply_group(pred[:, 1 + j * K : 1 + (j + 1) * K], group_steps, inverse=True))
        return torch.cat(out, 1)

    @classmethod
    def check_data(cls, cfg: SPSConfig, data: dict) -> None:
        depth = len(cfg.channels)
        if data["image_size"] % 2**depth:
            raise ValueError(
                f"config key 'image_size' ({data['image_size']}) must be divisible by 2**len(channels) = {2**depth}"
            )
        if cfg.train_size is not None and cfg.train_size > data["n_train"]:
            raise ValueError(
                f"config key 'train_size' ({cfg.train_size}) must be at most 'n_train' ({data['n_train']})"
            )
        if cfg.use_rnn and data["frames"] <= cfg.rnn_min_context:
            raise ValueError(
                f"config key 'frames' ({data['frames']}) must exceed 'rnn_min_context' ({cfg.rnn_min_context})"
            )

    def losses(self, x: torch.Tensor, rand: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """x [S, B, T, 3, H, W] in [0, 1]; ``rand``: ``draw``'s tensors stacked over seeds. Returns
        each loss term per seed [S] (sums over pixels, dims, time; mean over sequences), and ``total``.
        The step only drives scheduled sampling, which ``draw`` has already applied."""
        cfg, S = self.cfg, self.S
        _, B, T = x.shape[:3]
        sq = lambda e: e.square().flatten(1).sum(1)  # noqa: E731  per-seed sum of squares
        xf = self.fold(x)  # [B*T, S*3, H, W]
        mu, logvar = self.encode(xf)
        terms = {}
        if cfg.deterministic:
            z = mu
        else:
            noise = 0.5 * torch.exp(logvar) if cfg.reparam == "sps" else torch.exp(0.5 * logvar)
            z = mu + rand["eps"].reshape(S, B * T, -1) * noise
            mu32, logvar32 = mu.float(), logvar.float()
            terms["kl"] = cfg.beta * -0.5 * (1 + logvar32 - mu32**2 - logvar32.exp()).sum((1, 2)) / B
        to_decode = [z]  # every latent whose image is scored, decoded in one pass
        if cfg.use_rnn:
            zs = z.reshape(S, B, T, -1)
            pred = self.branches(zs, rand).float()  # z losses in fp32
            # the z terms' predictions: the same numbers from detached inputs under stop_grad "both"
            p_z = self.branches(zs.detach(), rand).float() if cfg.stop_grad == "both" else pred
            p_id, p_sym, z_next = p_z[:, 0], p_z[:, 1:], zs[:, :, 1:]
            z_next = z_next if cfg.stop_grad == "none" else z_next.detach()
            if cfg.z_loss_weight:
                terms["z_pred"] = cfg.z_loss_weight * sq(p_id - z_next) / B
            if self.groups:  # augmented predictions, mapped back, must agree with the plain one and with the next z
                consistency = sq(p_sym - p_id.unsqueeze(1)) + sq(p_sym - z_next.unsqueeze(1))
                terms["sym_z"] = cfg.symmetry_loss_weight * consistency / (cfg.k * B)
            to_decode.append(pred.reshape(S, -1, pred.shape[-1]))
        logits = self.decode(torch.cat(to_decode, 1)).float()  # pixel losses in fp32
        terms["recon"] = self.per_seed(self.pixel_loss(logits[: B * T], xf)) / B
        if cfg.use_rnn:
            target = xf.unflatten(0, (B, T))[:, 1:]  # next frames [B, T-1, S*3, H, W]
            pred_logits = logits[B * T :].unflatten(0, (-1, B, T - 1))  # [1 + G*K, B, T-1, S*3, H, W]
            terms["pred"] = self.per_seed(self.pixel_loss(pred_logits[0], target)) / B
            if self.groups:
                terms["sym_recon"] = self.per_seed(self.pixel_loss(pred_logits[1:], target)) / (cfg.k * B)
        terms["total"] = sum(terms.values())
        return terms

    # -- evaluation --

    @torch.no_grad()
    def measure(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x [S, B, T, 3, H, W] -> z = mu [S, B, T, z_dim], per-seed squared-error sums of the
        reconstruction (from mu) ``recon_se`` and of the open-loop prediction of frames
        rnn_min_context..T-1 ``pred_se`` (RNN fed mu up to rnn_min_context, then itself)."""
        S, B, T = x.shape[:3]
        xf = self.fold(x)
        mu, _ = self.encode(xf)
        out = {"z": mu.reshape(S, B, T, -1)}
        recon = torch.sigmoid(self.decode(mu))
        out["recon_se"] = self.per_seed((recon - xf) ** 2)
        ctx = self.cfg.rnn_min_context
        if self.cfg.use_rnn and T > ctx:
            pred = self.rollout(out["z"], None)[:, :, ctx - 1 :]  # predictions of frames ctx..T-1
            frames = torch.sigmoid(self.decode(pred.reshape(S, -1, pred.shape[-1]))).unflatten(0, (B, T - ctx))
            out["pred_se"] = self.per_seed((frames - xf.unflatten(0, (B, T))[:, ctx:]) ** 2)
        return out

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """Validation frames [N, T, 3, H, W] -> every seed's latent mean [S, N, T, z_dim] (chunked)."""
        return torch.cat(
            [
                self.measure(self._expand(x[i : i + self.cfg.batch_size]))["z"]
                for i in range(0, len(x), self.cfg.batch_size)
            ],
            1,
        )

    def _expand(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(0).expand(self.S, *x.shape)  # the same frames for every seed

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """linear_proj_mse / _r2 (the latent mean vs the true positions, fitted on half the validation
        sequences, scored on the other half), recon_mse, pred_mse (open loop after rnn_min_context
        frames), psnr (of the reconstruction)."""
        parts = [
            self.measure(self._expand(x[i : i + self.cfg.batch_size])) for i in range(0, len(x), self.cfg.batch_size)
        ]
        z = torch.cat([p["z"] for p in parts], 1).float().cpu().numpy()
        sums = {k: sum(p[k] for p in parts).double().cpu().numpy() for k in ("recon_se", "pred_se") if k in parts[0]}
        N, T = x.shape[:2]
        pixels, ctx, targets = x[0, 0].numel(), self.cfg.rnn_min_context, y.cpu().numpy()
        out = {m.name: [] for m in self.metrics}
        for s in range(self.S):
            proj = linear_projection(z[s], targets)
            recon = float(sums["recon_se"][s]) / (N * T * pixels)
            out["linear_proj_mse"].append(proj["mse"])
            out["linear_proj_r2"].append(proj["r2"])
            out["recon_mse"].append(recon)
            out["pred_mse"].append(
                float(sums["pred_se"][s]) / (N * (T - ctx) * pixels) if "pred_se" in sums else math.nan
            )
            out["psnr"].append(psnr_from_mse(recon))
        return {k: torch.tensor(v, dtype=torch.float64) for k, v in out.items()}

    def decode_seed(self, seed_index: int, z: np.ndarray) -> np.ndarray:
        """One seed's decoder on z [N, z_dim] -> images [N, H, W, 3] in [0, 1] (the other seeds decode zeros)."""
        device = next(self.parameters()).device
        zs = torch.zeros(self.S, len(z), self.cfg.z_dim, device=device)
        zs[seed_index] = torch.as_tensor(np.asarray(z), dtype=torch.float32, device=device)
        logits = self.decode(zs).unflatten(1, (self.S, -1))[:, seed_index]  # [N, 3, H, W]
        return torch.sigmoid(logits).permute(0, 2, 3, 1).float().cpu().numpy()

    def artefacts(self, seed_index: int, x: torch.Tensor, y: torch.Tensor, folder: Path) -> list[Path]:
        """``latent_vs_position.png`` (each true coordinate against its linear fit from the latent mean)
        and ``decoder_traversal.png`` (each latent dim swept over +-2 std around the mean)."""
        z = self.latents(x)[seed_index].float().cpu().numpy()  # [N, T, z_dim]
        flat = z.reshape(-1, z.shape[-1]).astype(np.float64)
        decode = lambda zz: self.decode_seed(seed_index, zz)  # noqa: E731
        return [
            latent_plot(z, y.cpu().numpy(), Path(folder) / "latent_vs_position.png"),
            traversal_grid(decode, flat.mean(0), flat.std(0), Path(folder) / "decoder_traversal.png"),
        ]


register("sps", SPSConfig, SPS)
