"""Evaluation metrics the models share: linear projection of latents onto true positions, PSNR."""

from __future__ import annotations

import math

import numpy as np


def linear_projection(z, target, train_frac: float = 0.5, split=None, in_sample: bool = False) -> dict[str, float]:
    """How linearly ``z`` encodes ``target``: least squares (with intercept) of the targets on z,
    fitted on one set of sequences and scored on the others.

    z [N, T, Dz] (or [N, Dz]), target [N, T, D] (or [N, D]); N sequences. ``split`` picks the
    fitting sequences (indices or a boolean mask); by default the first ``round(train_frac * N)``.
    Targets are standardised per dimension with the fitting set's mean and std, so ``mse`` (held-out,
    averaged over dimensions) is 0 for a perfect latent, and for one with no information the scored
    set's mean squared deviation from the fitting set's mean: about 1 on large sets, 1.52 on the SPS
    quickstart's 64 sequences (``SPS.baselines``' constant latent);
    ``r2`` is the held-out R^2 averaged over dimensions. NaN if z is not finite.
    ``in_sample``: fit and score on the same sequences (``split``'s, or all of them), as the SPS
    authors' evaluation does (their fit and report use one set); then a constant latent scores exactly 1."""
    z, y = np.asarray(z, np.float64), np.asarray(target, np.float64)
    if z.ndim == 2:
        z, y = z[:, None], y[:, None]
    n = len(z)
    if split is None:
        fit = np.full(n, True) if in_sample else np.arange(n) < round(train_frac * n)
    else:
        split = np.asarray(split)
        fit = split if split.dtype == bool else np.isin(np.arange(n), split)
    if not fit.any() or (fit.all() and not in_sample):
        raise ValueError(f"the split must leave sequences on both sides (N={n}, fitting {int(fit.sum())})")
    scored = fit if in_sample else ~fit
    zf, yf = z[fit].reshape(-1, z.shape[-1]), y[fit].reshape(-1, y.shape[-1])
    zt, yt = z[scored].reshape(-1, z.shape[-1]), y[scored].reshape(-1, y.shape[-1])
    if not (np.isfinite(zf).all() and np.isfinite(zt).all()):
        return {"mse": math.nan, "r2": math.nan}
    mean, std = yf.mean(0), yf.std(0)
    std[std == 0] = 1.0
    yf, yt = (yf - mean) / std, (yt - mean) / std
    z_mean, z_std = zf.mean(0), zf.std(0)  # conditioning only: the fit is invariant to it
    z_std[z_std == 0] = 1.0
    design = lambda a: np.c_[(a - z_mean) / z_std, np.ones(len(a))]  # noqa: E731
    coef = np.linalg.lstsq(design(zf), yf, rcond=None)[0]
    err = ((design(zt) @ coef - yt) ** 2).mean(0)
    var = yt.var(0)
    r2 = 1 - err[var > 0] / var[var > 0]
    return {"mse": float(err.mean()), "r2": float(r2.mean()) if len(r2) else math.nan}


def psnr_from_mse(value: float, max_value: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB for a mean squared error on images in [0, max_value]."""
    if not value > 0:
        return math.inf if value == 0 else math.nan
    return 10 * math.log10(max_value**2 / value)
