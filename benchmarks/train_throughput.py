"""Seed-steps per second: seeds packed in one process against one process per seed.

One seed-step = one optimiser step of one seed on a batch of 32 sequences of 20 frames of 32 x 32
RGB, SPS reference configuration (``rnn_width`` 256, ``z_dim`` 3). In one invocation, side by side:

- the baselines, as researchers run seeds today and as one-seed fractional-GPU trials would: for
  each n in ``--separate``, n processes (spawned) of a one-seed ``Pack`` on the reference fp32
  eager path, which warm up, wait on a barrier, then time their own steps concurrently (rates
  summed; each gets ``cores // n`` threads, at least 1, as Ray gives each one-CPU trial);
- for each S in ``--sizes``, one ``Pack`` of S seeds with the speed settings asked for (default:
  the device's, see ``trainables.pack.Speed``): ``--precision``, ``--channels-last``,
  ``--compile``, ``--conv-gemm``.

Ratios are to the largest baseline (16 processes by default). ``--epoch-steps k`` makes an epoch
k steps (n_train = 32 k): a pack syncs with the host once per epoch. CUDA is used when available.

    python benchmarks/train_throughput.py [--steps 3] [--sizes 1,4,16] [--separate 1,16] [--precision bf16]
        [--compile] [--conv-gemm] [--epoch-steps 16] [--out table.md]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

from table import emit, machine  # benchmarks/table.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The SPS reference configuration; n_train = batch so that one epoch is one optimiser step.
REFERENCE = {"model": "sps", "env": "ball", "n_train": 32, "n_val": 32, "frames": 20, "image_size": 32,
             "batch_size": 32, "rnn_width": 256, "z_dim": 3}  # fmt: skip
EAGER_FP32 = {"precision": "fp32", "channels_last": False, "tf32": False, "compile": False, "conv_gemm": False}


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def timed_steps(pack, steps: int) -> float:
    """Seconds for ``steps`` optimiser steps of every seed in ``pack`` (whole epochs of one step)."""
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    start_step = pack.step
    sync()
    start = time.perf_counter()
    while pack.step - start_step < steps:
        pack.train_epoch()
    sync()
    elapsed = time.perf_counter() - start
    return elapsed * steps / (pack.step - start_step)  # in case an epoch is more than one step


def packed(seeds: int, steps: int, config: dict) -> float:
    """Seed-steps/s of one ``Pack`` of ``seeds`` seeds."""
    from trainables.pack import Pack

    pack = Pack(config, list(range(seeds)), device=device())
    pack.train_epoch()  # warm-up
    return seeds * steps / timed_steps(pack, steps)


def one_seed(seed: int, steps: int, threads: int, barrier, rates, config: dict) -> None:
    """Child process: warm up a one-seed pack, wait for the others, time ``steps`` steps."""
    import torch

    torch.set_num_threads(threads)
    from trainables.pack import Pack

    pack = Pack(config, [seed], device=device())
    pack.train_epoch()  # warm-up
    barrier.wait()
    rates[seed] = steps / timed_steps(pack, steps)


def separate(seeds: int, steps: int, config: dict) -> float:
    """Seed-steps/s summed over ``seeds`` concurrent processes of one seed each."""
    ctx = mp.get_context("spawn")
    barrier, rates = ctx.Barrier(seeds), ctx.Array("d", seeds)
    threads = max(1, (os.cpu_count() or 1) // seeds)
    procs = [ctx.Process(target=one_seed, args=(s, steps, threads, barrier, rates, config)) for s in range(seeds)]
    for p in procs:
        p.start()
    while any(p.is_alive() for p in procs):
        if any(p.exitcode for p in procs):
            barrier.abort()  # release the others waiting at the barrier
        time.sleep(0.2)
    if any(p.exitcode for p in procs):
        raise RuntimeError(f"one-seed processes failed (exit codes {[p.exitcode for p in procs]})")
    return sum(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed optimiser steps per measurement (after 1 warm-up)")
    parser.add_argument("--sizes", default="1,4,16", help="seeds per pack, comma-separated")
    parser.add_argument("--separate", default="1,16", help="one-seed processes of the fp32 eager baselines, comma-separated")
    parser.add_argument("--precision", choices=["fp32", "bf16"], help="default: the device's (bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, help="default: the device's (on CUDA)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model's losses (compiled in the warm-up)")
    parser.add_argument("--conv-gemm", action="store_true", help="convolutions as im2col + batched matmuls")
    parser.add_argument("--epoch-steps", type=int, default=1, help="optimiser steps per epoch (one host sync each)")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()

    import torch

    from trainables.pack import Speed, resolve_config

    base = {**REFERENCE, "n_train": REFERENCE["batch_size"] * args.epoch_steps}
    speed_keys = {"precision": args.precision, "channels_last": args.channels_last, "compile": args.compile or None,
                  "conv_gemm": args.conv_gemm or None}  # fmt: skip
    config = {**base, **speed_keys}
    speed = Speed.for_device(resolve_config(config), torch.device(device()))
    where = torch.cuda.get_device_name() if torch.cuda.is_available() else machine()
    baselines = {n: separate(n, args.steps, {**base, **EAGER_FP32}) for n in (int(x) for x in args.separate.split(","))}
    ref = max(baselines)
    rows = [f"| separate, {n} process{'es' if n > 1 else ''} x 1 seed, fp32 eager | {n} | {rate:.2f} | {rate / baselines[ref]:.2f}x |"
            for n, rate in baselines.items()]  # fmt: skip
    for s in (int(x) for x in args.sizes.split(",")):
        rate = packed(s, args.steps, config)
        rows.append(f"| packed, 1 process | {s} | {rate:.2f} | {rate / baselines[ref]:.2f}x |")
        print(rows[-1], file=sys.stderr, flush=True)
    emit("train throughput; SPS reference (batch 32 x 20 frames, 32x32, rnn_width 256, z_dim 3), "
         f"{args.steps} timed steps after a warm-up epoch, {args.epoch_steps} step(s) per epoch; packs: "
         f"precision {speed.precision}, channels_last {speed.channels_last}, tf32 {speed.tf32}, compile {speed.compile}, "
         f"conv_gemm {speed.conv_gemm}",
         ["setting", "seeds", "seed-steps/s", f"ratio to {ref} separate processes"], rows, args.out, where)

if __name__ == "__main__":
    main()
