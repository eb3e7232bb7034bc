"""Trivial baselines (``PackedModel.baselines``, ``trainables.baselines``): each family's are scored as its
own ``evaluate`` scores a seed (the baseline figures evaluate logs agree with them), the hand code and the
constant latent against brute force, the constant-velocity predictor on a ball that moves at constant
velocity, the bootstrap interval's width against the textbook one, and the lines and warnings built
on them."""

import math

import numpy as np
import pytest
import torch

from trainables import baselines
from trainables.baselines import Score, against, as_metrics, estimate, from_metrics, halves_resample, meeting
from trainables.data import load_data
from trainables.metrics import psnr_from_mse
from trainables.models import MODELS, metric_names
from trainables.models.frames import centroid, constant_velocity
from trainables.models.hand_code import image_code
from trainables.pack import Pack
from trainables.rule import SuccessRule

NAMES = sorted(MODELS)


def tiny(name: str) -> dict:
    return {"model": name, "env": "ball", "n_train": 32, "n_val": 16, **MODELS[name][1].test_sizes}


# evaluate's own baseline figures (per seed, the same for all) -> (baseline, metric) they must equal
FROM_EVALUATE = {
    "interp_transformer": {
        "psnr_blend": ("blend", "psnr"),
        "psnr_copy": ("copy", "psnr"),
        "psnr_black": ("black", "psnr"),
        "centroid_error_blend": ("blend", "centroid_error"),
    },
    "causal_ae3d": {
        "mean_frame_mse": ("mean_frame", "straight_mse"),
        "copy_last_mse": ("copy_last", "straight_mse"),
        "black_mse": ("black", "straight_mse"),
    },
    "stacked_ae": {"mean_frame_mse": ("mean_frame", "straight_mse")},
    "st_transformer": {
        "copy_last_h1_mse": ("copy_last", "pred_h1_mse"),
        "copy_last_h4_mse": ("copy_last", "pred_h4_mse"),
        "copy_centroid_h1_px": ("copy_last", "centroid_h1_px"),
    },
}


@pytest.mark.parametrize("name", NAMES)
def test_each_family_scores_its_baselines_as_evaluate_scores_a_seed(name):
    pack = Pack(tiny(name), [0], device="cpu")
    found = type(pack.model).baselines(pack.cfg, pack.val_x, pack.val_y)
    declared = set(metric_names(type(pack.model)))
    for scores in found.values():
        assert set(scores) <= declared and all(isinstance(v, float) for v in scores.values())
    if name == "tiny":
        return
    assert found, f"{name} declares no trivial baseline"
    result = pack.evaluate()[0]
    for metric, (baseline, their) in FROM_EVALUATE.get(name, {}).items():
        assert found[baseline][their] == pytest.approx(result[metric], rel=1e-5), metric
    if name == "video_predictor":  # copy-last's MSE and centroid distance are evaluate's denominators
        assert found["copy_last"]["mse"] == pytest.approx(result["mse"] / result["copy_ratio"], rel=1e-5)
        assert found["copy_last"]["centroid_h1"] == pytest.approx(result["centroid_h1"] / result["centroid_ratio"])
        assert found["copy_last"]["copy_ratio"] == pytest.approx(1.0) == found["copy_last"]["centroid_ratio"]
    if name == "vae":  # the mean frame's MSE is nmse's denominator
        variance = 10 ** (-result["psnr"] / 10) / result["nmse"]
        assert found["mean_frame"]["psnr"] == pytest.approx(psnr_from_mse(variance), rel=1e-5)
        assert found["mean_frame"]["nmse"] == pytest.approx(1.0) and found["black"]["fg_nmse"] == pytest.approx(1.0)


def test_sps_constant_latent_scores_the_scored_halfs_deviation_from_the_fitting_halfs_mean():
    _, _, x, y = load_data({**tiny("sps"), "n_val": 24, "frames": 6, "image_size": 16, "data_seed": 3})
    found = MODELS["sps"][1].baselines(None, x, y)
    fit, scored = y[:12].reshape(-1, 3).double(), y[12:].reshape(-1, 3).double()
    brute = (((scored - fit.mean(0)) / fit.std(0, correction=0)) ** 2).mean()
    assert found["constant"]["linear_proj_mse"] == pytest.approx(float(brute))
    assert found["hand_code"]["linear_proj_mse"] < 0.5 < found["constant"]["linear_proj_mse"]


