"""Success statistics per configuration: k/n with Wilson and Clopper-Pearson intervals, exact
comparisons with Holm's correction, seed budgets, and bootstrap summaries of continuous metrics.

Which seeds count: ``finished`` seeds succeed or fail by the rule; ``diverged`` seeds are
failures (they count in n), as are ``stopped`` seeds (seed_stop: predicted failures, with the
audit's correction in ``analysis.seed_stop``); ``pruned`` seeds (stopped early by ASHA), and ``running`` or
``failed`` ones, are not in n but are counted in their own columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from analysis.confidence import ALPHA
from analysis.order import natural_key
from analysis.runs import INFO, mixed_settings
from analysis.seed_stop import annotate
from trainables.records import COUNTED, wilson
from trainables.rule import SuccessRule

SHOWN = ("diverged", "pruned", "running", "failed")


def success_table(runs: pd.DataFrame, rule: SuccessRule | None = None, params=None) -> pd.DataFrame:
    """One row per configuration: ``config_id``, swept params, ``n``, ``successes``, ``rate``,
    95% ``wilson_low/high`` and ``cp_low/high``, and ``diverged``/``pruned``/``running``/``failed``
    counts; for an adaptive sweep (``runs.attrs["design"]``) the anytime-valid ``anytime_low/high``
    before Wilson (``analysis.sequential``, alpha split over the configurations). With a ``rule``
    (``resolve_rule``), success is recomputed from each seed's final metric; otherwise the stored
    ``success`` tag is used."""
    ok = outcome(runs, rule)
    params = swept_params(runs) if params is None else list(params)
    status = runs["status"].fillna("unknown")
    extra = sorted(set(status) - set(COUNTED) - set(SHOWN)) + (["stopped"] if status.eq("stopped").any() else [])
    counts = (
        pd.DataFrame(
            {
                "config_id": runs["config_id"],
                "n": status.isin(COUNTED),
                "successes": ok,
                **{s: status.eq(s) for s in (*SHOWN, *extra)},
            }
        )
        .groupby("config_id", sort=False)
        .sum()
    )
    table = runs.groupby("config_id", sort=False)[params].first().join(counts).reset_index()
    table = table.sort_values("config_id", key=lambda ids: ids.map(natural_key), ignore_index=True)
    k, n = table["successes"].to_numpy(), table["n"].to_numpy()
    table["rate"] = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    table["wilson_low"], table["wilson_high"] = interval(k, n, "wilson")
    table["cp_low"], table["cp_high"] = interval(k, n, "beta")
    table["p_best"] = prob_best(k, n)
    ordered = [
        "config_id",
        *params,
        "n",
        "successes",
        "rate",
        "wilson_low",
        "wilson_high",
        "cp_low",
        "cp_high",
        "p_best",
    ]
    table = table[ordered + [*SHOWN, *extra]]
    table.attrs.update(
        params=params,
        rule=describe_rule(runs, rule),
        design=runs.attrs.get("design"),
        mixed=mixed_settings(runs),  # seeds pooled across devices, precisions or code versions
        applied_rule=applied_rule(runs, rule),
        baselines=runs.attrs.get("baselines", []),  # the family's trivial baselines per configuration
    )
    if "stopped" in extra:  # seed_stop: audit, false stops and the corrected interval
        table = annotate(table, runs, ok)
    return table


def prob_best(k, n, draws: int = 20_000, seed: int = 0) -> np.ndarray:
    """Bayesian P(configuration i has the highest rate) under independent Beta(1 + k, 1 + n - k)
    posteriors (uniform priors), by Monte Carlo; NaN for configurations without counted seeds.
    A reading aid beside the tests, with no frequentist guarantee."""
    k, n = np.asarray(k, float), np.asarray(n, float)
    out = np.full(len(k), np.nan)
    some = n > 0
    if some.any():
        rng = np.random.default_rng(seed)
        samples = rng.beta(1 + k[some], 1 + n[some] - k[some], size=(draws, int(some.sum())))
        out[some] = np.bincount(samples.argmax(axis=1), minlength=int(some.sum())) / draws
    return out


def prob_best_paired(
    outcomes: dict[str, dict[int, bool]],
    unknown: dict[str, tuple[list[int], int, int]] | None = None,
    draws: int = 20_000,
    seed: int = 0,
) -> dict[str, float]:
    """P(configuration has the highest rate) from paired seeds ({config: {seed: success}}): a
    Bayesian bootstrap with one Dirichlet(1, ..., 1) weight per seed number, shared by every
    configuration that ran it (the pairing: a seed that is easy for one is weighed alike in all),
    each rate the weighted share of its seeds that succeeded; ties split at random. ``unknown``:
    per configuration (stopped seeds, false stops, audited candidates) for the rate had no seed
    been stopped: each draw fills its stopped seeds with successes at a rate drawn from
    Beta(1 + false stops, 1 + audited - false stops). A reading aid, with no error guarantee."""
    ids = [c for c in outcomes if outcomes[c]]
    if not ids:
        return {c: np.nan for c in outcomes}
    seeds = sorted({s for c in ids for s in outcomes[c]})
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(len(seeds)), size=draws)  # (draws, seeds)
    rates = []
    for c in ids:
        ran = np.array([s in outcomes[c] for s in seeds])
        y = np.broadcast_to(np.array([bool(outcomes[c].get(s, False)) for s in seeds], float), weights.shape).copy()
        stopped, a, b = (unknown or {}).get(c, ([], 0, 0))
        gone = np.isin(seeds, stopped)
        if gone.any():
            q = rng.beta(1 + a, 1 + b - a, size=(draws, 1))
            y[:, gone] = rng.random((draws, int(gone.sum()))) < q
        rates.append((weights * y)[:, ran].sum(axis=1) / weights[:, ran].sum(axis=1))
    rates = np.array(rates).T + rng.random((draws, len(ids))) * 1e-12  # ties split at random
    best = np.bincount(rates.argmax(axis=1), minlength=len(ids)) / draws
    return {c: float(best[ids.index(c)]) if c in ids else np.nan for c in outcomes}


def outcome(runs: pd.DataFrame, rule: SuccessRule | None = None) -> pd.Series:
    """Each seed's success (bool). Only ``finished`` seeds can succeed; with a ``rule`` (given on the
    command line, ``resolve_rule``), success is the rule on the final metric (a missing or NaN metric
    fails), else the stored ``success`` tag."""
    finished = runs["status"].eq("finished")
    if rule is None:
        return finished & runs["success"].fillna(False).astype(bool)
    return finished & rule.meets(runs[rule.metric].astype(float))


def resolve_rule(runs: pd.DataFrame, metric=None, below=None, above=None) -> SuccessRule | None:
    """The rule given on the command line, checked against the runs (a bare ``below``/``above`` keeps
    the stored metric); ``None`` when none is given: the stored success tags decide."""
    if metric is None and below is None and above is None:
        return None
    if below is not None and above is not None:
        raise ValueError("give one of --below / --above, not both")
    if below is None and above is None:
        raise ValueError(f"--metric {metric} needs --below X or --above X")
    if metric is None:
        stored = runs.attrs.get("success_rule")
        if stored is None:
            raise ValueError("no stored success metric to apply the threshold to; pass --metric")
        metric = stored.metric
    metrics = runs.attrs.get("metrics") or [c for c in runs.select_dtypes("number") if c not in INFO]
    if metric not in runs.columns:
        raise ValueError(f"metric {metric!r} is not in the runs; metrics there: {', '.join(metrics) or 'none'}")
    return SuccessRule.parse({"metric": metric, **({"below": below} if below is not None else {"above": above})})


def applied_rule(runs: pd.DataFrame, rule: SuccessRule | None) -> SuccessRule | None:
    """The rule a table applies: the one given (with the stored ``also`` when the metric is the
    stored rule's), else the stored one (``runs.attrs["success_rule"]``), else None."""
    stored = runs.attrs.get("success_rule")
    if rule is None or stored is None or stored.metric != rule.metric:
        return rule or stored
    return SuccessRule(rule.metric, rule.bound, rule.threshold, tuple(x for x in stored.also if x != rule.threshold))


def describe_rule(runs: pd.DataFrame, rule: SuccessRule | None) -> str:
    """The table footer's words for what decides success."""
    if rule is not None:
        return f"recomputed: final {rule.metric} {rule.bound} {rule.threshold:g}"
    stored = runs.attrs.get("success_rule")
    return f"stored rule: {stored.metric} {stored.bound} {stored.threshold:g}" if stored else "stored success tags"


def swept_params(runs: pd.DataFrame) -> list[str]:
    """Params constant within each configuration whose values differ between configurations."""
    metrics = set(runs.attrs.get("metrics", []))
    candidates = runs.attrs.get("params") or [c for c in runs.columns if c not in INFO and c not in metrics]
    by_config = runs.groupby("config_id")
    swept = []
    for name in candidates:
        if name in runs and runs[name].nunique(dropna=False) > 1 and by_config[name].nunique(dropna=False).max() == 1:
            swept.append(name)
    return swept


def interval(k, n, method: str = "wilson", alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided (1 - alpha) interval for k/n: Wilson's (``records.wilson``, the trainable's too) or
    another method of statsmodels' ``proportion_confint`` ("beta": Clopper-Pearson); NaN where n = 0."""
    if method == "wilson":
        return wilson(k, n, alpha)
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    low, high = np.full(k.shape, np.nan), np.full(k.shape, np.nan)
    some = n > 0
    if some.any():
        low[some], high[some] = proportion_confint(k[some], n[some], alpha=alpha, method=method)
    low[some & (k == 0)], high[some & (k == n)] = 0.0, 1.0  # exact there; the formulas round to 1 - 1e-16
    return low, high


def compare(
    table: pd.DataFrame, baseline: str | None = None, test: str = "fisher", alpha: float = ALPHA
) -> pd.DataFrame:
    """Every configuration against ``baseline`` (a config_id) or the best (highest rate): ``diff`` =
    rate - reference rate with its 95% Newcombe interval, the exact ``p`` (Fisher or Boschloo,
    two-sided) and ``p_holm`` corrected over the family. The best is chosen from the same data, so
    p-values against it are exploratory; name a baseline for a confirmatory test."""
    if test not in ("fisher", "boschloo"):
        raise ValueError(f"test must be fisher or boschloo, got {test!r}")
    counted = table[table["n"] > 0]
    if counted.empty:
        raise ValueError("no configuration has a finished or diverged seed yet")
    if baseline is None:
        ref = counted.loc[counted["rate"].idxmax()]
    elif baseline in set(table["config_id"]):
        ref = table.loc[table["config_id"] == baseline].iloc[0]
        if ref["n"] == 0:
            raise ValueError(f"baseline {baseline!r} has no finished or diverged seeds")
    else:
        raise ValueError(f"no configuration {baseline!r}; configurations: {', '.join(map(str, table['config_id']))}")
    kr, nr = int(ref["successes"]), int(ref["n"])
    rows = []
    for cid, k, n in zip(table["config_id"], table["successes"].astype(int), table["n"].astype(int)):
        row = {"config_id": cid, "diff": np.nan, "diff_low": np.nan, "diff_high": np.nan, "p": np.nan}
        if n > 0:
            row["diff"] = k / n - kr / nr
            newcombe = confint_proportions_2indep(k, n, kr, nr, method="newcomb", compare="diff", alpha=alpha)
            row["diff_low"], row["diff_high"] = newcombe
        if n > 0 and cid != ref["config_id"]:
            two_by_two = [[k, n - k], [kr, nr - kr]]
            p = (stats.fisher_exact(two_by_two) if test == "fisher" else stats.boschloo_exact(two_by_two)).pvalue
            row["p"] = 1.0 if np.isnan(p) else p  # Boschloo gives NaN when all seeds of both succeed (or fail)
        rows.append(row)
    out = pd.DataFrame(rows)
    out["p_holm"] = holm(out["p"].to_numpy())
    out["significant"] = out["p_holm"] < alpha
    out.attrs.update(reference=ref["config_id"], chosen="baseline" if baseline else "best", test=test, alpha=alpha)
    return out


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-corrected p-values over the non-NaN entries (statsmodels ``multipletests``)."""
    out = np.full(len(p), np.nan)
    some = ~np.isnan(p)
    if some.any():
        out[some] = multipletests(p[some], method="holm")[1]
    return out


def metric_summary(
    runs: pd.DataFrame, metric: str, params=None, n_resamples: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Per configuration, over finished seeds with a finite final ``metric``: ``n``, ``median`` and
    ``iqm`` (interquartile mean, ``trim_mean(x, 0.25)``) with 95% percentile-bootstrap intervals."""
    if metric not in runs.columns:
        raise ValueError(
            f"metric {metric!r} is not in the runs; metrics there: {', '.join(runs.attrs.get('metrics', []))}"
        )
    params = swept_params(runs) if params is None else list(params)
    keep = runs["status"].eq("finished") & np.isfinite(runs[metric].astype(float))
    rows = []
    for cid, group in runs[keep].groupby("config_id", sort=False):
        x = group[metric].to_numpy(float)
        row = {"config_id": cid, **group[params].iloc[0].to_dict(), "n": len(x)}
        for name, stat in (("median", np.median), ("iqm", lambda v, axis=-1: stats.trim_mean(v, 0.25, axis=axis))):
            row[name] = float(stat(x, axis=-1))
            row[f"{name}_low"] = row[f"{name}_high"] = np.nan
            if len(x) > 1:
                ci = stats.bootstrap(
                    (x,),
                    stat,
                    n_resamples=n_resamples,
                    method="percentile",
                    vectorized=True,
                    rng=np.random.default_rng(seed),
                ).confidence_interval
                row[f"{name}_low"], row[f"{name}_high"] = ci.low, ci.high
        rows.append(row)
    stats_columns = ["n", "median", "median_low", "median_high", "iqm", "iqm_low", "iqm_high"]
    out = pd.DataFrame(rows, columns=["config_id", *params, *stats_columns])
    return out.sort_values("config_id", key=lambda ids: ids.map(natural_key), ignore_index=True)


def forecast_by_epoch(histories: dict, final_ok: dict, rule: SuccessRule) -> pd.DataFrame:
    """How early a seed's outcome shows (lab notes 12/16: "whether a run succeeds can be foretold at
    epoch 2000"). Per epoch, the rule applied to each seed's metric at that epoch is taken as a
    forecast of the seed's final success; over the seeds in ``final_ok`` (run id -> final success)
    with a value at that epoch (a non-finite value forecasts failure): ``seeds``, ``accuracy``,
    ``precision``, ``recall``, ``f1`` (NaN where undefined). ``histories``: run id -> (epochs, values)."""
    rows = []
    epochs = sorted({int(e) for steps, _ in histories.values() for e in steps})
    for epoch in epochs:
        forecast, truth = [], []
        for run_id, (steps, values) in histories.items():
            at = np.asarray(values, float)[np.asarray(steps) == epoch]
            if run_id not in final_ok or not len(at):
                continue
            forecast.append(bool(rule.meets(at[-1])))
            truth.append(bool(final_ok[run_id]))
        f, t = np.array(forecast, dtype=bool), np.array(truth, dtype=bool)  # empty when no seed counts
        tp, fp, fn = int((f & t).sum()), int((f & ~t).sum()), int((~f & t).sum())
        precision = tp / (tp + fp) if tp + fp else np.nan
        recall = tp / (tp + fn) if tp + fn else np.nan
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else np.nan
        rows.append(
            {
                "epoch": epoch,
                "seeds": len(t),
                "accuracy": float((f == t).mean()) if len(t) else np.nan,
                "precision": precision,
                "recall": recall,
                "f1": f1,
            }
        )
    return pd.DataFrame(rows, columns=["epoch", "seeds", "accuracy", "precision", "recall", "f1"])


def settled_epoch(forecast: pd.DataFrame, level: float = 0.95) -> int | None:
    """The first epoch from which the forecast's accuracy stays at or above ``level`` to the end."""
    below = np.flatnonzero(~(forecast["accuracy"].to_numpy() >= level))
    if len(below) == len(forecast):
        return None
    start = below[-1] + 1 if len(below) else 0
    return int(forecast["epoch"].iloc[start]) if start < len(forecast) else None
