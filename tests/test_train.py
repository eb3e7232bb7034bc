"""trainables.train on a real local Ray (one session for the module) and a real MLflow SQLite store:
the run layout, exactly-once metric histories across a crash and restore, and the aggregates that
Tune sees. Plus fast checks of trainables.tracking without Ray."""

from __future__ import annotations

import json
import math
from dataclasses import FrozenInstanceError

import numpy as np
import pytest
from mlflow import MlflowClient
from support import fit_crashing_once, seed_runs

from sweeps import progress
from trainables import figures, records, tracking
from trainables.models import SPS
from trainables.options import RunOptions
from trainables.train import absolute_uri, aggregate, split_config

TINY = {
    "model": "sps",
    "env": "ball",
    "n_train": 32,
    "n_val": 16,
    "frames": 8,
    "image_size": 16,
    "data_seed": 0,
    "channels": [8, 16],
    "dec_hidden": [8],
    "rnn_width": 16,
    "z_dim": 3,
    "batch_size": 16,
    "success": {"metric": "linear_proj_mse", "below": 0.2},
}
SEEDS, EPOCHS = 3, 4
EVALUATED = [1, 2, EPOCHS]  # eval_every 2: the first epoch, every second, the last


FINAL = ("success", "n", "success_low", "success_high")


def expected_steps(key: str) -> list[int]:
    """The epochs a seed run holds ``key`` at: training losses every epoch, validation metrics when
    evaluated, the outcome (``success``; a parent's ``n`` and interval ends) at the last."""
    if key in FINAL:
        return [EPOCHS]
    return list(range(1, EPOCHS + 1)) if key.startswith("train/") else EVALUATED


