"""analysis.confidence: the confidence sequence against closed forms and against simulation under
continuous monitoring; analysis.sequential: the rule that stops adding seeds, with and without
seed_stop's correction."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy.special import betaln

from analysis import paired_sequential
from analysis.adaptive import history
from analysis.audit import stopped_successes_bound
from analysis.confidence import confidence_sequence, log_ratio, running_intersection, sequence_table
from analysis.sequential import STOP_SHARE, Design, compare_pair, decide, pair_looks, worst_cases
from analysis.simulation import simulate
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


def block(successes: int, n: int) -> dict[int, bool]:
    """Outcomes of seeds 0..n-1, the first ``successes`` of them successes."""
    return {s: s < successes for s in range(n)}


def test_separated_stops_the_clearly_worse_and_then_the_best():
    design = Design(start=4, step=4, max=16, until="separated")
    after1 = decide({"c0": block(0, 4), "c1": block(4, 4), "c2": block(2, 4)}, design, round_=1)
    assert all(d["open"] for d in after1.values())  # 4 seeds cannot separate anything at alpha 0.05 / 3
    after3 = decide({"c0": block(0, 12), "c1": block(12, 12), "c2": block(6, 12)}, design, round_=3)
    assert not after3["c0"]["open"] and after3["c0"]["why"] == "below best c1" and after3["c0"]["verdict"] == "worse"
    assert after3["c1"]["open"] and after3["c2"]["open"] and "overlaps" in after3["c2"]["why"]
    two = decide({"c0": block(0, 12), "c1": block(12, 12)}, design, round_=3)
    assert two["c1"]["verdict"] == "best" and two["c1"]["why"] == "best, separated from all"
    last = decide({"a": block(8, 16), "b": block(9, 16)}, design, round_=4)
    assert not any(d["open"] for d in last.values()) and last["a"]["why"].startswith("reached max 16")
    assert last["a"]["verdict"] == "undecided"


def test_halfwidth_and_no_counted_seeds():
    design = Design(start=8, step=8, max=512, until="halfwidth", halfwidth=0.2)
    out = decide({"wide": block(4, 8), "narrow": block(0, 64), "none": {}}, design, round_=2)
    assert out["wide"]["open"] and not out["narrow"]["open"] and "half-width" in out["narrow"]["why"]
    assert out["none"]["open"]  # no counted seeds yet: its failed seeds are retried, it is not closed


def test_decided_verdicts_by_hand():
    """Seeds paired by number. c1 succeeds on every seed and c0 on none: 16 discordant pairs all one
    way after round 2 cross the boundary; c0 is worse and c1, the last one standing, best."""
    design = Design(start=8, step=8, max=64)
    after1 = decide({"c0": block(0, 8), "c1": block(8, 8)}, design, round_=1)
    assert all(d["verdict"] == "open" and d["open"] for d in after1.values())  # 8 of 64 seeds spend little alpha
    after2 = decide({"c0": block(0, 16), "c1": block(16, 16)}, design, round_=2)
    assert after2["c0"]["verdict"] == "worse" and after2["c0"]["why"] == "worse than c1"
    assert after2["c1"]["verdict"] == "best" and not after2["c1"]["open"]
    # 20 discordant pairs split evenly in 56 seeds: the last 8 seeds, all one way, cannot reach the
    # boundary (futility), so neither gets more seeds
    x = {s: s < 20 and s % 2 == 0 for s in range(56)}
    y = {s: s < 20 and s % 2 == 1 for s in range(56)}
    even = decide({"a": x, "b": y}, design, round_=7)
    assert all(d["verdict"] == "undecided" and not d["open"] for d in even.values())
    assert "cannot decide" in even["a"]["why"]
    assert decide({"a": x, "b": y}, design, round_=3)["a"]["open"]  # with 40 seeds to come it could
    # with a margin, alternating discordance around an equal rate is a tie once enough seeds show it
    tied = Design(start=8, step=8, max=512, margin=0.3)
    x = {s: s % 2 == 0 for s in range(400)}
    y = {s: s % 4 in (0, 1) for s in range(400)}
    out = decide({"a": x, "b": y}, tied, round_=50)
    assert out["a"]["verdict"] == out["b"]["verdict"] == "tied"


def test_decided_keeps_the_family_error_on_null_sweeps():
    """All rates equal: any configuration declared worse is an error; at most alpha (+ MC error)."""
    rng = np.random.default_rng(3)
    design = Design(start=8, step=8, max=40)
    errors = [any(v == "worse" for v in simulate((0.3, 0.3, 0.3), design, rng)[1].values()) for _ in range(200)]
    assert np.mean(errors) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 200)


def test_decided_is_exact_when_seeds_are_strongly_dependent():
    """McNemar's argument: equal rates with outcomes shared on most seeds (common random numbers)
    leave the discordant pairs fair coins; the paired test's error stays below alpha."""
    rng = np.random.default_rng(4)
    design = Design(start=8, step=8, max=48)
    wrong = 0
    for _ in range(200):
        shared = rng.random(48) < 0.5
        own = rng.random((2, 48)) < 0.5
        mix = rng.random((2, 48)) < 0.2  # 20% of seeds draw their own outcome
        x, y = np.where(mix, own, shared)
        out = decide({"a": dict(enumerate(x.tolist())), "b": dict(enumerate(y.tolist()))}, design, round_=6)
        wrong += any(d["verdict"] == "worse" for d in out.values())
    assert wrong / 200 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 200)


