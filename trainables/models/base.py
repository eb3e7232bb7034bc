"""The model interface: what a model family implements, and all that the trainer relies on.

A family is one file under ``trainables/models/`` that ends with a ``register`` call, and one line in
``FAMILIES`` (``trainables/models/__init__.py``): a config dataclass (a ``TrainConfig``) and a packed
module (a ``PackedModel``) that trains S seeds of one configuration at once. ``register`` checks the
declarations below and the config's field names and types (``trainables.models.registry``); size
checks that need the data settings go in ``check_data``, which ``--dry-run`` runs too. ``trainables.pack``,
``trainables.train``, ``trainables.tracking``, the spec checker and the analysis read a family only
through this module: its declared ``metrics``, its default ``success`` rule and
``scheduler_metric``, its trivial ``baselines``, and the methods below.

Packing contract: every parameter carries the seed dimension first (``[S, ...]``, built by the
layers of ``trainables.models.packed`` from one ``torch.Generator`` per seed), nothing mixes seeds,
and every random number of a step is drawn per seed by ``draw`` from that seed's generator. Then
seed s of a pack trains exactly as seed s alone, and one elementwise Adam over all parameters keeps
the seeds independent (the Pack clips gradients and freezes diverged seeds per seed).
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar, Literal, Union, get_args, get_origin

import torch
from torch import nn

from trainables.options import number


@dataclass(frozen=True)
class Metric:
    """A per-seed evaluation metric a model declares (``PackedModel.metrics``)."""

    name: str  # the key in each seed's result, in MLflow and in success rules
    better: Literal["lower", "higher"]  # which direction is better (ASHA's mode, plots)
    doc: str  # one line: what it measures


@dataclass
class TrainConfig:
    """Optimisation settings every family has; a family's config subclasses it (and may redeclare
    these fields with its own defaults). Values are coerced to each field's annotated type (YAML lists
    -> tuples, ints -> floats; ``X | None`` takes None) and checked by ``checks``. A field may not be
    named like a data, common or run key (``frames``, ``success``, ``epochs``, ...): ``register`` refuses it."""

    lr: float = 1e-3  # Adam learning rate (times each parameter group's multiplier)
    lr_decay: float = 1.0  # per-step exponential LR decay (1.0 = constant)
    batch_size: int = 32  # sequences per seed per step
    grad_clip: float | None = None  # per-seed max gradient norm; None = no clipping

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            setattr(self, f.name, coerce(f.name, getattr(self, f.name), hints[f.name]))
        for name, ok in self.checks().items():
            if not ok:
                raise ValueError(f"invalid value for '{name}': {getattr(self, name)!r}")

    def checks(self) -> dict[str, bool]:
        """Field name -> whether its value is valid; subclasses extend ``super().checks()``."""
        return {
            "lr": self.lr > 0,
            "lr_decay": 0 < self.lr_decay <= 1,
            "batch_size": self.batch_size >= 1,
            "grad_clip": self.grad_clip is None or self.grad_clip > 0,
        }


def coerce(name: str, value, hint):
    """``value`` checked against the field's annotated type ``hint`` (bool, int, float, str, tuples of
    them, ``X | None``): YAML lists -> tuples, ints -> floats. A ValueError names the field."""
    origin, args = get_origin(hint), get_args(hint)
    bad = ValueError(f"config key '{name}' must be {spell(hint)}, got {value!r}")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return coerce(name, value, option)
            except ValueError:
                pass
        raise bad
    if hint is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if hint in (int, float):
        try:
            number(value, finite=hint is int)
        except ValueError:
            raise bad from None
        if hint is int and value != int(value):
            raise bad
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise bad
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad
        each = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(value) != len(each):
            raise bad
        try:
            return tuple(coerce(name, v, a) for v, a in zip(value, each))
        except ValueError:
            raise bad from None
    raise TypeError(f"config field '{name}': no rule for its type {spell(hint)}")


def spell(hint) -> str:
    """A type as an error message says it: ``float | None`` -> "a float or None"."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join("None" if a is type(None) else spell(a) for a in args)
    if origin is tuple:
        plural = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {plural.get(args[0], spell(args[0]))}"
        return f"a list of {len(args)} {plural.get(args[0], spell(args[0]))}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, repr(hint))


