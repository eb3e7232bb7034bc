"""The unit of work: S seeds of one configuration trained together in one process (a ``Pack``).

Every parameter carries a leading seed dimension; one Adam (elementwise, so seeds stay
independent) steps them all, with per-step exponential LR decay. Gradient clipping is per seed,
and a seed whose loss or gradient stops being finite is frozen (gradient and Adam first moment
zeroed before the step, so its parameters keep their last finite values) and marked
``diverged`` while the others go on. Each seed draws its init, batch order and noise from its
own ``torch.Generator``, so a seed gives the same numbers packed as alone. The training loop
makes no host sync per step: the finite check stays on the device until an epoch ends.

Speed settings (``Speed``, from the run-only config keys ``precision``, ``channels_last``, ``tf32``,
``compile`` and ``conv_gemm``; None = the device's default) change how a pack computes, not what it trains, so
they are not part of ``config_id``: bf16 and TF32 change the numbers within their rounding (per-seed
losses and metrics within a few percent of fp32 over short runs), channels_last and compile only by
float rounding, as does conv_gemm (off by default until a GPU measures it). Defaults: on CUDA bf16 autocast + channels_last + TF32 + cuDNN autotuning (and the
fused Adam); on CPU fp32. ``precision: fp32`` gives the reference path on a GPU; ``compile`` is off
unless asked for (``true`` or a torch.compile mode, e.g. ``reduce-overhead`` for CUDA graphs).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from trainables.data import load_data
from trainables.metrics import linear_projection, psnr_from_mse
from trainables.models import MODELS

COMMON = {
    "model": "sps",  # a key of trainables.models.MODELS
    "env": "seedsweep/BouncingBall-v0",  # gymnasium id (or short name: ball, two_body)
    "n_train": 512,  # SPS ball: the 512-sequence training subset
    "n_val": 128,  # validation sequences (metrics, latents)
    "frames": 20,  # SPS ball: 20-frame sequences
    "image_size": 32,  # SPS: 32 x 32 RGB
    "data_seed": 0,  # training set seed; the validation set uses trainables.data.val_seed(data_seed)
    "success": {"metric": "linear_proj_mse", "below": 0.2},  # lab notes 10/21: linear proj MSE < 0.2 "means kinda good"
    "device": None,  # run-only: None = cuda if available, else cpu
    # run-only speed settings (see Speed); None = the device's default
    "precision": None,  # "fp32" | "bf16" (autocast); None: bf16 on CUDA, fp32 on CPU
    "channels_last": None,  # NHWC convolutions; None: on CUDA
    "tf32": None,  # TF32 matmuls and convs (CUDA only); None: on with bf16
    "compile": None,  # torch.compile the model's losses: true, or a mode of COMPILE_MODES; None: off
    "conv_gemm": None,  # convolutions as unfold/fold + batched matmuls instead of grouped kernels; None: off
}
PRECISIONS = ("fp32", "bf16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's
RUN_ONLY = ("device", "precision", "channels_last", "tf32", "compile", "conv_gemm")  # where and how fast, not what
NOT_IN_ID = (*RUN_ONLY, "success")  # config_id names what is trained, not where, how fast or how it is judged
METRICS = ("linear_proj_mse", "linear_proj_r2", "recon_mse", "pred_mse", "psnr")


def resolve_config(config: dict) -> dict:
    """``config`` with every default filled in and checked; an unknown key is a ValueError naming it."""
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    model = config.get("model", COMMON["model"])
    if model not in MODELS:
        raise ValueError(f"unknown model '{model}'; known: {', '.join(sorted(MODELS))}")
    cfg_cls = MODELS[model][0]
    names = [f.name for f in fields(cfg_cls)]
    for key in config:
        if key not in COMMON and key not in names:
            raise ValueError(f"unknown config key '{key}' for model '{model}'; known: {', '.join([*COMMON, *names])}")
    cfg = cfg_cls(**{k: config[k] for k in names if k in config})
    out = {**COMMON, **{k: config[k] for k in COMMON if k in config}}
    for key in ("n_train", "n_val", "frames", "image_size", "data_seed"):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "data_seed" else 1):
            raise ValueError(f"config key '{key}' must be a {'non-negative' if key == 'data_seed' else 'positive'} integer, got {value!r}")
    from envs.dataset import resolve_env_id

    out["env"] = resolve_env_id(out["env"])
    out["success"] = check_success(out["success"])
    if out["device"] is not None and not isinstance(out["device"], str):
        raise ValueError(f"config key 'device' must be a string or None, got {out['device']!r}")
    if out["precision"] is not None and out["precision"] not in PRECISIONS:
        raise ValueError(f"config key 'precision' must be one of {', '.join(PRECISIONS)} or None (by device), got {out['precision']!r}")
    for key in ("channels_last", "tf32", "compile", "conv_gemm"):
        if out[key] is not None and not isinstance(out[key], bool) and not (key == "compile" and out[key] in COMPILE_MODES):
            modes = f", one of {', '.join(COMPILE_MODES)}" if key == "compile" else ""
            raise ValueError(f"config key '{key}' must be true, false{modes} or None (by device), got {out[key]!r}")
    if out["n_train"] < cfg.batch_size:
        raise ValueError(f"config key 'n_train' ({out['n_train']}) must be at least 'batch_size' ({cfg.batch_size})")
    if getattr(cfg, "use_rnn", False) and out["frames"] <= cfg.rnn_min_context:
        raise ValueError(f"config key 'frames' ({out['frames']}) must exceed 'rnn_min_context' ({cfg.rnn_min_context})")
    return {**out, **asdict(cfg)}


def check_success(rule) -> dict:
    """``{"metric": m, "below": x}`` or ``{"metric": m, "above": x}``, m one of ``METRICS``; an optional
    ``also: [x, ...]`` lists more thresholds that the report shows beside the rule (not used here)."""
    also = rule.get("also", []) if isinstance(rule, dict) else []
    ok = isinstance(rule, dict) and rule.get("metric") in METRICS and len(rule) == 2 + ("also" in rule)
    ok = ok and isinstance(also, (list, tuple)) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in also)
    bound = next((k for k in ("below", "above") if isinstance(rule, dict) and k in rule), None)
    if not ok or bound is None or isinstance(rule[bound], bool) or not isinstance(rule[bound], (int, float)):
        raise ValueError(f"config key 'success' must be {{metric: one of {', '.join(METRICS)}, below|above: number[, also: [numbers]]}}, got {rule!r}")
    return {"metric": rule["metric"], bound: float(rule[bound]), **({"also": [float(x) for x in also]} if also else {})}


def succeeded(result: dict, rule: dict) -> bool:
    """Whether a (non-diverged) seed's ``result`` passes the success rule; NaN never does."""
    value = result.get(rule["metric"], math.nan)
    if result.get("status") == "diverged" or not math.isfinite(value):
        return False
    return value < rule["below"] if "below" in rule else value > rule["above"]


