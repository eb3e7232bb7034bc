"""Metrics (linear projection, PSNR, image errors) and the dataset -> tensor conversion."""

import math

import numpy as np
import pytest
import torch

from trainables.data import load_data, projection_targets, to_tensors, val_seed
from trainables.metrics import linear_projection, psnr_from_mse


def positions(n=40, t=20, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, t, d)) * [1.0, 3.0, 0.2] + [0.0, 10.0, 2.0]


def test_linear_latent_projects_almost_perfectly():
    y = positions()
    rng = np.random.default_rng(1)
    mix = np.linalg.qr(rng.normal(size=(3, 3)))[0] * [2.0, 0.5, 1.0]  # a well-conditioned linear map
    z = y @ mix + 5 + 0.01 * rng.normal(size=y.shape)  # ... of the positions, plus small noise
    out = linear_projection(z, y)
    assert out["mse"] < 0.01 and out["r2"] > 0.99
    assert linear_projection(y @ mix, y)["mse"] < 1e-12  # exact without the noise


def test_noise_latent_projects_to_one():
    y = positions()
    z = np.random.default_rng(2).normal(size=(40, 20, 3))
    out = linear_projection(z, y)
    assert 0.9 < out["mse"] < 1.15 and abs(out["r2"]) < 0.1


def test_partial_information_and_split():
    y = positions()
    z = y[..., :1] * 2.0  # only the first coordinate: 1 of 3 dims explained
    out = linear_projection(z, y, split=np.arange(20))
    assert out["mse"] == pytest.approx(2 / 3, abs=0.1)
    mask = np.zeros(40, bool)
    mask[:20] = True
    assert linear_projection(z, y, split=mask) == out
    assert linear_projection(z, y, train_frac=0.5) == out  # the default split: the first half
    with pytest.raises(ValueError):
        linear_projection(z, y, train_frac=1.0)


def test_non_finite_latent_gives_nan():
    y = positions()
    z = y.copy()
    z[3, 4, 0] = np.nan
    out = linear_projection(z, y)
    assert math.isnan(out["mse"]) and math.isnan(out["r2"])


def test_collapsed_latent_is_no_information():
    y = positions()
    out = linear_projection(np.zeros((40, 20, 3)), y)
    assert out["mse"] == pytest.approx(1.0, abs=0.15)


def test_psnr_from_mse():
    assert psnr_from_mse(0.01) == pytest.approx(20.0)
    assert psnr_from_mse(0.0) == math.inf and psnr_from_mse(1e-4) == pytest.approx(40.0)
    assert psnr_from_mse(0.25) == pytest.approx(10 * math.log10(4)) and math.isnan(psnr_from_mse(math.nan))


def synthetic(n=6, t=4, bodies=2, size=8):
    rng = np.random.default_rng(0)
    return {
        "frames": rng.integers(0, 256, size=(n, t, size, size, 3), dtype=np.uint8),
        "positions": rng.normal(size=(n, t, bodies, 3)).astype(np.float32),
    }


def test_to_tensors_layout_and_targets():
    arrays = synthetic()
    frames, rel = to_tensors(arrays, "relative")
    assert frames.shape == (6, 4, 3, 8, 8) and frames.dtype == torch.float32 and frames.is_contiguous()
    assert torch.equal(frames[2, 1, 0], torch.from_numpy(arrays["frames"][2, 1, :, :, 0]).float() / 255)
    p = arrays["positions"]
    assert np.allclose(rel.numpy(), p[:, :, 0] - p[:, :, 1])
    _, both = to_tensors(arrays, "both")
    assert both.shape == (6, 4, 6) and np.allclose(both.numpy()[..., 3:], p[:, :, 1])
    one = synthetic(bodies=1)
    assert np.allclose(projection_targets(one["positions"], "relative"), one["positions"][:, :, 0])


def test_load_data_from_envs(tmp_path):
    import envs

    config = {
        "env": "seedsweep/TwoBody-v0",
        "n_train": 6,
        "n_val": 4,
        "frames": 25,
        "image_size": 16,
        "data_seed": 3,
        "projection_target": "both",
    }
    train_x, train_y, val_x, val_y = load_data(config, cache_dir=tmp_path)
    assert train_x.shape == (6, 25, 3, 16, 16) and val_x.shape == (4, 25, 3, 16, 16)
    assert train_y.shape == (6, 25, 6) and val_y.shape == (4, 25, 6)
    assert 0 <= float(train_x.min()) and float(train_x.max()) <= 1 and float(train_x.max()) > 0.2
    table = envs.to_numpy(envs.load_or_generate("two_body", 6, 25, 3, tmp_path, image_size=16))
    assert np.allclose(train_y.numpy(), table["positions"].reshape(6, 25, 6))  # the train set is data_seed's dataset
    assert not np.allclose(val_y.numpy()[:4], train_y.numpy()[:4])  # the val set is another
    assert val_seed(3) != 3 and val_seed(3) == val_seed(3)


def test_in_sample_fit_is_the_authors_ols_on_one_set():
    """``in_sample``: fitted and scored on the same sequences, as the SPS authors; the residual variance
    of ordinary least squares with intercept (statsmodels), standardised, averaged over dimensions."""
    import statsmodels.api as sm

    y = positions()
    rng = np.random.default_rng(3)
    z = y[..., :2] @ rng.normal(size=(2, 2)) + 0.5 * rng.normal(size=(40, 20, 2))  # partly informative
    zf, yf = z.reshape(-1, 2), y.reshape(-1, 3)
    want = np.mean([sm.OLS(yf[:, d], sm.add_constant(zf)).fit().ssr / len(yf) / yf[:, d].var() for d in range(3)])
    assert linear_projection(z, y, in_sample=True)["mse"] == pytest.approx(want, rel=1e-9)
    assert linear_projection(np.zeros((40, 20, 3)), y, in_sample=True)["mse"] == pytest.approx(1.0)  # exactly
    half = np.arange(40) >= 20
    assert linear_projection(z, y, split=half, in_sample=True) == linear_projection(z[20:], y[20:], in_sample=True)
    assert linear_projection(z, y, in_sample=True)["mse"] < linear_projection(z, y)["mse"]  # held-out pays


def test_train_size_keeps_the_first_sequences_tiled(tmp_path):
    config = {"env": "ball", "n_train": 10, "n_val": 2, "frames": 4, "image_size": 16, "data_seed": 0}
    full_x, full_y, val_x, _ = load_data(config, cache_dir=tmp_path)
    x, y, val_x2, _ = load_data({**config, "train_size": 3}, cache_dir=tmp_path)
    assert x.shape == full_x.shape and torch.equal(val_x, val_x2)
    keep = torch.arange(10) % 3  # sequences 0 1 2 0 1 2 ...
    assert torch.equal(x, full_x[keep]) and torch.equal(y, full_y[keep])
    assert len(torch.unique(x.flatten(1), dim=0)) == 3
