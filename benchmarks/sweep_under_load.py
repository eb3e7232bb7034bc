"""A tiny sweep alone and beside busy processes: how much the sweep's machinery (a trial's start-up,
each epoch's report and checkpoint, the tracking writes, the driver's loop) slows down on a shared,
contended machine, where the training itself is a small share.

    .venv/bin/python benchmarks/sweep_under_load.py [--busy 2] [--repeats 1]

The sweep is ``tests/test_sweep.py``'s Optuna test (3 Optuna trials of one tiny SPS seed, 2 epochs,
one trial at a time, a checkpoint every epoch) through the ``seedsweep`` CLI with a fresh store.
Each row: the CLI's wall time, the first trial's start (sweep start to its first report), and the
median time between reports inside a trial (``time_this_iter_s``: training, evaluation, MLflow
flush, checkpoint, and Tune's round trip). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SPEC = {
    "name": "tpe",
    "model": "sps",
    "env": "ball",
    "data": {"n_train": 32, "n_val": 16, "frames": 6, "image_size": 16, "data_seed": 0},
    "params": {
        "symmetry": {"choice": ["none", "T2R2"]},
        "lr": {"loguniform": [1e-4, 1e-2]},
        "channels": [4, 8],
        "dec_hidden": [8],
        "rnn_width": 8,
        "batch_size": 16,
        "rnn_min_context": 2,
    },
    "searcher": "optuna",
    "num_samples": 3,
    "seeds": 1,
    "epochs": 2,
    "max_concurrent": 1,
    "checkpoint_every": 1,
    "resources": {"cpu": 1, "gpu": 0},
    "success": {"metric": "linear_proj_mse", "below": 0.9},
}


def spin() -> None:
    while True:
        pass


def sweep(cache: Path) -> dict:
    """One run of the sweep in a fresh folder: wall time, first report, median time between reports."""
    with tempfile.TemporaryDirectory(prefix="seedsweep-load-") as folder:
        path = Path(folder) / "tpe.yaml"
        path.write_text(yaml.safe_dump(SPEC))
        start = time.time()
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "seedsweep"), "run", str(path)],
            cwd=folder,
            env={**os.environ, "SEEDSWEEP_CACHE": str(cache)},
            capture_output=True,
            text=True,
        )
        wall = time.time() - start
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        results = [
            json.loads(line)
            for f in (Path(folder) / "ray_results" / "tpe").glob("train_*/result.json")
            for line in f.read_text().splitlines()
        ]
    first = min(r["timestamp"] for r in results if r["training_iteration"] == 1) - start
    between = statistics.median(r["time_this_iter_s"] for r in results if r["training_iteration"] > 1)
    return {"wall": wall, "first": first, "between": between}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=2, help="busy-loop processes beside the loaded run (default 2)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each arm, alternated (default 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="seedsweep-load-cache-") as cache:
        sweep(Path(cache))  # the dataset generated once, outside the timings
        rows = []
        for _ in range(args.repeats):
            rows.append(("alone", sweep(Path(cache))))
            loops = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.busy)]
            for p in loops:
                p.start()
            try:
                rows.append((f"beside {args.busy} busy loops", sweep(Path(cache))))
            finally:
                for p in loops:
                    p.kill()
    print("| arm | wall (s) | first report (s) | between reports (s) |")
    print("|---|---|---|---|")
    for arm, r in rows:
        print(f"| {arm} | {r['wall']:.1f} | {r['first']:.1f} | {r['between']:.2f} |")
    alone = statistics.median(r["wall"] for a, r in rows if a == "alone")
    loaded = statistics.median(r["wall"] for a, r in rows if a != "alone")
    print(f"\nloaded / alone wall: {loaded / alone:.2f}x")


if __name__ == "__main__":
    main()
