"""SPS's linear-projection score held-out (seedsweep's metric) against in-sample (the SPS authors' fit),
on the same trained seeds: how a cut such as Dan Chin's 0.03, set on in-sample scores, reads on the
held-out metric.

Trains the quickstart's two configurations (``sweeps/quickstart.yaml``: T2R2 and none) for
``--seeds`` seeds each, one pack per configuration on one thread, and scores each seed's latent mean
on the validation set three ways (``trainables.metrics.linear_projection``):
- held-out: fitted on the first half of the validation sequences, scored on the second (the
  ``linear_proj_mse`` every sweep reports);
- in-sample, all: fitted and scored on every validation sequence (the authors' protocol);
- in-sample, scored half: fitted and scored on the second half alone (the held-out score's
  sequences without the held-out fit: the difference to held-out is the cost of fitting elsewhere).
A constant latent is the first row. Prints a markdown table, then a second one that maps cuts on the
in-sample score to the held-out score for a latent linear in the positions plus Gaussian noise (the
noise scaled by bisection until the in-sample score equals the cut), on the quickstart's validation
positions and on ``sweeps/sps_symmetry.yaml``'s (whose rule is 0.03).

    python benchmarks/sps_in_sample.py [--seeds 4] [--epochs 40] [--n-train 512]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from sweeps.spec import load
from trainables.config import resolve_config
from trainables.data import load_data
from trainables.metrics import linear_projection
from trainables.pack import Pack

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"
QUICKSTART, DECISION = SWEEPS / "quickstart.yaml", SWEEPS / "sps_symmetry.yaml"  # trained; its rule's split


def scores(z: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(held-out, in-sample on all sequences, in-sample on the scored half) MSE of z [N, T, D] -> y."""
    n = len(z)
    second = np.arange(n) >= round(n / 2)
    return (
        linear_projection(z, y)["mse"],
        linear_projection(z, y, in_sample=True)["mse"],
        linear_projection(z, y, split=second, in_sample=True)["mse"],
    )


def noisy_linear(y: np.ndarray, sd: float) -> np.ndarray:
    """A latent linear in the standardised positions y [N, T, D], plus noise of this sd (fixed draw)."""
    return (y - y.mean((0, 1))) / y.std((0, 1)) + sd * np.random.default_rng(0).normal(size=y.shape)


def calibrate(y: np.ndarray, cut: float) -> tuple[float, float]:
    """(noise sd, held-out score) of the noisy linear latent whose in-sample score is ``cut``."""
    low, high = 0.0, 10.0
    for _ in range(60):
        sd = (low + high) / 2
        low, high = (sd, high) if linear_projection(noisy_linear(y, sd), y, in_sample=True)["mse"] < cut else (low, sd)
    return sd, linear_projection(noisy_linear(y, sd), y)["mse"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--n-train", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = load(QUICKSTART)
    base = {**spec.base_config(), "n_train": args.n_train, "device": "cpu", "seed_stop": None}
    rows, start = [], time.time()
    arms = spec.swept()["symmetry"]["grid"]
    for symmetry in arms:
        pack = Pack({**base, "symmetry": symmetry}, list(range(args.seeds)), device="cpu")
        for _ in range(args.epochs):
            pack.train_epoch()
        pack.finish()
        reported = [r["linear_proj_mse"] for r in pack.evaluate()]
        y = pack.val_y.numpy()
        z = pack._in_eval_mode(pack.model.latents, pack.val_x).numpy()
        if not rows:
            rows.append(("constant latent", "-", *scores(np.zeros_like(z[0]), y)))
        for s in range(args.seeds):
            held, all_in, half_in = scores(z[s], y)
            assert abs(held - reported[s]) < 1e-6 * max(1.0, held)  # the metric the sweep reports
            rows.append((symmetry, str(s), held, all_in, half_in))
    n, t = pack.val_x.shape[:2]
    print(
        f"{args.seeds} seeds x {len(arms)} configurations, "
        f"{args.epochs} epochs x {pack.steps_per_epoch} steps, n_train {args.n_train}, n_val {n} ({n * t} frames), "
        f"{time.time() - start:.0f} s\n"
    )
    print("| symmetry | seed | held-out (seedsweep) | in-sample, all (authors) | in-sample, scored half |")
    print("|---|---|---|---|---|")
    for symmetry, seed, *values in rows:
        print(f"| {symmetry} | {seed} | " + " | ".join(f"{v:.4f}" for v in values) + " |")
    decision = load(DECISION)
    _, _, _, y_decision = load_data(resolve_config({**decision.base_config(), "n_train": 32, "k": 0}))
    splits = {"quickstart": y, "sps_symmetry": y_decision.numpy()}
    print("\n| in-sample (authors) | " + " | ".join(f"held-out, {name}'s split" for name in splits) + " |")
    print("|---|" + "---|" * len(splits))
    for cut in (0.01, 0.03, 0.1, 0.2):
        print(
            f"| {cut} | " + " | ".join(f"{calibrate(v.astype(np.float64), cut)[1]:.4f}" for v in splits.values()) + " |"
        )


if __name__ == "__main__":
    main()
