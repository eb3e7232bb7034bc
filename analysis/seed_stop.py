"""Rates that stay honest when failed seeds are stopped early (``seed_stop``, trainables.seed_stop).

A stopped seed was *predicted* to fail, not seen to fail. The success table counts it in n as a
failure (so k/n and its intervals are those of "finished successes among all seeds"), and this
module adds, per configuration:

- ``stopped``, ``audited`` (stop candidates that trained on), ``false_stops`` (audited candidates
  that succeeded), ``seed_steps_saved``;
- the false-stop rate ``a/b`` (a false stops among b audited candidates) with its exact
  Clopper-Pearson interval, and the corrected interval of the success rate (``analysis.audit``).

- ``fsr_p``: whether the stop rule treats configurations alike (``alike``: each configuration's
  false-stop rate against the others', Fisher exact, Holm). With an adaptive sweep's verdicts on
  the recipe (analysis.sequential, ``decide_on: recipe``) this is what the audit is for: a verdict
  on the rate with the stop rule is flagged where the rule errs more on one configuration.

Adaptive sweeps deciding on the no-stop rate (``decide_on: no_stop``) see a stopped seed as a
failure with the audit's correction (analysis.sequential).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from analysis.audit import corrected_interval, cp_bounds, false_stop_rate
from analysis.confidence import ALPHA
from analysis.sequential import Design
from trainables.records import TRAINED
from trainables.rule import SuccessRule
from trainables.seed_stop import RATES


def candidates(runs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(stopped, audited) masks over seed runs: the stop candidates that stopped, and those that
    trained on to the end as the audit."""
    status = runs["status"].fillna("")
    audit = runs["audit"].fillna(False).astype(bool) if "audit" in runs else pd.Series(False, index=runs.index)
    return status.eq("stopped"), audit & status.isin(TRAINED)


def seed_columns(runs: pd.DataFrame, ok: pd.Series) -> pd.DataFrame:
    """Per configuration (index ``config_id``): ``stopped``, ``audited``, ``false_stops``,
    ``seed_steps_saved``. ``ok``: each seed's final success under the rule in force."""
    stopped, audited = candidates(runs)
    saved = (
        pd.to_numeric(runs["seed_steps_saved"], errors="coerce").fillna(0)
        if "seed_steps_saved" in runs
        else pd.Series(0.0, index=runs.index)
    )
    frame = pd.DataFrame(
        {
            "config_id": runs["config_id"],
            "stopped": stopped,
            "audited": audited,
            "false_stops": audited & ok.astype(bool),  # ok: a diverged seed never succeeds
            "seed_steps_saved": saved.where(stopped, 0),
        }
    )
    return frame.groupby("config_id", sort=False).sum().astype(int)


def annotate(table: pd.DataFrame, runs: pd.DataFrame, ok: pd.Series, alpha: float = ALPHA) -> pd.DataFrame:
    """The success table with the seed-stop columns (``seed_columns``), the false-stop rate and its
    interval, and the corrected interval (``corrected_low/high``); ``attrs["seed_stop"]`` holds the
    sweep's pooled false-stop rate."""
    cols = seed_columns(runs, ok).reindex(table["config_id"]).fillna(0).astype(int)
    out = table.copy()
    for c in cols:
        out[c] = cols[c].to_numpy()
    rates = [false_stop_rate(a, b, alpha) for a, b in zip(out["false_stops"], out["audited"])]
    out["false_stop_rate"] = [r[0] for r in rates]
    out["fsr_low"], out["fsr_high"] = [r[1] for r in rates], [r[2] for r in rates]
    bounds = [
        corrected_interval(k, n, m, a, b, alpha)
        for k, n, m, a, b in zip(out["successes"], out["n"], out["stopped"], out["false_stops"], out["audited"])
    ]
    out["corrected_low"], out["corrected_high"] = [b[0] for b in bounds], [b[1] for b in bounds]
    out["fsr_p"] = alike(out["false_stops"].to_numpy(), out["audited"].to_numpy())
    out.attrs = dict(table.attrs)
    a, b = int(out["false_stops"].sum()), int(out["audited"].sum())
    out.attrs["seed_stop"] = {
        "stopped": int(out["stopped"].sum()),
        "audited": b,
        "false_stops": a,
        "false_stop_rate": false_stop_rate(a, b, alpha),
        "seed_steps_saved": int(out["seed_steps_saved"].sum()),
    }
    return out


