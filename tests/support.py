"""What the tests share: the ``seedsweep`` CLI and a tiny sweep spec, sweep drivers started in their
own process group and killed by signal (``start_sweep``, ``wait_for``, ``kill``, ``finish``), reads of
the MLflow store, a lab's tracking server (``LabServer``), a Tune trainable that crashes once, and
fake sweeps written in the MLflow layout."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from trainables import records

BIN = Path(sys.executable).parent
SPEC_TINY = {  # a sweep spec that trains in seconds: 2 configurations x 3 seeds x 3 epochs of a tiny SPS
    "name": "tiny",
    "model": "sps",
    "env": "ball",
    "data": {"n_train": 32, "n_val": 16, "frames": 6, "image_size": 16, "data_seed": 0},
    "params": {
        "symmetry": {"grid": ["none", "T2R2"]},
        "channels": [4, 8],
        "dec_hidden": [8],
        "rnn_width": 8,
        "batch_size": 16,
        "rnn_min_context": 2,
    },
    "seeds": 3,
    "epochs": 3,
    "checkpoint_every": 1,  # no scheduler key: no early stopping
    "resources": {"cpu": 1, "gpu": 0},
    "success": {"metric": "linear_proj_mse", "below": 0.9, "also": [0.5]},
}
# lr 1e-9 cannot learn and lr 5e-2 learns in one epoch (on the plain scene's black background recon_mse
# ~0.23-0.25 against 0.004-0.018; the SPS scene's grey is near an untrained decoder's output, 0.02 there):
# every seed of the one fails the rule and every seed of the other meets it, so every seed is a
# discordant pair: 8 of them (round 1, 1/8 of max 64's alpha) do not decide, 16 (round 2) do.
ADAPTIVE = dict(  # with SPEC_TINY: an adaptive sweep whose two configurations part at round 2
    name="rounds",
    epochs=1,
    max_concurrent=2,
    seeds={"start": 8, "step": 8, "max": 64, "until": "decided"},
    data={**SPEC_TINY["data"], "n_train": 64, "scene": "plain"},
    params={**SPEC_TINY["params"], "symmetry": "none", "lr": {"grid": [5e-2, 1e-9]}},
    success={"metric": "recon_mse", "below": 0.1},
)
STARTED: list[subprocess.Popen] = []  # sweep drivers; conftest's ``no_driver_left`` kills any a test leaves


# ---- the CLI ----


def cli_env(cwd: Path, env: dict | None = None) -> dict:
    return {**os.environ, "SEEDSWEEP_CACHE": str(cwd / "cache"), **(env or {})}


def seedsweep(
    cwd: Path, *args: str, timeout: float = 300, check: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(BIN / "seedsweep"), *args], cwd=cwd, env=cli_env(cwd, env), capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"seedsweep {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def write_spec(cwd: Path, **change) -> str:
    spec = {**SPEC_TINY, **change}
    path = cwd / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


# ---- a sweep driver to kill ----


def start_sweep(cwd: Path, spec: str, *args: str, env: dict | None = None, output: bool = True) -> subprocess.Popen:
    """``seedsweep run SPEC ARGS`` in its own process group (a kill takes its local Ray with it);
    ``output``: keep stdout/stderr for ``finish``, else discard them."""
    pipe = subprocess.PIPE if output else subprocess.DEVNULL
    driver = subprocess.Popen(
        [str(BIN / "seedsweep"), "run", spec, *args],
        cwd=cwd,
        env=cli_env(cwd, env),
        start_new_session=True,
        stdout=pipe,
        stderr=pipe,
        text=True,
    )
    STARTED.append(driver)
    return driver


def wait_for(what: str, condition, driver: subprocess.Popen, timeout: float = 300, every: float = 0.2):
    """``condition()``'s first truthy value, polled while the driver runs; fails if it ends or time is up."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert driver.poll() is None, f"the sweep ended before {what}: {driver.communicate()}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(every)


