"""PNG plots of a sweep (matplotlib ``Figure`` objects, no pyplot state, so no display is needed).

Every function writes one PNG and returns its path.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

SUCCESS, FAILURE, OTHER = "#1b9e77", "#d95f02", "#999999"


def save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def label(row: pd.Series, params: list[str]) -> str:
    return " ".join([str(row["config_id"]), *(f"{p}={fmt(row[p])}" for p in params)])


def fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "-" if np.isnan(value) else f"{value:.3g}"
    return str(value)


def interval_columns(table: pd.DataFrame) -> tuple[str, str, str]:
    """(low, high, name) of the interval a table shows: anytime-valid for adaptive seeds, else Wilson."""
    if "anytime_low" in table:
        return "anytime_low", "anytime_high", "anytime-valid 95% interval"
    return "wilson_low", "wilson_high", "95% Wilson interval"


def forest(table: pd.DataFrame, path, comparison: pd.DataFrame | None = None) -> Path:
    """Success rate per configuration with its 95% interval (k/n beside each row)."""
    params = table.attrs.get("params", [])
    fig = Figure(figsize=(8, 1.2 + 0.28 * len(table)))
    ax = fig.add_subplot()
    y = np.arange(len(table))[::-1]
    rate = table["rate"].to_numpy(float)
    low, high, name = interval_columns(table)
    err = np.vstack([rate - table[low], table[high] - rate])
    ax.errorbar(rate, y, xerr=err, fmt="o", color="#333333", ecolor="#4c72b0", capsize=3)
    ax.set_yticks(y, [f"{label(r, params)}  {r['successes']}/{r['n']}" for _, r in table.iterrows()])
    if comparison is not None and "reference" in comparison.attrs:
        for tick, cid in zip(ax.get_yticklabels(), table["config_id"]):
            tick.set_fontweight("bold" if cid == comparison.attrs["reference"] else "normal")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.7, len(table) - 0.3)
    ax.set_xlabel(f"success rate ({name})")
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


def rate_vs_param(table: pd.DataFrame, param: str, path) -> Path:
    """Success rate (its 95% interval) of each configuration against one swept hyperparameter."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    values = table[param]
    rate = table["rate"].to_numpy(float)
    low, high, _ = interval_columns(table)
    err = np.vstack([rate - table[low], table[high] - rate])
    if pd.api.types.is_numeric_dtype(values):
        x = values.to_numpy(float)
        if (x > 0).all() and x.max() / x.min() > 20:
            ax.set_xscale("log")
    else:
        categories = sorted(values.astype(str).unique())
        x = np.array([categories.index(v) for v in values.astype(str)], dtype=float)
        for c in range(len(categories)):  # spread configurations that share a category
            same = np.flatnonzero(x == c)
            x[same] += np.linspace(-0.15, 0.15, len(same)) if len(same) > 1 else 0
        ax.set_xticks(range(len(categories)), categories)
    ax.errorbar(x, rate, yerr=err, fmt="o", capsize=3, color="#4c72b0")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(param)
    ax.set_ylabel("success rate (95% Wilson)")
    ax.grid(alpha=0.3)
    return save(fig, path)


