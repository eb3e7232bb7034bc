"""analysis.planning: exact power against scipy's tests and simulation, and budgets against a full scan."""

import numpy as np
import pytest
from scipy import stats

from analysis.planning import power, rejected, seeds_for_halfwidth, seeds_for_power

PAIRS = [(0, 0.375), (0, 0.15), (0, 0.5), (0.2, 0.5), (0.5, 0.85), (0.1, 0.9), (0.3, 0.6)]


def test_rejection_regions_are_scipys_tests():
    """Every table at n = 7: the enumerated region is exactly where scipy's Fisher / Boschloo p <= alpha."""
    n = 7
    for test, fn in (("fisher", stats.fisher_exact), ("boschloo", stats.boschloo_exact)):
        region = rejected(n, 0.05, test)
        for x1 in range(n + 1):
            for x2 in range(n + 1):
                p = fn([[x1, x2], [n - x1, n - x2]]).pvalue
                assert region[x1, x2] == (p <= 0.05), (test, x1, x2, p)


def test_power_matches_simulation():
    rng = np.random.default_rng(0)
    n, draws = 17, 20_000
    x1, x2 = rng.binomial(n, 0.0, draws), rng.binomial(n, 0.375, draws)
    simulated = rejected(n)[x1, x2].mean()
    assert power(0, 0.375, n) == pytest.approx(simulated, abs=0.01)


@pytest.mark.parametrize("p1, p2", PAIRS)
def test_budget_has_the_power_at_close_to_the_smallest_n(p1, p2):
    """The budget's exact power is >= 0.8, and it is at most 1.15x the smallest n with that power
    (found by scanning every n from 1)."""
    n = seeds_for_power(p1, p2)
    assert power(p1, p2, n) >= 0.8
    smallest = next(m for m in range(1, n + 1) if power(p1, p2, m) >= 0.8)
    assert n <= 1.15 * smallest, (n, smallest)


def test_known_budgets_and_bad_input():
    assert seeds_for_power(0, 0.375) == 17  # the normal approximation said 10 (exact power 0.31)
    assert seeds_for_power(0.2, 0.5) == 44
    assert seeds_for_power(0.2, 0.5, test="boschloo") <= 44  # Boschloo is uniformly more powerful than Fisher
    assert seeds_for_power(0.2, 0.5, power=0.9) > 44
    with pytest.raises(ValueError, match="equal rates"):
        seeds_for_power(0.3, 0.3)
    with pytest.raises(ValueError, match="test must be"):
        seeds_for_power(0.2, 0.5, test="z")


def test_halfwidth_budget_is_exact_over_the_binomial():
    """The expected Wilson half-width over Binomial(n, p) is <= h at the budget and > h one seed before."""
    from statsmodels.stats.proportion import proportion_confint

    def expected(n, p):
        k = np.arange(n + 1)
        low, high = proportion_confint(k, n, method="wilson")
        return stats.binom.pmf(k, n, p) @ ((high - low) / 2)

    for p, h in ((0.5, 0.1), (0.15, 0.1), (0.05, 0.05)):
        n = seeds_for_halfwidth(p, h)
        assert expected(n, p) <= h < expected(n - 1, p)
    widths = [seeds_for_halfwidth(0.15, h) for h in (0.2, 0.15, 0.1, 0.05)]
    assert widths == sorted(widths) and len(set(widths)) == 4


@pytest.mark.parametrize("p1, p2, rho, n", [(0.2, 0.5, 0.5, 14), (0.5, 0.85, 0.0, 12), (0.3, 0.5, 0.8, 10)])
def test_mcnemar_power_against_brute_force(p1, p2, rho, n):
    """Every table of n paired seeds (n11, n10, n01, n00) with its multinomial probability, rejected
    where analysis.paired_fixed.mcnemar (scipy's binomtest on the discordant seeds) gives p <= alpha; the
    cells from the bivariate normal of the latent copula."""
    from analysis.paired_fixed import mcnemar

    z = stats.norm.ppf([p1, p2])
    both = stats.multivariate_normal([0, 0], [[1, rho], [rho, 1]]).cdf(z)
    probs = [both, p1 - both, p2 - both, 1 - p1 - p2 + both]
    total = 0.0
    for n11 in range(n + 1):
        for n10 in range(n - n11 + 1):
            for n01 in range(n - n11 - n10 + 1):
                counts = [n11, n10, n01, n - n11 - n10 - n01]
                x = np.array([True] * n11 + [True] * n10 + [False] * n01 + [False] * counts[3])
                y = np.array([True] * n11 + [False] * n10 + [True] * n01 + [False] * counts[3])
                if mcnemar(x, y)[2] <= 0.05:
                    total += stats.multinomial.pmf(counts, n, probs)
    assert power(p1, p2, n, test="mcnemar", rho=rho) == pytest.approx(total, abs=1e-9)


def test_paired_planning_needs_fewer_seeds_than_fisher_under_common_random_numbers():
    n = seeds_for_power(0.2, 0.5, test="mcnemar", rho=0.5)
    assert n < seeds_for_power(0.2, 0.5) == 44
    assert power(0.2, 0.5, n, test="mcnemar", rho=0.5) >= 0.8 > power(0.2, 0.5, n - 1, test="mcnemar", rho=0.5)
    assert seeds_for_power(0.2, 0.5, test="mcnemar", rho=0.8) < n < seeds_for_power(0.2, 0.5, test="mcnemar")
