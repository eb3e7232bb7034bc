"""The sweep runner end to end: the ``seedsweep`` CLI against a real local Ray (or a two-node Ray
cluster started here) and a real MLflow SQLite store, with tiny models."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from cluster_sim import stop_cluster
from mlflow import MlflowClient
from support import BIN, SPEC_TINY, history_steps, kill, runs, seedsweep, start_sweep, wait_for, write_spec


def test_sweep_end_to_end(tmp_path):
    spec = write_spec(tmp_path)
    dry = seedsweep(tmp_path, "run", spec, "--dry-run")
    assert "configurations: 2" in dry.stdout and "seed runs: 6" in dry.stdout
    # the rule (below 0.9) is met by the image-plane hand code on these frames: named, with its score
    assert re.search(
        r"WARNING: every configuration: the trivial baseline hand_code scores linear_proj_mse 0\.\d+", dry.stdout
    )
    assert not (tmp_path / "mlruns.db").exists()  # a dry run trains and records nothing

    out = seedsweep(tmp_path, "run", spec).stdout
    assert "trials done 2/2" in out and "sweep 'tiny' finished: 2 trials" in out
    assert "symmetry" in out and "wilson" in out.lower()  # the success table, per configuration
    assert "baseline hand_code: linear_proj_mse" in out and "baseline constant: linear_proj_mse" in out

    seeds, parents = runs(tmp_path, "tiny", "seed"), runs(tmp_path, "tiny", "config")
    assert len(seeds) == 2 * 3 and len(parents) == 2
    keys = Counter((r.data.tags["config_id"], r.data.tags["seed"]) for r in seeds)
    assert len(keys) == 6 and set(keys.values()) == {1}
    for r in seeds:
        tags = r.data.tags
        assert tags["sweep"] == "tiny" and tags["status"] == "finished" and tags["success"] in ("true", "false")
        assert tags["trial_id"] and tags["mlflow.parentRunId"] in {p.info.run_id for p in parents}
        assert r.data.params["seed"] == tags["seed"]
        assert history_steps(tmp_path, r.info.run_id, "linear_proj_mse") == [1, 2, 3]
        success = r.data.metrics["linear_proj_mse"] < 0.9
        assert tags["success"] == str(success).lower()
    for p in parents:  # the sweep's success rule, for the analysis to recompute
        assert p.data.params["success.metric"] == "linear_proj_mse" and float(p.data.params["success.below"]) == 0.9
        assert p.data.params["success.also"] == "[0.5]"
        assert p.data.params["symmetry"] in ("none", "T2R2")
        m = p.data.metrics  # the trivial baselines, on the configuration's run
        assert m["baseline/hand_code/linear_proj_mse/low"] <= m["baseline/hand_code/linear_proj_mse"]
        assert m["baseline/constant/linear_proj_mse"] > m["baseline/hand_code/linear_proj_mse"]
    assert_mlflow_shows_k_over_n(tmp_path, "tiny")

    again = seedsweep(tmp_path, "run", spec).stdout
    assert "already finished" in again and "wilson" in again.lower()
    assert len(runs(tmp_path, "tiny", "seed")) == 6  # nothing redone
    # the Tune results gone but the MLflow runs kept: refused, rather than doubling every seed
    lost = seedsweep(tmp_path, "run", spec, "--storage", str(tmp_path / "elsewhere"), check=False)
    assert lost.returncode == 2 and "already holds runs of sweep 'tiny'" in lost.stderr


def assert_mlflow_shows_k_over_n(cwd: Path, sweep: str) -> None:
    """Through MLflow's search API, as its UI groups runs: every finished or diverged seed run has a
    ``success`` metric of 0 or 1, and its mean per ``tags.config_id`` is the success table's k/n;
    every parent run has ``n`` and its interval's ends, equal to the table's Wilson interval."""
    from analysis.runs import load_runs
    from analysis.success import success_table

    uri = f"sqlite:///{cwd / 'mlruns.db'}"
    client = MlflowClient(uri)
    exp = [client.get_experiment_by_name(sweep).experiment_id]
    seeds = client.search_runs(exp, "tags.`seedsweep.kind` = 'seed' AND metrics.success >= 0", max_results=1000)
    counted = runs(cwd, sweep, "seed")
    counted = {r.info.run_id for r in counted if r.data.tags["status"] in ("finished", "diverged")}
    assert counted and {r.info.run_id for r in seeds} == counted
    assert all(r.data.metrics["success"] in (0.0, 1.0) for r in seeds)
    mean = {}
    for r in seeds:
        mean.setdefault(r.data.tags["config_id"], []).append(r.data.metrics["success"])
    table = success_table(load_runs(uri, sweep)).set_index("config_id")
    assert {c: sum(v) / len(v) for c, v in mean.items()} == pytest.approx((table["successes"] / table["n"]).to_dict())
    for p in client.search_runs(exp, "tags.`seedsweep.kind` = 'config'", max_results=1000):
        row, m = table.loc[p.data.tags["config_id"]], p.data.metrics
        assert m["n"] == row["n"] and m["success_rate"] == pytest.approx(row["successes"] / row["n"])
        assert (m["success_low"], m["success_high"]) == pytest.approx((row["wilson_low"], row["wilson_high"]))
        assert client.search_runs(exp, f"tags.config_id = '{p.data.tags['config_id']}' AND metrics.success >= 0")


def test_a_new_family_sweeps_and_analyses_end_to_end(tmp_path):
    """The test-only family ``tiny`` (tests/tiny_model.py: one file, one register line) through
    ``seedsweep run`` and ``seedsweep analyze``: its own metrics, its own default rule."""
    spec = tmp_path / "tinyfam.yaml"
    spec.write_text(
        yaml.safe_dump(
            {  # no success rule: the model's own
                "name": "tinyfam",
                "model": "tiny",
                "env": "ball",
                "seeds": 2,
                "epochs": 2,
                "scheduler": "none",
                "data": {"n_train": 16, "n_val": 8, "frames": 4, "image_size": 8, "data_seed": 0},
                "params": {"decoder_lr": {"grid": [0.5, 1.0]}, "lr": 0.05},
            }
        )
    )
    spec = str(spec)
    assert "success: pooled_mse below 0.01" in seedsweep(tmp_path, "run", spec, "--dry-run").stdout
    out = seedsweep(tmp_path, "run", spec).stdout
    assert "trials done 2/2" in out and "decoder_lr" in out
    for p in runs(tmp_path, "tinyfam", "config"):
        assert p.data.params["success.metric"] == "pooled_mse" and "median_code_std" in p.data.metrics
    for r in runs(tmp_path, "tinyfam", "seed"):
        assert (
            history_steps(tmp_path, r.info.run_id, "pooled_mse") == [1, 2] and "linear_proj_mse" not in r.data.metrics
        )
        assert r.data.tags["success"] == str(r.data.metrics["pooled_mse"] < 0.01).lower()
    table = seedsweep(tmp_path, "analyze", "tinyfam", "--out", str(tmp_path / "report")).stdout
    assert "decoder_lr" in table and "pooled_mse below 0.01" in table
    assert "pooled_mse" in (tmp_path / "report" / "report.html").read_text()


def test_asha_stops_a_clearly_worse_configuration(tmp_path):
    """The same seeds with lr 1e-3 and with lr 1e-9 (which cannot learn): run one after the other, the
    second reaches the first rung worse than the first and is stopped there."""
    spec = write_spec(
        tmp_path,
        name="asha",
        epochs=4,
        max_concurrent=1,
        seeds=2,
        data={**SPEC_TINY["data"], "n_train": 64},
        params={**SPEC_TINY["params"], "symmetry": "none", "lr": {"grid": [1e-3, 1e-9]}},
        scheduler={"metric": "median_recon_mse", "mode": "min", "grace_period": 1, "reduction_factor": 2},
    )
    seedsweep(tmp_path, "run", spec)
    parents = {float(p.data.params["lr"]): p for p in runs(tmp_path, "asha", "config")}
    good, bad = parents[1e-3], parents[1e-9]
    assert (
        good.data.tags["status"] == "finished"
        and good.data.metrics["median_recon_mse"] < bad.data.metrics["median_recon_mse"]
    )
    assert max(history_steps(tmp_path, good.info.run_id, "median_recon_mse")) == 4
    assert max(history_steps(tmp_path, bad.info.run_id, "median_recon_mse")) < 4  # stopped before the last epoch
    statuses = Counter(
        r.data.tags["status"]
        for r in runs(tmp_path, "asha", "seed")
        if r.data.tags["mlflow.parentRunId"] == bad.info.run_id
    )
    assert statuses == {"pruned": 2}


@pytest.mark.slow  # ~100 s on 2 cores; .ci/run runs it
def test_killed_driver_resumes_each_seed_exactly_once(tmp_path):
    spec = write_spec(tmp_path, name="resume", epochs=6, seeds=2, max_concurrent=1)
    driver = start_sweep(tmp_path, spec, env={"TUNE_GLOBAL_CHECKPOINT_S": "1"}, output=False)
    run_dir = tmp_path / "ray_results" / "resume"
    wait_for("a checkpoint past epoch 1", lambda: list(run_dir.glob("*/checkpoint_00000[2-9]")), driver, timeout=240)
    time.sleep(1.5)  # let Tune write its experiment state past that checkpoint (at most ~1 s old)
    kill(driver)  # the driver, and the local Ray it started, die mid-sweep
    done_before = [r for r in runs(tmp_path, "resume", "seed") if r.data.tags["status"] == "finished"]
    assert len(done_before) < 4, "the sweep finished before it was killed"

    plain = seedsweep(tmp_path, "run", spec, check=False)
    assert plain.returncode == 2 and "--resume" in plain.stderr  # an interrupted sweep is not silently redone
    out = seedsweep(tmp_path, "run", spec, "--resume").stdout
    assert "sweep 'resume' finished: 2 trials" in out

    seeds = runs(tmp_path, "resume", "seed")
    keys = Counter((r.data.tags["config_id"], r.data.tags["seed"]) for r in seeds)
    assert len(keys) == 4 and set(keys.values()) == {1}  # every (configuration, seed) once: none lost, none doubled
    for r in seeds:
        assert r.data.tags["status"] == "finished"
        for metric in ("linear_proj_mse", "train/total"):
            assert history_steps(tmp_path, r.info.run_id, metric) == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow  # ~100 s on 2 cores; .ci/run runs it
def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path):
    spec = write_spec(
        tmp_path, name="ctrlc", epochs=5, seeds=1, max_concurrent=1, data={**SPEC_TINY["data"], "n_train": 256}
    )
    driver = start_sweep(tmp_path, spec)
    wait_for("a checkpoint", lambda: list((tmp_path / "ray_results" / "ctrlc").glob("*/checkpoint_*")), driver, 240)
    os.killpg(driver.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends to the foreground group
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 1 and "did not finish (interrupted)" in err and "--resume" in err, (out, err)
    assert "already finished" not in seedsweep(tmp_path, "run", spec, check=False).stdout
    assert "sweep 'ctrlc' finished: 2 trials" in seedsweep(tmp_path, "run", spec, "--resume").stdout
    seeds = runs(tmp_path, "ctrlc", "seed")
    assert len(seeds) == 2 and all(
        history_steps(tmp_path, r.info.run_id, "train/total") == [1, 2, 3, 4, 5] for r in seeds
    )
    assert "already finished" in seedsweep(tmp_path, "run", spec).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def two_node_cluster(tmp_path):
    """A Ray head and one worker node on this machine, one CPU each, in their own temp folder (so the
    machine's default Ray address file never names them). ``ray start --head`` turns on token
    authentication (the token in ~/.ray/auth_token), so every process joining says so."""
    port, env = free_port(), {**os.environ, "SEEDSWEEP_CACHE": str(tmp_path / "cache"), "RAY_AUTH_MODE": "token"}
    ray, temp = str(BIN / "ray"), tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must fit 107 bytes
    common = [
        "--node-ip-address=127.0.0.1",
        "--num-cpus=1",
        "--num-gpus=0",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    try:
        subprocess.run(
            [ray, "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [ray, "start", f"--address=127.0.0.1:{port}", *common],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield f"127.0.0.1:{port}", env
    finally:
        stop_cluster(port)
        shutil.rmtree(temp, ignore_errors=True)


def test_sweep_on_a_two_node_cluster(tmp_path, two_node_cluster):
    spec = write_spec(tmp_path, name="cluster", seeds=2, epochs=2)
    address, env = two_node_cluster
    out = seedsweep(tmp_path, "run", spec, "--address", address, env=env).stdout
    assert "sweep 'cluster' finished: 2 trials" in out
    parents = runs(tmp_path, "cluster", "config")
    assert len(parents) == 2 and len(runs(tmp_path, "cluster", "seed")) == 4
    nodes = {p.data.tags["node_id"] for p in parents}
    assert len(nodes) == 2  # one CPU per node and one per trial: the two trials ran on different nodes


def test_optuna_search_keeps_its_study_beside_the_results(tmp_path):
    import optuna

    spec = write_spec(
        tmp_path,
        name="tpe",
        searcher="optuna",
        num_samples=3,
        seeds=1,
        epochs=2,
        max_concurrent=1,
        params={**SPEC_TINY["params"], "symmetry": {"choice": ["none", "T2R2"]}, "lr": {"loguniform": [1e-4, 1e-2]}},
    )
    seedsweep(tmp_path, "run", spec)
    parents = runs(tmp_path, "tpe", "config")
    lrs = {float(p.data.params["lr"]) for p in parents}
    assert len(parents) == 3 and len(lrs) == 3 and all(1e-4 <= lr <= 1e-2 for lr in lrs)
    study = optuna.load_study(study_name="tpe", storage=f"sqlite:///{tmp_path / 'ray_results' / 'tpe' / 'optuna.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3 and {t.params["lr"] for t in done} == lrs


def test_sweep_against_an_mlflow_server(tmp_path):
    """As on a cluster: runs and artifacts go through `mlflow server` (SQL backend, proxied artifacts)."""
    port = free_port()
    server = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.time() < deadline and server.poll() is None, "mlflow server did not start"
                time.sleep(0.5)
        spec = write_spec(tmp_path, name="served", seeds=2, epochs=4, eval_every=3)
        out = seedsweep(tmp_path, "run", spec, "--tracking-uri", uri).stdout
        assert "sweep 'served' finished: 2 trials" in out and "wilson" in out.lower()
        assert not (tmp_path / "mlruns.db").exists()  # nothing went to the local default store
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("served")
        seeds = client.search_runs([experiment.experiment_id], "tags.`seedsweep.kind` = 'seed'")
        assert len(seeds) == 4 and {r.data.tags["status"] for r in seeds} == {"finished"}
        history = lambda metric: sorted(m.step for m in client.get_metric_history(seeds[0].info.run_id, metric))  # noqa: E731
        assert history("train/total") == [1, 2, 3, 4] and history("linear_proj_mse") == [
            1,
            3,
            4,
        ]  # first, every 3rd, last
        assert {a.path for a in client.list_artifacts(seeds[0].info.run_id)} >= {
            "latent_vs_position.png",
            "decoder_traversal.png",
        }
        assert list((tmp_path / "server-artifacts").rglob("latent_vs_position.png"))  # stored by the server
        analyzed = seedsweep(tmp_path, "analyze", "served", "--tracking-uri", uri).stdout
        assert "report: reports/served/report.html" in analyzed
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.slow
def test_settle_continues_the_chosen_seeds_as_a_longer_run_would(tmp_path):
    """``settle``: the chosen seeds go on from the final checkpoint to factor x epochs, and end with the
    numbers of the same seeds trained that long from the start; the table counts their flips."""
    from sweeps.settle import Settle
    from trainables import fit

    params = {**SPEC_TINY["params"], "symmetry": "none"}
    settle = {"seeds": 2, "factor": 2, "seed": 5}
    spec = write_spec(tmp_path, name="settled", params=params, epochs=2, settle=settle)
    assert "settle: after the sweep, 2 finished seeds" in seedsweep(tmp_path, "run", spec, "--dry-run").stdout
    out = seedsweep(tmp_path, "run", spec).stdout
    assert "settledness check" in out and "flipped by epoch 4" in out
    seeds = runs(tmp_path, "settled", "seed")
    continued = {int(r.data.tags["seed"]): r for r in seeds if "settle.success" in r.data.tags}
    assert sorted(continued) == sorted(Settle.parse(settle).chosen([0, 1, 2], [0, 1, 2]))
    config = {"model": "sps", "env": "ball", **SPEC_TINY["data"], **params, "success": SPEC_TINY["success"]}
    longer = fit(config, sorted(continued), epochs=4, device="cpu")
    flipped = 0
    for alone in longer:
        run = continued[alone["seed"]]
        assert run.data.tags["settle.epochs"] == "4" and run.data.tags["settle.status"] == "finished"
        assert run.data.metrics["settle/linear_proj_mse"] == pytest.approx(alone["linear_proj_mse"], rel=1e-3)
        assert run.data.tags["settle.success"] == str(alone["success"]).lower()
        flipped += run.data.tags["settle.success"] != run.data.tags["success"]
    assert f"{flipped}/2 flipped by epoch 4" in out
    assert len(list((tmp_path / "ray_results" / "settled" / "settle").glob("settle_trial_*"))) == 1  # a trial each

    import ray

    from sweeps import runner
    from sweeps import spec as specs

    folder = str(tmp_path / "ray_results" / "settled")
    try:  # run again (as a resumed driver would): Tune restores the finished settle experiment, nothing trains again
        assert runner.settle_seeds(specs.load(spec), folder, folder, f"sqlite:///{tmp_path / 'mlruns.db'}") == 2
    finally:
        ray.shutdown()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    assert all(len(client.get_metric_history(r.info.run_id, "settle/linear_proj_mse")) == 1 for r in continued.values())
