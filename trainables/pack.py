"""The unit of work: S seeds of one configuration trained together in one process (a ``Pack``).

The pack knows a model only through ``trainables.models.base`` (``PackedModel``): its loss terms,
parameter groups, declared metrics and default success rule. Every parameter carries a leading
seed dimension; one Adam (elementwise, so seeds stay independent) steps them all, one parameter
group per ``param_groups`` entry at ``lr`` times its multiplier, with per-step exponential LR decay
on every group. Gradient clipping is per seed,
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

import math
from dataclasses import dataclass, fields

import numpy as np
import torch

from trainables.config import resolve_config, succeeded
from trainables.data import PER_SEED, load_data
from trainables.models import MODELS, metric_names
from trainables.options import RUN_ONLY
from trainables.seed_stop import SeedStop, shrink_optimizer_state, shrink_state


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
        return cls(
            precision,
            given("channels_last", cuda),
            given("tf32", cuda and precision == "bf16"),
            given("compile", False),
            given("conv_gemm", False),
        )


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
        train_x, _, val_x, val_y = data if data is not None else load_data(self.config, seeds=self.seeds)
        self.train_x = train_x.to(self.device, torch.float32)  # resident on the device
        self.per_seed_data = self.config["data_seed"] == PER_SEED  # train_x [S, N, ...]: each seed its own set
        self.val_x = val_x.to(self.device, torch.float32)
        self.val_y = torch.as_tensor(np.asarray(val_y, np.float32)).to(self.device)
        self.model = model_cls(self.cfg, self.gens, train_x.shape[-1]).to(self.device)
        self.n_train = train_x.shape[1] if self.per_seed_data else len(train_x)
        self.speed = Speed.for_device(self.config, self.device)
        self.optimizer, self.scheduler, self._losses = self._build(self.model)
        self.alive = torch.ones(len(self.seeds), dtype=torch.bool, device=self.device)
        self.finished = False
        self.epoch = self.step = 0
        self.last_losses: dict[str, list[float]] | None = None
        # seed_stop (trainables.seed_stop): the model's stacked tensors hold the seeds ``held`` (indices
        # into ``seeds``), the stopped ones have left it; ``alive`` is over the held seeds
        self.stop = SeedStop.parse(self.config["seed_stop"]) if self.config["seed_stop"] else None
        self.held = list(range(len(self.seeds)))
        self.stopped: dict[int, dict] = {}  # index -> its result frozen at the stop
        self.would_stop: dict[int, int] = {}  # audited candidates: index -> the epoch it would have stopped
        self.strikes = [0] * len(self.seeds)  # consecutive evaluations on the failing side

    @property
    def active(self) -> list[int]:
        """Indices of the seeds that still train (held and not stopped)."""
        return [i for i in self.held if i not in self.stopped]

    @property
    def status(self) -> list[str]:
        """Per seed: ``running``, ``diverged``, ``stopped`` (seed_stop) or (after ``finish``) ``finished``."""
        done = "finished" if self.finished else "running"
        alive = dict(zip(self.held, self.alive.tolist()))
        return ["stopped" if i in self.stopped else done if alive[i] else "diverged" for i in range(len(self.seeds))]

    def finish(self) -> None:
        """Mark the seeds still running as finished."""
        self.finished = True

    # ---- training ----

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps of one seed in one epoch: whole batches, each ``model.steps_per_batch`` times."""
        return self.n_train // self.cfg.batch_size * self.model.steps_per_batch

    def train_epoch(self) -> dict[str, list[float]]:
        """One epoch (len(train) // batch_size batches, each seed its own shuffled order, each batch
        ``model.steps_per_batch`` optimiser steps); per seed the mean of each loss term over the epoch."""
        B = self.cfg.batch_size
        if not self.active:  # every seed has stopped: nothing to compute
            self.epoch += 1
            self.last_losses = {k: [math.nan] * len(self.seeds) for k in self.last_losses or {}}
            return self.last_losses
        order = self._to_device(torch.stack([torch.randperm(self.n_train, generator=self.gens[i]) for i in self.held]))
        self._set_cuda_flags()
        sums: dict[str, torch.Tensor] = {}
        repeat, steps = self.model.steps_per_batch, self.steps_per_epoch
        for i in range(steps):
            terms = self._step(order[:, i // repeat * B : (i // repeat + 1) * B])
            for k, v in terms.items():
                sums[k] = sums[k] + v if k in sums else v.clone()  # not a CUDA graph's output buffer
        self.epoch += 1
        self.last_losses = {k: self._spread((v / steps).tolist()) for k, v in sums.items()}  # one host sync
        return self.last_losses

    def _spread(self, values: list[float]) -> list[float]:
        """Values over the held seeds -> over all seeds (NaN for those that have left the pack)."""
        if len(self.held) == len(self.seeds):
            return values
        out = [math.nan] * len(self.seeds)
        for i, v in zip(self.held, values):
            out[i] = v
        return out

    def _step(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.per_seed_data:  # [S, B, T, 3, H, W], each seed its own batch of its own set
            x = self.train_x[torch.arange(len(self.held), device=idx.device)[:, None], idx]
        else:
            x = self.train_x[idx]  # [S, B, T, 3, H, W], each seed its own batch
        rand = self._draw(x.shape[1], x.shape[2])
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.speed.precision == "bf16"):
            terms = self._losses(x, rand, self.step)  # fp32 terms (the model reduces its losses in fp32)
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].sum().backward()
        self._guard_and_clip(terms["total"].detach())
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return {k: v.detach() for k, v in terms.items()}

    def _draw(self, batch: int, frames: int) -> dict[str, torch.Tensor]:
        """Each seed's random numbers from its own generator (outside the packed computation), stacked."""
        draws = [self.model.draw(self.gens[i], batch, frames, self.step) for i in self.held]
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
        S = len(self.held)
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.stack([p.grad.reshape(S, -1).square().sum(1) for p in params]).sum(0).sqrt()
        self.alive &= torch.isfinite(norm) & torch.isfinite(total)
        scale = (
            (self.cfg.grad_clip / (norm + 1e-6)).clamp(max=1.0) if self.cfg.grad_clip else None
        )  # as clip_grad_norm_
        for p in params:
            keep = self.alive.view(S, *[1] * (p.dim() - 1))
            grad = p.grad if scale is None else p.grad * scale.view(keep.shape)
            p.grad = torch.where(keep, grad, 0.0)
            state = self.optimizer.state.get(p)
            if state:  # Adam's first moment of a frozen seed -> 0, so its update is exactly 0
                state["exp_avg"].mul_(keep)

    # ---- evaluation ----

    def evaluate(self) -> list[dict]:
        """Per seed: seed, status, success (the config's rule), every metric the model declares
        (``model.evaluate`` on the validation set, in eval mode, without gradients or autocast), and
        the ``train/<term>`` losses of the last epoch."""
        names = metric_names(type(self.model))
        if not self.active:  # every seed has stopped: their results are frozen
            return [dict(self.stopped[i]) for i in range(len(self.seeds))]
        values = self._in_eval_mode(self.model.evaluate, self.val_x, self.val_y)
        if set(values) != set(names):
            raise RuntimeError(
                f"{type(self.model).__name__}.evaluate returned {sorted(values)}, but the model declares {list(names)}"
            )
        results = []
        position = {i: s for s, i in enumerate(self.held)}
        for i, (seed, status) in enumerate(zip(self.seeds, self.status)):
            if i in self.stopped:
                results.append(dict(self.stopped[i]))
                continue
            s = position[i]
            result = {
                "seed": seed,
                "status": status,
                **{k: float(values[k][s]) for k in names},
                **{f"train/{k}": float(v[i]) for k, v in (self.last_losses or {}).items()},
            }
            result["success"] = succeeded(result, self.config["success"])
            if self.stop is not None:
                result.update(stopped_epoch=None, audit=i in self.would_stop, would_stop_epoch=self.would_stop.get(i))
            results.append(result)
        return results

    # ---- seed_stop ----

    def stop_seeds(self, results: list[dict]) -> list[dict]:
        """Apply ``seed_stop`` to this epoch's ``evaluate()``: each running seed on the failing side
        (``patience`` evaluations in a row, from ``from_epoch``) stops and leaves the pack, unless it
        is audited (it then trains on, its would-stop epoch recorded). Returns the results with the
        new statuses (``stopped``: a failure, its metrics frozen at the stop; ``audit``: True)."""
        rule, out, stop = self.stop, list(results), []
        if rule is None or self.finished or self.epoch < rule.from_epoch:
            return out
        for i in self.active:
            r = results[i]
            if r["status"] != "running" or i in self.would_stop:
                continue
            self.strikes[i] = self.strikes[i] + 1 if rule.failing(r.get(rule.metric, math.nan)) else 0
            if self.strikes[i] < rule.patience:
                continue
            if rule.audited(self.seeds[i]):
                self.would_stop[i] = self.epoch
                out[i] = {**r, "audit": True, "would_stop_epoch": self.epoch}
            else:
                self.stopped[i] = out[i] = {**r, "status": "stopped", "success": False, "stopped_epoch": self.epoch}
                stop.append(i)
        if stop and self.active:
            self._shrink(self.active)
        return out

    def continue_only(self, keep: list[int]) -> None:
        """Go on with the seeds ``keep`` alone (indices into ``seeds``, held, in order): the others leave
        the pack as stopped seeds do, their results frozen as they are now (``sweeps.settle``)."""
        now = self.evaluate()
        self.stopped.update({i: now[i] for i in self.held if i not in keep})
        self._shrink(keep)

    def _shrink(self, keep: list[int]) -> None:
        """The model, Adam and LR schedule rebuilt for the seeds ``keep`` (indices, a subset of
        ``held``, in order): their stacked parameters, buffers and optimiser moments cut from the
        current ones (``trainables.seed_stop.shrink_state``), so they go on exactly as before."""
        positions = [self.held.index(i) for i in keep]
        fresh = [torch.Generator().manual_seed(self.seeds[i]) for i in keep]  # init draws only: replaced below
        model = type(self.model)(self.cfg, fresh, self.train_x.shape[-1]).to(self.device)
        model.load_state_dict(shrink_state(self.model.state_dict(), model.state_dict(), positions, len(self.held)))
        model.train(self.model.training)
        optimizer, scheduler, losses = self._build(model)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        optimizer.load_state_dict(
            shrink_optimizer_state(
                self.optimizer.state_dict(), optimizer.state_dict(), params, positions, len(self.held)
            )
        )
        scheduler.load_state_dict(self.scheduler.state_dict())
        self.alive = self.alive[torch.tensor(positions, device=self.alive.device)]
        if self.per_seed_data:  # each seed's own training set leaves with it
            self.train_x = self.train_x[torch.tensor(positions, device=self.train_x.device)]
        self.model, self.optimizer, self.scheduler, self._losses, self.held = (
            model,
            optimizer,
            scheduler,
            losses,
            list(keep),
        )

    def _build(self, model) -> tuple:
        """``model`` set to the pack's speed settings, and its (Adam, LR schedule, losses function):
        one definition for a new pack and one shrunk by seed_stop."""
        model.set_channels_last(self.speed.channels_last)
        model.conv_gemm(self.speed.conv_gemm)
        groups = [{"params": params, "lr": self.cfg.lr * mult} for params, mult in model.param_groups()]
        # Adam is elementwise: the seeds stay apart
        optimizer = torch.optim.Adam(groups, lr=self.cfg.lr, fused=self.device.type == "cuda")
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=self.cfg.lr_decay)  # every group, per step
        mode = self.speed.compile if isinstance(self.speed.compile, str) else None
        return optimizer, scheduler, torch.compile(model.losses, mode=mode) if self.speed.compile else model.losses

    def artefacts(self, seed_index: int, folder) -> list:
        """The model's pictures of one seed on the validation set, written into ``folder`` (PNG paths);
        none for a stopped seed."""
        if seed_index in self.stopped or seed_index not in self.held:
            return []
        return self._in_eval_mode(self.model.artefacts, self.held.index(seed_index), self.val_x, self.val_y, folder)

    def _in_eval_mode(self, fn, *args):
        """``fn(*args)`` with the model in eval mode under ``torch.no_grad()``, back to train mode after."""
        self._set_cuda_flags()  # evaluation itself runs without autocast: metrics from fp32 activations
        self.model.eval()
        try:
            with torch.no_grad():
                return fn(*args)
        finally:
            self.model.train()

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
            "held": self.held,
            "stopped": self.stopped,
            "would_stop": self.would_stop,
            "strikes": self.strikes,
        }

    def load_state_dict(self, d: dict) -> None:
        ours = {k: v for k, v in self.config.items() if k not in RUN_ONLY}  # a run may resume at another speed
        theirs = {k: v for k, v in resolve_config(d["config"]).items() if k not in RUN_ONLY}
        if ours != theirs or list(d["seeds"]) != self.seeds:
            raise ValueError("state_dict is of another configuration or seed list")
        held = list(d.get("held", range(len(self.seeds))))
        if held != self.held:  # stopped seeds had left the pack: cut this one to the same seeds first
            self._shrink(held)
        self.model.load_state_dict(d["model"])
        self.optimizer.load_state_dict(d["optimizer"])
        self.scheduler.load_state_dict(d["scheduler"])
        for g, state in zip(self.gens, d["generators"]):
            g.set_state(state.cpu())
        self.alive = d["alive"].to(self.device)
        self.finished, self.epoch, self.step = d["finished"], d["epoch"], d["step"]
        self.last_losses = d["last_losses"]
        self.stopped = {int(k): v for k, v in d.get("stopped", {}).items()}
        self.would_stop = {int(k): int(v) for k, v in d.get("would_stop", {}).items()}
        self.strikes = list(d.get("strikes", [0] * len(self.seeds)))


def fit(config: dict, seeds: list[int], epochs: int, device: str | None = None) -> list[dict]:
    """Train ``seeds`` of ``config`` for ``epochs`` epochs in one Pack; the final ``evaluate()``. With
    ``seed_stop`` the pack is evaluated after every epoch from ``from_epoch`` on (not the last) and
    the failed seeds leave it (``Pack.stop_seeds``)."""
    pack = Pack(config, seeds, device=device)
    for epoch in range(1, epochs + 1):
        pack.train_epoch()
        if pack.stop is not None and pack.stop.from_epoch <= epoch < epochs and pack.active:
            pack.stop_seeds(pack.evaluate())
    pack.finish()
    return pack.evaluate()
