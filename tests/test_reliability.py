"""Nothing lost at scale: sweeps against an MLflow server on a real PostgreSQL (both started here), a
trial process SIGKILLed mid-trial, and the MLflow server stopped mid-sweep, briefly and for longer
than the trials' patience. Each checks that every seed run exists once and every metric step
arrived exactly once. PostgreSQL's server programs come from the system (`apt-get install
postgresql`; .ci/run installs them); without them these tests skip, except under CI."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient
from support import SPEC_TINY, LabServer, finish, start_sweep, wait_for, write_spec

from sweeps import server as servers
from trainables.records import KIND, bound_mlflow_http

pytestmark = pytest.mark.slow
bound_mlflow_http()  # this process's own MLflow calls give up in seconds while the server is down

ONE_CONFIG = {**SPEC_TINY["params"], "symmetry": "none"}
SLOWER = {**SPEC_TINY["data"], "n_train": 256}  # epochs long enough (~0.2-1 s here) to act between them


@pytest.fixture(scope="module")
def tracking():
    server = LabServer()
    yield server
    server.close()


def listening(port: int) -> set[str]:
    """The local addresses (IPv4, hex as in /proc/net/tcp) with a socket listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.split(":")[1], 16) == port:
                found.add(local.split(":")[0])
    return found


def command_lines() -> str:
    """Every process's full command line, one per line (from /proc: no column width cuts them)."""
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # the process ended meanwhile
            pass
    return "\n".join(lines)


def runs_of(client: MlflowClient, sweep: str, kind: str) -> list:
    experiment = client.get_experiment_by_name(sweep)
    return [] if experiment is None else client.search_runs([experiment.experiment_id], f"tags.`{KIND}` = '{kind}'")


def assert_exactly_once(client: MlflowClient, sweep: str, seeds: int, epochs: int) -> list:
    """One run per seed, each finished, holding every epoch of every metric exactly once."""
    runs = runs_of(client, sweep, "seed")
    assert Counter(r.data.tags["seed"] for r in runs) == Counter(str(s) for s in range(seeds))
    for run in runs:
        assert run.data.tags["status"] == "finished" and run.info.status == "FINISHED"
        assert {"train/total", "linear_proj_mse"} <= set(run.data.metrics)
        for key in run.data.metrics:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            want = [epochs] if key == "success" else list(range(1, epochs + 1))  # the outcome at the last epoch
            assert sorted(steps) == want, (run.data.tags["seed"], key, sorted(steps))
    return runs


def test_sweep_on_postgres(tracking, tmp_path):
    """A sweep through the lab's MLflow server; its runs and metrics are rows in PostgreSQL; both
    servers listen on loopback only and no command line or log shows the database password."""
    import psycopg

    spec = write_spec(tmp_path, name="pg", seeds=2, epochs=3)
    code, out, err = finish(start_sweep(tmp_path, spec, "--tracking-uri", tracking.uri))
    assert code == 0 and "sweep 'pg' finished: 2 trials" in out, (out, err)
    client = MlflowClient(tracking.uri)
    assert len(runs_of(client, "pg", "config")) == 2
    seeds = runs_of(client, "pg", "seed")
    assert len(seeds) == 4 and {r.data.tags["status"] for r in seeds} == {"finished"}
    pgpass = tracking.folder / "postgres" / "pgpass"
    with psycopg.connect(
        host="127.0.0.1", port=tracking.pg_port, user=servers.PG_USER, dbname=servers.PG_DATABASE, passfile=str(pgpass)
    ) as conn:
        (rows,) = conn.execute(
            "SELECT count(*) FROM metrics m JOIN runs r ON r.run_uuid = m.run_uuid JOIN experiments e "
            "ON e.experiment_id = r.experiment_id WHERE e.name = 'pg' AND m.key = 'train/total'"
        ).fetchone()
    assert rows == 2 * 2 * 3  # 2 configurations x 2 seeds x 3 epochs (the parents hold median_train/total)

    # security defaults: both servers on loopback only, the password in no process's command line
    assert listening(tracking.port) == {"0100007F"} and listening(tracking.pg_port) == {"0100007F"}
    password = pgpass.read_text().strip().rsplit(":", 1)[1]
    commands = command_lines()
    assert f"127.0.0.1:{tracking.pg_port}" in commands and password not in commands
    logs = "".join(p.read_text(errors="replace") for p in tracking.folder.rglob("*.log"))
    assert logs and password not in logs