def test_decided_decides_a_real_gap_with_fewer_seeds_than_the_fixed_design():
    """0.2 vs 0.5: exact Fisher needs 44 seeds per arm for 80% power (88 in all). The paired
    group-sequential rule with max 55 decides most sweeps and spends fewer seeds on average."""
    rng = np.random.default_rng(5)
    design = Design(start=8, step=8, max=55)
    runs = [simulate((0.2, 0.5), design, rng) for _ in range(150)]
    decided = np.mean([v["c1"] == "best" and v["c0"] == "worse" for _, v, _ in runs])
    seeds = np.mean([n.sum() for n, _, _ in runs])
    assert decided >= 0.75 and seeds < 88, (decided, seeds)


def test_running_intersection_is_the_tightest_interval_seen():
    path = [(0, 8), (1, 16), (10, 24)]  # a path whose later interval moves up past the earlier ones
    low, high = running_intersection(path, 0.05)
    singles = [confidence_sequence(s, n, 0.05) for s, n in path]
    assert low == max(a for a, _ in singles) and high == min(b for _, b in singles)


def test_history_replays_the_rounds_and_keeps_stopped_configurations_stopped():
    """c0 never succeeds, c1 always, c2 on every other seed: by round 2 (16 seeds) the paired tests
    show c0 and c2 worse than c1 (c2's 8 discordant seeds all favour c1), so c1 is best; seeds the
    stopped configurations never got do not reopen them, and c2's failed run is counted apart."""
    design = Design(start=8, step=8, max=32)
    rows = [
        {"config_id": cid, "seed": seed, "status": "finished", "success": ok(seed), "run_id": f"{cid}/{seed}"}
        for cid, ok, seeds in (
            ("c0", lambda s: False, 16),
            ("c1", lambda s: True, 32),
            ("c2", lambda s: s % 2 == 0, 32),
        )
        for seed in range(seeds)
    ]
    rows.append({"config_id": "c2", "seed": 3, "status": "failed", "success": False, "run_id": "c2/3-lost"})
    steps = history(pd.DataFrame(rows), design)
    final = steps.groupby("config_id").tail(1).set_index("config_id")
    assert final.at["c0", "verdict"] == "worse" and final.at["c0", "n"] == 16
    assert final.at["c2", "failed"] == 1 and final.at["c2", "verdict"] == "worse" and final.at["c2", "n"] == 16
    assert final.at["c1", "verdict"] == "best" and (steps["round"] <= 2).all()


