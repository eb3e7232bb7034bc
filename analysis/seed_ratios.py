"""Per-seed ratios within one sweep: "how much worse is A than B?" as each seed's difference and
ratio, not as two success rates (docs/seed000.md: 3-D vs 2-D at equal steps; z-SGD vs the plain AE
as two metrics of one run). ``analysis.paired_fixed`` tests the paired differences; this prints the pairs
and their ratios, which a relative error calls for. Seed s sees the same data order in every
configuration of a sweep, so the pair (A at seed s, B at seed s) differs only in the swept value.

    python -m analysis.seed_ratios SWEEP PARAM A B METRIC [--where KEY=VALUE ...] [--tracking-uri URI]
    python -m analysis.seed_ratios SWEEP - - - METRIC_A/METRIC_B   # two metrics of the same seed run
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd

from analysis.runs import load_runs
from trainables.records import COUNTED


def per_seed(runs: pd.DataFrame, param: str, a, b, metric: str, where: dict | None = None) -> pd.DataFrame:
    """Per seed counted in both: ``metric`` at ``param`` = a and = b, their difference (a - b) and
    ratio (a / b). ``where``: {other param: value} fixing the other swept params, so that each side
    is one configuration (a retried seed counts once, by its counted run)."""
    counted = runs[runs["status"].isin(COUNTED) & runs["seed"].notna()] if "status" in runs else runs
    for key, value in (where or {}).items():
        counted = counted[counted[key].astype(str) == str(value)]

    def side(v) -> pd.Series:
        mine = counted[counted[param].astype(str) == str(v)]
        if mine["config_id"].nunique() > 1:
            raise ValueError(
                f"{param}={v} matches {mine['config_id'].nunique()} configurations ({', '.join(map(str, mine['config_id'].unique()))}): "
                "fix the other swept params with --where KEY=VALUE"
            )
        return mine.drop_duplicates("seed", keep="last").set_index("seed")[metric].rename(str(v))

    both = pd.concat([side(a), side(b)], axis=1, join="inner").sort_index()
    both["diff"] = both[str(a)] - both[str(b)]
    both["ratio"] = both[str(a)] / both[str(b)]
    return both


def within(runs: pd.DataFrame, metric_a: str, metric_b: str, by: str = "config_id") -> pd.DataFrame:
    """Per seed run: two metrics of the same run (e.g. l0_zopt_rel vs l0_ae_rel), difference and ratio."""
    out = runs[[by, "seed", metric_a, metric_b]].copy()
    out["diff"] = out[metric_a] - out[metric_b]
    out["ratio"] = out[metric_a] / out[metric_b]
    return out


def summary(table: pd.DataFrame) -> str:
    """Median difference, geometric-mean ratio and how many seeds have a ratio above 1."""
    r = table["ratio"].to_numpy(dtype=float)
    r = r[np.isfinite(r) & (r > 0)]
    if not len(r):
        return "no finite pairs"
    gm = math.exp(float(np.log(r).mean()))
    return (
        f"{len(r)} pairs: median diff {table['diff'].median():.4g}, geometric-mean ratio {gm:.3g} "
        f"(range {r.min():.3g}-{r.max():.3g}), ratio > 1 in {int((r > 1).sum())}/{len(r)}"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m analysis.seed_ratios", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep")
    ap.add_argument("param", help="swept param, or - for two metrics of one run")
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("metric", help="metric, or METRIC_A/METRIC_B with param -")
    ap.add_argument("--where", action="append", default=[], metavar="KEY=VALUE", help="fix another swept param")
    ap.add_argument("--tracking-uri", default="sqlite:///mlruns.db")
    args = ap.parse_args(argv)
    runs = load_runs(args.tracking_uri, args.sweep)
    if args.param == "-":
        table = within(runs, *args.metric.split("/"))
    else:
        where = dict(w.split("=", 1) for w in args.where)
        table = per_seed(runs, args.param, args.a, args.b, args.metric, where)
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    print(summary(table))


if __name__ == "__main__":
    main()
