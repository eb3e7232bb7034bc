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

The second table: adaptive seeds with ``seed_stop`` (start 8, step 8, max 64). c0's stop rule flags
a share of its failing and of its succeeding seeds (the latter are false stops); an ``audit`` share
of flagged seeds trains on. "failures": stopped seeds counted as plain failures; "corrected": the
audit's correction (``analysis.sequential``, ``Design.stop_share``).

    python benchmarks/adaptive_seeds.py [--sweeps 400]
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
from analysis.sequential import STOP_SHARE, Design, simulate  # noqa: E402
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


STOPPING = {  # scenario -> (rates, c0's stop rule: flags of failing, of succeeding seeds)
    "0.2 vs 0.6, good rule": ((0.2, 0.6), (0.8, 0.05)),
    "null 0.4 vs 0.4, rule errs": ((0.4, 0.4), (0.8, 0.4)),
}


def stopping_rows(sweeps: int) -> list[str]:
    """The second table's rows: per scenario and audit share, naive and corrected."""
    rows = []
    for name, (rates, (fail, success)) in STOPPING.items():
        rates = np.array(rates)
        null = rates[0] == rates[1]
        for audit in (None, 0.25, 0.5):
            cells = [name, "-" if audit is None else f"{audit:g}"]
            for corrected in (False, True) if audit is not None else (False,):
                rng = np.random.default_rng(2)
                design = Design(start=8, step=8, max=NULL_MAX, stop_share=STOP_SHARE if corrected else 0.0)
                rule = None if audit is None else ((fail, success, audit), (0.0, 0.0, 0.0))
                seeds, decided, wrong = [], [], []
                for _ in range(sweeps):
                    n, verdicts = simulate(rates, design, rng, rule, corrected=corrected)
                    seeds.append(n.sum())
                    decided.append(not null and judge(rates, verdicts)[0])
                    wrong.append(any(v == "worse" for v in verdicts.values()) if null else judge(rates, verdicts)[1])
                cells += [f"{np.mean(seeds):.0f}", "-" if null else f"{np.mean(decided):.0%}", f"{np.mean(wrong):.1%}"]
            cells += ["-"] * (8 - len(cells))
            rows.append("| " + " | ".join(cells) + " |")
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=400, help="simulated sweeps per scenario and design")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    gc.freeze()  # statsmodels' multipletests (Holm, in compare) calls gc.collect(): spare it the imported modules
    rows = []
    for name, rates in SCENARIOS.items():
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
                n, verdicts = simulate(rates, design, rng)
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
    first = emit(
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
    second = emit(
        f"adaptive seeds with seed_stop on c0; {args.sweeps} simulated sweeps each, alpha {ALPHA}, start 8, step 8, "
        f"max {NULL_MAX}; corrected: {STOP_SHARE:.0%} of alpha bounds the stopped seeds",
        [
            "arms, c0's stop rule",
            "audit",
            "failures: seeds",
            "failures: decided",
            "failures: errors",
            "corrected: seeds",
            "corrected: decided",
            "corrected: errors",
        ],
        stopping_rows(args.sweeps),
    )
    if args.out:
        Path(args.out).write_text(f"{first}\n\n{second}\n")


if __name__ == "__main__":
    main()
