"""The anytime-valid interval of one success rate: valid at every n, whenever one stops looking.

**The confidence sequence** of one rate (Robbins 1970; Lai 1976, Ann. Statist.): for a candidate
rate p, the likelihood ratio of the Beta(a, b) mixture of Bernoulli laws against Bernoulli(p) after
s successes in n seeds,

    M_n(p) = [B(s + a, n - s + b) / B(a, b)] / [p^s (1 - p)^(n - s)],

is a nonnegative martingale with M_0 = 1 when p is the true rate, so by Ville's inequality
P(exists n: M_n(p) >= 1/alpha) <= alpha. The sequence is {p : M_n(p) < 1/alpha}, an interval around
s/n (log M_n is convex in p and negative at s/n) whose endpoints are the roots of
log M_n(p) = log(1/alpha) (scipy's bracketing root finder, vectorised); prior Beta(1, 1).
``running_intersection`` keeps the tightest interval seen over the rounds (still valid, narrower).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.optimize.elementwise import find_root
from scipy.special import betaln, xlog1py, xlogy

ALPHA = 0.05  # the family's error rate: every test and interval of a sweep at 1 - ALPHA

PRIOR = (1.0, 1.0)  # Beta(a, b) mixing prior: uniform
TABLED = 256  # confidence_sequence reads counts up to this n from a precomputed table (~1 s to build at 256)
EDGE = 1e-300  # the lower endpoint's bracket starts here (log M_n is +inf at p = 0)


def log_ratio(p: float, successes: int, n: int, prior: tuple[float, float] = PRIOR) -> float:
    """log M_n(p): the Beta mixture against Bernoulli(p), after ``successes`` in ``n``."""
    a, b = prior
    return betaln(successes + a, n - successes + b) - betaln(a, b) - xlogy(successes, p) - xlog1py(n - successes, -p)


def confidence_sequence(
    successes: int, n: int, alpha: float = ALPHA, prior: tuple[float, float] = PRIOR
) -> tuple[float, float]:
    """(low, high): the (1 - alpha) confidence sequence for a success rate after ``successes`` of
    ``n`` seeds, valid uniformly over n (see the module docstring). (0, 1) when n = 0; low is 0
    when successes = 0 and high is 1 when successes = n. Up to n = TABLED with the default prior
    it is read from ``sequence_table`` (one vectorised solve per size and alpha): a rule replayed
    over rounds, or simulated many times, asks for the same counts again and again."""
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if prior == PRIOR and n <= TABLED and 0 < alpha < 1:
        low, high = sequence_table(max(64, 1 << (int(n) - 1).bit_length()), float(alpha))
        return float(low[successes, n]), float(high[successes, n])
    low, high = confidence_bounds(np.array([successes]), np.array([n]), alpha, prior)
    return float(low[0]), float(high[0])


def confidence_bounds(
    successes, n, alpha: float = ALPHA, prior: tuple[float, float] = PRIOR
) -> tuple[np.ndarray, np.ndarray]:
    """``confidence_sequence`` elementwise over arrays of counts: both endpoints of every interval
    at once, as roots of log M_n(p) = log(1/alpha) bracketed by (0, s/n) and (s/n, 1) (scipy's
    vectorised ``elementwise.find_root``)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    s, n = np.broadcast_arrays(np.asarray(successes, dtype=float), np.asarray(n, dtype=float))
    low, high = np.zeros(s.shape), np.ones(s.shape)
    rate = np.divide(s, n, out=np.zeros(s.shape), where=n > 0)

    def excess(p, s, n):
        return log_ratio(p, s, n, prior) + math.log(alpha)

    for out, inner, edge in ((low, s > 0, EDGE), (high, s < n, 1 - 2**-53)):
        if inner.any():
            bracket = (
                (np.full(inner.sum(), edge), rate[inner]) if edge < 0.5 else (rate[inner], np.full(inner.sum(), edge))
            )
            found = find_root(excess, bracket, args=(s[inner], n[inner]), tolerances={"xatol": 1e-15, "xrtol": 4e-16})
            out[inner] = found.x
    return low, high


@lru_cache(maxsize=16)
def sequence_table(max_n: int, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """``confidence_sequence`` for every (successes, n) up to ``max_n``: arrays low[s, n], high[s, n]
    (NaN where s > n), to look intervals up along many simulated paths at once."""
    s, n = np.meshgrid(np.arange(max_n + 1), np.arange(max_n + 1), indexing="ij")
    low, high = np.full(s.shape, np.nan), np.full(s.shape, np.nan)
    valid = s <= n
    low[valid], high[valid] = confidence_bounds(s[valid], n[valid], alpha)
    low.setflags(write=False)
    high.setflags(write=False)
    return low, high


def running_intersection(counts: list[tuple], alpha: float = ALPHA) -> tuple[float, float]:
    """The intersection of the confidence sequences at each of ``counts`` ((successes, n) after each
    round, in order, or (successes, n, W+) with seed_stop: the upper end from successes + W+): the
    tightest interval the path has shown, still valid at every n."""
    low, high = 0.0, 1.0
    for s, n, *possible in counts:
        a, _ = confidence_sequence(int(s), int(n), alpha)
        _, b = confidence_sequence(min(int(s) + int(sum(possible)), int(n)), int(n), alpha)
        low, high = max(low, a), min(high, b)
    return low, max(low, high)
