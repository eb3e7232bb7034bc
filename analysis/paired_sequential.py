"""Paired, sequential tests of two configurations' success rates, for seeds added in rounds (fixed
seeds: ``analysis.paired_fixed``).

Every configuration of a sweep trains the same seed numbers (the same init and data-order
streams), so seed s gives a pair (x_s, y_s) of outcomes. Under H0: p_x = p_y the two discordant
kinds are equally likely, P(x=1, y=0) = p_x - P(1, 1) = p_y - P(1, 1) = P(x=0, y=1), whatever the
dependence within a pair (McNemar's argument): given which seeds are discordant, their signs are
fair coin flips. The test below is exact under that null and uses nothing else.

``difference``: a group-sequential sign test on the discordant pairs. At each look (the end of a
round) with m discordant pairs of which w favour x, it rejects once |2w - m| reaches a boundary
c. The boundaries spend alpha by the share of the design's seeds seen, alpha * t**rho with
t = seeds / max (Lan & DeMets' alpha-spending, 1983; rho = 1 spends evenly): at each look c is the
smallest integer whose probability of a first crossing there, under the coin-flip null and given
the discordant counts of the looks so far, keeps the total at or below the spent alpha (computed
exactly, by carrying the walk's distribution from look to look). The looks' positions depend only
on which seeds are discordant, never on their signs, so the error rate holds exactly; stopping a
pair early (one of its configurations closed) only spends less. Since start, step and max are
declared in the spec, the design can spend all of alpha by ``max`` instead of holding some back for
an endless horizon as a confidence sequence must; measured in benchmarks/adaptive_seeds.py.

``equivalent``: for a tie within a margin eps, two one-sided anytime tests on the paired
differences d_s = x_s - y_s in {-1, 0, 1}: H0+: E d >= eps is rejected when the betting martingale
prod_s (1 - lam (d_s - eps)), averaged over a grid of lam in [0, 1/(1 + eps)), reaches 1/alpha
(Ville's inequality; Waudby-Smith & Ramdas 2024 for betting), and H0-: E d <= -eps likewise; the
pair is tied (|p_x - p_y| < eps) when both are rejected (an intersection-union test, each at alpha).

``pvalue`` is the anytime-valid p-value of ``difference``: the smallest u such that the procedure,
replayed over the same looks, has rejected at every alpha >= u.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import stats

RHO = 1.0  # alpha spent as alpha * t**RHO, t = share of the max seeds seen (measured: benchmarks/adaptive_seeds.py)
LAMBDAS = 24  # grid of betting fractions averaged by the equivalence test


def looks(seeds: np.ndarray, x: np.ndarray, y: np.ndarray, ends: list[int]) -> list[tuple[int, int, int]]:
    """(seeds seen, discordant m, discordant favouring x w) at each look: the common seeds whose
    number is below each of ``ends`` (the rounds' last seed + 1); looks that add no seed are dropped."""
    out, last = [], -1
    for end in ends:
        seen = seeds < end
        n = int(seen.sum())
        if n == last:
            continue
        xs, ys = x[seen], y[seen]
        out.append((n, int((xs != ys).sum()), int((xs & ~ys).sum())))
        last = n
    return out


@lru_cache(maxsize=4096)
def coin(n: int) -> np.ndarray:
    """Binomial(n, 1/2) probabilities of 0..n."""
    return stats.binom.pmf(np.arange(n + 1), n, 0.5)


@lru_cache(maxsize=100_000)
def boundaries(ms: tuple[int, ...], ts: tuple[float, ...], alpha: float, rho: float = RHO) -> tuple[int, ...]:
    """The boundary c on |2w - m| at each look with discordant counts ``ms`` and information
    fractions ``ts`` (see the module docstring); a boundary above m means no rejection possible."""
    dist, prev, spent, out = np.ones(1), 0, 0.0, []
    for m, t in zip(ms, ts):
        if m > prev:  # the walk takes m - prev more fair steps
            dist = np.convolve(dist, coin(m - prev))
        prev = m
        budget = alpha * min(t, 1.0) ** rho - spent
        # w and m - w lie at the same deviation m - 2w (w < m/2): the mass at deviation >= m - 2w
        half = (m + 1) // 2
        tail = np.cumsum(dist[:half] + dist[::-1][:half])
        fits = np.flatnonzero(tail <= budget * (1 + 1e-12))
        c = m - 2 * int(fits[-1]) if len(fits) else m + 1
        crossed = np.abs(2 * np.arange(m + 1) - m) >= c
        spent += float(dist[crossed].sum())
        dist = np.where(crossed, 0.0, dist)
        out.append(c)
    return tuple(out)


def difference(
    steps: list[tuple[int, int, int]], max_seeds: int, alpha: float, rho: float = RHO, ladder: tuple = ()
) -> tuple[int, int | None]:
    """(direction, look): +1 if x is declared better, -1 if worse, 0 if not (yet); the index of the
    look that decided it. ``steps``: ``looks``' output; ``max_seeds``: the design's max. ``ladder``:
    the other levels of a step-down (Holm) family; the boundary at ``alpha`` is raised to those of
    every larger level in it, so that a smaller level never rejects where a larger one does not
    (the nesting the sequential Holm procedure needs, Bartroff & Lai 2010)."""
    if not steps:
        return 0, None
    ms = tuple(m for _, m, _ in steps)
    ts = tuple(n / max_seeds for n, _, _ in steps)
    levels = {alpha, *(level for level in ladder if level > alpha)}
    bounds = np.max([boundaries(ms, ts, level, rho) for level in sorted(levels)], axis=0)
    for i, ((_, m, w), c) in enumerate(zip(steps, bounds)):
        if abs(2 * w - m) >= c:
            return (1 if 2 * w > m else -1), i
    return 0, None


def could_decide(
    steps: list[tuple[int, int, int]], future: list[int], max_seeds: int, alpha: float, rho: float = RHO, ladder=()
) -> bool:
    """Whether the most favourable continuation could still reject: the remaining looks at ``future``
    seed counts, their new seeds either all discordant one way or all concordant, each direction."""
    if not future:
        return False
    n0, m0, w0 = steps[-1] if steps else (0, 0, 0)
    for way in (1, -1, 0):
        extra = [(n, m0 + (n - n0) * abs(way), w0 + (n - n0) * (way == 1)) for n in future]
        if difference(steps + extra, max_seeds, alpha, rho, ladder)[0] != 0:
            return True
    return False


def pvalue(steps: list[tuple[int, int, int]], max_seeds: int, rho: float = RHO) -> float:
    """The anytime-valid p-value of ``difference``: the smallest u such that the procedure has
    rejected by the last look at every alpha >= u (1 if at none). Rejection need not grow with
    alpha (a larger alpha spends more at early looks and may leave a later boundary higher), so
    every alpha where a boundary changes (``breakpoints``) is tried: P(p <= u) <= u under the null,
    since p <= u means rejecting at level u."""
    if not steps:
        return 1.0
    points = breakpoints(tuple(m for _, m, _ in steps), tuple(n / max_seeds for n, _, _ in steps), rho)
    p = 1.0
    for point in reversed(points):  # rejection is constant from each breakpoint to the next
        if not difference(steps, max_seeds, min(point * (1 + 1e-9), 1.0), rho)[0]:
            break
        p = point
    return p


def breakpoints(ms: tuple[int, ...], ts: tuple[float, ...], rho: float = RHO) -> list[float]:
    """The alphas in (0, 1) at which some boundary of ``boundaries(ms, ts, alpha)`` changes: at each
    look, within a stretch of alpha where the earlier boundaries (and so the mass spent) are
    constant, the boundary changes where the budget alpha * t**rho - spent reaches a tail mass."""
    out: set[float] = set()

    def walk(k: int, low: float, high: float, dist: np.ndarray, prev: int, spent: float) -> None:
        if k == len(ms):
            return
        m, weight = ms[k], min(ts[k], 1.0) ** rho
        if m > prev:
            dist = np.convolve(dist, coin(m - prev))
        half = (m + 1) // 2
        tail = np.cumsum(dist[:half] + dist[::-1][:half])
        cuts = sorted({float(x) for x in (tail + spent) / weight if low < x < high})
        out.update(cuts)
        edges = [low, *cuts, high]
        for a, b in zip(edges, edges[1:]):
            fits = np.flatnonzero(tail <= ((a + b) / 2 * weight - spent) * (1 + 1e-12))
            c = m - 2 * int(fits[-1]) if len(fits) else m + 1
            crossed = np.abs(2 * np.arange(m + 1) - m) >= c
            walk(k + 1, a, b, np.where(crossed, 0.0, dist), m, spent + float(dist[crossed].sum()))

    walk(0, 0.0, 1.0, np.ones(1), 0, 0.0)
    return sorted(out)


def equivalent(d: np.ndarray, margin: float, alpha: float) -> bool:
    """Both one-sided betting tests reject: |E d| < ``margin`` at level ``alpha`` (module docstring).
    ``d``: the paired differences x_s - y_s in seed order."""
    if margin <= 0 or not len(d):
        return False
    lam = np.linspace(0, 1 / (1 + margin), LAMBDAS, endpoint=False)[1:, None]
    d = np.asarray(d, float)[None, :]
    against_high = np.exp(np.log1p(-lam * (d - margin)).cumsum(axis=1)).mean(axis=0)  # H0+: E d >= margin
    against_low = np.exp(np.log1p(lam * (d + margin)).cumsum(axis=1)).mean(axis=0)  # H0-: E d <= -margin
    return bool((against_high >= 1 / alpha).any() and (against_low >= 1 / alpha).any())