@pytest.mark.parametrize("q, candidates, audit", [(0.3, 40, 0.25), (0.1, 12, 0.5), (0.6, 30, 0.25)])
def test_stopped_successes_bound_holds_at_its_level(q, candidates, audit):
    """Candidates that would succeed with probability q, each audited with probability ``audit``
    independently of that: W+ at alpha 0.05 is below the stopped ones that would succeed at most 5%
    of the time (Monte Carlo, 2,000 draws), and the bound is not vacuous once some are audited."""
    rng = np.random.default_rng(11)
    misses, sizes = 0, []
    for _ in range(2000):
        would = rng.random(candidates) < q
        audited = rng.random(candidates) < audit
        w_true = int((would & ~audited).sum())
        w_high = stopped_successes_bound((~audited).sum(), (would & audited).sum(), audited.sum(), 0.05)
        misses += w_true > w_high
        sizes.append(w_high / max((~audited).sum(), 1))
    assert misses / 2000 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 2000)
    assert np.median(sizes) < 0.95


def test_a_claim_must_hold_for_every_placement_of_the_stopped_seeds():
    """The issue's minimal case: a is claimed better at round 4 with the earliest of b's stopped
    seeds turned into a success, but not with seed 26 turned, so the claim may not be made."""
    design = Design(start=8, step=8, max=64, stop_share=0.2, decide_on="no_stop")
    level = design.test_alpha
    a = {s: c == "1" for s, c in enumerate("10101110101101111001011111011011")}
    b = {s: c == "1" for s, c in enumerate("11010001010000001000000110001000")}
    assert paired_sequential.difference(pair_looks(a, {**b, 4: True}, design, 4)[0], 64, level)[0] == 1  # the earliest
    assert paired_sequential.difference(pair_looks(a, {**b, 26: True}, design, 4)[0], 64, level)[0] == 0
    stops = (((), 0), ([4, 10, 18, 26, 27, 29], 1))
    assert compare_pair(a, b, design, 4, False, level, (level,), stops=(((), 0), ((), 0))) == ">"
    assert compare_pair(a, b, design, 4, False, level, (level,), stops=stops) not in "<>"


def claims_hold_under_every_placement(count: int, seed: int) -> tuple[int, int]:
    """(claims, claims some placement of at most W+ stopped seeds of either side does not reject):
    random pairs with stopped seeds, every subset of them within W+ tried (brute force)."""
    rng = np.random.default_rng(seed)
    design = Design(start=8, step=8, max=64, stop_share=0.2, decide_on="no_stop")
    level = design.test_alpha
    claims = wrong = 0
    while claims < count:
        round_ = int(rng.integers(2, 6))
        n, (pa, pb) = design.round_end(round_), rng.uniform(0.1, 0.9, 2)
        a, b = ({s: bool(rng.random() < p) for s in range(n)} for p in (pa, pb))
        stops = []
        for side in (a, b):
            failed = [s for s, v in side.items() if not v]
            stopped = sorted(rng.choice(failed, min(int(rng.integers(0, 5)), len(failed)), replace=False).tolist())
            stops.append((stopped, int(rng.integers(0, 3)) if stopped else 0))
        if not (stops[0][1] or stops[1][1]):
            continue
        said = compare_pair(a, b, design, round_, False, level, (level,), stops=tuple(stops))
        if said not in "<>":
            continue
        claims += 1
        sign = 1 if said == ">" else -1
        turned = [[c for k in range(w + 1) for c in itertools.combinations(stopped, k)] for stopped, w in stops]
        wrong += any(
            paired_sequential.difference(
                pair_looks({**a, **dict.fromkeys(ta, True)}, {**b, **dict.fromkeys(tb, True)}, design, round_)[0],
                64,
                level,
                ladder=(level,),
            )[0]
            != sign
            for ta in turned[0]
            for tb in turned[1]
        )
    return claims, wrong


def test_claims_hold_under_every_placement_few():
    assert claims_hold_under_every_placement(150, 1) == (150, 0)


