"""Seed-steps per second: seeds packed in one process against one process per seed.

One seed-step = one optimiser step of one seed on a batch of 32 sequences of 20 frames of 32 x 32
RGB, SPS reference configuration (``rnn_width`` 256, ``z_dim`` 3). ``--symmetry none`` (the default)
is the model issue 6's figures were probed with (reconstruction + prediction + KL; ~53 GFLOP a
seed-step, counted); ``T2R2`` adds SPS's two augmented RNN branches and their decoded images
(~89 GFLOP). In one invocation, side by side:

- the baselines, as researchers run seeds today and as one-seed fractional-GPU trials would: for
  each n in ``--separate``, n processes (spawned) of a one-seed ``Pack`` on the reference fp32
  eager path, which warm up, wait on a barrier, then time their own steps concurrently (rates
  summed; each gets ``cores // n`` threads, at least 1, as Ray gives each one-CPU trial);
- for each speed variant in ``--variants`` and each S in ``--sizes``, one ``Pack`` of S seeds.
  A variant is ``+``-joined words: ``auto`` (the device's defaults, ``trainables.pack.Speed``),
  ``fp32`` (the reference eager path), ``bf16``, ``gemm`` (``conv_gemm``), ``compile`` or a
  torch.compile mode (``max-autotune``, ``reduce-overhead``, ...), ``nhwc`` / ``nchw``.

Each row gives seed-steps/s, the FLOP rate it means (FLOPs of one seed-step counted by
``torch.utils.flop_counter``), the peak GPU memory, and the ratio to the largest baseline (16
processes by default). A pack that runs out of memory is a row saying so. ``--epoch-steps k``
makes an epoch k steps (n_train = 32 k): a pack syncs with the host once per epoch. Defaults
depend on the device (``CPU_DEFAULTS``, ``CUDA_DEFAULTS``): on a GPU a plain run (``make bench``)
measures issue 6's table.

    python benchmarks/train_throughput.py [--steps N] [--sizes 16,64,128] [--separate 1,16]
        [--variants fp32,auto,gemm,compile,compile+gemm] [--symmetry none] [--epoch-steps 8] [--out table.md]
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
REFERENCE = {
    "model": "sps",
    "env": "ball",
    "n_train": 32,
    "n_val": 32,
    "frames": 20,
    "image_size": 32,
    "batch_size": 32,
    "rnn_width": 256,
    "z_dim": 3,
}
# The probe model MEASUREMENTS.md's figures were taken with (``--symmetry none``): its widths are pinned so
# that the figures stay comparable when SPS's defaults move; with a symmetry, SPS's own defaults (sps_ball.yaml).
PROBE = {"channels": [32, 64, 128], "dec_hidden": [16, 32, 64], "rnn_cell": "gru"}
EAGER_FP32 = {"precision": "fp32", "channels_last": False, "tf32": False, "compile": False, "conv_gemm": False}
# What one run measures where no option says otherwise: on CUDA, issue 6's table.
CPU_DEFAULTS = {"steps": 3, "sizes": "1,4,16", "variants": "auto", "epoch_steps": 1}
CUDA_DEFAULTS = {"steps": 16, "sizes": "16,64,128", "variants": "fp32,auto,gemm,compile,compile+gemm", "epoch_steps": 8}
WORDS = {
    "auto": {},
    "fp32": EAGER_FP32,
    "bf16": {"precision": "bf16"},
    "gemm": {"conv_gemm": True},
    "compile": {"compile": True},
    "nhwc": {"channels_last": True},
    "nchw": {"channels_last": False},
}


def variant(name: str) -> dict:
    """``"compile+gemm"`` -> the speed keys it sets (later words win)."""
    from trainables.config import COMPILE_MODES

    keys = {}
    for word in name.split("+"):
        if word not in WORDS and word not in COMPILE_MODES:
            raise SystemExit(f"unknown variant word '{word}' in '{name}'; known: {', '.join([*WORDS, *COMPILE_MODES])}")
        keys.update(WORDS.get(word, {"compile": word}))
    return keys


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


def packed(seeds: int, steps: int, config: dict) -> tuple[float, float | None]:
    """(seed-steps/s, peak GiB on CUDA or None) of one ``Pack`` of ``seeds`` seeds."""
    import torch

    from trainables.pack import Pack

    torch._dynamo.reset()  # a fresh compile per pack: no recompile limit reached, no stale graphs
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    pack = Pack(config, list(range(seeds)), device=device())
    pack.train_epoch()  # warm-up (compilation, cuDNN autotuning, allocator)
    rate = seeds * steps / timed_steps(pack, steps)
    return rate, torch.cuda.max_memory_allocated() / 2**30 if cuda else None


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
    parser.add_argument(
        "--steps", type=int, help="timed optimiser steps per measurement, after a warm-up epoch (CPU 3, CUDA 16)"
    )
    parser.add_argument("--sizes", help="seeds per pack, comma-separated (CPU 1,4,16; CUDA 16,64,128)")
    parser.add_argument(
        "--separate", default="1,16", help="one-seed processes of the fp32 eager baselines, comma-separated"
    )
    parser.add_argument(
        "--variants",
        help=f"speed variants of the packs, comma-separated, see above (CPU auto; CUDA {CUDA_DEFAULTS['variants']})",
    )
    parser.add_argument(
        "--symmetry", default="none", help="SPS symmetry of the measured model (none: issue 6's probe; T2R2: SPS's)"
    )
    parser.add_argument("--epoch-steps", type=int, help="optimiser steps per epoch, one host sync each (CPU 1, CUDA 8)")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    import torch

    defaults = CUDA_DEFAULTS if torch.cuda.is_available() else CPU_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    variants = {name: variant(name) for name in args.variants.split(",")}

    from sweeps.cost import flops_per_seed_step
    from trainables.config import resolve_config
    from trainables.pack import Speed

    base = {
        **REFERENCE,
        **(PROBE if args.symmetry == "none" else {}),
        "symmetry": args.symmetry,
        "n_train": REFERENCE["batch_size"] * args.epoch_steps,
    }
    gflop = flops_per_seed_step(base) / 1e9  # sweeps.cost: counted on the meta device
    where = torch.cuda.get_device_name() if torch.cuda.is_available() else machine()
    baselines = {n: separate(n, args.steps, {**base, **EAGER_FP32}) for n in (int(x) for x in args.separate.split(","))}
    ref = max(baselines)

    def row(setting, seeds, rate, gib):
        return (
            f"| {setting} | {seeds} | {rate:.2f} | {rate * gflop / 1e3:.2f} | "  # noqa: E731
            f"{'-' if gib is None else f'{gib:.1f}'} | {rate / baselines[ref]:.2f}x |"
        )

    rows = [
        row(f"separate, {n} process{'es' if n > 1 else ''} x 1 seed, fp32 eager", n, rate, None)
        for n, rate in baselines.items()
    ]
    for name, keys in variants.items():
        speed = Speed.for_device(resolve_config({**base, **keys}), torch.device(device()))
        setting = f"packed {name}: {speed.precision}" + "".join(
            f", {k}" + (f" {v}" if isinstance(v, str) else "") for k, v in vars(speed).items() if k != "precision" and v
        )
        for s in (int(x) for x in args.sizes.split(",")):
            try:
                rows.append(row(setting, s, *packed(s, args.steps, {**base, **keys})))
            except torch.OutOfMemoryError:
                rows.append(f"| {setting} | {s} | out of memory | | | |")
            print(rows[-1], file=sys.stderr, flush=True)
    model = "probe: channels 32/64/128, GRU" if args.symmetry == "none" else "SPS defaults"
    emit(
        f"train throughput; SPS {model} (batch 32 x 20 frames, 32x32, rnn_width 256, z_dim 3, symmetry {args.symmetry}: "
        f"{gflop:.1f} GFLOP a seed-step), {args.steps} timed steps after a warm-up epoch, {args.epoch_steps} step(s) per epoch",
        [
            "setting",
            "seeds",
            "seed-steps/s",
            "TFLOP/s",
            "peak GiB",
            f"ratio to {ref} separate process{'es' if ref > 1 else ''}",
        ],
        rows,
        args.out,
        where,
    )


if __name__ == "__main__":
    main()
