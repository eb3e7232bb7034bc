"""Seconds from an MLflow SQLite store of 10,000 seed runs to the success table.

Builds a synthetic sweep in the trainable's layout (100 configurations x 100 seeds: a parent run
per configuration, a child run per seed with 10 epochs of 6 metrics, params and tags, batched with
``log_batch``), caches it under the temp dir (building takes a few minutes; later runs reuse it),
then times ``load_runs`` + ``success_table``: best of ``--repeats`` in one process, and once in a
fresh process including imports (what ``seedsweep analyze`` pays). Target: <= 10 s on 2 cores.

    python benchmarks/analysis_load.py [--configs 100] [--seeds 100] [--repeats 3] [--out table.md]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from table import emit  # benchmarks/table.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SWEEP = "bench"
METRICS = ("linear_proj_mse", "linear_proj_r2", "recon_mse", "pred_mse", "psnr", "loss")
STATUSES = ("finished",) * 90 + ("diverged",) * 4 + ("pruned",) * 6


def build(path: Path, configs: int, seeds: int, epochs: int = 10) -> None:
    """Write the synthetic sweep into a new SQLite store at ``path`` (via a temporary file)."""
    import logging

    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    client = MlflowClient(f"sqlite:///{partial}")
    exp = client.create_experiment(SWEEP, artifact_location=(path.parent / "artifacts").as_uri())
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for c in range(configs):
        config = {
            "model": "sps",
            "env": "ball",
            "lr": f"{10 ** rng.uniform(-4, -2):.6g}",
            "symmetry": ("T2R2", "none")[c % 2],
            "rnn_width": str(32 * (1 + c % 4)),
            "kl_weight": "0.001",
            "epochs": str(epochs),
            "success.metric": "linear_proj_mse",
            "success.below": "0.2",
        }
        params = [Param(k, v) for k, v in config.items()]
        tags = {"sweep": SWEEP, "config_id": f"c{c:03d}", "trial_id": f"trial_{c:05d}"}
        parent = client.create_run(
            exp, tags={**tags, "seedsweep.kind": "config"}, run_name=tags["config_id"]
        ).info.run_id
        client.log_batch(parent, params=params)
        rate = rng.uniform(0.05, 0.6)
        for s in range(seeds):
            status = STATUSES[rng.integers(len(STATUSES))]
            final = rng.uniform(0.02, 0.2) if rng.random() < rate else rng.uniform(0.2, 1.0)
            curve = np.linspace(1.0, final, epochs) if status != "diverged" else np.append(np.ones(epochs - 1), np.nan)
            curve = curve[: epochs // 2] if status == "pruned" else curve
            run = client.create_run(
                exp,
                run_name=f"{tags['config_id']}/{s}",
                tags={
                    **tags,
                    "seedsweep.kind": "seed",
                    "mlflow.parentRunId": parent,
                    "seed": str(s),
                    "status": status,
                    "success": str(status == "finished" and final < 0.2).lower(),
                },
            ).info.run_id
            metrics = [Metric(m, float(v), 0, e) for e, v in enumerate(curve) for m in METRICS]
            client.log_batch(run, metrics=metrics, params=params + [Param("seed", str(s))])
            client.set_terminated(run)
        client.set_terminated(parent)
        done = (c + 1) * seeds
        elapsed = time.perf_counter() - start
        print(f"\rbuilding {path.name}: {done:,}/{configs * seeds:,} runs, {elapsed:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    partial.rename(path)


def load_and_table(uri: str) -> tuple[float, int]:
    from analysis.runs import load_runs
    from analysis.success import success_table

    start = time.perf_counter()
    runs = load_runs(uri, SWEEP)
    success_table(runs)
    return time.perf_counter() - start, len(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--cache", default=os.path.join(tempfile.gettempdir(), "seedsweep-bench"), help="where the store is kept"
    )
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()

    path = Path(args.cache) / f"analysis_load_{args.configs}x{args.seeds}_v1.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        build(path, args.configs, args.seeds)
    uri = f"sqlite:///{path}"
    code = (
        "import time; t = time.perf_counter(); from analysis_load import load_and_table; "
        f"load_and_table({uri!r}); print(time.perf_counter() - t)"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT / "benchmarks", capture_output=True, text=True, check=True
    )
    cold = float(fresh.stdout.split()[-1])
    times, runs = zip(*(load_and_table(uri) for _ in range(args.repeats)))
    emit(
        f"analysis load; MLflow SQLite store, {args.configs} configurations x {args.seeds} seeds",
        [
            "seed runs",
            f"load_runs + success_table, best of {args.repeats} (s)",
            "fresh process incl. imports (s)",
            "runs/s",
        ],
        [f"| {runs[0]:,} | {min(times):.2f} | {cold:.2f} | {runs[0] / min(times):,.0f} |"],
        args.out,
    )


if __name__ == "__main__":
    main()
