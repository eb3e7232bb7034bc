"""analysis/: success statistics against known values, and the MLflow -> table -> report path on a
real SQLite store written in the trainable's layout (parent run per configuration, child per seed)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient
from scipy import stats
from support import RULE, frame, write_sweep

from analysis import cli
from analysis.report import format_table, write_report
from analysis.runs import client, load_runs, seed_images
from analysis.success import (
    compare,
    holm,
    interval,
    metric_summary,
    resolve_rule,
    success_table,
)
from trainables import records
from trainables.rule import SuccessRule


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store with sweeps "sym" (2 configs x 8 seeds, mixed statuses) and "many" (3 x 10)."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    finished = lambda *mse: [("finished", m) for m in mse]  # noqa: E731
    fixed = {"lr": 0.001, "rnn_width": 32}
    write_sweep(
        uri,
        "sym",
        {
            "c0": (
                {"symmetry": "T2R2", **fixed},
                finished(0.05, 0.1, 0.15, 0.3, 0.4, 0.6) + [("diverged", np.nan), ("pruned", 0.1)],
            ),
            "c1": (
                {"symmetry": "none", **fixed},
                finished(0.25, 0.3, 0.5, 0.7, 0.9, 0.1) + [("pruned", 0.05), ("running", 0.3)],
            ),
        },
        artifacts=(root / "artifacts").as_uri(),
    )
    rng = np.random.default_rng(1)
    configs = {
        f"c{i}": ({"lr": lr, "symmetry": "T2R2"}, finished(*rng.uniform(0, 1, 10)))
        for i, lr in enumerate((1e-4, 1e-3, 0.01))
    }
    write_sweep(uri, "many", configs)
    return uri


def test_wilson_and_clopper_pearson_for_3_of_20():
    table = success_table(frame({"a": [("finished", True)] * 3 + [("finished", False)] * 17}))
    row = table.iloc[0]
    assert (row.successes, row.n, row.rate) == (3, 20, 0.15)
    assert (round(row.wilson_low, 3), round(row.wilson_high, 3)) == (0.052, 0.360)
    assert (round(row.cp_low, 3), round(row.cp_high, 3)) == (0.032, 0.379)


def test_zero_and_all_successes_have_honest_intervals():
    low, high = interval([0, 20], [20, 20], "wilson")
    assert low[0] == 0 and 0.1 < high[0] < 0.2  # 0/20 is not [0, 0]
    assert high[1] == 1 and 0.8 < low[1] < 0.9
    low, high = interval([0, 20, 0], [20, 20, 0], "beta")
    assert low[0] == 0 and high[0] == pytest.approx(1 - 0.025 ** (1 / 20))  # Clopper-Pearson closed form at k = 0
    assert high[1] == 1 and low[1] == pytest.approx(0.025 ** (1 / 20))
    assert np.isnan(low[2]) and np.isnan(high[2])  # no seeds: no interval


def test_the_one_wilson_agrees_with_statsmodels_everywhere():
    """``records.wilson`` (the trainable's and the table's) against statsmodels' on every k of n <= 40,
    at two levels; n = 0 gives NaN."""
    from statsmodels.stats.proportion import proportion_confint

    k, n = np.array([(k, n) for n in range(1, 41) for k in range(n + 1)]).T
    for alpha in (0.05, 0.1):
        low, high = records.wilson(k, n, alpha)
        want_low, want_high = proportion_confint(k, n, alpha=alpha, method="wilson")
        inner = (k > 0) & (k < n)  # statsmodels rounds the ends at k = 0 / n to 1e-16 of 0 / 1
        assert np.allclose(low[inner], want_low[inner], rtol=1e-12) and np.allclose(high, want_high, rtol=1e-12)
        assert (low[k == 0] == 0).all() and (high[k == n] == 1).all()
    assert np.isnan(records.wilson(0, 0)).all() and records.wilson(3, 20)[0] == interval([3], [20])[0][0]


def test_fisher_p_value_matches_hand_computation():
    # 6/8 vs 1/5: hypergeometric tables with probability <= observed (a = 2, 6, 7 of 28, 140, 8 per 1716).
    yes, no = ("finished", True), ("finished", False)
    table = success_table(frame({"a": [yes] * 6 + [no] * 2, "b": [yes] + [no] * 4}))
    comparison = compare(table)
    assert comparison.attrs["reference"] == "a"
    assert comparison.set_index("config_id").loc["b", "p"] == pytest.approx(176 / 1716, rel=1e-9)
    assert comparison.set_index("config_id").loc["b", "diff"] == pytest.approx(0.2 - 0.75)
    boschloo = compare(table, baseline="b", test="boschloo").set_index("config_id").loc["a", "p"]
    assert boschloo == pytest.approx(stats.boschloo_exact([[6, 2], [1, 4]]).pvalue) and boschloo < 176 / 1716


def test_holm_correction_order_and_values():
    p = np.array([0.01, 0.04, 0.03, np.nan])
    adjusted = holm(p)
    np.testing.assert_allclose(adjusted[:3], [0.03, 0.06, 0.06])  # 3 x 0.01; max(2 x 0.03, 1 x 0.04) for the rest
    assert np.isnan(adjusted[3])
    assert (adjusted[:3] >= p[:3]).all() and np.all(np.diff(adjusted[np.argsort(p[:3])]) >= 0)


def test_diverged_fail_and_pruned_are_counted_apart(store):
    table = success_table(load_runs(store, "sym")).set_index("config_id")
    c0, c1 = table.loc["c0"], table.loc["c1"]
    # c0: finished 0.05 0.1 0.15 (successes) 0.3 0.4 0.6, one diverged (a failure in n), one pruned (not in n)
    assert (c0.successes, c0.n, c0.diverged, c0.pruned, c0.running) == (3, 7, 1, 1, 0)
    assert (c1.successes, c1.n, c1.diverged, c1.pruned, c1.running) == (1, 6, 0, 1, 1)
    assert table.attrs["params"] == ["symmetry"]  # lr and rnn_width are the same everywhere


def test_changed_rule_changes_the_table_without_retraining(store):
    runs = load_runs(store, "sym")
    assert runs.attrs["success_rule"] == SuccessRule.parse(RULE)
    stored = success_table(runs).set_index("config_id")
    looser = success_table(runs, resolve_rule(runs, below=0.5)).set_index(
        "config_id"
    )  # the stored metric, a new threshold
    other = success_table(runs, resolve_rule(runs, metric="recon_mse", below=0.2)).set_index(
        "config_id"
    )  # recon = mse / 2
    assert list(stored.successes) == [3, 1]
    assert list(looser.successes) == [5, 3]  # pruned seeds with a good metric still do not count
    assert list(other.successes) == [4, 3]
    assert list(looser.n) == list(stored.n) and "below 0.5" in looser.attrs["rule"]
    assert list(success_table(runs, resolve_rule(runs, metric="recon_mse", above=0.2)).successes) == [1, 3]
    with pytest.raises(ValueError, match="not both"):
        resolve_rule(runs, below=0.1, above=0.2)
    with pytest.raises(ValueError, match="psnr.*metrics there: linear_proj_mse, recon_mse"):
        resolve_rule(runs, metric="psnr", above=20)


def test_load_runs_pages_through_the_store(store, monkeypatch):
    calls = []
    search = MlflowClient.search_runs
    monkeypatch.setattr(records, "PAGE", 7)  # the pager analysis shares with the trainables
    monkeypatch.setattr(MlflowClient, "search_runs", lambda self, *a, **k: calls.append(k) or search(self, *a, **k))
    runs = load_runs(store, "many")
    assert len(runs) == 30 and runs["run_id"].is_unique and len(calls) == 5 + 1  # seed runs, then the 3 configurations
    assert all(k["max_results"] == 7 for k in calls)
    assert runs["lr"].dtype == float and runs["seed"].tolist() == list(range(10)) * 3
    assert set(runs.attrs["metrics"]) == {"linear_proj_mse", "recon_mse"}
    table = success_table(runs)
    assert table.attrs["params"] == ["lr"] and table["n"].tolist() == [10, 10, 10]


def test_unknown_sweep_names_the_sweeps_that_exist(store, tmp_path):
    with pytest.raises(ValueError, match="no sweep 'nope'.*many, sym"):
        load_runs(store, "nope")
    with pytest.raises(ValueError, match="no MLflow store"):
        load_runs(f"sqlite:///{tmp_path / 'missing.db'}", "sym")


def test_metric_summary_median_and_iqm(store):
    summary = metric_summary(load_runs(store, "sym"), "linear_proj_mse").set_index("config_id")
    c0 = summary.loc["c0"]  # finished seeds only: 0.05 0.1 0.15 0.3 0.4 0.6
    assert c0.n == 6 and c0["median"] == pytest.approx(0.225)
    assert c0.iqm == pytest.approx(stats.trim_mean([0.05, 0.1, 0.15, 0.3, 0.4, 0.6], 0.25))
    assert c0.median_low <= c0["median"] <= c0.median_high
    again = metric_summary(load_runs(store, "sym"), "linear_proj_mse").set_index("config_id")
    assert again.loc["c0", "iqm_low"] == c0.iqm_low  # fixed bootstrap seed


def test_report_writes_html_pngs_and_parquet(store, tmp_path):
    table = write_report(store, "sym", tmp_path / "rep")
    page = (tmp_path / "rep" / "report.html").read_text()
    for png in (
        "forest.png",
        "rate_symmetry.png",
        "box_linear_proj_mse.png",
        "curves_linear_proj_mse.png",
        "forecast.png",
    ):
        assert (tmp_path / "rep" / png).stat().st_size > 1000 and f"src='{png}'" in page
    assert "How early the outcome shows" in page
    for title in ("Latent vs position", "Decoder traversal"):  # the trainable's PNGs, of one success and one failure
        for name in ("success", "failure"):
            assert f"{title}, a {name}" in page
    for png in ("latent_vs_position.png", "decoder_traversal.png"):
        shown = list((tmp_path / "rep" / "seeds").rglob(png))
        assert len(shown) == 2 and all(f"src='{p.relative_to(tmp_path / 'rep').as_posix()}'" in page for p in shown)
    assert len({p.parent for p in (tmp_path / "rep" / "seeds").rglob("*.png")}) == 2  # both PNGs of a seed from one run
    assert pq.read_table(tmp_path / "rep" / "runs.parquet").num_rows == 16
    assert list(table["successes"]) == [3, 1]
    assert "Paired by seed number against the reference" in page and "p_mcnemar" in page  # the paired view
    paired = pd.read_csv(tmp_path / "rep" / "paired.csv")
    assert paired["pairs"].iloc[0] == 6 and paired["only_ref"].iloc[0] - paired["only_this"].iloc[0] == 2
    assert "P(best), Bayes" in page and table["p_best"].sum() == pytest.approx(1.0)


def test_report_shows_every_threshold_the_spec_lists_and_the_histogram(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    bimodal = lambda *mse: [("finished", m) for m in mse]  # noqa: E731
    write_sweep(
        uri,
        "two_rules",
        {
            "c0": ({"symmetry": "T2R2"}, bimodal(0.015, 0.02, 0.035, 0.04, 0.5, 0.7)),
            "c1": ({"symmetry": "none"}, bimodal(0.025, 0.3, 0.45, 0.6, 0.8, 0.85) + [("pruned", 0.9)]),
        },
        rule={**RULE, "also": [0.03]},
    )
    assert load_runs(uri, "two_rules").attrs["success_rule"] == SuccessRule.parse({**RULE, "also": [0.03]})
    table = write_report(uri, "two_rules", tmp_path / "rep")
    assert list(table["successes"]) == [4, 1]  # below 0.2, the stored rule
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "Success rate with linear_proj_mse below 0.03 (also listed by the spec)" in page
    extra = pd.read_csv(tmp_path / "rep" / "success_below_0.03.csv")
    assert list(extra["successes"]) == [2, 1] and list(extra["n"]) == [6, 6]
    assert (
        "with the thresholds 0.2, 0.03" in page
        and (tmp_path / "rep" / "hist_linear_proj_mse.png").stat().st_size > 1000
    )
    assert "src='hist_linear_proj_mse.png'" in page
    assert "1 seeds were pruned" in page and "biased" in page  # the pruned seed of c1
    assert "rates are biased" in format_table(table)


def test_no_pruning_no_pruning_note(store, tmp_path):
    write_report(store, "many", tmp_path / "rep")
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "were pruned" not in page and "also listed" not in page and "with the thresholds 0.2" in page


def test_cli_prints_the_table_and_rejects_bad_input(store, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.add_commands(parser.add_subparsers(dest="command"))
    analyze = lambda *a: (lambda args: args.func(args))(parser.parse_args(["analyze", *a]))  # noqa: E731
    analyze("sym", "--tracking-uri", store, "--out", str(tmp_path / "r"), "--below", "0.5")
    out = capsys.readouterr().out
    assert "5/7" in out and "3/6" in out and "p vs best (Holm)" in out and "below 0.5" in out
    with pytest.raises(ValueError, match="not both"):
        analyze("sym", "--tracking-uri", store, "--below", "1", "--above", "2")
    with pytest.raises(ValueError, match="no sweep 'nope'"):
        analyze("nope", "--tracking-uri", store, "--out", str(tmp_path / "nope"))
    assert not (tmp_path / "nope").exists()
    with pytest.raises(ValueError, match="psnr"):
        analyze("sym", "--tracking-uri", store, "--out", str(tmp_path / "r"), "--metric", "psnr", "--above", "1")
    cli.print_success_table(store, "many")
    assert "c2" in capsys.readouterr().out


def test_format_table_aligns_columns():
    table = success_table(
        frame({"a": [("finished", True)] * 3 + [("finished", False)] * 17, "b": [("pruned", False)] * 2})
    )
    text = format_table(table, compare(table))
    lines = text.splitlines()
    assert len({len(line) for line in lines[:4]}) == 1  # header, rule, two rows
    assert "3/20" in text and "[0.05, 0.36]" in text and "[0.03, 0.38]" in text and "0/0" in text


def test_a_table_pooling_devices_or_code_says_so():
    runs = frame({"a": [("finished", True), ("finished", False)], "b": [("finished", True), ("pruned", False)]})
    runs["device"], runs["precision"], runs["code"] = "cpu", "fp32", "8a7bed80054d"
    assert "warning" not in format_table(success_table(runs))
    runs.loc[3, "device"] = "cuda NVIDIA H100"  # a pruned seed does not count
    assert "warning" not in format_table(success_table(runs))
    runs.loc[1, ["device", "precision"]] = ["cuda NVIDIA H100", "bf16"]
    text = format_table(success_table(runs))
    assert "warning: these rates pool seeds trained with different settings (cpu fp32 code 8a7bed80054d; " in text
    assert "cuda NVIDIA H100 bf16 code 8a7bed80054d)" in text


def artefacts(i: int, folder: Path) -> list[Path]:
    """A model's PNGs of seed index i (as SPS draws them), from made-up latents and decoder."""
    from trainables import figures

    z = np.random.default_rng(i).normal(size=(20, 3))
    decode = lambda z: np.broadcast_to(1 / (1 + np.exp(-z[:, :1, None, None])), (len(z), 8, 8, 3))  # noqa: E731
    return [
        figures.latent_plot(z, z, folder / "latent_vs_position.png"),
        figures.traversal_grid(decode, z.mean(0), z.std(0), folder / "decoder_traversal.png"),
    ]