def kill(driver: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """``sig`` to the driver's process group (SIGKILL: it and its local Ray die at once), then wait."""
    os.killpg(driver.pid, sig)
    driver.wait()


def finish(driver: subprocess.Popen, timeout: float = 400) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) once the driver ends; killed if it takes longer than ``timeout``."""
    try:
        out, err = driver.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGKILL)
        out, err = driver.communicate()
    return driver.returncode, out, err


# ---- a lab's tracking server ----


class LabServer:
    """``seedsweep server`` (PostgreSQL + MLflow, as a lab starts it) on ``host``, with ``--auth`` if
    asked, in a fresh folder outside pytest's root-only tmp (the postgres user enters it); ``stop``
    and ``start`` again keep its ports; ``close`` stops it and removes the folder. Skips the calling
    test where PostgreSQL's server programs are missing, except under CI (.ci/run installs them)."""

    def __init__(self, host: str = "127.0.0.1", auth: bool = False):
        from sweeps import server as servers

        try:
            servers.pg_bindir()
        except RuntimeError as err:
            if os.environ.get("CI"):
                raise
            pytest.skip(str(err))
        self.folder = Path(tempfile.mkdtemp(prefix="seedsweep-lab-"))
        self.folder.chmod(0o755)
        self.host, self.auth = host, auth
        self.port, self.pg_port = servers.free_port(), servers.free_port()
        self.proc, self.said = None, []
        self.start()

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        command = [str(BIN / "seedsweep"), "server", str(self.folder), "--host", self.host]
        command += ["--port", str(self.port), "--pg-port", str(self.pg_port), "--workers", "1"]
        self.proc = subprocess.Popen(
            command + (["--auth"] if self.auth else []),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.said = [self.proc.stdout.readline() for _ in range(2 if self.auth else 1)]  # once both servers answer
        found = re.search(r"--tracking-uri (\S+)", self.said[0])
        assert found and found.group(1) == self.uri, "".join(self.said) + self.proc.stdout.read()

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)  # seedsweep server stops MLflow, then PostgreSQL
        assert self.proc.wait(timeout=120) == 0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


# ---- reading the store ----


def runs(cwd: Path, sweep: str, kind: str) -> list:
    """The sweep's runs of one kind ("config" or "seed") in ``cwd``'s local store."""
    client = MlflowClient(f"sqlite:///{cwd / 'mlruns.db'}")
    experiment = client.get_experiment_by_name(sweep)
    return client.search_runs([experiment.experiment_id], f"tags.`{records.KIND}` = '{kind}'", max_results=1000)


def history_steps(cwd: Path, run_id: str, metric: str) -> list[int]:
    client = MlflowClient(f"sqlite:///{cwd / 'mlruns.db'}")
    return sorted(m.step for m in client.get_metric_history(run_id, metric))


def seed_runs(client: MlflowClient, sweep: str, trial_id: str) -> list:
    """One trial's seed runs, by seed number."""
    exp = client.get_experiment_by_name(sweep).experiment_id
    found = client.search_runs([exp], f"tags.trial_id = '{trial_id}'", max_results=1000)
    return sorted((r for r in found if r.data.tags[records.KIND] == "seed"), key=lambda r: int(r.data.tags["seed"]))


# ---- a trainable that crashes once ----


def fit_crashing_once(root: Path, param_space: dict, crash_after: int, name: str) -> dict:
    """Two trials of ``param_space`` through Tune, on the local Ray the caller started: one plain, one
    that crashes after epoch ``crash_after`` and is restored by Tune from its checkpoint. Returns
    ``{None: plain result, crash_after: restored result}``."""
    from ray import tune

    results = tune.Tuner(
        tune.with_resources(crash_once_trainable(), {"cpu": 1}),
        param_space={**param_space, "crash": tune.grid_search([None, crash_after])},
        run_config=tune.RunConfig(
            name=name, storage_path=str(root / "ray"), verbose=0, failure_config=tune.FailureConfig(max_failures=1)
        ),
    ).fit()
    assert not results.errors, results.errors
    return {r.config["crash"]: r for r in results}