def test_worker_killed_mid_trial_continues_from_its_checkpoint(tracking, tmp_path):
    epochs = 12
    spec = write_spec(
        tmp_path,
        name="kill",
        seeds=2,
        epochs=epochs,
        checkpoint_every=2,
        max_failures=2,
        data=SLOWER,
        params=ONE_CONFIG,
    )
    driver = start_sweep(tmp_path, spec, "--tracking-uri", tracking.uri)
    client = MlflowClient(tracking.uri)
    trial_dir = lambda: next((tmp_path / "ray_results" / "kill").glob("train_*"), None)  # noqa: E731
    wait_for("a checkpoint", lambda: trial_dir() and list(trial_dir().glob("checkpoint_*")), driver)
    (parent,) = wait_for(
        "the trial's pid", lambda: [r for r in runs_of(client, "kill", "config") if "pid" in r.data.tags], driver
    )
    pid = int(parent.data.tags["pid"])
    assert {r.data.tags["status"] for r in runs_of(client, "kill", "seed")} == {"running"}  # mid-trial
    os.kill(pid, signal.SIGKILL)  # the Ray worker process running the trial, as the OOM killer would
    code, out, err = finish(driver)
    assert code == 0 and "sweep 'kill' finished: 1 trials" in out, (out, err)

    (parent,) = runs_of(client, "kill", "config")
    assert int(parent.data.tags["pid"]) != pid  # the trial ran again, in a new process
    assert_exactly_once(client, "kill", seeds=2, epochs=epochs)
    rows = [json.loads(line) for line in (trial_dir() / "result.json").read_text().splitlines()]
    restarted = [r for r in rows if r["iterations_since_restore"] == 1 and r["epoch"] > 1]
    assert restarted and restarted[0]["epoch"] > 2 and restarted[0]["epoch"] % 2 == 1  # from a checkpoint, not epoch 1


def test_tracking_server_down_and_back(tracking, tmp_path):
    """The server stops mid-sweep and comes back (after its restart time, ~20-60 s here): training
    went on meanwhile, and what could not be sent arrives once."""
    epochs = 20  # if they all pass while the server is down, the trial waits for it at its end
    spec = write_spec(
        tmp_path, name="outage", seeds=2, epochs=epochs, checkpoint_every=2, data=SLOWER, params=ONE_CONFIG
    )
    driver = start_sweep(tmp_path, spec, "--tracking-uri", tracking.uri)
    client = MlflowClient(tracking.uri)

    def logged_steps() -> int:
        parents = runs_of(client, "outage", "config")
        if not parents:
            return 0
        return max((m.step for m in client.get_metric_history(parents[0].info.run_id, "median_train/total")), default=0)

    wait_for("two logged epochs", lambda: logged_steps() >= 2, driver)

    def reported():
        return sum(
            len(p.read_text().splitlines()) for p in (tmp_path / "ray_results" / "outage").glob("train_*/result.json")
        )  # noqa: E731

    tracking.stop()
    down_at = reported()
    wait_for("training while the server is down", lambda: reported() >= down_at + 3, driver, timeout=120)
    tracking.start()
    code, out, err = finish(driver)
    assert code == 0 and "sweep 'outage' finished: 1 trials" in out, (out, err)
    assert logged_steps() == epochs
    assert_exactly_once(client, "outage", seeds=2, epochs=epochs)


def test_tracking_server_down_too_long_fails_the_trial_and_resume_completes(tracking, tmp_path):
    epochs = 8  # the trial fails at the first send after 2 s down, or waits at its end and fails there
    spec = write_spec(
        tmp_path,
        name="patience",
        seeds=2,
        epochs=epochs,
        checkpoint_every=2,
        max_failures=0,
        tracking_patience=2,
        data=SLOWER,
        params=ONE_CONFIG,
    )
    driver = start_sweep(tmp_path, spec, "--tracking-uri", tracking.uri)
    client = MlflowClient(tracking.uri)
    wait_for("a logged epoch", lambda: [r for r in runs_of(client, "patience", "config") if r.data.metrics], driver)
    tracking.stop()
    try:
        code, out, err = finish(driver)
    finally:
        tracking.start()
    assert code == 1 and "did not finish (1 of 1 trials failed)" in err and "--resume" in err, (out, err)
    results = tmp_path / "ray_results" / "patience"
    assert "unreachable for more than 2 s (tracking_patience)" in "".join(
        p.read_text() for p in results.rglob("error.txt")
    )

    code, out, err = finish(start_sweep(tmp_path, spec, "--tracking-uri", tracking.uri, "--resume"))
    assert code == 0 and "sweep 'patience' finished: 1 trials" in out, (out, err)
    assert_exactly_once(client, "patience", seeds=2, epochs=epochs)
