"""What stopping failed seeds saves, and what it costs in honesty: the quickstart's packs trained with
and without ``seed_stop``, side by side in one run.

Each configuration of ``sweeps/quickstart.yaml`` (T2R2 and none, 8 seeds) is trained as one pack in
its own process (as a Ray trial would be, one thread each), evaluating every epoch as the sweep
does: first without stopping (the reference: every seed's curve and final outcome), then with
``seed_stop``. The rule is ``--rule`` (JSON) or, by default, the one ``analysis.seed_stop.suggest``
finds on the reference arm's curves of both configurations (so chosen on the same seeds: its false
stops are optimistic, which is what the audit is for). Rows: per configuration and arm, k/n with
Clopper-Pearson 95%, the corrected 95% interval (stop arm), seeds stopped / audited / false stops
seen by the audit, the true false stops (stopped seeds that succeed in the reference arm), the
seed-steps trained, wall and CPU (user + sys) seconds of the training loops (data loading and pack
construction not timed); the seeds that ran to the end in both arms
must agree (max relative difference of the final metric).

    python benchmarks/seed_stopping.py [--epochs 40] [--n-train 128] [--seeds 8] [--rule JSON] [--audit 0.25]

The default n_train 128 (320 steps, a quarter of the quickstart's) keeps ``make bench`` to minutes;
``--n-train 512`` is the quickstart itself.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from table import emit  # benchmarks/table.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def configurations(args) -> list[tuple[str, dict]]:
    """(label, model config) of each grid point of the quickstart spec, with the sizes asked for."""
    from sweeps.spec import load

    spec = load(ROOT / "sweeps" / "quickstart.yaml")
    # the spec's own seed_stop left out: the arms add theirs (none, or the rule under test)
    base = {**spec.base_config(), "n_train": args.n_train, "device": "cpu", "seed_stop": None}
    out = []
    for name, space in spec.swept().items():
        for value in space["grid"]:
            out.append((f"{name}={value}", {**base, name: value}))
    return out


def train(label: str, config: dict, seeds: int, epochs: int) -> dict:
    """One pack, one thread, evaluated every epoch (``Pack.stop_seeds`` applies the config's rule):
    per-seed curves of the rule metric, final results, seed-steps, wall and CPU seconds."""
    import torch

    from trainables import Pack

    torch.set_num_threads(1)
    pack = Pack(config, list(range(seeds)))  # data from the cache main() filled: not timed
    before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    metric = pack.config["success"]["metric"]
    steps = pack.steps_per_epoch
    curves = {s: [] for s in range(seeds)}
    seed_steps = 0
    for epoch in range(1, epochs + 1):
        seed_steps += len(pack.active) * steps
        pack.train_epoch()
        if epoch == epochs:
            pack.finish()
        results = pack.stop_seeds(pack.evaluate())
        if epoch % 10 == 0:
            print(
                f"{label}{' seed_stop' if pack.stop else ''}: epoch {epoch}, {len(pack.active)} seeds training",
                flush=True,
            )
        for r in results:
            if r["status"] != "stopped" or r.get("stopped_epoch") == epoch:
                curves[r["seed"]].append((epoch, r[metric]))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {
        "label": label,
        "results": results,
        "curves": curves,
        "metric": metric,
        "seed_steps": seed_steps,
        "wall": time.perf_counter() - t0,
        "cpu": cpu,
    }


def run_arm(configs, args, rule=None) -> list[dict]:
    stop = {"seed_stop": rule} if rule else {}
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(train, label, {**cfg, **stop}, args.seeds, args.epochs) for label, cfg in configs]
        return [f.result() for f in futures]


def main() -> None:
    import numpy as np

    from analysis.audit import corrected_interval, cp_bounds
    from analysis.seed_stop import suggest
    from trainables.rule import SuccessRule

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--n-train", type=int, default=128, help="the quickstart's 512 takes ~4x longer")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--audit", type=float, default=0.25)
    parser.add_argument("--rule", help="seed_stop rule as JSON; default: suggested from the reference arm")
    parser.add_argument(
        "--max-false-stop", type=float, default=0.0, help="for the suggested rule (measured, in-sample)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="packs trained at once (one thread each)")
    parser.add_argument("--out", help="also write the table here")
    args = parser.parse_args()

    configs = configurations(args)
    from trainables.data import load_data

    load_data(configs[0][1])  # the dataset cached once, before any timing
    t0 = time.perf_counter()
    plain = run_arm(configs, args)
    plain_wall = time.perf_counter() - t0
    rule_json = json.loads(args.rule) if args.rule else None
    success = SuccessRule.parse(configs[0][1]["success"])
    if rule_json is None:
        histories = {
            f"{p['label']}/{s}": (np.array([e for e, _ in c]), np.array([v for _, v in c], dtype=float))
            for p in plain
            for s, c in p["curves"].items()
        }
        final_ok = {f"{p['label']}/{r['seed']}": bool(r["success"]) for p in plain for r in p["results"]}
        found = suggest(histories, final_ok, success, args.max_false_stop)
        if found is None:
            print("no rule keeps the false-stop rate at the bound on these seeds; pass --rule")
            return
        rule_json = {
            "metric": success.metric,
            found["side"]: round(found["threshold"], 4),
            "from_epoch": found["from_epoch"],
            "audit": args.audit,
        }
    t0 = time.perf_counter()
    stopped = run_arm(configs, args, rule_json)
    stop_wall = time.perf_counter() - t0

    rows, diffs = [], []
    for p, s in zip(plain, stopped):
        truth = {r["seed"]: bool(r["success"]) for r in p["results"]}
        for arm, res in (("no stop", p), ("seed_stop", s)):
            results = res["results"]
            n, k = len(results), sum(bool(r["success"]) for r in results)
            low, high = cp_bounds(k, n, 0.05)
            stops = [r for r in results if r["status"] == "stopped"]
            audited = [r for r in results if r.get("audit") and r["status"] == "finished"]
            false_audit = sum(bool(r["success"]) for r in audited)
            true_false = sum(truth[r["seed"]] for r in stops)
            corrected = (
                "[{:.2f}, {:.2f}]".format(*corrected_interval(k, n, len(stops), false_audit, len(audited), 0.05))
                if arm == "seed_stop"
                else "-"
            )
            rows.append(
                f"| {res['label']} | {arm} | {k}/{n} | [{low:.2f}, {high:.2f}] | {corrected} | "
                f"{len(stops) if arm == 'seed_stop' else '-'} | "
                f"{f'{false_audit}/{len(audited)}' if arm == 'seed_stop' else '-'} | "
                f"{true_false if arm == 'seed_stop' else '-'} | {res['seed_steps']:,} | {res['wall']:.0f} | {res['cpu']:.0f} |"
            )
        metric = p["metric"]
        for a, b in zip(p["results"], s["results"]):
            if b["status"] == "finished":
                diffs.append(abs(a[metric] - b[metric]) / max(abs(a[metric]), 1e-12))
    steps_plain = sum(p["seed_steps"] for p in plain)
    steps_stop = sum(s["seed_steps"] for s in stopped)
    cpu_plain, cpu_stop = sum(p["cpu"] for p in plain), sum(s["cpu"] for s in stopped)
    rows.append(
        f"| all | seed_stop / no stop | | | | | | | {steps_stop / steps_plain:.2f}x | "
        f"{stop_wall / plain_wall:.2f}x ({stop_wall:.0f} / {plain_wall:.0f} s) | {cpu_stop / cpu_plain:.2f}x |"
    )
    emit(
        f"seed stopping on the quickstart; {args.seeds} seeds x {len(configs)} configurations, {args.epochs} epochs of "
        f"n_train {args.n_train}, one process and thread per pack, {args.jobs} at once; rule "
        f"{json.dumps(rule_json)}{' (given)' if args.rule else ' (suggested from the no-stop arm, in-sample)'}; "
        f"seeds finished in both arms agree to {max(diffs, default=math.nan):.1e} (max relative difference of the final metric)",
        [
            "configuration",
            "arm",
            "k/n",
            "CP 95%",
            "corrected 95%",
            "stopped",
            "audit false stops",
            "true false stops",
            "seed-steps",
            "wall s",
            "CPU s",
        ],
        rows,
        args.out,
    )


if __name__ == "__main__":
    main()