def crash_once_trainable():
    """``train``, but a trial whose config has ``crash`` = E raises once after reporting epoch E (not
    after its restore): Tune's ``report`` is wrapped in the trial's process. Returned from a factory, so
    the function is local and Ray ships it by value to workers that cannot import this module; the
    production trainable has no such hook."""

    def crash_once(config):
        from ray import tune

        from trainables.train import train

        crash, config = config["crash"], {k: v for k, v in config.items() if k != "crash"}
        if crash is None or tune.get_checkpoint() is not None:
            return train(config)
        report = tune.report

        def report_then_crash(metrics, *args, **kwargs):
            report(metrics, *args, **kwargs)
            if metrics["epoch"] == crash:
                raise RuntimeError(f"test crash after epoch {crash}")

        tune.report = report_then_crash
        try:
            train(config)
        finally:
            tune.report = report

    return crash_once


# ---- fake sweeps in the MLflow layout ----

RULE = {"metric": "linear_proj_mse", "below": 0.2}  # the fake sweeps' stored success rule


def write_sweep(uri: str, sweep: str, configs: dict, epochs: int = 4, artifacts=None, rule=RULE) -> None:
    """Write a synthetic sweep: ``configs = {config_id: (params, [(status, final linear_proj_mse[, tags]), ...])}``.
    Seeds get a decreasing ``linear_proj_mse`` history ending at the final value, ``recon_mse`` =
    half of it, and the ``success`` tag under RULE; with ``artifacts`` each finished seed logs the
    trainable's two PNGs."""
    client = MlflowClient(uri)
    exp = client.create_experiment(sweep, artifact_location=artifacts)
    rule = [Param(k, v) for k, v in records.flatten({"success": rule}).items()]  # as the trainable's tracker logs it
    for t, (cid, (params, seeds)) in enumerate(configs.items()):
        tags = {"sweep": sweep, "config_id": cid, "trial_id": f"trial_{t:05d}"}
        config = [Param(k, str(v)) for k, v in params.items()] + rule
        parent = client.create_run(exp, tags={**tags, records.KIND: "config"}, run_name=cid).info.run_id
        client.log_batch(parent, params=config)
        for seed, (status, final, *extra) in enumerate(seeds):
            success = status == "finished" and final < RULE["below"]
            run = client.create_run(
                exp,
                run_name=f"{cid}/{seed}",
                tags={
                    **tags,
                    records.KIND: "seed",
                    "mlflow.parentRunId": parent,
                    "seed": str(seed),
                    "status": status,
                    "success": str(success).lower(),
                    **(extra[0] if extra else {}),
                },
            ).info.run_id
            mse = np.append(np.linspace(1.0, final, epochs)[:-1], final)
            metrics = [
                Metric(name, float(v * f), 0, e)
                for e, v in enumerate(mse)
                for name, f in (("linear_proj_mse", 1), ("recon_mse", 0.5))
            ]
            client.log_batch(
                run, metrics=metrics, params=config + [Param("seed", str(seed))], tags=[RunTag("note", "x")]
            )
            if artifacts and status == "finished":
                for png in ("latent_vs_position.png", "decoder_traversal.png"):
                    client.log_image(run, np.zeros((8, 8, 3), np.uint8), png)
            client.set_terminated(run, "FAILED" if status == "failed" else "FINISHED")
        client.set_terminated(parent)


def frame(config_rows: dict) -> pd.DataFrame:
    """A runs table without MLflow: ``{config_id: [(status, success), ...]}``."""
    rows = [
        {"config_id": c, "status": s, "success": ok, "run_id": f"{c}-{i}"}
        for c, seeds in config_rows.items()
        for i, (s, ok) in enumerate(seeds)
    ]
    return pd.DataFrame(rows)