def disc(rows: int, cols: int, size: int = 16, r: float = 2.0) -> torch.Tensor:
    """A green disc of radius r centred on pixel (rows, cols): [3, size, size]."""
    i = torch.arange(size, dtype=torch.float32)
    inside = ((i[:, None] - rows) ** 2 + (i[None, :] - cols) ** 2 <= r * r).float()
    return torch.stack([0.1 * inside, inside, 0.2 * inside])


def test_hand_code_reads_the_centroid_and_size_of_the_ball():
    x = torch.stack([torch.stack([disc(4, 5), disc(8, 9, r=3.0), disc(11, 3)])])  # [1, 3, 3, H, W]
    code = image_code(x)[0]
    assert code[:, 0].tolist() == pytest.approx([4, 8, 11]) and code[:, 1].tolist() == pytest.approx([5, 9, 3])
    assert code[1, 2] > code[0, 2] == pytest.approx(code[2, 2])  # the bigger disc has the larger sqrt(mass)


def test_constant_velocity_predicts_a_ball_that_keeps_its_velocity():
    path = [(2, 3), (4, 4), (6, 5), (8, 6), (10, 7)]  # two rows and one column per frame
    frames = torch.stack([disc(r, c) for r, c in path])
    pred = constant_velocity(frames[0], frames[1], 3)  # from frames 0 and 1: frames 2, 3, 4
    assert torch.allclose(pred, frames[2:])
    assert torch.allclose(centroid(pred), centroid(frames[2:]))


def test_bootstrap_keeps_the_halves_and_its_interval_is_the_textbook_one():
    idx = halves_resample(10, np.random.default_rng(0))
    assert (idx[:5] < 5).all() and (idx[5:] >= 5).all()

    class Mean:  # a "family" whose one baseline scores the mean of the targets
        @staticmethod
        def baselines(cfg, x, y):
            return {"mean": {"m": float(y.double().mean())}}

    y = torch.as_tensor(np.random.default_rng(1).normal(size=(400, 1, 1)))
    (score,) = estimate(Mean, None, torch.zeros(400, 1), y, resamples=1000)
    assert score.value == pytest.approx(float(y.mean()))
    width, textbook = score.high - score.low, 2 * 1.96 * float(y.std()) / math.sqrt(400)
    assert width == pytest.approx(textbook, rel=0.15)


def test_scores_round_trip_as_metrics_and_the_rule_names_the_baselines_that_meet_it():
    scores = [
        Score("hand_code", "linear_proj_mse", 0.177, 0.12, 0.25),
        Score("constant", "linear_proj_mse", 0.93, 0.8, 1.1),
    ]
    assert from_metrics({**as_metrics(scores), "linear_proj_mse": 0.5}) == sorted(scores, key=lambda s: s.baseline)
    loose, strict = (
        SuccessRule.parse({"metric": "linear_proj_mse", "below": 0.2}),
        SuccessRule.parse({"metric": "linear_proj_mse", "below": 0.03, "also": [0.2]}),
    )
    assert [s.baseline for s in meeting(scores, loose)] == ["hand_code"] and not meeting(scores, strict)
    assert "MEETS the rule" in against(scores, loose)[0] and "fails the rule" in against(scores, loose)[1]
    assert "meets below 0.2 (also reported)" in against(scores, strict)[0]
    assert baselines.PREFIX == "baseline"


def test_dry_run_warns_when_a_baseline_meets_the_rule_and_not_otherwise():
    from sweeps.baseline_check import check
    from sweeps.spec import from_dict

    spec = {
        "name": "b",
        "model": "sps",
        "data": {"n_train": 32, "n_val": 24, "frames": 6, "image_size": 16, "data_seed": 0, "scene": "plain"},
        "params": {"channels": [4, 8], "k": {"grid": [0, 1]}},
    }
    lines, warnings = check(from_dict({**spec, "success": {"metric": "linear_proj_mse", "below": 0.9}}))
    assert lines[0].startswith("    every configuration: baseline hand_code: linear_proj_mse")  # k does not move them
    assert len(warnings) == 1 and "the trivial baseline hand_code scores linear_proj_mse" in warnings[0]
    lines, warnings = check(from_dict({**spec, "success": {"metric": "linear_proj_mse", "below": 0.001}}))
    assert not warnings and "fails the rule" in lines[0]
