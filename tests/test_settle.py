"""The settledness check's pieces without training: the spec key, the seeded subset, and the flip
counts (against a count by hand) with their exact interval, and the lines the table prints."""

import pandas as pd
import pytest
from scipy import stats

from analysis import baselines as baseline_lines
from analysis import settle as settle_counts
from sweeps.settle import Settle
from sweeps.spec import SpecError, from_dict
from trainables.rule import SuccessRule

RULE = {"metric": "linear_proj_mse", "below": 0.5}


def test_the_spec_key_is_checked():
    base = {"name": "s", "model": "sps", "success": RULE}
    assert from_dict({**base, "settle": {"seeds": 4, "factor": 2}}).settle == {"seeds": 4, "factor": 2.0, "seed": 0}
    for bad in ({"seeds": 0, "factor": 2}, {"seeds": 4, "factor": 1}, {"seeds": 4}, {"seeds": 4, "factor": 2, "x": 1}):
        with pytest.raises(SpecError, match="settle"):
            from_dict({**base, "settle": bad})
    adaptive = from_dict({**base, "seeds": {"start": 4, "step": 4, "max": 8}, "settle": {"seeds": 2, "factor": 2}})
    assert adaptive.settle["seeds"] == 2  # on round 1's seeds


def test_the_subset_is_seeded_and_the_same_seed_numbers_in_every_configuration():
    settle = Settle(seeds=3, factor=2.0, seed=7)
    all_seeds = list(range(16))
    first = settle.chosen(all_seeds, all_seeds)
    assert first == settle.chosen(all_seeds, all_seeds) and len(set(first)) == 3
    assert first != Settle(seeds=3, factor=2.0, seed=8).chosen(all_seeds, all_seeds)
    missing = [s for s in all_seeds if s != first[0]]  # a configuration where that seed diverged
    assert settle.chosen(all_seeds, missing)[:2] == first[1:]
    assert settle.epochs(40) == 80 and Settle(1, 1.01).epochs(10) == 11


def runs_frame() -> pd.DataFrame:
    """Two configurations: a flips 2 of 3 continued seeds (one each way), b none of 2."""
    rows = [
        ("a", 0, 0.4, "true", 0.6, "finished"),  # success -> failure
        ("a", 1, 0.7, "false", 0.3, "finished"),  # failure -> success
        ("a", 2, 0.3, "true", 0.2, "finished"),
        ("a", 3, 0.9, None, None, None),
        ("b", 0, 0.9, "false", 0.8, "finished"),
        ("b", 1, 0.2, "true", 0.1, "finished"),
    ]
    df = pd.DataFrame(
        rows,
        columns=["config_id", "seed", "linear_proj_mse", "settle.success", "settle/linear_proj_mse", "settle.status"],
    )
    df["settle.epochs"] = df["settle.success"].map(lambda t: None if t is None else "80")
    return df


def test_flips_are_counted_per_configuration_with_their_exact_interval():
    runs = runs_frame()
    ok = runs["linear_proj_mse"] < 0.5
    found = settle_counts.flips(runs, ok, SuccessRule.parse(RULE)).set_index("config_id")
    assert found.loc["a", ["continued", "flips", "to_success", "to_failure"]].tolist() == [3, 2, 1, 1]
    assert found.loc["b", ["continued", "flips"]].tolist() == [2, 0]
    exact = stats.binomtest(2, 3).proportion_ci(0.95, method="exact")
    assert (found.loc["a", "flip_low"], found.loc["a", "flip_high"]) == pytest.approx((exact.low, exact.high))
    stricter = settle_counts.flips(
        runs, runs["linear_proj_mse"] < 0.25, SuccessRule.parse({**RULE, "below": 0.25})
    ).set_index("config_id")
    assert stricter.loc["a", "flips"] == 1  # seed 2 (0.3 -> 0.2) flips under the recomputed rule, 0 and 1 do not
    table = pd.DataFrame({"config_id": ["a", "b"]})
    table.attrs["settle"] = found.reset_index()
    lines = settle_counts.lines(table)
    assert "config a: 2/3 flipped by epoch 80" in lines[1] and "(1 to success, 1 to failure)" in lines[1]
    assert settle_counts.flips(runs.drop(columns=["settle.success"]), ok, SuccessRule.parse(RULE)) is None


def test_baseline_lines_say_once_what_every_configuration_shares_and_per_configuration_what_differs():
    def row(cid, baseline, value):
        return {
            "config_id": cid,
            "baseline": baseline,
            "metric": "psnr_gain_black",
            "value": value,
            "low": value - 1,
            "high": value + 1,
        }

    table = pd.DataFrame({"config_id": ["a", "b"]})
    table.attrs.update(
        applied_rule=SuccessRule.parse({"metric": "psnr_gain_black", "above": 1.0}),
        baselines=[row("a", "blend", 3.9), row("b", "blend", 3.9), row("a", "copy", 1.4), row("b", "copy", 0.5)],
    )
    lines = baseline_lines.lines(table)
    assert (
        lines[1]
        == "  baseline blend: psnr_gain_black 3.9 (95% 2.9-4.9); MEETS the rule (psnr_gain_black above 1): the rule counts it a success"
    )
    assert lines[2].startswith("  config a: baseline copy: psnr_gain_black 1.4") and "MEETS" in lines[2]
    assert lines[3].startswith("  config b: baseline copy: psnr_gain_black 0.5") and "fails the rule" in lines[3]