def boxplot(runs: pd.DataFrame, metric: str, path, ok: pd.Series | None = None, threshold: float | None = None) -> Path:
    """Final ``metric`` of finished seeds per configuration: a box and every seed as a dot
    (green success, orange failure), with the success threshold as a dashed line."""
    finished = runs[runs["status"].eq("finished") & np.isfinite(runs[metric].astype(float))]
    groups = list(finished.groupby("config_id", sort=False))
    fig = Figure(figsize=(8, 1.2 + 0.28 * max(len(groups), 1)))
    ax = fig.add_subplot()
    if not groups:  # every seed stopped, pruned or failed: nothing to draw but that
        ax.text(0.5, 0.5, f"no finished seed has a final {metric}", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return save(fig, path)
    y = np.arange(len(groups))[::-1]
    ax.boxplot(
        [g[metric].to_numpy(float) for _, g in groups],
        positions=y,
        orientation="horizontal",
        widths=0.6,
        showfliers=False,
        medianprops={"color": "#333333"},
    )
    rng = np.random.default_rng(0)
    for yi, (_, g) in zip(y, groups):
        colour = [SUCCESS if s else FAILURE for s in ok.loc[g.index]] if ok is not None else OTHER
        ax.scatter(g[metric], yi + rng.uniform(-0.15, 0.15, len(g)), s=8, c=colour, zorder=3)
    ax.set_yticks(y, [str(cid) for cid, _ in groups])
    values = finished[metric].to_numpy(float)
    if len(values) and (values > 0).all() and values.max() / values.min() > 50:
        ax.set_xscale("log")
    if threshold is not None:
        ax.axvline(threshold, ls="--", color="#333333", lw=1)
    ax.set_xlabel(f"final {metric} (finished seeds)")
    return save(fig, path)


def histogram(runs: pd.DataFrame, metric: str, path, thresholds=(), bins: int = 30) -> Path:
    """Final ``metric`` of finished seeds, one histogram per configuration on a shared axis (log
    where the values span more than 50x, so a bimodal metric shows both modes), with each success
    threshold as a dashed line."""
    finished = runs[runs["status"].eq("finished") & np.isfinite(runs[metric].astype(float))]
    groups = list(finished.groupby("config_id", sort=False)) or [("-", finished)]
    fig = Figure(figsize=(7, 0.6 + 1.1 * len(groups)))
    axes = fig.subplots(len(groups), 1, sharex=True, squeeze=False)[:, 0]
    values = finished[metric].to_numpy(float)
    log = len(values) > 0 and (values > 0).all() and values.max() / values.min() > 50
    if len(values):
        low, high = values.min(), values.max()
        edges = (
            np.geomspace(low, high, bins + 1) if log else np.linspace(low, high if high > low else low + 1, bins + 1)
        )
    else:
        edges = bins
    for ax, (cid, g) in zip(axes, groups):
        ax.hist(g[metric].to_numpy(float), bins=edges, color="#4c72b0")
        for i, t in enumerate(thresholds):
            ax.axvline(t, ls="--" if i == 0 else ":", color="#333333", lw=1, label=f"{t:g}" if ax is axes[0] else None)
        ax.set_ylabel(str(cid), rotation=0, ha="right", va="center")
        ax.set_yticks([])
    if log:
        axes[-1].set_xscale("log")
    if len(thresholds):
        axes[0].legend(title="thresholds", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[-1].set_xlabel(f"final {metric} (finished seeds; bars: seeds per bin)")
    return save(fig, path)


def curves(
    histories: dict[str, tuple], ok: dict[str, bool], metric: str, path, threshold=None, smoothing: float = 0.6
) -> Path:
    """Training curves of ``metric`` per seed, EMA-smoothed (weight ``smoothing`` on the past, as in
    TensorBoard), green for seeds that succeeded and orange for the rest."""
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    counts = {True: 0, False: 0}
    positive = True
    for run_id, (steps, values) in histories.items():
        smooth = pd.Series(values).ewm(alpha=1 - smoothing).mean().to_numpy()
        good = bool(ok.get(run_id, False))
        counts[good] += 1
        positive &= bool(np.all(values[np.isfinite(values)] > 0))
        ax.plot(steps, smooth, color=SUCCESS if good else FAILURE, alpha=0.5, lw=1)
    if histories and positive:
        ax.set_yscale("log")
    if threshold is not None:
        ax.axhline(threshold, ls="--", color="#333333", lw=1)
    ax.plot([], [], color=SUCCESS, label=f"success ({counts[True]})")
    ax.plot([], [], color=FAILURE, label=f"failure ({counts[False]})")
    ax.legend()
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric} (EMA {smoothing})")
    ax.grid(alpha=0.3)
    return save(fig, path)


def forecast(table: pd.DataFrame, metric: str, path, settled: int | None = None) -> Path:
    """Accuracy and F1 of "the rule holds at epoch e" as a forecast of each seed's final success."""
    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot()
    ax.plot(table["epoch"], table["accuracy"], color="#333333", label="accuracy")
    ax.plot(table["epoch"], table["f1"], color=SUCCESS, label="F1 (success)")
    if settled is not None:
        ax.axvline(settled, ls="--", color="#999999", lw=1)
        ax.annotate(
            f"accuracy >= 95% from epoch {settled}",
            (settled, 0.05),
            xytext=(-4, 0),
            textcoords="offset points",
            ha="right",
        )
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"final outcome from {metric}")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return save(fig, path)


def sequence(steps: pd.DataFrame, path) -> Path:
    """Adaptive seeds: each configuration's anytime-valid interval (band) and rate (dots) against
    its counted seeds n after each round (``analysis.adaptive.history``); a cross where its seeds stopped."""
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    colours = [c["color"] for c in matplotlib.rcParams["axes.prop_cycle"]]
    for i, (cid, rows) in enumerate(steps.groupby("config_id", sort=False)):
        colour = colours[i % len(colours)]
        n = rows["n"].to_numpy(float)
        ax.fill_between(n, rows["low"], rows["high"], color=colour, alpha=0.15, step=None)
        ax.plot(n, rows["low"], n, rows["high"], color=colour, lw=1)
        rate = rows["successes"] / rows["n"].where(rows["n"] > 0)
        ax.plot(n, rate, "o", color=colour, ms=4, label=f"{cid}: {rows['why'].iloc[-1]}")
        if not rows["open"].iloc[-1]:
            ax.plot(n[-1:], rate.to_numpy()[-1:], "x", color="#333333", ms=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("counted seeds n (after each round)")
    ax.set_ylabel("success rate, anytime-valid interval")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return save(fig, path)
