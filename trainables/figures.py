"""Pictures any model can draw of one seed (``PackedModel.artefacts``): a latent against the
world's true positions, a decoder traversal, and rows of frames (originals over reconstructions,
past / true / predicted frames). Written as PNGs with matplotlib's Agg backend."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

TRAVERSAL_SPAN, TRAVERSAL_STEPS = 2.0, 7  # decoder traversal: +-2 std of each latent dim, 7 values


def latent_plot(z: np.ndarray, positions: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Scatter of each true coordinate against its best linear fit from ``z`` (least squares with an
    intercept, over all validation frames), with R^2 per coordinate; written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = np.asarray(z, dtype=np.float64).reshape(-1, np.shape(z)[-1])
    y = np.asarray(positions, dtype=np.float64).reshape(-1, np.shape(positions)[-1])
    ok = np.isfinite(z).all(1) & np.isfinite(y).all(1)
    z, y = z[ok], y[ok]
    design = np.c_[z, np.ones(len(z))]
    fit = design @ np.linalg.lstsq(design, y, rcond=None)[0] if len(z) else y
    dims = y.shape[1]
    fig, axes = plt.subplots(1, dims, figsize=(3 * dims, 3), squeeze=False)
    for d, ax in enumerate(axes[0]):
        var = y[:, d].var() if len(y) else 0.0
        r2 = 1 - ((y[:, d] - fit[:, d]) ** 2).mean() / var if var > 0 else math.nan
        ax.scatter(y[:, d], fit[:, d], s=2, alpha=0.4)
        lo, hi = (y[:, d].min(), y[:, d].max()) if len(y) else (0, 1)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set(xlabel=f"true {'xyz'[d] if d < 3 else d}", ylabel="linear fit from z", title=f"R² = {r2:.3f}")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)


def traversal_grid(
    decode: Callable[[np.ndarray], np.ndarray],
    center: np.ndarray,
    std: np.ndarray,
    path: str | Path,
    span: float = TRAVERSAL_SPAN,
    steps: int = TRAVERSAL_STEPS,
    title: str = "",
) -> Path:
    """Decoder traversal (the SPS "evalDecoder"): row d sweeps latent d over ``center[d] +- span * std[d]``
    in ``steps`` values, the other dims held at ``center``; each cell is the decoded frame.
    ``decode(z [N, z_dim]) -> images [N, H, W, 3]`` (floats in [0, 1]); written as a PNG."""
    from matplotlib.figure import Figure

    center, std = np.asarray(center, dtype=np.float64), np.asarray(std, dtype=np.float64)
    zdim, offsets = len(center), np.linspace(-span, span, steps)
    z = np.repeat(center[None], zdim * steps, axis=0)
    for d in range(zdim):
        z[d * steps : (d + 1) * steps, d] += offsets * std[d]
    images = np.clip(np.nan_to_num(np.asarray(decode(z), dtype=np.float64)), 0, 1)
    fig = Figure(figsize=(0.9 * steps, 0.9 * zdim + 0.6))
    axes = fig.subplots(zdim, steps, squeeze=False)
    for d in range(zdim):
        for s in range(steps):
            axes[d, s].imshow(images[d * steps + s])
            axes[d, s].set_xticks([])
            axes[d, s].set_yticks([])
        axes[d, 0].set_ylabel(f"z{d}\n{center[d]:.2f}±{std[d]:.2f}", fontsize=7)
    for s in range(steps):
        axes[-1, s].set_xlabel(f"{offsets[s]:+.1f}σ", fontsize=7)
    fig.suptitle(title)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    return Path(path)


def frame_rows(rows: dict[str, np.ndarray], path: str | Path, title: str = "") -> Path:
    """Rows of frames, one row per entry of ``rows`` (label -> frames [K, 3, H, W] or [K, H, W, 3],
    floats in [0, 1], numpy or torch), e.g. originals over reconstructions, or past, true and
    predicted frames; written as a PNG."""
    from matplotlib.figure import Figure

    def images(frames) -> np.ndarray:
        a = np.asarray(frames.detach().cpu() if hasattr(frames, "detach") else frames, dtype=np.float64)
        return np.clip(np.nan_to_num(a.transpose(0, 2, 3, 1) if a.shape[1] == 3 else a), 0, 1)

    rows = {label: images(frames) for label, frames in rows.items()}
    cols = max(len(a) for a in rows.values())
    fig = Figure(figsize=(0.9 * cols + 0.8, 0.9 * len(rows) + 0.6))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for r, (label, frames) in enumerate(rows.items()):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(frames):
                ax.imshow(frames[c])
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(label, fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    return Path(path)