def alike(false_stops: np.ndarray, audited: np.ndarray) -> np.ndarray:
    """Whether the stop rule treats configurations alike: per configuration, the two-sided Fisher
    exact p-value of its false-stop rate (false stops among audited candidates) against the other
    configurations' pooled, Holm-corrected over the configurations with audited candidates (NaN
    without any, or with a single one)."""
    out = np.full(len(audited), np.nan)
    some = np.flatnonzero(audited > 0)
    if len(some) < 2:
        return out
    a, b = false_stops[some], audited[some]
    rest_a, rest_b = a.sum() - a, b.sum() - b
    p = [stats.fisher_exact([[a[i], b[i] - a[i]], [rest_a[i], rest_b[i] - rest_a[i]]]).pvalue for i in range(len(a))]
    out[some] = multipletests(p, method="holm")[1]
    return out


def fairness(table: pd.DataFrame, alpha: float = ALPHA) -> str:
    """The audit as a check of the stop rule (``alike``), in words."""
    if table["fsr_p"].isna().all():
        return "too few audited candidates to compare the configurations' false-stop rates"
    odd = table[table["fsr_p"] < alpha]
    each = ", ".join(f"{c} {a}/{b}" for c, a, b in zip(table["config_id"], table["false_stops"], table["audited"]))
    if odd.empty:
        return f"false stops per configuration {each}: no configuration's rate differs (Fisher vs the rest, Holm)"
    return (
        f"FLAGGED: the stop rule's false-stop rate differs for {', '.join(odd['config_id'])} (false stops {each}; "
        f"Fisher vs the rest, Holm p < {alpha:g}): verdicts on the recipe depend on the stop rule there"
    )


def note(table: pd.DataFrame) -> str:
    """One line: what the seed-stop columns are, and the sweep's pooled false-stop rate. An adaptive
    sweep's table (``anytime_low``) says which rate its verdicts are about: the recipe's (with the
    audit as a check that the rule treats configurations alike, ``fairness``, and the no-stop rate's
    corrected interval), or the no-stop rate (its anytime interval and verdicts carry the correction)."""
    s = table.attrs["seed_stop"]
    rate, low, high = s["false_stop_rate"]
    head = f"seed_stop: {s['stopped']} seeds stopped (counted as failures), {s['seed_steps_saved']} seed-steps saved"
    design = table.attrs.get("design") or {}
    if "anytime_low" in table and Design.from_dict(design).decide_on == "no_stop":
        fsr = f"{s['false_stops']}/{s['audited']}" if s["audited"] else "no audit yet"
        return (
            f"{head}; verdicts on {RATES['no_stop']}; false stops among audited candidates {fsr}; the anytime "
            "interval's upper end counts, per configuration, the stopped seeds that may have succeeded (bounded by "
            "its audited candidates, analysis.audit), and a verdict of worse holds however those would have ended"
        )
    if "anytime_low" in table:
        corrected = ", ".join(
            f"{c} [{a:.2f}, {b:.2f}]"
            for c, a, b in zip(table["config_id"], table["corrected_low"], table["corrected_high"])
        )
        return (
            f"{head}; verdicts, anytime intervals and p on {RATES['recipe']}; audit: {fairness(table)}; the rate had "
            f"no seed been stopped, corrected 95% (fixed-n, analysis.audit): {corrected}"
        )
    fsr = f"{s['false_stops']}/{s['audited']} = {rate:.2f} [{low:.2f}, {high:.2f}]" if s["audited"] else "no audit yet"
    return (
        f"{head}; false stops among audited candidates {fsr} (CP 95%); corrected 95%: covers the rate without stops "
        f"(CP at alpha/2, upper end + a bound on the stopped seeds that would have succeeded; analysis.audit)"
    )


