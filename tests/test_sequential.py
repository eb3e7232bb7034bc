"""analysis.sequential: the confidence sequence against closed forms and against simulation under
continuous monitoring, and the rule that stops adding seeds."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.special import betaln

from analysis.sequential import Design, confidence_sequence, decide, history, log_ratio, sequence_table
from analysis.success import interval


@pytest.mark.parametrize("n", [1, 5, 16, 100])
def test_no_successes_matches_the_closed_form(n):
    """s = 0, Beta(1, 1): M_n(p) = 1 / ((n + 1)(1 - p)^n), so high solves (1 - p)^n (n + 1) = alpha."""
    low, high = confidence_sequence(0, n, 0.05)
    assert low == 0.0 and high == pytest.approx(1 - (0.05 / (n + 1)) ** (1 / n), abs=1e-10)
    low, high = confidence_sequence(n, n, 0.05)  # and its mirror
    assert high == 1.0 and low == pytest.approx((0.05 / (n + 1)) ** (1 / n), abs=1e-10)


def test_endpoints_put_the_mixture_ratio_at_one_over_alpha():
    """5 of 10 by hand: B(6, 6) = 5!5!/11! = 1/2772, so the endpoints solve p^5 (1-p)^5 = alpha / 2772;
    the interval is symmetric about 1/2."""
    low, high = confidence_sequence(5, 10, 0.05)
    assert math.exp(betaln(6, 6)) == pytest.approx(1 / 2772)
    for p in (low, high):
        assert (p * (1 - p)) ** 5 == pytest.approx(0.05 / 2772, rel=1e-8)
        assert log_ratio(p, 5, 10) == pytest.approx(-math.log(0.05), abs=1e-8)
    assert low + high == pytest.approx(1.0) and 0.05 < low < 0.5


def test_edge_cases_and_bad_input():
    assert confidence_sequence(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes <= n"):
        confidence_sequence(3, 2)
    with pytest.raises(ValueError, match="alpha"):
        confidence_sequence(1, 2, alpha=1.5)


def test_interval_narrows_as_n_grows_and_is_wider_than_wilson():
    widths = [np.subtract(*confidence_sequence(n // 4, n)[::-1]) for n in (8, 16, 32, 64, 128, 256, 1024)]
    assert all(a > b for a, b in zip(widths, widths[1:])) and widths[-1] < 0.1
    wilson = interval([4], [16])
    low, high = confidence_sequence(4, 16)
    assert low < wilson[0][0] and high > wilson[1][0]  # the price of holding at every n


PATHS, HORIZON = 4000, 200


def crossing_rate(rate: float, low: np.ndarray, high: np.ndarray, seed: int = 0) -> float:
    """Share of Bernoulli(rate) paths whose interval misses ``rate`` at some n <= HORIZON."""
    rng = np.random.default_rng(seed)
    s = np.cumsum(rng.random((PATHS, HORIZON)) < rate, axis=1)  # successes after n = 1..HORIZON
    n = np.arange(1, HORIZON + 1)
    missed = (low[s, n] > rate) | (high[s, n] < rate)
    return float(missed.any(axis=1).mean())


@pytest.mark.parametrize("rate", [0.02, 0.15, 0.5, 0.85])
def test_coverage_under_continuous_monitoring(rate):
    """P(the true rate leaves the interval at any n <= 200) <= alpha, within Monte-Carlo error."""
    low, high = sequence_table(HORIZON, 0.05)
    missed = crossing_rate(rate, low, high)
    assert missed <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / PATHS), missed


def test_wilson_under_continuous_monitoring_does_not_cover():
    """Why the sequence is needed: checking a 95% Wilson interval after every seed misses far more often."""
    n = np.arange(HORIZON + 1)
    s = np.arange(HORIZON + 1)[:, None]
    ok = s <= n
    low, high = np.full((HORIZON + 1,) * 2, np.nan), np.full((HORIZON + 1,) * 2, np.nan)
    k, m = np.broadcast_to(s, ok.shape)[ok], np.broadcast_to(n, ok.shape)[ok]
    low[ok], high[ok] = interval(k, m, "wilson")
    assert crossing_rate(0.5, low, high) > 0.2


def test_design_blocks_of_seeds():
    design = Design(start=4, step=4, max=14)
    assert [design.round_seeds(r) for r in (1, 2, 3, 4, 5)] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9, 10, 11],
        [12, 13],
        [],
    ]
    assert design.rounds == 4 and [design.round_of(s) for s in (0, 3, 4, 11, 12, 13)] == [1, 1, 2, 3, 4, 4]


def test_separated_stops_the_clearly_worse_and_then_the_best():
    design = Design(start=4, step=4, max=16)
    after1 = decide({"c0": (0, 4), "c1": (4, 4), "c2": (2, 4)}, design, round_=1)
    assert all(d["open"] for d in after1.values())  # 4 seeds cannot separate anything at alpha 0.05 / 3
    after3 = decide({"c0": (0, 12), "c1": (12, 12), "c2": (6, 12)}, design, round_=3)
    assert not after3["c0"]["open"] and after3["c0"]["why"] == "below best c1"
    assert after3["c1"]["open"] and after3["c2"]["open"] and "overlaps" in after3["c2"]["why"]
    assert after3["c1"]["high"] == 1.0 and after3["c0"]["low"] == 0.0
    two = decide({"c0": (0, 12), "c1": (12, 12)}, design, round_=3)
    assert not two["c0"]["open"] and not two["c1"]["open"] and two["c1"]["why"] == "best, separated from all"
    last = decide({"a": (8, 16), "b": (9, 16)}, design, round_=4)
    assert not any(d["open"] for d in last.values()) and last["a"]["why"].startswith("reached max 16")


def test_halfwidth_and_no_counted_seeds():
    design = Design(start=8, step=8, max=512, until="halfwidth", halfwidth=0.2)
    out = decide({"wide": (4, 8), "narrow": (0, 64), "none": (0, 0)}, design, round_=2)
    assert out["wide"]["open"] and not out["narrow"]["open"] and "half-width" in out["narrow"]["why"]
    assert not out["none"]["open"] and "no counted seeds" in out["none"]["why"]


def test_history_replays_the_rounds_and_keeps_stopped_configurations_stopped():
    """c0 never succeeds, c1 always: c0 stops after round 3 (12 seeds: [0, 0.43] below [0.57, 1]);
    c1 and c2 (at 1/2) overlap and run to max; the seeds c0 never got do not reopen it."""
    design = Design(start=4, step=4, max=16)
    rows = [
        {"config_id": cid, "seed": seed, "status": "finished", "success": ok(seed), "run_id": f"{cid}/{seed}"}
        for cid, ok, seeds in (
            ("c0", lambda s: False, 12),
            ("c1", lambda s: True, 16),
            ("c2", lambda s: s % 2 == 0, 16),
        )
        for seed in range(seeds)
    ]
    steps = history(pd.DataFrame(rows), design)
    assert list(steps["round"]) == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4]
    final = steps.groupby("config_id").tail(1).set_index("config_id")
    assert final.at["c0", "why"] == "below best c1" and final.at["c0", "n"] == 12 and final.at["c0", "high"] < 0.45
    assert final.at["c2", "n"] == 16 and final.at["c2", "why"].startswith("reached max 16")
