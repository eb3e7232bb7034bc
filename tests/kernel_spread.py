"""How far the tests' compared numbers move with the CPU kernels: the measurement behind the tolerances
in ``tests/tolerances.py``.

    .venv/bin/python tests/kernel_spread.py            # every kernel setting, a markdown table

Each setting runs in its own process with ``ATEN_CPU_CAPABILITY`` (ATen's vectorised kernels:
default = no SIMD, avx2, avx512) and/or ``ONEDNN_MAX_CPU_ISA`` (oneDNN's convolutions: SSE41 ... ALL).
In each, the comparisons the tests make are computed as the largest relative difference over the
compared numbers (``|a - b| / max(|b|, floor)``, the floor keeping numbers near zero from dividing by
nothing: r2 near 0 is compared on the scale of 1, as its error is the MSE's relative error):

- ``golden``: SPS's golden run (tests/golden/sps.json, written on another CPU) against this run;
- ``golden_restore``: the golden run finished from its epoch-2 checkpoint, against the same;
- ``packed_alone``: seed 7 packed with 3 and 11 against seed 7 alone (3 epochs);
- ``stopped_unstopped``: the seeds that finish in a pack with seed_stop against the same seeds without it;
- ``shrunk_full``: every family's seeds 1, 2 after seed 0 left the pack, against the full pack;
- ``teeth``: the golden run with the z-prediction loss weight 1% higher, against the golden numbers
  (what a tolerance must stay well below, so the golden still catches a changed loss).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SETTINGS = [  # (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA); None: the CPU's best
    (None, None),
    ("default", None),
    ("avx2", None),
    ("avx512", None),
    (None, "SSE41"),
    ("default", "SSE41"),
    (None, "AVX2"),
]
FLOOR = 1.0  # numbers below this in size are compared absolutely (r2, losses near 0)


def deviation(a, b) -> float:
    """The largest ``|a - b| / max(|b|, FLOOR)`` over matching floats of two results/losses."""
    if isinstance(b, dict):
        return max((deviation(a[k], v) for k, v in b.items()), default=0.0)
    if isinstance(b, (list, tuple)):
        return max((deviation(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    if isinstance(b, float) and math.isfinite(b):
        return abs(a - b) / max(abs(b), FLOOR)
    return 0.0


def measure() -> dict[str, float]:
    import torch

    sys.path.insert(0, str(HERE))
    from tiny_sps import TINY

    from trainables import Pack, fit
    from trainables.models import MODELS

    torch.set_num_threads(1)
    golden = json.loads((HERE / "golden" / "sps.json").read_text())
    numbers = {k: v for k, v in golden.items() if k in ("losses", "results")}

    def golden_run(config, restore=False):
        pack = Pack(config, golden["seeds"], device="cpu")
        start = 0
        if restore:
            pack.load_state_dict(torch.load(HERE / "golden" / "sps_pack.pt", weights_only=False))
            start = golden["checkpoint_epoch"]
        losses = [pack.train_epoch() for _ in range(start, golden["epochs"])]
        pack.finish()
        return {"losses": losses, "results": pack.evaluate()}, start

    out = {}
    run, _ = golden_run(golden["config"])
    out["golden"] = deviation(run, numbers)
    run, start = golden_run(golden["config"], restore=True)
    out["golden_restore"] = deviation(run, {"losses": numbers["losses"][start:], "results": numbers["results"]})
    run, _ = golden_run({**golden["config"], "z_loss_weight": golden["config"]["z_loss_weight"] * 1.01})
    out["teeth"] = deviation(run, numbers)

    packed, alone = Pack(TINY, [3, 7, 11], device="cpu"), Pack(TINY, [7], device="cpu")
    dev = 0.0
    for _ in range(3):
        a, b = packed.train_epoch(), alone.train_epoch()
        dev = max(dev, deviation({t: v[1] for t, v in a.items()}, {t: v[0] for t, v in b.items()}))
    out["packed_alone"] = max(dev, deviation(packed.evaluate()[1], alone.evaluate()[0]))

    config = {**TINY, "n_train": 64, "success": {"metric": "linear_proj_mse", "below": 0.5}}
    stop = {"metric": "linear_proj_mse", "above": 0.5, "from_epoch": 3, "audit": 0.25}
    plain, stopped = fit(config, range(8), 8, "cpu"), fit({**config, "seed_stop": stop}, range(8), 8, "cpu")
    kept = [(b, a) for a, b in zip(plain, stopped) if b["status"] == "finished"]
    out["stopped_unstopped"] = max(deviation(b, a) for b, a in kept)

    dev = 0.0
    for name, (_, model_cls) in sorted(MODELS.items()):
        tiny = {"model": name, "env": "ball", "n_train": 32, "n_val": 16, **model_cls.test_sizes}
        full, cut = Pack(tiny, [0, 1, 2], device="cpu"), Pack(tiny, [0, 1, 2], device="cpu")
        full.train_epoch()
        cut.train_epoch()
        cut.stopped[0] = {**cut.evaluate()[0], "status": "stopped", "success": False, "stopped_epoch": 1}
        cut._shrink(cut.active)
        a, b = full.train_epoch(), cut.train_epoch()
        dev = max(dev, deviation({t: v[1:] for t, v in b.items()}, {t: v[1:] for t, v in a.items()}))
        dev = max(dev, deviation(cut.evaluate()[1:], full.evaluate()[1:]))
    out["shrunk_full"] = dev
    return out


def main() -> None:
    if "--one" in sys.argv:
        print(json.dumps(measure()))
        return
    rows = {}
    for aten, onednn in SETTINGS:
        env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
        env.update({k: v for k, v in (("ATEN_CPU_CAPABILITY", aten), ("ONEDNN_MAX_CPU_ISA", onednn)) if v})
        proc = subprocess.run(
            [sys.executable, __file__, "--one"], env=env, capture_output=True, text=True, cwd=HERE.parent
        )
        label = f"ATen {aten or 'best'}, oneDNN {onednn or 'best'}"
        rows[label] = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
        print(label, rows[label] or proc.stderr[-2000:], file=sys.stderr, flush=True)
    keys = next(r for r in rows.values() if r).keys()
    print("| setting | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for label, row in rows.items():
        print(f"| {label} | " + " | ".join(f"{row[k]:.1e}" if row else "failed" for k in keys) + " |")
    print("| **max** | " + " | ".join(f"{max(r[k] for r in rows.values() if r):.1e}" for k in keys) + " |")


if __name__ == "__main__":
    main()