def test_reads_what_the_trainables_tracker_writes(tmp_path):
    tracking = pytest.importorskip("trainables.tracking")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    for t, symmetry in enumerate(("T2R2", "none")):
        config = {
            "model": "sps",
            "lr": 0.01,
            "symmetry": symmetry,
            "success": {"metric": "linear_proj_mse", "below": 0.2},
        }
        tracker = tracking.Tracker(uri, "tracked", "tracked", f"trial_{t}", f"c{t}", config, seeds=[0, 1, 2])
        for epoch in range(3):
            tracker.log(
                epoch, {"median_linear_proj_mse": 0.5}, [{"linear_proj_mse": 0.1 * (s + 1) + 0.1 * t} for s in range(3)]
            )
        results = [{"status": "finished", "success": 0.1 * (s + 1) + 0.1 * t < 0.2} for s in range(2)]
        results.append({"status": "diverged", "success": False})
        tracker.finish(results, artefacts)
    runs = load_runs(uri, "tracked")
    assert len(runs) == 6 and runs.attrs["success_rule"] == SuccessRule.parse(RULE)
    table = success_table(runs)
    assert (
        table.attrs["params"] == ["symmetry"]
        and list(table["successes"]) == [1, 0]
        and list(table["diverged"]) == [1, 1]
    )
    assert list(success_table(runs, resolve_rule(runs, below=0.25))["successes"]) == [2, 1]
    assert runs["lr"].dtype == float and "linear_proj_mse" in runs.attrs["metrics"]
    images = seed_images(client(uri), runs, runs["status"].eq("finished") & runs["success"], tmp_path / "img")
    assert set(images) == {"success", "failure"}
    for found in images.values():
        assert {m: p.name for m, p in found.items()} == {
            "latent_vs_position": "latent_vs_position.png",
            "decoder_traversal": "decoder_traversal.png",
        }
        assert all(p.read_bytes()[:4] == b"\x89PNG" for p in found.values())
    report = tmp_path / "rep"
    write_report(uri, "tracked", report)
    page = (report / "report.html").read_text()
    assert "Decoder traversal, a success" in page and "Decoder traversal, a failure" in page
    assert len(list((report / "seeds").rglob("decoder_traversal.png"))) == 2


