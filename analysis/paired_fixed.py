"""The paired view of a sweep of fixed seeds (fixed n; adaptive seeds: ``analysis.paired_sequential``): every configuration trains the same seed numbers (the same init and
data-order streams), so seed s of configuration A and seed s of B form a pair.

``paired_table`` compares each configuration with the reference on the seeds both counted:
- success: the discordant pairs (s succeeded in one, failed in the other) are fair coin flips
  under H0: p_A = p_B whatever the dependence within a pair (McNemar's argument), so the exact
  binomial test on them (scipy ``binomtest``) is exact; it gains over Fisher's unpaired test
  when seeds that succeed in one configuration tend to succeed in the other;
- a continuous final metric: the paired differences, their median with the distribution-free
  interval from order statistics (the sign test's inversion), and Wilcoxon's signed-rank p-value.
Fixed-n quantities: an adaptive sweep shows the anytime-valid ones (``analysis.adaptive``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from analysis.confidence import ALPHA
from analysis.success import COUNTED


def mcnemar(x: np.ndarray, y: np.ndarray) -> tuple[int, int, float]:
    """(x only, y only, exact two-sided p) over paired outcomes ``x``, ``y`` (bool arrays)."""
    b, c = int((x & ~y).sum()), int((~x & y).sum())
    return b, c, float(stats.binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0


def median_difference(d: np.ndarray, alpha: float = ALPHA) -> tuple[float, float, float]:
    """(median, low, high) of paired differences ``d``: the (1 - alpha) interval for the median
    from the order statistics whose ranks the Binomial(n, 1/2) quantiles give (NaN if too few)."""
    d = np.sort(np.asarray(d, float))
    n = len(d)
    if n == 0:
        return np.nan, np.nan, np.nan
    j = int(stats.binom.ppf(alpha / 2, n, 0.5))  # P(B < j) <= alpha / 2: the (j)th and (n - j + 1)th order statistics
    while j > 0 and stats.binom.cdf(j - 1, n, 0.5) > alpha / 2:
        j -= 1
    if j < 1:
        return float(np.median(d)), np.nan, np.nan
    return float(np.median(d)), float(d[j - 1]), float(d[n - j])


def paired_table(runs: pd.DataFrame, ok: pd.Series, reference: str, metric: str | None = None) -> pd.DataFrame:
    """Per configuration against ``reference``, over the seed numbers both counted: ``pairs``,
    ``only_this``/``only_ref`` (discordant successes), ``p_mcnemar``; with ``metric``, the median
    paired difference of its final value, its interval and ``p_wilcoxon``."""
    counted = runs[runs["status"].isin(COUNTED) & runs["seed"].notna()].assign(ok=ok)
    by_seed = {cid: g.drop_duplicates("seed", keep="last").set_index("seed") for cid, g in counted.groupby("config_id")}
    ref = by_seed.get(reference)
    rows = []
    for cid, mine in by_seed.items():
        if cid == reference or ref is None:
            continue
        common = mine.index.intersection(ref.index)
        x, y = mine.loc[common, "ok"].to_numpy(bool), ref.loc[common, "ok"].to_numpy(bool)
        b, c, p = mcnemar(x, y)
        row = {"config_id": cid, "pairs": len(common), "only_this": b, "only_ref": c, "p_mcnemar": p}
        if metric is not None and metric in mine:
            d = (mine.loc[common, metric].astype(float) - ref.loc[common, metric].astype(float)).to_numpy()
            d = d[np.isfinite(d)]
            row[f"median diff {metric}"], row["diff_low"], row["diff_high"] = median_difference(d)
            nonzero = d[d != 0]
            row["p_wilcoxon"] = float(stats.wilcoxon(nonzero).pvalue) if len(nonzero) > 1 else np.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["reference"] = reference
    return out
