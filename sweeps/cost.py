"""What a sweep will cost on a GPU, before it runs (the dry-run plan prints it): seed-steps from the
spec, GPU-hours from each configuration's FLOPs per seed-step at the packed rate measured on an H100.

The rate: ``benchmarks/README.md``, "On a GPU: one H100, 2026-11-26", the row "packed auto: bf16,
channels_last, tf32 (the CUDA default)" at 64 seeds: 470.90 seed-steps/s of the 53.2 GFLOP probe
model, 25.06 TFLOP/s. The same section's shipped T2R2 model (89.1 GFLOP) ran 286.2 seed-steps/s at
S = 128, 25.5 TFLOP/s: the rate carries over between SPS sizes within a few percent. Smaller packs
run slower per seed (MEASUREMENTS.md: 404 vs 476 seed-steps/s at S = 16 vs 64), so read the hours
as a floor within about 20 % for SPS; other families were not measured on a GPU.
"""

from __future__ import annotations

import itertools
from dataclasses import fields

import torch
from torch.utils.flop_counter import FlopCounterMode

from sweeps.spec import SweepSpec, first_value
from trainables.config import resolve_config
from trainables.models import MODELS

H100_FLOP_PER_S = 25.06e12  # the benchmarks/README.md row named above
ROW = 'benchmarks/README.md "On a GPU: one H100, 2026-11-26", packed auto bf16 at 64 seeds: 25.06 TFLOP/s'


def flops_per_seed_step(config: dict) -> float:
    """FLOPs of one optimiser step of one seed (``step_cost``)."""
    return step_cost(config)[0]


def step_cost(config: dict) -> tuple[float, int]:
    """(FLOPs of one optimiser step of one seed, optimiser steps per batch) of a config. The FLOPs are
    the losses' forward and backward, counted on shapes alone (the meta device); Adam's elementwise
    work is not counted, nor is it in the benchmark's rate."""
    key = repr(sorted((k, repr(v)) for k, v in config.items()))
    if key not in _MEASURED:
        resolved = resolve_config(config)
        cfg_cls, model_cls = MODELS[resolved["model"]]
        cfg = cfg_cls(**{f.name: resolved[f.name] for f in fields(cfg_cls)})
        g = torch.Generator().manual_seed(0)
        model = model_cls(cfg, [g], resolved["image_size"]).to("meta")
        batch, frames, side = cfg.batch_size, resolved["frames"], resolved["image_size"]
        x = torch.empty(1, batch, frames, 3, side, side, device="meta")
        rand = {k: v.unsqueeze(0).to("meta") for k, v in model.draw(g, batch, frames, 0).items()}
        with FlopCounterMode(display=False) as counter:
            model.losses(x, rand, 0)["total"].sum().backward()
        _MEASURED[key] = (counter.get_total_flops(), model.steps_per_batch)
    return _MEASURED[key]


_MEASURED: dict[str, tuple[float, int]] = {}  # config -> step_cost's answer (a plan asks per grid point)


def configurations(spec: SweepSpec) -> list[dict]:
    """Every grid point's config (sampled params at their first value: one estimate per grid point)."""
    swept = spec.swept()
    grids = {k: v["grid"] for k, v in swept.items() if "grid" in v}
    sampled = {k: first_value(v) for k, v in swept.items() if k not in grids}
    base = {**spec.base_config(), **sampled}
    return [{**base, **dict(zip(grids, point))} for point in itertools.product(*grids.values())]


def plan_lines(spec: SweepSpec) -> list[str]:
    """The dry-run plan's cost lines: seed-steps and H100-hours, per grid point and in all (with adaptive
    seeds, from the first round's seeds to the most any configuration can get)."""
    low, high = (spec.adaptive.start, spec.adaptive.max) if spec.adaptive else (spec.seeds, spec.seeds)
    low, high = low * spec.num_samples, high * spec.num_samples
    lines, total_steps, total_hours = [], 0, 0.0
    for i, config in enumerate(configurations(spec)):
        flops, steps_per_batch = step_cost(config)
        resolved = resolve_config(config)
        steps = spec.epochs * (resolved["n_train"] // resolved["batch_size"]) * steps_per_batch  # Pack.steps_per_epoch
        hours = steps * flops / H100_FLOP_PER_S / 3600
        total_steps += steps
        total_hours += hours
        lines.append(
            f"    {i + 1}. {steps:,} steps x {flops / 1e9:.1f} GFLOP a seed-step: {hours:.3f} H100-hours a seed"
        )
    seeds = f"{low}" if low == high else f"{low} to {high}"
    steps_text = f"{total_steps * low:,}" + ("" if low == high else f" to {total_steps * high:,}")
    hours_text = f"{total_hours * low:.2f}" + ("" if low == high else f" to {total_hours * high:.2f}")
    head = (
        f"  cost: {steps_text} seed-steps, about {hours_text} H100-hours ({seeds} seeds a configuration; rate: {ROW})"
    )
    if spec.settle:  # the chosen seeds' extra epochs (sweeps.settle)
        from sweeps.settle import Settle

        settle = Settle.parse(spec.settle)
        extra = settle.seeds * (settle.epochs(spec.epochs) - spec.epochs) / spec.epochs
        head += (
            f"; the settledness check adds up to {round(total_steps * extra):,} seed-steps, "
            f"about {total_hours * extra:.2f} H100-hours"
        )
    return [head, *(lines if len(lines) > 1 else [])]
