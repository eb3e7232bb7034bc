"""The dry-run's cost: FLOPs per seed-step counted on shapes equal an actual step's, the benchmark's
reference model counts as benchmarks/README.md says, and the plan's totals add up."""

import re

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sweeps.cost import H100_FLOP_PER_S, flops_per_seed_step, plan_lines
from sweeps.spec import from_dict
from trainables.pack import Pack

TINY = {"model": "sps", "env": "ball", "n_train": 8, "n_val": 4, "frames": 5, "image_size": 16, "batch_size": 4}
TINY |= {"channels": [4, 8], "dec_hidden": [8], "rnn_width": 8, "rnn_min_context": 2}


@pytest.mark.parametrize("extra", [{}, {"use_rnn": False}, {"k": 2, "symmetry_combine": "compose"}])
def test_meta_count_equals_a_real_step(extra):
    config = {**TINY, **extra}
    pack = Pack({**config, "precision": "fp32", "compile": False}, [0], device="cpu")
    with FlopCounterMode(display=False) as counter:
        pack._step(torch.arange(4).unsqueeze(0))
    assert flops_per_seed_step(config) == counter.get_total_flops()


def test_the_benchmark_reference_model_counts_as_its_readme():
    probe = {"model": "sps", "env": "ball", "n_train": 32, "n_val": 32, "frames": 20, "image_size": 32}
    probe |= {"batch_size": 32, "rnn_width": 256, "z_dim": 3, "channels": [32, 64, 128], "dec_hidden": [16, 32, 64]}
    probe |= {"rnn_cell": "gru", "symmetry": "none"}
    assert flops_per_seed_step(probe) / 1e9 == pytest.approx(53.2, abs=0.05)  # "53.2 GFLOP a seed-step"


def test_plan_lines_add_up():
    raw = {"name": "t", **{k: TINY[k] for k in ("model", "env")}, "epochs": 3}
    raw |= {"data": {k: TINY[k] for k in ("n_train", "n_val", "frames", "image_size")}}
    raw |= {"params": {k: TINY[k] for k in ("batch_size", "channels", "dec_hidden", "rnn_width", "rnn_min_context")}}
    raw["params"]["k"] = {"grid": [0, 1]}
    steps = 3 * (8 // 4)
    flops = [flops_per_seed_step({**TINY, "k": k}) for k in (0, 1)]
    fixed = plan_lines(from_dict({**raw, "seeds": 5}))
    assert f"cost: {2 * steps * 5:,} seed-steps" in fixed[0]
    hours = float(re.search(r"about ([\d.]+) H100-hours", fixed[0]).group(1))
    assert hours == pytest.approx(round(5 * steps * sum(flops) / H100_FLOP_PER_S / 3600, 2), abs=0.005)
    adaptive = plan_lines(from_dict({**raw, "seeds": {"start": 4, "step": 4, "max": 12}}))
    assert f"cost: {2 * steps * 4:,} to {2 * steps * 12:,} seed-steps" in adaptive[0]
    assert len(fixed) == 3 and f"{steps:,} steps x {flops[1] / 1e9:.1f} GFLOP" in fixed[2]
    settled = plan_lines(from_dict({**raw, "seeds": 5, "settle": {"seeds": 2, "factor": 2}}))[0]
    assert f"the settledness check adds up to {2 * steps * 2:,} seed-steps" in settled  # 2 seeds x 3 more epochs


def test_note_004_specs_load_with_their_cost():
    from sweeps.spec import load

    symmetry, sizes = load("sweeps/sps_symmetry.yaml"), load("sweeps/sps_train_size.yaml")
    assert symmetry.success == {"metric": "linear_proj_mse", "below": 0.03, "also": [0.2]}
    assert (symmetry.adaptive.start, symmetry.adaptive.step, symmetry.adaptive.max) == (16, 16, 64)
    lines = plan_lines(symmetry)
    assert "16 to 64 seeds a configuration" in lines[0] and len(lines) == 1 + 4
    per_point = plan_lines(sizes)[1:]  # an equal sample budget: every size trains the same steps of one batch
    assert len(per_point) == 10 and all(" 36,000 steps x " in line for line in per_point)
