"""A sweep's report: the terminal table, and ``report.html`` + PNGs + ``runs.parquet`` in a folder."""

from __future__ import annotations

import html
import urllib.parse
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import baselines, plots, seed_stop, settle
from analysis.adaptive import sweep_table
from analysis.paired_fixed import paired_table
from analysis.planning import seeds_for_halfwidth, seeds_for_power
from analysis.runs import client, load_runs, metric_histories, seed_images, write_parquet
from analysis.sequential import Design
from analysis.success import (
    compare,
    forecast_by_epoch,
    metric_summary,
    outcome,
    resolve_rule,
    settled_epoch,
    success_table,
)
from trainables.records import COUNTED, quote

UI = "http://127.0.0.1:5000"  # where `mlflow ui --backend-store-uri sqlite:///mlruns.db` serves a local store
HALFWIDTH = 0.1  # target half-width of the seed-budget column
CURVES = 200  # most training curves fetched from MLflow for the curves plot
ANYTIME = "anytime 95%"  # column of the anytime-valid intervals (simultaneous over the configurations)
NOT_VALID = (
    "seeds were added adaptively, so the table shows only quantities valid under that: fixed-n Wilson and"
    " Clopper-Pearson intervals and Fisher's p-values are not valid under adaptive stopping and are left out"
)


def display_table(table: pd.DataFrame, comparison: pd.DataFrame | None = None) -> pd.DataFrame:
    """The success table as strings: config, swept params, k/n, rate, intervals, p vs reference, counts."""
    params = table.attrs.get("params", [])
    out = pd.DataFrame({"config": table["config_id"].astype(str)})
    for p in params:
        out[p] = table[p].map(plots.fmt)
    out["k/n"] = [f"{k}/{n}" for k, n in zip(table["successes"], table["n"])]
    out["rate"] = table["rate"].map(lambda r: "-" if np.isnan(r) else f"{r:.2f}")
    if "anytime_low" in table:  # adaptive seeds: only what holds under them
        out[ANYTIME] = [span(a, b) for a, b in zip(table["anytime_low"], table["anytime_high"])]
        out["verdict"] = table["verdict"]
        ref = table.attrs.get("reference")
        out["p vs best (anytime)"] = [
            "ref" if c == ref else pvalue(p) for c, p in zip(table["config_id"], table["p_anytime"])
        ]
    else:
        out["Wilson 95%"] = [span(a, b) for a, b in zip(table["wilson_low"], table["wilson_high"])]
        out["CP 95%"] = [span(a, b) for a, b in zip(table["cp_low"], table["cp_high"])]
    if "p_best" in table:
        out["P(best), Bayes"] = table["p_best"].map(lambda p: "-" if np.isnan(p) else f"{p:.2f}")
    if comparison is not None and "anytime_low" not in table:
        ref = comparison.attrs["reference"]
        column = f"p vs {'best' if comparison.attrs['chosen'] == 'best' else ref} (Holm)"
        p = dict(zip(comparison["config_id"], comparison["p_holm"]))
        out[column] = ["ref" if cid == ref else pvalue(p.get(cid, np.nan)) for cid in table["config_id"]]
    for status in ("pruned", "diverged", "running", "failed"):
        if status in ("pruned", "diverged") or table[status].any():
            out[status] = table[status].astype(str)
    if "corrected_low" in table:  # seed_stop (analysis.seed_stop)
        out["stopped"] = table["stopped"].astype(str)
        out["audited"] = table["audited"].astype(str)
        out["false stops"] = table["false_stops"].astype(str)
        out["steps saved"] = table["seed_steps_saved"].astype(str)
        if "anytime_low" not in table:  # adaptive: the anytime interval carries the correction
            out["corrected 95%"] = [span(a, b) for a, b in zip(table["corrected_low"], table["corrected_high"])]
    return out


def span(low: float, high: float) -> str:
    return "-" if np.isnan(low) else f"[{low:.2f}, {high:.2f}]"


