"""Frames per second of ``envs.generate`` against stepping the gymnasium env frame by frame.

Both make the same data (20-frame free-motion sequences at 32 x 32, one trajectory per reset
seed), side by side in one run. Prints a markdown table; ``--out FILE`` also writes it.

    python benchmarks/envs_throughput.py [--n 10000] [--loop-n 200] [--out table.md]
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
from table import emit  # benchmarks/table.py

import envs


def batch_fps(env_id: str, n: int, frames: int, repeats: int) -> float:
    envs.generate(env_id, min(n, 256), frames, seed=123)  # warm-up
    best = np.inf
    for r in range(repeats):
        start = time.perf_counter()
        envs.generate(env_id, n, frames, seed=r)
        best = min(best, time.perf_counter() - start)
    return n * frames / best


def loop_fps(env_id: str, n: int, frames: int) -> float:
    env = gym.make(env_id, frames=frames)
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    start = time.perf_counter()
    for seed in envs.trajectory_seeds(0, n):
        env.reset(seed=seed)
        for _ in range(frames - 1):
            env.step(zero)
    return n * frames / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="trajectories per batch generation")
    parser.add_argument("--loop-n", type=int, default=200, help="trajectories stepped through the env")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()

    rows = []
    for name, env_id in envs.ENV_IDS.items():
        batch = batch_fps(env_id, args.n, args.frames, args.repeats)
        loop = loop_fps(env_id, args.loop_n, args.frames)
        rows.append(f"| {name} | {batch:,.0f} | {loop:,.0f} | {batch / loop:.0f}x |")
    emit(
        f"envs throughput; 32x32 frames, {args.frames}-frame sequences",
        ["env", "envs.generate frames/s", "env.step loop frames/s", "ratio"],
        rows,
        args.out,
    )


if __name__ == "__main__":
    main()
