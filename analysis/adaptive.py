"""Adaptive sweeps read from their seed runs: the rule replayed round by round, and the table of the
quantities that stay valid when seeds were added while looking (``analysis.sequential``).

Under optional stopping a fixed-n Wilson interval or a Fisher p-value no longer holds, so an
adaptive sweep's table shows instead, per configuration: the confidence sequence (alpha / K, its
running intersection over the rounds), the verdict of ``until`` and the anytime-valid p-value of
the paired test against the best (``analysis.paired_sequential.pvalue``, Bonferroni over the K - 1
comparisons), beside the Bayesian P(best).
"""

from __future__ import annotations

from itertools import islice

import numpy as np
import pandas as pd

from analysis import paired_sequential, placements, settle
from analysis.confidence import running_intersection
from analysis.order import natural_key
from analysis.placements import LIMIT
from analysis.seed_stop import candidates
from analysis.sequential import Design, decide, pair_looks, recipe
from analysis.success import COUNTED, outcome, prob_best_paired, success_table
from trainables.rule import SuccessRule

COLUMNS = [
    "round",
    "config_id",
    "successes",
    "n",
    "stopped",
    "possible",
    "failed",
    "low",
    "high",
    "open",
    "verdict",
    "why",
]


def outcomes(runs: pd.DataFrame, rule: SuccessRule | None = None) -> dict[str, dict[int, bool]]:
    """Each configuration's counted seeds (finished or diverged) as ``{seed: success}``: the pairs
    the paired tests read. A seed retried after a failure counts once, by its counted run."""
    ok = outcome(runs, rule)
    counted = runs["status"].isin(COUNTED) & runs["seed"].notna()
    out: dict[str, dict[int, bool]] = {cid: {} for cid in runs["config_id"].unique()}
    for cid, seed, success in zip(runs.loc[counted, "config_id"], runs.loc[counted, "seed"], ok[counted]):
        out[cid][int(seed)] = bool(success)
    return out


def stop_marks(runs: pd.DataFrame) -> dict[str, dict[int, str]]:
    """Each configuration's seed_stop candidates as ``{seed: "stopped" | "audited"}`` (audited: a
    candidate that trained on as the audit): what ``decide`` corrects the stopped seeds by."""
    stopped, audited = candidates(runs)
    mark = pd.Series("", index=runs.index).mask(audited, "audited").mask(stopped, "stopped")
    out: dict[str, dict[int, str]] = {}
    for cid, seed, m in zip(runs["config_id"], runs["seed"], mark):
        if m and pd.notna(seed):
            out.setdefault(cid, {})[int(seed)] = m
    return out


def history(runs: pd.DataFrame, design: Design, rounds: int | None = None, rule: SuccessRule | None = None):
    """The rule replayed from a sweep's seed runs (``analysis.runs.load_runs``): one row per round
    and configuration with the counts of the seeds given so far (finished and diverged count;
    ``failed`` seeds, retried in the next round, are shown), the confidence sequence, whether seeds
    went on, the verdict and why. ``rounds``: up to this one (default: the last any seed ran in)."""
    round_of = runs["seed"].map(lambda s: design.round_of(int(s)))
    last = int(round_of.max()) if rounds is None else rounds
    ids = sorted(runs["config_id"].unique(), key=natural_key)
    everything = outcomes(runs, rule)
    marks = stop_marks(runs)
    failed = runs["status"].eq("failed")
    rows, stopped = [], frozenset()
    for r in range(1, last + 1):
        seen = {cid: {s: v for s, v in everything.get(cid, {}).items() if design.round_of(s) <= r} for cid in ids}
        decided = decide(seen, design, r, stopped, len(ids), marks)
        for cid, d in decided.items():
            if cid in stopped:
                continue
            lost = int((failed & runs["config_id"].eq(cid) & (round_of <= r)).sum())
            rows.append({"round": r, "config_id": cid, "failed": lost, **{k: d[k] for k in COLUMNS if k in d}})
        stopped = frozenset(cid for cid, d in decided.items() if not d["open"])
    return pd.DataFrame(rows, columns=COLUMNS)