@pytest.mark.slow
def test_claims_hold_under_every_placement_2000():
    assert claims_hold_under_every_placement(2000, 0) == (2000, 0)


def test_worst_cases_turn_the_earliest_stopped_seeds_into_successes():
    mine = {s: False for s in range(6)}
    other = {0: True, 1: False, 2: True, 3: False, 4: True}  # seed 5 not run by the other
    variants = list(worst_cases(mine, [0, 1, 2, 5], other, 2))
    flipped = [sorted(s for s, v in v.items() if v) for v in variants]
    assert flipped == [[0, 1], [0, 2]]  # 0 or 1 seeds where the other succeeded, the rest where it failed
    assert list(worst_cases(mine, [5], other, 1)) == [mine]  # a seed outside the pair changes nothing


def test_decided_with_seed_stop_keeps_the_family_error_when_the_stop_rule_errs():
    """Equal rates; c0's stop rule flags 80% of its failing seeds and 40% of its succeeding ones
    (false stops), audit 0.25. Counted as plain failures the stopped seeds make c0 look worse
    (family error ~0.3, far above alpha); with the audit's correction the error stays below alpha."""
    rng = np.random.default_rng(12)
    rule = ((0.8, 0.4, 0.25), (0.0, 0.0, 0.0))
    naive_design, design = (
        Design(start=8, step=8, max=48),
        Design(start=8, step=8, max=48, stop_share=STOP_SHARE, decide_on="no_stop"),
    )
    naive = [simulate((0.4, 0.4), naive_design, rng, rule, corrected=False)[1]["c0"] == "worse" for _ in range(300)]
    fixed = [any(v == "worse" for v in simulate((0.4, 0.4), design, rng, rule)[1].values()) for _ in range(300)]
    assert np.mean(naive) > 0.15
    assert np.mean(fixed) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 300)


def test_recipe_decides_a_real_gap_with_fewer_seed_steps_than_without_stopping():
    """0.2 vs 0.6, a good rule on both (flags 80% of failing seeds, 5% of succeeding ones, stops at
    30% of training), audit 0.25: verdicts on the recipe decide most sweeps for fewer seed-steps
    than the same design without seed_stop."""
    rng = np.random.default_rng(13)
    design = Design(start=8, step=8, max=64)
    runs = [simulate((0.2, 0.6), design, rng, (0.8, 0.05, 0.25), stop_at=0.3) for _ in range(100)]
    plain = [simulate((0.2, 0.6), design, rng)[2].sum() for _ in range(100)]
    assert np.mean([v["c0"] == "worse" and v["c1"] == "best" for _, v, _ in runs]) >= 0.8
    assert np.mean([steps.sum() for _, _, steps in runs]) < 0.9 * np.mean(plain)


def test_recipe_counts_stop_candidates_as_failures_with_no_penalty():
    """decide_on recipe: an audited candidate that succeeded fails the recipe, stopped seeds are
    plain failures, nothing widens the interval and all of alpha tests."""
    design = Design(start=8, step=8, max=32)
    a = {s: s < 6 for s in range(16)}  # 6 of 16 succeeded; seeds 4, 5 audited candidates (successes)
    marks = {4: "audited", 5: "audited", **{s: "stopped" for s in range(8, 16)}}
    out = decide({"a": a}, design, 2, stops={"a": marks})["a"]
    plain = decide({"a": {**a, 4: False, 5: False}}, design, 2)["a"]
    assert (out["successes"], out["stopped"], out["possible"]) == (4, 8, 0)
    assert (out["low"], out["high"]) == (plain["low"], plain["high"]) and design.test_alpha == design.alpha


def test_recipe_keeps_the_family_error_on_the_recipe_rates_with_an_erring_rule():
    """Equal recipe rates: c0 at 0.5 with a rule that stops a fifth of its successes (recipe rate
    0.4 = 0.5 - 0.1), c1 at 0.4 without stops; null on the recipe, so any worse is an error."""
    rng = np.random.default_rng(21)
    design = Design(start=8, step=8, max=48)
    rule = ((0.8, 0.2, 0.25), (0.0, 0.0, 0.0))
    errors = [any(v == "worse" for v in simulate((0.5, 0.4), design, rng, rule)[1].values()) for _ in range(300)]
    assert np.mean(errors) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 300)


