"""Seed budgets, computed exactly: how many seeds a configuration needs before a sweep starts.

``seeds_for_power(p1, p2)`` is the fewest seeds per configuration at which the exact test that
``analysis.success.compare`` runs (Fisher's, or Boschloo's) rejects p1 = p2 with at least the asked
power. The power is not approximated: every pair of outcomes (x1, x2) in 0..n is enumerated, the
test's p-value is computed for each table, and the Binomial(n, p1) x Binomial(n, p2) probability
of the rejected tables is summed. (A normal approximation on Cohen's h promised 80% where the
exact test had 16-73%, worst near a rate of 0: ``seeds_for_power(0, 0.375)`` was 10 seeds with
power 0.31; it needs 17.)

Exact power is not monotone in n (the discreteness of the tables gives it a sawtooth), so the
search brackets the crossing by doubling, bisects, then walks down while a smaller n still has the
power: the answer is the smallest n of that last stretch, within a few percent of the true
smallest n (tests/test_planning.py checks 1.15x against a full scan).

With ``test="mcnemar"`` the planner counts the paired design the adaptive rule tests: every
configuration trains the same seed numbers, so seed s gives a pair; under common random numbers
(latent correlation ``rho`` of a seed's outcomes across configurations, a Gaussian copula) fewer
seeds are discordant and the exact McNemar test needs fewer seeds than Fisher's (``mcnemar_power``
enumerates the discordant count and its split).

``seeds_for_halfwidth(rate, h)`` is the fewest seeds whose interval (Wilson or Clopper-Pearson,
the ones the report shows) has an expected half-width at most h when the true rate is ``rate``:
the half-width is averaged over Binomial(n, rate) outcomes, not taken at the one count rate * n.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from analysis.confidence import ALPHA

TESTS = ("fisher", "boschloo", "mcnemar")
RHO = 0.5  # --dry-run's assumed latent correlation of a seed's outcomes across configurations (mcnemar)
NUISANCE_GRID = 201  # Boschloo: points of the common rate over which the worst-case size is taken (plus 0.5)
LIMIT = 20_000  # seeds per configuration the planner searches up to


@lru_cache(maxsize=64)
def _fisher_tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Fisher p-values of every table (x1 of n vs x2 of n): two-sided as scipy computes it
    (hypergeometric outcomes no more likely than the observed one, relative tolerance 1e-7), and
    one-sided "less" (x1's share below x2's), the statistic of Boschloo's one-sided test."""
    x1, x2 = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    total = x1 + x2
    pmf = stats.hypergeom.pmf(x1, 2 * n, total, n)  # x1 successes in the first arm given the total
    two_sided = np.empty(pmf.shape)
    for t in range(2 * n + 1):
        cells = total == t
        p = pmf[cells]
        order = np.sort(p)
        # mass of outcomes no more likely than each one: a sorted cumulative sum, looked up
        cumulative = np.cumsum(order)
        two_sided[cells] = cumulative[np.searchsorted(order, p * (1 + 1e-7), side="right") - 1]
    return np.minimum(two_sided, 1.0), stats.hypergeom.cdf(x1, 2 * n, total, n)


def _boschloo_less(n: int, level: float) -> np.ndarray:
    """Tables Boschloo's one-sided ("less") test rejects at ``level``: ordered by Fisher's one-sided
    p-value, a table's p-value is the largest over the common rate pi of P_pi(statistic <= its own)."""
    stat = _fisher_tables(n)[1].ravel()
    order = np.argsort(stat, kind="stable")
    pi = np.unique(np.r_[np.linspace(1e-6, 1 - 1e-6, NUISANCE_GRID), 0.5])
    each = stats.binom.pmf(np.arange(n + 1)[None, :], n, pi[:, None])  # (grid, n+1)
    joint = (each[:, :, None] * each[:, None, :]).reshape(len(pi), -1)[:, order]
    size = np.cumsum(joint, axis=1)
    sorted_stat = stat[order]  # tables tied on the statistic share the mass up to the last of them
    last_of_tie = np.searchsorted(sorted_stat, sorted_stat * (1 + 1e-13), side="right") - 1
    out = np.empty(stat.shape, bool)
    out[order] = size[:, last_of_tie].max(axis=0) <= level * (1 + 1e-9)
    return out.reshape(n + 1, n + 1)


def cells(p1: float, p2: float, rho: float) -> tuple[float, float]:
    """(P(x=1, y=0), P(x=0, y=1)) of a seed whose outcomes have rates ``p1``, ``p2`` and latent
    correlation ``rho`` (a Gaussian copula: the seeds as common random numbers)."""
    if p1 in (0.0, 1.0) or p2 in (0.0, 1.0) or rho == 0:
        both = p1 * p2
    else:
        z = stats.norm.ppf([p1, p2])
        both = float(stats.multivariate_normal([0, 0], [[1, rho], [rho, 1]]).cdf(z))
    return max(p1 - both, 0.0), max(p2 - both, 0.0)


@lru_cache(maxsize=64)
def mcnemar_rejected(n: int, alpha: float) -> np.ndarray:
    """Boolean (n+1, n+1): [m, w] whether the exact two-sided McNemar test (scipy ``binomtest`` on
    the discordant seeds, as ``analysis.paired_fixed.mcnemar``) rejects with m discordant, w of them one way."""
    out = np.zeros((n + 1, n + 1), bool)
    for m in range(1, n + 1):
        w = np.arange(m + 1)
        p = np.minimum(1.0, 2 * np.minimum(stats.binom.cdf(w, m, 0.5), stats.binom.sf(w - 1, m, 0.5)))
        out[m, : m + 1] = p <= alpha * (1 + 1e-9)
    return out