def sweep_table(runs: pd.DataFrame, rule: SuccessRule | None = None) -> pd.DataFrame:
    """The table of every sweep: ``success_table``, with, for an adaptive sweep (``runs.attrs["design"]``),
    the anytime-valid columns (and ``p_best`` on the seeds' pairs, ``paired_p_best``): ``anytime_low/high``
    (running intersection of the confidence sequences at alpha / K over the rounds; with seed_stop the
    upper end counts W+), ``verdict``, ``p_anytime`` (paired test against the best, anytime-valid,
    Bonferroni over K - 1; with seed_stop on the rate ``design.decide_on`` names). A fixed sweep's table
    is returned as it is. Both carry the settledness check's flips in ``attrs["settle"]`` (``analysis.settle``)."""
    table = success_table(runs, rule)
    ok = outcome(runs, rule)
    table.attrs["settle"] = settle.flips(runs, ok, table.attrs["applied_rule"])  # None without the check
    if not runs.attrs.get("design"):
        return table
    design = Design.from_dict(runs.attrs["design"])
    steps = history(runs, design, rule=rule)
    k = len(table)
    low, high, verdict = {}, {}, {}
    for cid, path in steps.groupby("config_id", sort=False):
        counts = list(zip(path["successes"], path["n"], path["possible"]))
        low[cid], high[cid] = running_intersection(counts, design.test_alpha / max(k, 1))
        verdict[cid] = path["verdict"].iloc[-1]
    table.insert(table.columns.get_loc("wilson_low"), "anytime_low", table["config_id"].map(low).fillna(0.0))
    table.insert(table.columns.get_loc("wilson_low"), "anytime_high", table["config_id"].map(high).fillna(1.0))
    table["verdict"] = table["config_id"].map(verdict).fillna("open")
    best = reference(table)
    everything, marks = outcomes(runs, rule), stop_marks(runs)
    rounds = int(steps["round"].max()) if len(steps) else 1
    possible = steps.groupby("config_id").tail(1).set_index("config_id")["possible"]

    def p_anytime(cid: str) -> float:
        """Against the best, Bonferroni over K - 1. decide_on recipe: on the recipe's outcomes (stop
        candidates fail); no_stop: the largest p over every placement of the W+ stopped seeds of
        either that may have succeeded (``analysis.placements``; 1 when there are too many)."""
        mine, ref = everything[cid], everything[best]
        if design.decide_on == "recipe":
            mine, ref = recipe(mine, marks.get(cid, {})), recipe(ref, marks.get(best, {}))
        steps_ = pair_looks(mine, ref, design, rounds)[0]
        looks = [steps_]
        if design.decide_on == "no_stop":
            stops = tuple(
                (
                    [s for s, m in marks.get(c, {}).items() if m == "stopped" and s in everything[c]],
                    int(possible.get(c, 0)),
                )
                for c in (cid, best)
            )
            looks = list(
                islice(
                    placements.variants(steps_, *placements.arrangement(mine, ref, steps_, -1, stops), -1), LIMIT + 1
                )
            )
            if len(looks) > LIMIT:
                return 1.0
        return min(1.0, (k - 1) * max(paired_sequential.pvalue(v, design.max, design.spend) for v in looks))

    table["p_anytime"] = [
        np.nan if cid == best or not everything.get(cid) or not everything.get(best) else p_anytime(cid)
        for cid in table["config_id"]
    ]
    table["p_best"] = table["config_id"].map(paired_p_best(everything, marks, design, possible_counts(table)))
    table.attrs.update(reference=best, history=steps)
    return table


def possible_counts(table: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Per configuration (false stops, audited candidates), where the table has them."""
    if "false_stops" not in table:
        return {}
    return {c: (int(a), int(b)) for c, a, b in zip(table["config_id"], table["false_stops"], table["audited"])}


def paired_p_best(everything: dict, marks: dict, design: Design, audit: dict) -> dict[str, float]:
    """P(best) on the seeds' pairs and on the rate the verdicts are about: the recipe's outcomes
    (stop candidates fail), or with ``no_stop`` the stopped seeds drawn from the audit
    (``analysis.success.prob_best_paired``)."""
    if design.decide_on == "recipe":
        return prob_best_paired({c: recipe(o, marks.get(c, {})) for c, o in everything.items()})
    unknown = {
        c: ([s for s, m in marks.get(c, {}).items() if m == "stopped"], *audit.get(c, (0, 0))) for c in everything
    }
    return prob_best_paired(everything, unknown)


def reference(table: pd.DataFrame) -> str:
    """The configuration the verdicts name best, else the highest rate."""
    named = table.loc[table["verdict"].eq("best"), "config_id"]
    if len(named):
        return str(named.iloc[0])
    return str(table.loc[table["rate"].fillna(-1).idxmax(), "config_id"])