class PackedModel(nn.Module):
    """S seeds of one configuration of a family in one module. Subclasses set the class attributes
    and implement ``losses`` and ``evaluate``; the rest has defaults.

    Tensors: training frames ``x`` are [S, B, T, 3, H, W] in [0, 1] (each seed its own batch of
    whole sequences; windows, strides and standardisation happen inside the model). Validation
    frames are [N, T, 3, H, W] (the same for every seed) with the world's ground truth ``y``
    [N, T, D] (positions the latent may be projected onto).
    """

    metrics: ClassVar[tuple[Metric, ...]]  # what ``evaluate`` returns per seed
    success: ClassVar[dict]  # default success rule: {"metric": name, "below" | "above": number}
    scheduler_metric: ClassVar[str]  # default metric ASHA / Optuna decide on (its ``better`` gives the mode)
    # optimiser steps the Pack takes on each batch of sequences (``draw`` and ``losses`` run each time, ``step``
    # counts them): >1 when a step trains on part of a sample (interp_transformer's one step per patch)
    steps_per_batch: int = 1
    # data keys and config fields small enough to train in seconds on a CPU (tests/test_models.py
    # runs every family with them; e.g. {"frames": 4, "image_size": 16, "widths": [4, 8]})
    test_sizes: ClassVar[dict] = {}

    def __init__(self, cfg: TrainConfig, gens: list[torch.Generator], image_size: int):
        super().__init__()
        self.cfg, self.S = cfg, len(gens)
        self.channels_last = False  # speed switch: fold conv inputs channels-last (same numbers)

    @classmethod
    def check_data(cls, cfg: TrainConfig, data: dict) -> None:
        """Raise ValueError naming the key if the data settings (``frames``, ``image_size``, ...)
        cannot train this config (e.g. fewer frames than a context needs, a size the strides do not
        divide). Every size check belongs here, not in ``__init__``: the spec checker and
        ``--dry-run`` call it for every configuration before anything trains."""

    @staticmethod
    def baselines(cfg: TrainConfig, x: torch.Tensor, y: torch.Tensor) -> dict[str, dict[str, float]]:
        """The family's trivial baselines, from the data alone (no training): baseline name -> the
        declared metrics it is scored on -> value, computed on the validation frames ``x`` [N, T, 3, H, W]
        and targets ``y`` [N, T, D] exactly as ``evaluate`` scores a seed (same windows, split and
        formulas). ``trainables.baselines`` bootstraps them over the validation sequences; the success
        table, the report and ``--dry-run`` show them beside the rule."""
        return {}

    def draw(self, g: torch.Generator, batch: int, frames: int, step: int) -> dict[str, torch.Tensor]:
        """One seed's random numbers for one step (CPU tensors from ``g``); the Pack stacks them
        over seeds ([S, ...]) and passes them to ``losses`` as ``rand``."""
        return {}

    def losses(self, x: torch.Tensor, rand: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """Per-seed loss terms [S] (reduced in fp32 also under autocast) and their sum ``total``,
        the one that is minimised. ``step`` (optimiser steps so far) drives schedules and stages."""
        raise NotImplementedError

    def param_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        """(parameters, learning-rate multiplier) pairs; every parameter in exactly one group."""
        return [(list(self.parameters()), 1.0)]

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-seed values [S] of every declared metric on the validation set. The Pack calls it in
        eval mode under ``torch.no_grad()`` (a model that optimises at evaluation enables grad
        itself) and without autocast; chunk the validation set as memory needs."""
        raise NotImplementedError

    def artefacts(self, seed_index: int, x: torch.Tensor, y: torch.Tensor, folder: Path) -> list[Path]:
        """Optional pictures of one seed after training (latent plots, predicted vs true frames),
        written as PNGs into ``folder``; the tracker logs them on the seed's run."""
        return []

    def set_channels_last(self, on: bool) -> None:
        """Speed switch: fold conv inputs channels-last (same numbers), in this model and in any
        model inside it (st_transformer's AE)."""
        for part in self.modules():
            if isinstance(part, PackedModel):
                part.channels_last = on

    def conv_gemm(self, on: bool) -> None:
        """Speed switch: every 2-D ``PackedConv`` as im2col + batched matmuls (``True``) or grouped
        kernels; the numbers are the same up to float rounding (3-D and 1-D ones stay grouped)."""
        from trainables.models.packed import PackedConv

        for conv in self.modules():
            if isinstance(conv, PackedConv) and conv.dims == 2:
                conv.gemm = on


def metric_names(model_cls: type[PackedModel]) -> tuple[str, ...]:
    return tuple(m.name for m in model_cls.metrics)


def find_metric(model_cls: type[PackedModel], name: str) -> Metric:
    """The declared metric ``name``; a ValueError listing the declared ones otherwise."""
    for m in model_cls.metrics:
        if m.name == name:
            return m
    raise ValueError(f"'{name}' is not a metric of this model; it declares {', '.join(metric_names(model_cls))}")
