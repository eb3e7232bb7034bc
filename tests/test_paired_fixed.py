"""analysis.paired_fixed and the Bayesian P(best): the paired view of a fixed sweep against known values."""

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from analysis.paired_fixed import mcnemar, median_difference, paired_table
from analysis.success import prob_best


def test_mcnemar_is_the_exact_binomial_test_on_discordant_seeds():
    x = np.array([1, 1, 1, 1, 1, 1, 0, 0, 1, 0], bool)
    y = np.array([0, 0, 0, 0, 0, 1, 1, 0, 1, 0], bool)
    b, c, p = mcnemar(x, y)
    assert (b, c) == (5, 1) and p == pytest.approx(stats.binomtest(5, 6, 0.5).pvalue) == pytest.approx(0.21875)
    assert mcnemar(x, x) == (0, 0, 1.0)


def test_median_interval_covers_at_its_level():
    """The order-statistic interval for the median of paired differences covers the true median
    in at least 95% of samples (it is exact up to the binomial's discreteness)."""
    rng = np.random.default_rng(0)
    hits = [lo <= 0.3 <= hi for lo, hi in (median_difference(rng.normal(0.3, 1, 25))[1:] for _ in range(2000))]
    assert 0.95 <= np.mean(hits) <= 0.99
    assert np.isnan(median_difference(np.array([1.0, 2.0]))[1])  # 2 pairs cannot give a 95% interval


def test_paired_table_pairs_by_seed_number():
    """B succeeds on seeds 0-5, A on 0-1 and 6; seed 7 failed in B (not counted): 7 common seeds."""
    rows = [("A", s, "finished", s in (0, 1, 6), float(s)) for s in range(8)]
    rows += [("B", s, "finished" if s < 7 else "failed", s < 6, float(s) + 1) for s in range(8)]
    runs = pd.DataFrame(rows, columns=["config_id", "seed", "status", "success", "m"])
    ok = runs["status"].eq("finished") & runs["success"]
    table = paired_table(runs, ok, "B", "m").set_index("config_id")
    assert table.at["A", "pairs"] == 7 and table.at["A", "only_this"] == 1 and table.at["A", "only_ref"] == 4
    assert table.at["A", "p_mcnemar"] == pytest.approx(stats.binomtest(1, 5, 0.5).pvalue)
    assert table.at["A", "median diff m"] == -1.0  # every common seed's m is 1 lower in A


def test_prob_best_against_closed_forms():
    """Beta(1 + 9, 1 + 1) against Beta(1 + 1, 1 + 9): P(first > second) = 0.99983 (quadrature of
    f_Y(y) P(X > y)); equal counts give 1/2; no counted seeds give NaN."""
    p = prob_best([9, 1, 0], [10, 10, 0])
    exact = integrate.quad(lambda y: stats.beta(2, 10).pdf(y) * stats.beta(10, 2).sf(y), 0, 1)[0]
    assert p[0] == pytest.approx(exact, abs=0.001) and np.isnan(p[2])
    assert p[:2].sum() == pytest.approx(1.0)
    assert prob_best([5, 5], [10, 10])[0] == pytest.approx(0.5, abs=0.01)


def test_prob_best_paired_uses_the_pairing_and_the_estimand():
    """A succeeds on seeds 0..9 of 20, B on 0..7: A is at least as good on every seed, so on the
    pairs A is best in every draw, where independent posteriors give about 3/4. Stopped seeds
    count by the audit: B's 6 stopped seeds drawn from a false-stop rate 10/10 make B likely best,
    from 0/10 leave it behind."""
    from analysis.success import prob_best_paired

    a = {s: s < 10 for s in range(20)}
    b = {s: s < 8 for s in range(20)}
    assert prob_best_paired({"A": a, "B": b}) == {"A": 1.0, "B": 0.0}
    assert 0.6 < prob_best([10, 8], [20, 20])[0] < 0.9
    stopped = list(range(14, 20))
    vouched = prob_best_paired({"A": a, "B": b}, {"B": (stopped, 10, 10)}, draws=4000)
    doubted = prob_best_paired({"A": a, "B": b}, {"B": (stopped, 0, 10)}, draws=4000)
    assert vouched["B"] > 0.8 and doubted["B"] < 0.3
    same = prob_best_paired({"A": a, "B": dict(a)}, draws=4000)  # identical seeds: a coin flip
    assert same["A"] == pytest.approx(0.5, abs=0.05)
