"""What adaptive seeds save: simulated sweeps of Bernoulli arms, adaptive against the fixed design.

The decision in both: which configuration is best, and which others are worse than it, with the
family's error rate alpha. The fixed design gives every arm the seeds ``seeds_for_power``
prescribes to tell the best rate from the runner-up with 80% power at alpha / (K - 1) (Bonferroni
over the K - 1 comparisons with the best), then tests each arm against the observed best (Fisher,
Holm; ``analysis.success.compare``). The adaptive design (``analysis.sequential``: start 8, step 8,
up to ``--max``, until separated) adds seeds only to the arms still overlapping the best. An error
is a configuration declared worse than the best whose true rate is at least the declared best's;
"decided" = every other configuration declared worse. ``seeds_for_power`` is told the true rates,
which a researcher does not know; the budget a fixed sweep would give every configuration without
that knowledge is the adaptive ``max``, so the table shows the savings against both.

    python benchmarks/adaptive_seeds.py [--sweeps 400] [--max 128]
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from table import emit  # benchmarks/table.py

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.sequential import Design, decide  # noqa: E402
from analysis.success import ALPHA, compare, seeds_for_power  # noqa: E402

SCENARIOS = {  # the seed notes' rates, and close and far pairs
    "notes: 0.0, 0.15, 0.5, 0.85": (0.0, 0.15, 0.5, 0.85),
    "close pair: 0.3 vs 0.5": (0.3, 0.5),
    "pair: 0.5 vs 0.85": (0.5, 0.85),
    "far pair: 0.1 vs 0.9": (0.1, 0.9),
    "two best: 0.15, 0.5, 0.5": (0.15, 0.5, 0.5),
}


def adaptive_sweep(rates: np.ndarray, design: Design, rng: np.random.Generator) -> tuple[int, bool, bool]:
    """One adaptive sweep: (seeds spent, decided, any wrong 'worse than best')."""
    ids = [f"c{i}" for i in range(len(rates))]
    successes, n = np.zeros(len(rates), int), np.zeros(len(rates), int)
    stopped, round_, why = frozenset(), 1, {}
    while True:
        block = len(design.round_seeds(round_))
        for i, cid in enumerate(ids):
            if cid not in stopped:
                successes[i] += rng.binomial(block, rates[i])
                n[i] += block
        decided = decide({c: (successes[i], n[i]) for i, c in enumerate(ids)}, design, len(ids), round_, stopped)
        why |= {c: d["why"] for c, d in decided.items() if c not in stopped and not d["open"]}  # why each stopped
        stopped = frozenset(why)
        if len(stopped) == len(ids):
            break
        round_ += 1
    return int(n.sum()), *judge(rates, why, ids)


def judge(rates: np.ndarray, why: dict[str, str], ids: list[str]) -> tuple[bool, bool]:
    """(decided, wrong) from why each configuration stopped: "below best cK" declares it worse than cK."""
    worse = [(i, ids.index(why[c].split()[-1])) for i, c in enumerate(ids) if why[c].startswith("below best")]
    wrong = any(rates[i] >= rates[best] for i, best in worse)
    return len(worse) == len(ids) - 1, bool(wrong)


def fixed_sweep(rates: np.ndarray, per_arm: int, rng: np.random.Generator) -> tuple[bool, bool]:
    """One fixed-design sweep: (decided, any wrong 'worse than best') by Fisher + Holm against the observed best."""
    k = rng.binomial(per_arm, rates)
    table = pd.DataFrame(
        {"config_id": [f"c{i}" for i in range(len(rates))], "successes": k, "n": per_arm, "rate": k / per_arm}
    )
    result = compare(table)
    ref = int(result.attrs["reference"][1:])
    worse = np.flatnonzero(result["significant"].to_numpy() & (result["diff"].to_numpy() < 0))
    return len(worse) == len(rates) - 1, bool(any(rates[i] >= rates[ref] for i in worse))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=400, help="simulated sweeps per scenario and design")
    parser.add_argument("--max", type=int, default=128, help="adaptive design: most seeds per configuration")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    gc.freeze()  # statsmodels' multipletests (Holm, in compare) calls gc.collect(): spare it the imported modules
    design = Design(start=8, step=8, max=args.max, until="separated", alpha=ALPHA)
    rows = []
    for name, rates in SCENARIOS.items():
        rates = np.array(rates)
        top = np.sort(rates)[::-1]
        gap = top[0] != top[1]
        per_arm = seeds_for_power(top[0], top[1], alpha=ALPHA / (len(rates) - 1)) if gap else None
        rng = np.random.default_rng(0)
        adaptive = np.array([adaptive_sweep(rates, design, rng) for _ in range(args.sweeps)])
        fixed = np.array([fixed_sweep(rates, per_arm, rng) for _ in range(args.sweeps)]) if per_arm else None
        spent = adaptive[:, 0]
        fixed_total, budget = per_arm * len(rates) if per_arm else None, args.max * len(rates)
        rows.append(
            "| "
            + " | ".join(
                [
                    name,
                    f"{per_arm} x {len(rates)} = {fixed_total}" if per_arm else "- (no best)",
                    f"{fixed[:, 0].mean():.0%}" if per_arm else "-",
                    f"{fixed[:, 1].mean():.1%}" if per_arm else "-",
                    f"{spent.mean():.0f} (median {np.median(spent):.0f}, max {spent.max()})",
                    f"{spent.mean() / fixed_total - 1:+.0%}" if per_arm else "-",
                    f"{spent.mean() / budget - 1:+.0%} of {budget}",
                    f"{adaptive[:, 1].mean():.0%}",
                    f"{adaptive[:, 2].mean():.1%}",
                ]
            )
            + " |"
        )
    emit(
        f"adaptive seeds; {args.sweeps} simulated sweeps per scenario, alpha {ALPHA} per sweep, adaptive: start 8, step 8, "
        f"max {args.max}, until separated; fixed: seeds_for_power (80% power, alpha / (K - 1)), Fisher + Holm",
        [
            "arms (true rates)",
            "fixed seeds (seeds_for_power)",
            "fixed decided",
            "fixed errors",
            "adaptive seeds (mean)",
            "adaptive vs fixed",
            "adaptive vs max for all",
            "adaptive decided",
            "adaptive errors",
        ],
        rows,
        args.out,
    )


if __name__ == "__main__":
    main()