def pvalue(p: float) -> str:
    return "-" if np.isnan(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


def format_table(table: pd.DataFrame, comparison: pd.DataFrame | None = None) -> str:
    """Aligned text: text columns left, numbers right; the rule and the test as a footer."""
    shown = display_table(table, comparison)
    widths = {c: max(len(c), *(len(v) for v in shown[c])) for c in shown}
    left = {"config", *table.attrs.get("params", [])}

    def line(cells):
        return "  ".join(v.ljust(widths[c]) if c in left else v.rjust(widths[c]) for c, v in zip(shown, cells))

    lines = [line(shown.columns), line("-" * widths[c] for c in shown)]
    lines += [line(row) for row in shown.itertuples(index=False)]
    counted = "finished + diverged + stopped" if "corrected_low" in table else "finished + diverged"
    foot = f"success: {table.attrs.get('rule', 'stored success tags')}; n = {counted} seeds; pruned seeds are not in n"
    if table["pruned"].any():
        foot += " (ASHA kept the seeds of configurations that looked better early: rates are biased)"
    if comparison is not None:
        foot += f"; p: two-sided {comparison.attrs['test'].capitalize()} exact test, Holm-corrected"
    if "anytime_low" in table:
        foot = f"{anytime_note(table)}\n{foot}"
    if "corrected_low" in table:
        foot = f"{foot}\n{seed_stop.note(table)}"
    if table.attrs.get("mixed"):
        foot += f"\nwarning: these rates pool seeds trained with different settings ({table.attrs['mixed']})"
    return "\n".join([*lines, foot, *baselines.lines(table), *settle.lines(table)])


def anytime_note(table: pd.DataFrame) -> str:
    """What the anytime columns are, and that the fixed-n ones do not hold (adaptive sweeps)."""
    design = Design.from_dict(table.attrs["design"])
    return (
        f"{ANYTIME}: anytime-valid confidence sequence (beta-binomial mixture, running intersection over the rounds),"
        f" all {len(table)} configurations at once (alpha {design.test_alpha:g} / {len(table)} each); verdict: the rule"
        f" {design.rule()}; p vs best (anytime): the paired sequential test's anytime-valid p-value, Bonferroni over"
        f" {len(table) - 1}; P(best), Bayes: posterior probability of the highest rate (Bayesian bootstrap over the"
        f" paired seeds), no error guarantee; {NOT_VALID}; k/n after elimination is biased (a configuration stopped"
        f" early as worse tends to show a rate below its own, the survivors above: the gap looks wider than it is)."
        f" Seeds: {design.describe(len(table), 'stopped' in table)}"
    )


def rounds_section(table: pd.DataFrame, out: Path) -> tuple[pd.DataFrame, Path]:
    """Adaptive seeds: per configuration the interval after each round and why its seeds stopped,
    and the plot of the intervals against n."""
    steps = table.attrs["history"]
    cell = [
        f"{s}/{n} [{lo:.2f}, {hi:.2f}]"
        for s, n, lo, hi in steps[["successes", "n", "low", "high"]].itertuples(index=False)
    ]
    wide = steps.assign(cell=cell).pivot(index="config_id", columns="round", values="cell")
    wide.columns = [f"after round {r}" for r in wide.columns]
    last = steps.groupby("config_id").tail(1).set_index("config_id")
    wide["verdict"] = [last.at[c, "verdict"] for c in wide.index]
    wide["seeds stopped"] = [("no: still open, " if last.at[c, "open"] else "") + last.at[c, "why"] for c in wide.index]
    wide["failed seeds"] = [int(last.at[c, "failed"]) for c in wide.index]
    wide = wide.reset_index().fillna("")
    return wide, plots.sequence(steps, out / "anytime_intervals.png")


def write_report(
    tracking_uri: str, sweep: str, out_dir, metric=None, below=None, above=None, baseline=None
) -> pd.DataFrame:
    """Write ``out_dir/report.html`` (tables, PNGs beside it), ``runs.parquet`` and CSVs of the
    tables; return the success table. ``metric``/``below``/``above``: a rule to recompute success by
    (``success.resolve_rule``), else the stored success tags decide."""
    mlflow_client = client(tracking_uri)  # opened once: the runs, their curves and their images
    runs = load_runs(tracking_uri, sweep, mlflow_client)
    given = resolve_rule(runs, metric, below, above)  # both fail before anything is written
    table = sweep_table(runs, given)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    comparison = fixed_comparison(table, baseline)
    ok = outcome(runs, given)
    stored = runs.attrs["success_rule"]
    shown = given or stored  # the rule the plots draw: the one given, else the stored one
    rule_metric, bound, threshold = (shown.metric, shown.bound, shown.threshold) if shown else (None, None, None)
    also = (
        [x for x in stored.also if (stored.metric, stored.bound) == (rule_metric, bound) and x != threshold]
        if stored
        else []
    )

    write_parquet(runs, out / "runs.parquet")
    table.to_csv(out / "success.csv", index=False)
    if comparison is not None:
        comparison.to_csv(out / "comparison.csv", index=False)
    figures = [("Success rate per configuration", plots.forest(table, out / "forest.png", comparison))]
    for param in table.attrs["params"]:
        figures.append(
            (f"Success rate against {param}", plots.rate_vs_param(table, param, out / f"rate_{safe(param)}.png"))
        )
    sections = []
    for x in also:  # the spec's other thresholds, on the same seeds
        extra = success_table(runs, replace(shown, threshold=x, also=()), params=table.attrs["params"])
        extra.to_csv(out / f"success_{bound}_{x:g}.csv", index=False)
        sections.append(
            (f"Success rate with {rule_metric} {bound} {x:g} (also listed by the spec)", display_table(extra))
        )
    more_figures, more_sections = rule_metric_parts(runs, shown, also, ok, mlflow_client, out)
    figures += more_figures
    sections += more_sections
    images = seed_images(mlflow_client, runs, ok, out / "seeds")
    for name, found in images.items():  # the model's PNGs of each seed, titled by file name
        figures += [(f"{stem.replace('_', ' ').capitalize()}, a {name}", path) for stem, path in found.items()]
    if comparison is not None:
        sections.insert(
            0, ("Comparisons: rate difference to the reference (95% Newcombe interval)", numbers(comparison))
        )
        sections.append(("Seed budget at the observed rates", budget(table, comparison)))
    if comparison is not None:
        pairs = paired_table(runs, ok, comparison.attrs["reference"], rule_metric if rule_metric in runs else None)
        if len(pairs):
            pairs.to_csv(out / "paired.csv", index=False)
            sections.insert(
                1,
                (
                    "Paired by seed number against the reference: exact McNemar test on the discordant seeds"
                    + (
                        f", and the median paired difference of final {rule_metric} (95% sign-test interval, Wilcoxon p)"
                        if rule_metric in runs
                        else ""
                    ),
                    numbers(pairs),
                ),
            )
    if runs.attrs.get("design"):
        steps, path = rounds_section(table, out)
        sections.insert(0, ("Adaptive seeds: the anytime interval after each round, and why seeds stopped", steps))
        figures.insert(0, ("Anytime-valid interval against seeds, per configuration", path))

    sections.append(("The runs in MLflow, by search", mlflow_links(tracking_uri, runs.attrs["experiment_id"], table)))
    page = render(sweep, tracking_uri, table, comparison, sections, figures, out)
    (out / "report.html").write_text(page)
    return table


def rule_metric_parts(
    runs: pd.DataFrame, shown, also: list, ok: pd.Series, mlflow_client, out: Path
) -> tuple[list, list]:
    """(figures, sections) of the rule's metric: its final values against the thresholds, the
    training curves, how early the outcome shows, and its median and IQM; none without a rule or
    without the metric in the runs."""
    if shown is None or shown.metric not in runs.columns:
        return [], []
    rule_metric, threshold = shown.metric, shown.threshold
    figures, sections = [], []
    thresholds = [threshold, *also]
    hist = plots.histogram(runs, rule_metric, out / f"hist_{safe(rule_metric)}.png", thresholds)
    listed = ", ".join(f"{t:g}" for t in thresholds)
    figures.append((f"Final {rule_metric} per configuration, with the thresholds {listed}", hist))
    box = plots.boxplot(runs, rule_metric, out / f"box_{safe(rule_metric)}.png", ok, threshold)
    figures.append((f"Final {rule_metric}", box))
    histories = metric_histories(mlflow_client, curve_sample(runs), rule_metric)
    if histories:
        outcomes = dict(zip(runs["run_id"], ok))
        path = plots.curves(histories, outcomes, rule_metric, out / f"curves_{safe(rule_metric)}.png", threshold)
        figures.append((f"Training curves of {rule_metric} ({len(histories)} seeds)", path))
        finished = runs["status"].eq("finished")
        table_fc = forecast_by_epoch(histories, dict(zip(runs["run_id"][finished], ok[finished])), shown)
        settled = settled_epoch(table_fc)
        path = plots.forecast(table_fc, rule_metric, out / "forecast.png", settled)
        when = f"from epoch {settled}" if settled is not None else "not before the end"
        how_early = "How early the outcome shows: the rule at each epoch as a forecast of the final outcome"
        figures.append((f"{how_early} (accuracy >= 95% {when})", path))
    summary = metric_summary(runs, rule_metric)
    sections.append(
        (f"Final {rule_metric}: median and IQM with 95% bootstrap intervals (finished seeds)", numbers(summary))
    )
    return figures, sections


def fixed_comparison(table: pd.DataFrame, baseline=None) -> pd.DataFrame | None:
    """Fisher/Boschloo + Holm against the reference, for a sweep of fixed n; None for an adaptive
    sweep (not valid under optional stopping) or without counted seeds."""
    if "anytime_low" in table or not table["n"].any():
        return None
    return compare(table, baseline)


def mlflow_links(tracking_uri: str, experiment_id: str, table: pd.DataFrame) -> pd.DataFrame:
    """Per configuration the MLflow search that shows its seed runs (``tags.config_id = '...'``;
    group by config_id and average the metric ``success`` for k/n), linked into MLflow's UI: the
    tracking server, or ``mlflow ui`` on its default address for a local store."""
    base = tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else UI
    rows = []
    for cid in table["config_id"]:
        search = f"tags.config_id = {quote(str(cid))}"
        url = f"{base}/#/experiments/{experiment_id}?searchFilter={urllib.parse.quote(search)}"
        rows.append({"config_id": cid, "MLflow search": f"<a href='{html.escape(url)}'>{html.escape(search)}</a>"})
    return pd.DataFrame(rows)


def curve_sample(runs: pd.DataFrame, total: int = CURVES) -> list[str]:
    """Up to ``total`` counted seeds (stopped ones too: their curves end at the stop), spread evenly over
    the configurations."""
    counted = runs[runs["status"].isin(COUNTED)]
    per_config = max(1, total // max(counted["config_id"].nunique(), 1))
    return list(counted.groupby("config_id", sort=False).head(per_config)["run_id"][:total])


def budget(table: pd.DataFrame, comparison: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: seeds for a +-HALFWIDTH Wilson interval at its rate (expected half-width),
    and seeds per arm for Fisher's exact test to tell its rate from the reference's with 80% exact power."""
    ref = comparison.attrs["reference"]
    ref_rate = float(table.loc[table["config_id"] == ref, "rate"].iloc[0])
    rows = []
    for cid, rate in zip(table["config_id"], table["rate"]):
        if not np.isnan(rate):
            power = seeds_for_power(rate, ref_rate) if abs(rate - ref_rate) > 1e-9 else "-"
            rows.append(
                {
                    "config_id": cid,
                    "rate": f"{rate:.2f}",
                    f"seeds for +-{HALFWIDTH:g} (95% Wilson)": str(seeds_for_halfwidth(rate, HALFWIDTH)),
                    f"seeds per arm to tell from {ref} (80% exact Fisher power)": str(power),
                }
            )
    return pd.DataFrame(rows)


def numbers(df: pd.DataFrame) -> pd.DataFrame:
    return df.apply(lambda c: c.map(plots.fmt) if pd.api.types.is_float_dtype(c) else c)


def safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;font-size:0.9em;margin:0.5em 0 1.5em}
th,td{padding:0.2em 0.7em;border-bottom:1px solid #ddd;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}
.note{color:#555;font-size:0.9em}"""


def comparison_note(comparison: pd.DataFrame | None) -> str:
    if comparison is None:
        return ""
    best = comparison.attrs["chosen"] == "best"
    chosen = "the highest rate, chosen from these data, so exploratory" if best else "the named baseline"
    return (
        f" p: two-sided {comparison.attrs['test'].capitalize()} exact test against"
        f" {html.escape(str(comparison.attrs['reference']))} ({chosen}), Holm-corrected over the configurations."
    )


def pruning_note(table: pd.DataFrame) -> str:
    pruned = int(table["pruned"].sum())
    if not pruned:
        return ""
    return (
        f"<p class='note'><b>{pruned} seeds were pruned</b> (ASHA stopped their configurations early) and are not in n."
        " Pruning keeps the seeds of configurations that looked better early, so the rates are biased and a rate"
        " comparison between configurations pruned differently is not fair; compare rates from a sweep without"
        " <code>scheduler</code>.</p>"
    )


def render(sweep, tracking_uri, table, comparison, sections, figures, out: Path) -> str:
    """The HTML page: one self-contained file linking the PNGs by relative path."""
    esc = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(sweep)}: success report</title>",
        f"<style>{CSS}</style></head><body><h1>Sweep {esc(sweep)}</h1>",
        f"<p class='note'>{esc(tracking_uri)} · {datetime.now():%Y-%m-%d %H:%M} · {int(table['n'].sum())} seeds counted,"
        f" {int(table['pruned'].sum())} pruned, {len(table)} configurations · success: {esc(table.attrs['rule'])}</p>",
        "<h2>Success rate per configuration</h2>",
        display_table(table, comparison).to_html(index=False),
        "<p class='note'>n counts finished and diverged seeds (diverged = failure); pruned, running and failed seeds are"
        " shown but not in n. Intervals are 95% Wilson score and Clopper-Pearson.",
        f"<p class='note'><b>{esc(anytime_note(table))}.</b></p>" if "anytime_low" in table else "",
        f"<p class='note'>{esc(seed_stop.note(table))}.</p>" if "corrected_low" in table else "",
        comparison_note(comparison),
        "</p>",
        pruning_note(table),
        "".join(f"<p class='note'>{esc(line)}</p>" for line in [*baselines.lines(table), *settle.lines(table)]),
    ]
    for title, df in sections:
        parts += [f"<h2>{esc(title)}</h2>", df.to_html(index=False, na_rep="-", escape="MLflow search" not in df)]
    for title, path in figures:
        rel = Path(path).resolve().relative_to(out.resolve()).as_posix()
        parts += [f"<h2>{esc(title)}</h2>", f"<img src='{esc(rel)}' alt='{esc(title)}'>"]
    parts.append("</body></html>")
    return "\n".join(parts)
