"""What adaptive seeds cost against a fixed design of the same power: simulated sweeps of Bernoulli arms.

The decision: which configuration is best, with every other declared worse, at family-wise error
alpha. The fixed design gives every arm the seeds ``seeds_for_power`` computes exactly for 80%
power of Fisher's test between the best rate and the runner-up at alpha / (K - 1) (Bonferroni over
the K - 1 comparisons with the best), then tests each arm against the observed best (Fisher, Holm;
``analysis.success.compare``). The adaptive designs (``analysis.sequential.simulate``: start 8,
step 8, max 1.25x the fixed n) are ``until: decided`` (paired group-sequential tests of the
difference with Holm's step-down, the default) and ``until: separated`` (non-overlap of
confidence sequences, the rule before it). "decided": the true best named and every other
declared worse; "errors": a configuration declared worse although its true rate is at least the
best's. The null rows (all rates equal, max 64) measure the family-wise error: any configuration
declared worse is an error.

The second table: adaptive seeds with ``seed_stop`` as users get it (``analysis.simulation``:
start 8, step 8, max 64; real audit tickets, ``trainables.seed_stop.audited`` with a salt drawn
per sweep; seeds independent (rho 0) or common random numbers (latent correlation rho 0.5)). The
good rule flags 80% of failing and 5% of succeeding seeds, on both configurations, stopping them at
30% of training; the erring rule (on c0 only) flags 80% of failing and a large share of succeeding
seeds. ``decide_on: recipe``: verdicts on the rate with the stop rule (stop candidates fail);
``no_stop``: on the rate had no seed been stopped (W+ of the audit, every placement checked).
"seed-steps": per configuration, 1 per seed trained to the end, 0.3 per stopped seed; "x no stop":
against the same design without seed_stop on the same rates. Null rows: an error is any
configuration declared worse, on the rates the verdicts are about (recipe: c0 at 0.5 whose rule
fails a fifth of its successes has recipe rate 0.4, as c1; no_stop: both at 0.4).

    python benchmarks/adaptive_seeds.py [--sweeps 400] [--no-stop-sweeps 200] [--only-stopping]
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from table import emit  # benchmarks/table.py

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.confidence import ALPHA  # noqa: E402
from analysis.planning import seeds_for_power  # noqa: E402
from analysis.sequential import STOP_SHARE, Design  # noqa: E402
from analysis.simulation import simulate  # noqa: E402
from analysis.success import compare  # noqa: E402

SCENARIOS = {  # the issue's pairs, the notes' four rates, a far pair, and two null cases
    "0.2 vs 0.5": (0.2, 0.5),
    "0.5 vs 0.85": (0.5, 0.85),
    "notes: 0, 0.15, 0.5, 0.85": (0.0, 0.15, 0.5, 0.85),
    "0.1 vs 0.9": (0.1, 0.9),
    "null: 0.3 vs 0.3": (0.3, 0.3),
    "null: 4 x 0.2": (0.2, 0.2, 0.2, 0.2),
}
NULL_MAX = 64  # the spec's default max, for the null rows (no fixed design to scale from)


def judge(rates: np.ndarray, verdicts: dict[str, str]) -> tuple[bool, bool]:
    """(decided, wrong): the true best named and all others worse; any worse arm as good as the best."""
    best = int(np.argmax(rates))
    worse = [i for i in range(len(rates)) if verdicts[f"c{i}"] == "worse"]
    decided = verdicts[f"c{best}"] == "best" and len(worse) == len(rates) - 1
    return decided, any(rates[i] >= rates.max() for i in worse)


def fixed_sweep(rates: np.ndarray, per_arm: int, rng: np.random.Generator) -> tuple[bool, bool]:
    """One fixed-design sweep: (decided, wrong) by Fisher + Holm against the observed best."""
    k = rng.binomial(per_arm, rates)
    table = pd.DataFrame(
        {"config_id": [f"c{i}" for i in range(len(rates))], "successes": k, "n": per_arm, "rate": k / per_arm}
    )
    result = compare(table)
    ref = int(result.attrs["reference"][1:])
    worse = np.flatnonzero(result["significant"].to_numpy() & (result["diff"].to_numpy() < 0))
    decided = ref == int(np.argmax(rates)) and len(worse) == len(rates) - 1
    return decided, bool(any(rates[i] >= rates.max() for i in worse))


STOP_AT = 0.3  # stopped seeds stop at this share of their training
GOOD = (0.8, 0.05)  # the good rule: flags of failing, of succeeding seeds
STOPPING = (  # (name, rates, rule: flags of failing and succeeding seeds, on both or c0 only, null)
    ("0.2 vs 0.6, good rule on both", (0.2, 0.6), GOOD, False),
    ("null on recipe: 0.5 (rule flags .8/.2) vs 0.4", (0.5, 0.4), (0.8, 0.2), True),
    ("null on no-stop: 0.4 (rule flags .8/.4) vs 0.4", (0.4, 0.4), (0.8, 0.4), True),
)


def stopping_rows(sweeps: int, no_stop_sweeps: int) -> list[str]:
    """The second table's rows: per scenario, estimand, audit share and seed correlation."""
    rows, baseline = [], {}
    for name, rates, (fail, success), null in STOPPING:
        rates = np.array(rates)
        for decide_on in ("recipe", "no_stop"):
            if null and (decide_on == "recipe") != name.startswith("null on recipe"):
                continue
            for rho in (0.0, 0.5):
                if decide_on == "no_stop" and rho:
                    continue
                runs = sweeps if decide_on == "recipe" else no_stop_sweeps
                key = (tuple(rates), rho)
                if key not in baseline:  # the same design without seed_stop
                    rng = np.random.default_rng(3)
                    steps = [simulate(rates, Design(max=NULL_MAX), rng, rho=rho)[2].mean() for _ in range(runs)]
                    baseline[key] = float(np.mean(steps))
                for audit in (0.25, 0.5):
                    rng = np.random.default_rng(2)
                    share = STOP_SHARE if decide_on == "no_stop" else 0.0
                    design = Design(start=8, step=8, max=NULL_MAX, stop_share=share, decide_on=decide_on)
                    rule = (fail, success, audit) if not null else ((fail, success, audit), (0.0, 0.0, audit))
                    steps, decided, wrong = [], [], []
                    for _ in range(runs):
                        _, verdicts, spent = simulate(rates, design, rng, rule, rho=rho, stop_at=STOP_AT)
                        steps.append(spent.mean())
                        decided.append(not null and judge(rates, verdicts)[0])
                        wrong.append(
                            any(v == "worse" for v in verdicts.values()) if null else judge(rates, verdicts)[1]
                        )
                    mean = float(np.mean(steps))
                    se = math.sqrt(np.mean(decided) * (1 - np.mean(decided)) / runs)
                    cells = [name, decide_on, f"{audit:g}", f"{rho:g}", str(runs)]
                    cells += ["-" if null else f"{np.mean(decided):.1%} +- {se:.1%}", f"{np.mean(wrong):.1%}"]
                    cells += [f"{mean:.1f}", f"{baseline[key]:.1f}", f"{mean / baseline[key]:.2f}"]
                    rows.append("| " + " | ".join(cells) + " |")
                    print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=400, help="simulated sweeps per scenario and design")
    parser.add_argument("--no-stop-sweeps", type=int, default=200, help="sweeps per decide_on: no_stop row (slow)")
    parser.add_argument("--only-stopping", action="store_true", help="only the second table (seed_stop)")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    gc.freeze()  # statsmodels' multipletests (Holm, in compare) calls gc.collect(): spare it the imported modules
    rows = []
    for name, rates in {} if args.only_stopping else SCENARIOS.items():
        rates = np.array(rates)
        top = np.sort(rates)[::-1]
        k = len(rates)
        per_arm = seeds_for_power(top[0], top[1], alpha=ALPHA / (k - 1)) if top[0] != top[1] else None
        cap = math.ceil(1.25 * per_arm) if per_arm else NULL_MAX
        cells = [name, f"{per_arm} x {k} = {per_arm * k}" if per_arm else "-"]
        if per_arm:
            rng = np.random.default_rng(0)
            fixed = np.array([fixed_sweep(rates, per_arm, rng) for _ in range(args.sweeps)])
            cells += [f"{fixed[:, 0].mean():.0%}"]
        else:
            cells += ["-"]
        for until in ("decided", "separated"):
            rng = np.random.default_rng(1)
            design = Design(start=8, step=8, max=cap, until=until, alpha=ALPHA)
            seeds, decided, wrong = [], [], []
            for _ in range(args.sweeps):
                n, verdicts, _ = simulate(rates, design, rng)
                seeds.append(n.sum())
                if per_arm:
                    d, w = judge(rates, verdicts)
                else:  # null: any arm declared worse is an error
                    d, w = False, any(v == "worse" for v in verdicts.values())
                decided.append(d)
                wrong.append(w)
            mean = float(np.mean(seeds))
            ratio = f" ({mean / (per_arm * k):.2f}x)" if per_arm else f" (of {cap * k})"
            cells += [f"{cap}", f"{mean:.0f}{ratio}", f"{np.mean(decided):.0%}" if per_arm else "-"]
            cells += [f"{np.mean(wrong):.1%}"]
        rows.append("| " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    first = (
        ""
        if args.only_stopping
        else emit(
            f"adaptive seeds; {args.sweeps} simulated sweeps per scenario, alpha {ALPHA}; fixed: exact Fisher n for 80% "
            "power at alpha / (K - 1), Fisher + Holm; adaptive: start 8, step 8, max 1.25x the fixed n (null rows: 64)",
            [
                "arms (true rates)",
                "fixed seeds",
                "fixed decided",
                "decided: max",
                "decided: seeds (vs fixed)",
                "decided: decided",
                "decided: errors",
                "separated: max",
                "separated: seeds (vs fixed)",
                "separated: decided",
                "separated: errors",
            ],
            rows,
        )
    )
    second = emit(
        f"adaptive seeds with seed_stop; alpha {ALPHA}, start 8, step 8, max {NULL_MAX}; real salted audit "
        f"tickets; stopped seeds stop at {STOP_AT:g} of training; no_stop: {STOP_SHARE:.0%} of alpha bounds the "
        "stopped seeds",
        [
            "arms, stop rule",
            "decide_on",
            "audit",
            "rho",
            "sweeps",
            "decided",
            "errors",
            "seed-steps per configuration",
            "no seed_stop: seed-steps",
            "x no stop",
        ],
        stopping_rows(args.sweeps, args.no_stop_sweeps),
    )
    if args.out:
        Path(args.out).write_text(f"{first}\n\n{second}\n" if first else f"{second}\n")


if __name__ == "__main__":
    main()