def config_id(config: dict) -> str:
    """Stable short hash of the resolved config, without run-only keys (device, speed) and the success rule."""
    resolved = resolve_config(config)
    payload = json.dumps({k: v for k, v in resolved.items() if k not in NOT_IN_ID}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Speed:
    """How a pack computes (see the module docstring); ``for_device`` fills the config's None keys."""

    precision: str = "fp32"  # "bf16": autocast around forward + loss; parameters, grads, Adam state, loss sums fp32
    channels_last: bool = False  # convolutions on NHWC activations
    tf32: bool = False  # CUDA: TF32 tensor cores for the fp32 matmuls and convs
    compile: bool | str = False  # torch.compile of the model's losses (forward and backward); a str: its mode
    conv_gemm: bool = False  # convolutions as im2col + batched matmuls (tensor-core GEMMs) instead of grouped kernels

    @classmethod
    def for_device(cls, config: dict, device: torch.device) -> Speed:
        cuda = device.type == "cuda"
        precision = config["precision"] or ("bf16" if cuda else "fp32")
        given = lambda key, default: default if config[key] is None else config[key]  # noqa: E731
        return cls(precision, given("channels_last", cuda), given("tf32", cuda and precision == "bf16"), given("compile", False),
                   given("conv_gemm", False))  # fmt: skip


class Pack:
    """S seeds of one configuration, trained together. ``data`` (optional) replaces the env dataset:
    (train_frames [N, T, 3, H, W], train_targets, val_frames, val_targets), as ``load_data`` gives."""

    def __init__(self, config: dict, seeds: list[int], device: str | None = None, data: tuple | None = None):
        self.config = resolve_config(config)
        self.seeds = [int(s) for s in seeds]
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be a non-empty list of distinct ints, got {seeds!r}")
        self.device = torch.device(device or self.config["device"] or ("cuda" if torch.cuda.is_available() else "cpu"))
        cfg_cls, model_cls = MODELS[self.config["model"]]
        self.cfg = cfg_cls(**{f.name: self.config[f.name] for f in fields(cfg_cls)})
        self.gens = [torch.Generator().manual_seed(s) for s in self.seeds]  # CPU: same streams on any device
        train_x, _, val_x, val_y = data if data is not None else load_data(self.config)
        self.train_x = train_x.to(self.device, torch.float32)  # resident on the device
        self.val_x = val_x.to(self.device, torch.float32)
        self.val_y = np.asarray(val_y, np.float32)
        self.model = model_cls(self.cfg, self.gens, train_x.shape[-1]).to(self.device)
        self.speed = Speed.for_device(self.config, self.device)
        self.model.channels_last = self.speed.channels_last
        self.model.conv_gemm(self.speed.conv_gemm)
        mode = self.speed.compile if isinstance(self.speed.compile, str) else None
        self._losses = torch.compile(self.model.losses, mode=mode) if self.speed.compile else self.model.losses
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr, fused=self.device.type == "cuda")
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=self.cfg.lr_decay)
        self.alive = torch.ones(len(self.seeds), dtype=torch.bool, device=self.device)
        self.finished = False
        self.epoch = self.step = 0
        self.last_losses: dict[str, list[float]] | None = None
        self._val_cache = None  # (step, measurements) of the last validation pass

    @property
    def status(self) -> list[str]:
        """Per seed: ``running``, ``diverged`` or (after ``finish``) ``finished``."""
        done = "finished" if self.finished else "running"
        return [done if a else "diverged" for a in self.alive.tolist()]

    def finish(self) -> None:
        """Mark the seeds still running as finished."""
        self.finished = True

    # ---- training ----

    def train_epoch(self) -> dict[str, list[float]]:
        """One epoch (len(train) // batch_size steps, each seed its own shuffled order); per seed
        the mean of each loss term over the epoch."""
        B, n = self.cfg.batch_size, len(self.train_x)
        order = self._to_device(torch.stack([torch.randperm(n, generator=g) for g in self.gens]))
        self._set_cuda_flags()
        sums: dict[str, torch.Tensor] = {}
        steps = n // B
        for i in range(steps):
            terms = self._step(order[:, i * B : (i + 1) * B])
            for k, v in terms.items():
                sums[k] = sums[k] + v if k in sums else v.clone()  # not a CUDA graph's output buffer
        self.epoch += 1
        self.last_losses = {k: (v / steps).tolist() for k, v in sums.items()}  # one host sync per epoch
        return self.last_losses

    def _step(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.train_x[idx]  # [S, B, T, 3, H, W], each seed its own batch
        rand = self._draw(x.shape[1], x.shape[2])
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.speed.precision == "bf16"):
            terms = self._losses(x, rand)  # fp32 terms (the model reduces its losses in fp32)
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].sum().backward()
        self._guard_and_clip(terms["total"].detach())
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return {k: v.detach() for k, v in terms.items()}

    def _draw(self, batch: int, frames: int) -> dict[str, torch.Tensor]:
        """Each seed's random numbers from its own generator (outside the packed computation), stacked."""
        draws = [self.model.draw(g, batch, frames, self.step) for g in self.gens]
        return {k: self._to_device(torch.stack([d[k] for d in draws])) for k in draws[0]}

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        """A fresh CPU tensor to the device without a host sync (pinned, asynchronous on CUDA)."""
        return t.pin_memory().to(self.device, non_blocking=True) if self.device.type == "cuda" else t

    def _set_cuda_flags(self) -> None:
        """This pack's CUDA math before its work (the flags are process-wide, so set each epoch and
        evaluation): TF32 as ``speed.tf32``, cuDNN autotuning (the shapes never change)."""
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.speed.tf32
            torch.backends.cudnn.benchmark = True

    def _guard_and_clip(self, total: torch.Tensor) -> None:
        """Per seed: freeze it for good if its loss or gradient is not finite, else clip its gradient norm."""
        S = len(self.seeds)
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.stack([p.grad.reshape(S, -1).square().sum(1) for p in params]).sum(0).sqrt()
        self.alive &= torch.isfinite(norm) & torch.isfinite(total)
        scale = (self.cfg.grad_clip / (norm + 1e-6)).clamp(max=1.0) if self.cfg.grad_clip else None  # as clip_grad_norm_
        for p in params:
            keep = self.alive.view(S, *[1] * (p.dim() - 1))
            grad = p.grad if scale is None else p.grad * scale.view(keep.shape)
            p.grad = torch.where(keep, grad, 0.0)
            state = self.optimizer.state.get(p)
            if state:  # Adam's first moment of a frozen seed -> 0, so its update is exactly 0
                state["exp_avg"].mul_(keep)

    # ---- evaluation ----

    @torch.no_grad()
    def _measure_val(self) -> dict:
        """Latents and image errors on the validation set (cached until the next step)."""
        if self._val_cache and self._val_cache[0] == self.step:
            return self._val_cache[1]
        S, chunk = len(self.seeds), self.cfg.batch_size
        self._set_cuda_flags()  # evaluation itself runs without autocast: metrics from fp32 activations
        parts = [
            self.model.measure(self.val_x[i : i + chunk].unsqueeze(0).expand(S, -1, -1, -1, -1, -1))  # same data for every seed
            for i in range(0, len(self.val_x), chunk)
        ]
        out = {"z": torch.cat([p["z"] for p in parts], 1).float().cpu().numpy()}
        for key in ("recon_se", "pred_se"):
            if key in parts[0]:
                out[key] = sum(p[key] for p in parts).double().cpu().numpy()
        self._val_cache = (self.step, out)
        return out

    def evaluate(self) -> list[dict]:
        """Per seed: seed, status, success, linear_proj_mse / _r2 (mu vs true positions, fitted on
        half the validation sequences, scored on the other half), recon_mse, pred_mse (open loop
        after rnn_min_context frames), psnr (of the reconstruction), and ``train/<term>`` losses of
        the last epoch."""
        m = self._measure_val()
        N, T = self.val_x.shape[:2]
        pixels = self.val_x[0, 0].numel()
        ctx = getattr(self.cfg, "rnn_min_context", 0)
        results = []
        for s, (seed, status) in enumerate(zip(self.seeds, self.status)):
            proj = linear_projection(m["z"][s], self.val_y)
            recon = float(m["recon_se"][s]) / (N * T * pixels)
            result = {
                "seed": seed,
                "status": status,
                "linear_proj_mse": proj["mse"],
                "linear_proj_r2": proj["r2"],
                "recon_mse": recon,
                "pred_mse": float(m["pred_se"][s]) / (N * (T - ctx) * pixels) if "pred_se" in m else math.nan,
                "psnr": psnr_from_mse(recon),
                **{f"train/{k}": float(v[s]) for k, v in (self.last_losses or {}).items()},
            }
            result["success"] = succeeded(result, self.config["success"])
            results.append(result)
        return results

    def latents(self, seed_index: int) -> tuple[np.ndarray, np.ndarray]:
        """(z = the encoder's mean [N, T, z_dim], true targets [N, T, D]) on the validation set."""
        return self._measure_val()["z"][seed_index], self.val_y

    @torch.no_grad()
    def decode(self, seed_index: int, z: np.ndarray) -> np.ndarray:
        """One seed's decoder on z [N, z_dim] -> images [N, H, W, 3] in [0, 1] (the other seeds decode zeros)."""
        zs = torch.zeros(len(self.seeds), len(z), self.cfg.z_dim, device=self.device)
        zs[seed_index] = torch.as_tensor(np.asarray(z), dtype=torch.float32, device=self.device)
        logits = self.model.decode(zs).unflatten(1, (len(self.seeds), -1))[:, seed_index]  # [N, 3, H, W]
        return torch.sigmoid(logits).permute(0, 2, 3, 1).float().cpu().numpy()

    # ---- checkpoints ----

    def state_dict(self) -> dict:
        return {
            "config": self.config,
            "seeds": self.seeds,
            "epoch": self.epoch,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generators": [g.get_state() for g in self.gens],
            "alive": self.alive.cpu(),
            "finished": self.finished,
            "last_losses": self.last_losses,
        }

    def load_state_dict(self, d: dict) -> None:
        ours = {k: v for k, v in self.config.items() if k not in RUN_ONLY}  # a run may resume at another speed
        theirs = {k: v for k, v in resolve_config(d["config"]).items() if k not in RUN_ONLY}
        if ours != theirs or list(d["seeds"]) != self.seeds:
            raise ValueError("state_dict is of another configuration or seed list")
        self.model.load_state_dict(d["model"])
        self.optimizer.load_state_dict(d["optimizer"])
        self.scheduler.load_state_dict(d["scheduler"])
        for g, state in zip(self.gens, d["generators"]):
            g.set_state(state.cpu())
        self.alive = d["alive"].to(self.device)
        self.finished, self.epoch, self.step = d["finished"], d["epoch"], d["step"]
        self.last_losses = d["last_losses"]
        self._val_cache = None


def fit(config: dict, seeds: list[int], epochs: int, device: str | None = None) -> list[dict]:
    """Train ``seeds`` of ``config`` for ``epochs`` epochs in one Pack; the final ``evaluate()``."""
    pack = Pack(config, seeds, device=device)
    for _ in range(epochs):
        pack.train_epoch()
    pack.finish()
    return pack.evaluate()
