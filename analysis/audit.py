"""What the audit of stopped seeds allows to say (``seed_stop``, trainables.seed_stop).

A stopped seed was *predicted* to fail, not seen to fail. A deterministic share of the stop
candidates (a hash of the seed number) trains on as the audit, so the audited candidates' outcomes
are a random sample of what the stopped ones would have done.

**How many stopped seeds would have succeeded** (``stopped_successes_bound``, at level alpha): of
C = b + m stop candidates, b were audited (a of them succeeded) and m stopped. Whether a candidate
is audited does not depend on how it would end, so given b the audited ones are a uniformly random
b of the C, and with T candidates that would succeed, a ~ Hypergeometric(C, T, b). The exact upper
bound T+ is the largest T with P_T(A <= a) >= alpha (the test of each T inverted; P_T(A <= a)
falls as T grows), and W+ = T+ - a bounds the stopped seeds that would have succeeded: it fails
with probability at most alpha. With no audited candidate (b = 0), W+ = m. (Tighter than bounding
the false-stop rate by Clopper-Pearson and then its binomial count: at alpha 0.005, 31 stopped and
0 of 10 audited, W+ = 14 against 22.)

**The corrected interval** of a success rate (``corrected_interval``, alpha = 0.05 split in two
halves), with k successes among n seeds of which m stopped: the lower end is the Clopper-Pearson
lower bound of k/n at level 1 - alpha/2 (stops only remove successes, so the count with no stop is
at least k); the upper end is the Clopper-Pearson upper bound of (k + W+)/n at level 1 - alpha/2,
W+ at alpha/2. The Clopper-Pearson bounds are monotone in the count, so the interval misses the
rate the configuration would show had no seed been stopped with probability at most alpha.

Adaptive seeds (``analysis.sequential.decide``) use the same W+ (at a share of the sweep's alpha)
against claims that a configuration with stopped seeds is worse.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def cp_bounds(k, n, alpha: float) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval of k/n at level 1 - alpha ((0, 1) when n = 0)."""
    k, n = int(k), int(n)
    if n == 0:
        return 0.0, 1.0
    low = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def false_stop_rate(false_stops, audited, alpha: float) -> tuple[float, float, float]:
    """(rate, low, high): the share of audited stop candidates that succeeded, with its exact
    two-sided Clopper-Pearson interval (NaN rate when none was audited)."""
    rate = false_stops / audited if audited else math.nan
    return (rate, *cp_bounds(false_stops, audited, alpha))


def stopped_successes_bound(stopped, false_stops, audited, alpha: float) -> int:
    """W+: at most this many of the ``stopped`` seeds would have succeeded, with probability at least
    1 - ``alpha`` (the module docstring); ``stopped`` when alpha is 0."""
    stopped, a, b = int(stopped), int(false_stops), int(audited)
    if stopped == 0 or alpha <= 0 or b == 0:
        return stopped
    t = np.arange(a, a + stopped + 1)  # candidates that would succeed: at least the a seen
    kept = stats.hypergeom.cdf(a, stopped + b, t, b) >= alpha
    return int(t[kept].max()) - a


def corrected_interval(k, n, stopped, false_stops, audited, alpha: float) -> tuple[float, float]:
    """The success-rate interval that covers the rate with no stop (the module docstring's construction)."""
    if n == 0:
        return math.nan, math.nan
    low, _ = cp_bounds(k, n, alpha / 2)
    w_high = stopped_successes_bound(stopped, false_stops, audited, alpha / 2)
    _, high = cp_bounds(min(int(k) + w_high, int(n)), n, alpha / 2)
    return low, high