def test_decide_counts_stopped_seeds_and_widens_the_upper_end():
    design = Design(start=8, step=8, max=32, stop_share=STOP_SHARE, decide_on="no_stop")
    a = {s: s < 2 for s in range(16)}  # 2 of 16 succeeded; 8 stopped, 4 audited (all failed)
    marks = {**{s: "stopped" for s in range(8, 16)}, **{s: "audited" for s in range(2, 6)}}
    plain, corrected = decide({"a": a}, design, 2), decide({"a": a}, design, 2, stops={"a": marks})
    assert corrected["a"]["stopped"] == 8 and 0 < corrected["a"]["possible"] <= 8
    assert corrected["a"]["low"] == plain["a"]["low"]  # stops only remove successes: the lower end stands
    assert corrected["a"]["high"] > plain["a"]["high"]
    none_audited = decide({"a": a}, design, 2, stops={"a": {s: "stopped" for s in range(8, 16)}})
    assert none_audited["a"]["possible"] == 8  # nothing vouches for the stopped seeds


def test_history_corrects_a_configuration_whose_stopped_seeds_are_unaudited():
    """c0 fails on every seed, but 12 of its failures were stops with no audit: the rule may not
    call it worse than c1 (whose seeds all succeed) on those seeds alone; audited, it may."""
    design = Design(start=8, step=8, max=16, stop_share=STOP_SHARE, decide_on="no_stop")

    def rows(audited: bool) -> list[dict]:
        out = [
            {"config_id": "c1", "seed": s, "status": "finished", "success": True, "run_id": f"c1/{s}"}
            for s in range(16)
        ]
        for s in range(16):
            stopped = s >= 4 and not (audited and s % 2 == 0)
            status = "stopped" if stopped else "finished"
            out.append(
                {"config_id": "c0", "seed": s, "status": status, "success": False, "run_id": f"c0/{s}"}
                | {"audit": (s >= 4 and not stopped)}
            )
        return out

    unaudited = history(pd.DataFrame(rows(False)), design).groupby("config_id").tail(1).set_index("config_id")
    audited = history(pd.DataFrame(rows(True)), design).groupby("config_id").tail(1).set_index("config_id")
    assert unaudited.at["c0", "possible"] == unaudited.at["c0", "stopped"] == 12
    assert unaudited.at["c0", "verdict"] != "worse"
    assert audited.at["c0", "stopped"] == 6 and audited.at["c0", "possible"] < 6
    assert audited.at["c0", "verdict"] == "worse"


@pytest.mark.parametrize(
    "steps, max_seeds",
    [
        ([(8, 6, 4), (16, 12, 7), (24, 19, 14)], 24),  # rejects at 0.0835 but not at 0.0989
        ([(8, 6, 4), (16, 13, 10), (24, 19, 16), (32, 24, 17), (40, 32, 21)], 64),
        ([(8, 3, 3), (16, 9, 8), (24, 12, 11)], 48),
    ],
)
def test_pvalue_is_where_the_test_rejects_at_every_larger_alpha(steps, max_seeds):
    """Rejection need not grow with alpha; p is the smallest u with a rejection at every alpha >= u
    (checked on a fine grid of alphas)."""
    p = paired_sequential.pvalue(steps, max_seeds)
    grid = np.linspace(1e-4, 0.999, 1500)
    rejects = np.array([paired_sequential.difference(steps, max_seeds, a)[0] != 0 for a in grid])
    assert rejects[grid >= p * (1 + 1e-6)].all()
    assert p == 1.0 or not rejects[grid < p * (1 - 1e-6)][-1:].all()  # just below p it does not
    if max_seeds == 24:
        assert paired_sequential.difference(steps, 24, 0.0835)[0] and p == pytest.approx(0.0989, abs=1e-4)