def suggest(
    histories: dict[str, tuple[np.ndarray, np.ndarray]],
    final_ok: dict[str, bool],
    rule: SuccessRule,
    max_false_stop: float = 0.05,
) -> dict | None:
    """A stop rule from finished seeds' curves (``analysis.runs.metric_histories``) and their final
    success under ``rule`` (as ``success.forecast_by_epoch`` takes them): over
    every evaluated epoch E and every threshold X among the success threshold and the deciles of
    the values at E, the rule "stop at the first evaluation from E on where the metric is on the
    failing side of X" (what ``seed_stop`` does) whose measured false-stop rate (candidates that
    succeeded / candidates) is at most ``max_false_stop`` and that saves the most seed-epochs. Returns ``{metric side, threshold, from_epoch,
    candidates, false_stops, false_stop_rate, fsr_low, fsr_high, saved_share}`` or None."""
    side = "above" if rule.bound == "below" else "below"  # the failing side of a success rule
    runs = [r for r in histories if r in final_ok and len(histories[r][0])]
    if not runs:
        return None
    last = max(int(histories[r][0].max()) for r in runs)
    epochs = sorted({int(s) for r in runs for s in histories[r][0] if s < last})
    total = sum(int(histories[r][0].max()) for r in runs)
    best = None
    for epoch in epochs:
        at = {}
        for r in runs:
            steps, values = histories[r]
            seen = values[steps <= epoch]
            if len(seen):
                at[r] = float(seen[-1])
        finite = np.array([v for v in at.values() if math.isfinite(v)])
        grid = {rule.threshold, *(np.quantile(finite, np.linspace(0.1, 0.9, 9)).tolist() if len(finite) else [])}
        for x in sorted(grid):
            first = {}  # each seed's first evaluation from ``epoch`` on that is on the failing side
            for r in at:
                steps, values = histories[r]
                later = steps >= epoch
                failing = ~np.isfinite(values[later]) | (values[later] > x if side == "above" else values[later] < x)
                if failing.any():
                    first[r] = int(steps[later][np.argmax(failing)])
            cand = [r for r in first if first[r] < int(histories[r][0].max())]
            if not cand:
                continue
            wrong = sum(bool(final_ok[r]) for r in cand)
            rate = wrong / len(cand)
            saved = sum(int(histories[r][0].max()) - first[r] for r in cand)
            if rate <= max_false_stop and (best is None or saved > best["saved"]):
                low, high = cp_bounds(wrong, len(cand), ALPHA)
                best = {
                    "side": side,
                    "threshold": x,
                    "from_epoch": epoch,
                    "candidates": len(cand),
                    "seeds": len(at),
                    "false_stops": wrong,
                    "false_stop_rate": rate,
                    "fsr_low": low,
                    "fsr_high": high,
                    "saved": saved,
                    "saved_share": saved / total if total else 0.0,
                }
    return best


def describe_suggestion(metric: str, found: dict | None, max_false_stop: float = 0.05) -> str:
    if found is None:
        return f"no seed_stop rule on {metric} keeps the measured false-stop rate at or below {max_false_stop:g}"
    x = found
    return (
        f"seed_stop: {{metric: {metric}, {x['side']}: {x['threshold']:.4g}, from_epoch: {x['from_epoch']}, audit: 0.25}}\n"
        f"  measured on {x['seeds']} finished seeds: {x['candidates']} would stop, {x['false_stops']} of them "
        f"succeeded: false-stop rate {x['false_stop_rate']:.2f} (CP 95% [{x['fsr_low']:.2f}, {x['fsr_high']:.2f}]); "
        f"saves {x['saved_share']:.0%} of their seed-epochs. Measured on the seeds it was chosen from, so optimistic: "
        f"keep the audit on"
    )