def histories(client: MlflowClient, run_id: str) -> dict[str, list[int]]:
    """Every metric of a run -> its logged steps, in order."""
    keys = client.get_run(run_id).data.metrics
    return {key: sorted(m.step for m in client.get_metric_history(run_id, key)) for key in keys}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two trials of the same configuration through Tune at once: one plain, one that crashes after
    epoch 3 (checkpoint at 2) and is restored by Tune from its checkpoint. Both evaluate at epochs
    1, 2 and 4 and send to MLflow only then (epoch 3's metrics wait in the buffer, so the crash
    loses them and the restore must log them again)."""
    import ray
    from ray import tune

    from trainables.train import train

    root = tmp_path_factory.mktemp("train")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    run = {"seeds": SEEDS, "epochs": EPOCHS, "checkpoint_every": 2, "eval_every": 2, "flush_every": 600}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        space = {**TINY, "run": {**run, "sweep": "trainsweep", "tracking_uri": uri}}
        by_crash = fit_crashing_once(root, space, crash_after=3, name="t")
        # and a configuration whose seeds all diverge, in a sweep of its own
        diverging = tune.Tuner(
            tune.with_resources(train, {"cpu": 1}),
            param_space={
                **TINY,
                "lr": 100.0,
                "run": {"seeds": 2, "epochs": 2, "sweep": "divsweep", "tracking_uri": uri},
            },
            run_config=tune.RunConfig(name="d", storage_path=str(root / "ray"), verbose=0),
        ).fit()
    finally:
        ray.shutdown()
    assert not diverging.errors, diverging.errors
    return {
        "uri": uri,
        "plain": by_crash[None],
        "crashed": by_crash[3],
        "diverged": diverging[0],
        "client": MlflowClient(uri),
    }


def test_mlflow_layout(sweep, tmp_path):
    client = sweep["client"]
    exp = client.get_experiment_by_name("trainsweep").experiment_id
    runs = client.search_runs([exp], max_results=1000)
    assert len(runs) == 2 * (1 + SEEDS)  # per trial one parent, one child per seed, nothing else
    for result in (sweep["plain"], sweep["crashed"]):
        trial_id = result.metrics["trial_id"]
        parents = [r for r in runs if r.data.tags.get("trial_id") == trial_id and r.data.tags[records.KIND] == "config"]
        assert len(parents) == 1
        parent = parents[0]
        assert (
            parent.data.params["success.metric"] == "linear_proj_mse"
            and float(parent.data.params["success.below"]) == 0.2
        )
        assert parent.info.status == "FINISHED"
        children = seed_runs(client, "trainsweep", trial_id)
        assert [r.data.tags["seed"] for r in children] == [str(s) for s in range(SEEDS)]
        for run in children:
            tags = run.data.tags
            assert tags["mlflow.parentRunId"] == parent.info.run_id
            assert tags["sweep"] == "trainsweep" and tags["trial_id"] == trial_id
            assert tags["config_id"] == parent.data.tags["config_id"]
            assert run.data.params["seed"] == tags["seed"]
            assert tags["status"] in ("finished", "diverged") and tags["success"] in ("true", "false")
            if tags["success"] == "true":
                assert tags["status"] == "finished" and run.data.metrics["linear_proj_mse"] < 0.2
            assert run.info.status == "FINISHED"
            steps = histories(client, run.info.run_id)
            assert "linear_proj_mse" in steps and "train/recon" in steps
            for key, logged in steps.items():
                assert logged == expected_steps(key), (key, logged)
            assert json.loads(parent.data.tags[records.METRICS_TAG])["psnr"]["better"] == "higher"
            pngs = sorted(a.path for a in client.list_artifacts(run.info.run_id))
            assert pngs == ["decoder_traversal.png", "latent_vs_position.png"]
            for png in pngs:
                assert open(client.download_artifacts(run.info.run_id, png, str(tmp_path)), "rb").read(4) == b"\x89PNG"


def test_diverged_seeds(sweep):
    client = sweep["client"]
    exp = client.get_experiment_by_name("divsweep").experiment_id
    runs = client.search_runs([exp], "tags.`seedsweep.kind` = 'seed'")
    assert len(runs) == 2
    for run in runs:
        assert (run.data.tags["status"], run.data.tags["success"]) == ("diverged", "false")
        assert run.info.status == "FINISHED"
    last = sweep["diverged"].metrics
    assert (last["n_diverged"], last["n_success"], last["success_rate"]) == (2, 0, 0.0)
    assert last["median_linear_proj_mse"] == math.inf  # a diverged seed is the worst seed


def test_restored_trial_matches_uninterrupted(sweep):
    client = sweep["client"]
    plain, crashed = sweep["plain"], sweep["crashed"]
    # Tune really restored it from the checkpoint at epoch 2: two iterations (epochs 3, 4) since the
    # restore. (Not progress.csv: on restore Ray may bring back an older synced copy of it.)
    assert (crashed.metrics["training_iteration"], crashed.metrics["iterations_since_restore"]) == (4, 2)
    assert plain.metrics["iterations_since_restore"] == 4
    a, b = (
        seed_runs(client, "trainsweep", plain.metrics["trial_id"]),
        seed_runs(client, "trainsweep", crashed.metrics["trial_id"]),
    )
    for x, y in zip(a, b):
        assert x.data.tags["status"] == y.data.tags["status"] and x.data.tags["success"] == y.data.tags["success"]
        assert x.data.metrics.keys() == y.data.metrics.keys()
        for key, value in x.data.metrics.items():
            assert value == pytest.approx(y.data.metrics[key], rel=1e-5, abs=1e-7, nan_ok=True), key
            steps = sorted(m.step for m in client.get_metric_history(y.info.run_id, key))
            assert steps == expected_steps(key), key  # no step doubled by the restart, none missing
    # the runs the checkpoint carried are the runs MLflow holds
    with crashed.checkpoint.as_directory() as folder:
        meta = json.loads(open(f"{folder}/meta.json").read())
    assert meta["epoch"] == EPOCHS
    assert meta["run_ids"]["seeds"] == {r.data.tags["seed"]: r.info.run_id for r in b}


def test_reported_metrics_are_aggregates(sweep):
    df = sweep["plain"].metrics_dataframe
    assert list(df["epoch"]) == list(range(1, EPOCHS + 1))
    assert df["n_success"].between(0, SEEDS).all() and df["n_diverged"].between(0, SEEDS).all()
    assert np.allclose(df["success_rate"], df["n_success"] / SEEDS)
    assert (df["best_linear_proj_mse"] <= df["median_linear_proj_mse"]).all()
    assert not any(c.startswith("seed") or c == "linear_proj_mse" for c in df.columns)  # nothing per seed


# ---- without Ray ----


def test_run_options():
    run, model = split_config(
        {**TINY, "run": {"seeds": 2, "epochs": 3, "sweep": "s", "tracking_uri": "sqlite:///x.db"}}
    )
    assert model == TINY and run.experiment == "s" and run.seeds == (0, 1) and run.eval_every == 1
    assert absolute_uri(run.tracking_uri).startswith("sqlite:////")
    assert RunOptions(seeds=3).seeds == (0, 1, 2) and RunOptions(seeds=[5, 7]).seeds == (5, 7)
    for bad, field in [({"seeds": [1, 1]}, "seeds"), ({"epochs": 0}, "epochs"), ({"epoch": 3}, "epoch")]:
        with pytest.raises(ValueError, match=f"'{field}'"):
            RunOptions.from_dict(bad)
    with pytest.raises(FrozenInstanceError):
        run.epochs = 5


def test_aggregate_counts_diverged_as_worst():
    results = [
        {"status": "finished", "success": True, "linear_proj_mse": 0.1, "recon_mse": 1, "pred_mse": 1},
        {"status": "finished", "success": False, "linear_proj_mse": 0.5, "recon_mse": 1, "pred_mse": 1},
        {"status": "diverged", "success": False, "linear_proj_mse": math.nan, "recon_mse": 1, "pred_mse": 1},
    ]
    for r, r2 in zip(results, (0.9, 0.5, math.nan)):
        r.update(linear_proj_r2=r2, psnr=20.0)
    agg = aggregate(results, SPS.metrics)
    assert agg["median_linear_proj_mse"] == 0.5 and agg["best_linear_proj_mse"] == 0.1
    assert (
        agg["median_linear_proj_r2"] == 0.5 and agg["best_linear_proj_r2"] == 0.9
    )  # higher is better: the diverged seed is -inf
    assert (agg["n_success"], agg["n_diverged"], agg["success_rate"]) == (1, 1, pytest.approx(1 / 3))


def test_tracker_exactly_once_and_mark_trial(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    config = {**TINY, "lr": 0.001}
    first = tracking.Tracker(uri, "exp", "s", "trial_1", "cid", config, [0, 1])
    for step in (1, 2, 3):
        first.log(step, {"median_x": step}, [{"x": step, **{f"m{i}": i for i in range(600)}}, {"x": -step}])
    first.set_seeds([{"status": "running", "success": True}, {"status": "running", "success": False}])
    first.flush()  # 1803 metrics and a tag for seed 0: three log_batch calls
    # a restart from a checkpoint taken at step 1 recomputes steps 2..5: only 4 and 5 are new
    again = tracking.Tracker(uri, "exp", "s", "trial_1", "cid", config, [0, 1], first.run_ids)
    for step in (2, 3, 4, 5):
        again.log(step, {"median_x": step}, [{"x": step}, {"x": -step}])
    again.flush()
    # a restart before any checkpoint finds the same runs by trial id
    found = tracking.Tracker(uri, "exp", "s", "trial_1", "cid", config, [0, 1])
    assert found.run_ids == first.run_ids
    client = MlflowClient(uri)
    for run_id in [first.parent, *first.children]:
        steps = [m.step for m in client.get_metric_history(run_id, "x" if run_id != first.parent else "median_x")]
        assert sorted(steps) == [1, 2, 3, 4, 5]
    assert len(client.get_metric_history(first.children[0], "m599")) == 3
    assert client.get_run(first.children[0]).data.tags["success"] == "true"
    params = client.get_run(first.children[1]).data.params
    assert params["success.below"] == "0.2" and params["seed"] == "1" and params["lr"] == "0.001"

    found.set_seeds([{"status": "diverged", "success": False}, {"status": "running", "success": False}])
    found.flush()
    assert progress.mark_trial(uri, "trial_1", "pruned", experiment="another") == 0  # another sweep's trial ids
    assert progress.mark_trial(uri, "trial_1", "pruned", experiment="exp") == 1  # only the seed still running
    runs = {r.info.run_id: r for r in client.search_runs([client.get_experiment_by_name("exp").experiment_id])}
    assert runs[first.children[0]].data.tags["status"] == "diverged"
    assert runs[first.children[1]].data.tags["status"] == "pruned" and runs[first.children[1]].info.status == "KILLED"
    assert runs[first.parent].info.status == "KILLED"


def test_retry_on_locked_database():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert records.retry(flaky) == "ok" and len(calls) == 3
    with pytest.raises(ValueError):
        records.retry(lambda: (_ for _ in ()).throw(ValueError("other")))


def test_latent_plot(tmp_path):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4, 8, 3))
    path = figures.latent_plot(z, z @ rng.normal(size=(3, 2)), tmp_path / "p.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_traversal_grid_sweeps_each_dim_around_the_center(tmp_path):
    seen = []

    def decode(z):
        seen.append(z.copy())
        return np.broadcast_to(1 / (1 + np.exp(-z[:, :1, None, None])), (len(z), 8, 8, 3))

    center, std = np.array([1.0, -2.0, 0.5]), np.array([0.5, 2.0, 1.0])
    path = figures.traversal_grid(decode, center, std, tmp_path / "grid.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(seen) == 1
    z = seen[0].reshape(3, figures.TRAVERSAL_STEPS, 3)  # [row = swept dim, column, z]
    for d in range(3):
        assert np.allclose(z[d, :, d], np.linspace(center[d] - 2 * std[d], center[d] + 2 * std[d], 7))
        others = [e for e in range(3) if e != d]
        assert np.allclose(z[d][:, others], center[others])