def mcnemar_power(p1: float, p2: float, n: int, alpha: float = ALPHA, rho: float = 0.0) -> float:
    """Exact power of the two-sided McNemar test with ``n`` paired seeds: summed over the discordant
    count m ~ Binomial(n, p10 + p01) and its split w ~ Binomial(m, p10 / (p10 + p01))."""
    p10, p01 = cells(p1, p2, rho)
    if p10 + p01 == 0:
        return 0.0
    m = np.arange(n + 1)
    w = stats.binom.pmf(m[None, :], m[:, None], p10 / (p10 + p01))  # [m, w]
    return float(stats.binom.pmf(m, n, p10 + p01) @ (w * mcnemar_rejected(n, alpha)).sum(axis=1))


@lru_cache(maxsize=64)
def rejected(n: int, alpha: float = ALPHA, test: str = "fisher") -> np.ndarray:
    """Boolean (n+1, n+1): the tables (x1, x2) the two-sided ``test`` rejects at ``alpha``, with
    scipy's conventions (``fisher_exact``; ``boschloo_exact``: twice the smaller one-sided p-value)."""
    if test not in TESTS[:2]:
        raise ValueError(f"test must be fisher or boschloo, got {test!r}")
    if test == "fisher":
        return _fisher_tables(n)[0] <= alpha
    less = _boschloo_less(n, alpha / 2)
    return less | less.T  # "greater" is "less" with the arms swapped


def power(p1: float, p2: float, n: int, alpha: float = ALPHA, test: str = "fisher", rho: float = 0.0) -> float:
    """Exact power of the two-sided ``test`` at ``alpha`` with ``n`` seeds per configuration
    (``mcnemar``: paired seeds with latent correlation ``rho``)."""
    if test == "mcnemar":
        return mcnemar_power(p1, p2, n, alpha, rho)
    k = np.arange(n + 1)
    joint = np.outer(stats.binom.pmf(k, n, p1), stats.binom.pmf(k, n, p2))
    return float(joint[rejected(n, alpha, test)].sum())


def seeds_for_power(
    p1: float, p2: float, power: float = 0.8, alpha: float = ALPHA, test: str = "fisher", rho: float = 0.0
) -> int:
    """Fewest seeds per configuration at which the exact two-sided ``test`` ("fisher", the one
    ``compare`` uses by default, "boschloo", or "mcnemar", the paired test of seeds that every
    configuration trains alike, with latent within-seed correlation ``rho``) tells rates ``p1`` and
    ``p2`` apart with at least ``power`` (exact, by enumeration; see the module docstring)."""
    if test not in TESTS:
        raise ValueError(f"test must be one of {', '.join(TESTS)}, got {test!r}")
    if not 0 <= rho < 1:
        raise ValueError(f"rho must be in [0, 1), got {rho}")
    for name, value in (("p1", p1), ("p2", p2)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be a rate in [0, 1], got {value}")
    if p1 == p2:
        raise ValueError("p1 == p2: no number of seeds tells equal rates apart")
    if not 0 < power < 1 or not 0 < alpha < 1:
        raise ValueError(f"need 0 < power < 1 and 0 < alpha < 1, got power {power}, alpha {alpha}")
    return _seeds_for_power(float(p1), float(p2), float(power), float(alpha), test, float(rho))


@lru_cache(maxsize=256)
def _seeds_for_power(p1: float, p2: float, target: float, alpha: float, test: str, rho: float = 0.0) -> int:
    def enough(n: int) -> bool:
        return globals()["power"](p1, p2, n, alpha, test, rho) >= target

    high = 2
    while not enough(high):
        high *= 2
        if high > LIMIT:
            raise ValueError(f"more than {LIMIT} seeds per configuration needed to tell {p1} from {p2}")
    low = high // 2  # not enough (or 1)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    n = high
    misses = 0
    probe = n - 1
    while probe >= 1 and misses < 3:  # the sawtooth: a few smaller n may have the power too
        if enough(probe):
            n, misses = probe, 0
        else:
            misses += 1
        probe -= 1
    return n


def seeds_for_halfwidth(
    rate: float, halfwidth: float, method: str = "wilson", alpha: float = ALPHA, max_n: int = LIMIT
) -> int:
    """Fewest seeds at which the (1 - alpha) interval (``"wilson"`` or ``"beta"`` = Clopper-Pearson)
    has an expected half-width at most ``halfwidth`` when the true rate is ``rate`` (averaged over
    the Binomial(n, rate) counts)."""
    if not 0 <= rate <= 1 or not 0 < halfwidth < 0.5:
        raise ValueError(f"need 0 <= rate <= 1 and 0 < halfwidth < 0.5, got {rate}, {halfwidth}")

    def expected(n: int) -> float:
        k = np.arange(n + 1)
        low, high = proportion_confint(k, n, alpha=alpha, method=method)
        width = (np.nan_to_num(high, nan=1.0) - np.nan_to_num(low)) / 2
        return float(stats.binom.pmf(k, n, rate) @ width)

    high = 1
    while expected(high) > halfwidth:
        high *= 2
        if high > max_n:
            raise ValueError(f"more than {max_n} seeds needed for half-width {halfwidth}")
    low = high // 2
    while high - low > 1:  # the expected width falls with n (no sawtooth worth a walk)
        mid = (low + high) // 2
        low, high = (low, mid) if expected(mid) <= halfwidth else (mid, high)
    return high