def test_forecast_by_epoch_and_settled_epoch_by_hand():
    from analysis.success import forecast_by_epoch, settled_epoch

    epochs = np.arange(1, 6)
    histories = {
        "a": (epochs, np.array([0.9, 0.8, 0.1, 0.1, 0.1])),  # succeeds, shows from epoch 3
        "b": (epochs, np.array([0.9, 0.9, 0.9, 0.9, 0.9])),  # fails throughout
        "c": (epochs, np.array([0.9, 0.1, 0.9, 0.9, 0.9])),  # a dip below at epoch 2, fails
        "d": (epochs, np.array([0.1, 0.1, 0.1, 0.1, np.nan])),  # looked good, then NaN: fails
        "pruned": (epochs[:2], np.array([0.1, 0.1])),  # not in final_ok: not counted
    }
    final = {"a": True, "b": False, "c": False, "d": False}
    table = forecast_by_epoch(histories, final, SuccessRule("m", "below", 0.2))
    assert list(table["seeds"]) == [4] * 5
    # epoch 1: a-, b-, c-, d+ -> b, c right; 2: a-, b-, c+, d+ -> b right; 3, 4: d wrong; 5: NaN forecasts failure
    assert list(table["accuracy"]) == [0.5, 0.25, 0.75, 0.75, 1.0]
    assert table["precision"][0] == 0.0  # one false positive (d), no true one
    assert list(table["recall"]) == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert table["f1"][2] == pytest.approx(2 / 3)  # tp a, fp d
    assert settled_epoch(table) == 5 and settled_epoch(table, level=0.75) == 3 and settled_epoch(table, level=0.2) == 1
    above = forecast_by_epoch(histories, final, SuccessRule("m", "above", 0.5))  # the same rule turned around
    assert list(above["accuracy"]) == [0.5, 0.75, 0.25, 0.25, 0.25]


def test_the_report_draws_a_sweep_whose_every_seed_stopped(tmp_path):
    """seed_stop may stop every seed of a small sweep: the boxplot says so, the forecast has no rows to count."""
    from analysis import plots
    from analysis.success import forecast_by_epoch
    from trainables.rule import SuccessRule

    runs = frame({"a": [("stopped", False)] * 3, "b": [("stopped", False)] * 2})
    runs["linear_proj_mse"] = [0.9, 0.8, 0.7, 0.95, 0.85]
    assert plots.boxplot(runs, "linear_proj_mse", tmp_path / "box.png").stat().st_size > 0
    rule = SuccessRule.parse({"metric": "linear_proj_mse", "below": 0.5})
    forecast = forecast_by_epoch({"a-0": ([1, 2], [0.9, 0.8])}, {}, rule)
    assert forecast["seeds"].tolist() == [0, 0] and forecast["accuracy"].isna().all()
