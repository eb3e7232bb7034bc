"""``seedsweep run --address`` on the two-node simulation (tests/cluster_sim.py: a worker node with its
own loopback and its own view of the driver's working folder, no shared filesystem but ``shared/``).

What cannot work is refused in seconds, before any run or trial exists: the local defaults, a tracking
server on the driver's loopback, a trial no node fits, a tracking server that answers 401. What the
README's cluster recipe sets up works: ``seedsweep server --host <head address>``, storage on the shared
folder, a plugin family named only in the driver's environment; the driver killed and resumed, then
the worker node lost mid-sweep: every (configuration, seed) once, every epoch once."""

import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from cluster_sim import two_nodes
from mlflow import MlflowClient
from support import LabServer

BIN = Path(sys.executable).parent
TINY_MODEL = str(Path(__file__).parent / "tiny_model.py")
SPEC = {
    "name": "lab",
    "model": "tiny",  # the test-only family: named in the driver's SEEDSWEEP_MODELS only
    "env": "ball",
    "data": {"n_train": 64, "n_val": 16, "frames": 4, "image_size": 8, "data_seed": 0},
    "params": {"width": {"grid": [2, 4]}},
    "seeds": 2,
    "epochs": 8,
    "checkpoint_every": 1,
    "resources": {"cpu": 1, "gpu": 0},
}
REFUSED_WITHIN = 30.0  # seconds from the command to its refusal, Ray's connect included


def fake_mlflow(host: str, status: int) -> http.server.ThreadingHTTPServer:
    """An HTTP server on ``host`` answering MLflow's experiments search with ``status`` (200: an empty
    list, as a fresh MLflow server; 401: no credentials), in a daemon thread."""

    class Reply(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"experiments": []} if status == 200 else {"error_code": "UNAUTHENTICATED"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Reply)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def write_spec(folder: Path, file: str = "lab.yaml", **change) -> str:
    path = folder / file
    path.write_text(yaml.safe_dump({**SPEC, **change}))
    return str(path)


def run(cluster, *args, timeout=300, env=None) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    proc = subprocess.run(
        [str(BIN / "seedsweep"), "run", *args],
        cwd=cluster.work,
        env={**cluster.env, "SEEDSWEEP_MODELS": TINY_MODEL, **(env or {})},  # the plugin: the driver's only
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc, time.monotonic() - start


def nothing_started(cluster) -> None:
    """No MLflow store on either node's disk, and no Tune trial anywhere."""
    for disk in (cluster.work, cluster.worker_disk, cluster.shared):
        assert not list(disk.rglob("mlruns.db")) and not list(disk.rglob("mlartifacts")), disk
        assert not list(disk.rglob("checkpoint_*")) and not list(disk.rglob("result.json")), disk


@pytest.mark.slow  # ~2 min on 2 cores: one cluster, four refusals
def test_what_cannot_work_on_a_cluster_is_refused_in_seconds(tmp_path):
    with two_nodes(tmp_path, worker_cpus=2, worker_gpus=1, head_cpus=1, env={"SEEDSWEEP_MODELS": ""}) as cluster:
        spec = write_spec(cluster.work)
        storage = str(cluster.shared / "ray_results")
        worker = re.escape(cluster.worker_ip)

        proc, took = run(cluster, spec, "--address", cluster.address)  # the local defaults
        assert proc.returncode == 2 and took < REFUSED_WITHIN, (took, proc.stdout, proc.stderr)
        assert re.search(rf"tracking URI sqlite:.* is a file on this machine, which node \w+ \({worker}\)", proc.stderr)
        assert "--resume" not in proc.stderr

        loopback = fake_mlflow("127.0.0.1", 200)  # the driver reaches it; the worker node cannot
        uri = f"http://127.0.0.1:{loopback.server_port}"
        proc, took = run(cluster, spec, "--address", cluster.address, "--tracking-uri", uri, "--storage", storage)
        assert proc.returncode == 2 and took < REFUSED_WITHIN, (took, proc.stderr)
        assert re.search(rf"is this machine's loopback, which node \w+ \({worker}\) cannot reach", proc.stderr)

        served = fake_mlflow(cluster.head_ip, 200)
        uri = f"http://{cluster.head_ip}:{served.server_port}"
        big = write_spec(cluster.work, "big.yaml", resources={"cpu": 3})  # 3 CPUs in all, 2 on the larger node
        proc, took = run(cluster, big, "--address", cluster.address, "--tracking-uri", uri, "--storage", storage)
        assert proc.returncode == 2 and took < REFUSED_WITHIN, (took, proc.stderr)
        assert re.search(rf"no node fits a trial \(CPU 3; resources.cpu .*{worker}\): CPU 2", proc.stderr)

        card = write_spec(cluster.work, "card.yaml", resources={"cpu": 1, "gpu": 0.5, "accelerator_type": "H100"})
        proc, took = run(cluster, card, "--address", cluster.address, "--tracking-uri", uri, "--storage", storage)
        assert proc.returncode == 2 and took < REFUSED_WITHIN, (took, proc.stderr)  # a (fake) GPU, but no H100
        assert re.search(r"no node fits a trial .*resources.accelerator_type", proc.stderr)

        denied = fake_mlflow(cluster.head_ip, 401)
        uri = f"http://{cluster.head_ip}:{denied.server_port}"
        proc, took = run(cluster, spec, "--address", cluster.address, "--tracking-uri", uri, "--storage", storage)
        assert proc.returncode == 2 and took < REFUSED_WITHIN, (took, proc.stderr)
        assert "refused access (HTTP 401)" in proc.stderr and "MLFLOW_TRACKING_USERNAME" in proc.stderr

        local = str(cluster.work / "ray_results")  # a folder on the driver's disk only
        proc, took = run(
            cluster,
            spec,
            "--address",
            cluster.address,
            "--tracking-uri",
            f"http://{cluster.head_ip}:{served.server_port}",
            "--storage",
            local,
        )
        assert proc.returncode == 2 and took < REFUSED_WITHIN, (took, proc.stderr)
        assert re.search(rf"node \w+ \({worker}\) does not see the storage {re.escape(local)}", proc.stderr)
        for server in (loopback, served, denied):
            server.shutdown()
        nothing_started(cluster)


@pytest.mark.slow  # ~1 min on 2 cores
def test_a_node_lost_between_rays_list_and_its_check_is_left_out(tmp_path, monkeypatch, capsys):
    """As on a resume right after a lost machine: Ray still lists the node alive, its check cannot run."""
    import ray

    from sweeps import cluster as lab
    from sweeps.preflight import Unusable, Where
    from sweeps.spec import load

    with (
        two_nodes(tmp_path, worker_cpus=2, head_cpus=1, env={"SEEDSWEEP_MODELS": TINY_MODEL}) as cluster,
        cluster.driver(),
    ):
        served = fake_mlflow(cluster.head_ip, 200)
        where = Where(str(cluster.shared / "ray_results"), f"http://{cluster.head_ip}:{served.server_port}")
        spec, big = load(write_spec(cluster.work)), load(write_spec(cluster.work, "big.yaml", resources={"cpu": 2}))
        lab.check_nodes(big, where)  # both nodes answer; the worker fits two CPUs
        listed = ray.nodes()
        cluster.kill_worker()
        stale = iter([listed])
        monkeypatch.setattr(ray, "nodes", lambda real=ray.nodes: next(stale, None) or real())
        start = time.monotonic()
        lab.check_nodes(spec, where)
        assert time.monotonic() - start < lab.NODE_TIMEOUT + 30  # Ray marks the node dead within its health checks
        out = capsys.readouterr().out
        assert re.search(rf"left the cluster during the node checks: node \w+ \({re.escape(cluster.worker_ip)}\)", out)
        stale = iter([listed])
        with pytest.raises(Unusable, match=r"no node fits a trial \(CPU 2"):  # the head alone holds one CPU
            lab.check_nodes(big, where)
        served.shutdown()


@pytest.mark.slow  # ~4 min on 2 cores
def test_the_readme_recipe_survives_a_killed_driver_and_a_lost_node(tmp_path):
    # nodes started without the plugin: it reaches them with the job, from the driver's environment
    with two_nodes(tmp_path, worker_cpus=2, head_cpus=1, env={"SEEDSWEEP_MODELS": ""}) as cluster:
        server = LabServer(host=cluster.head_ip)  # the README's seedsweep server --host <head address>
        uri = server.uri
        try:
            spec = write_spec(cluster.work)
            args = [
                spec,
                "--address",
                cluster.address,
                "--tracking-uri",
                uri,
                "--storage",
                str(cluster.shared / "ray_results"),
            ]
            env = {**cluster.env, "SEEDSWEEP_MODELS": TINY_MODEL, "TUNE_GLOBAL_CHECKPOINT_S": "1"}
            driver = subprocess.Popen(
                [str(BIN / "seedsweep"), "run", *args],
                cwd=cluster.work,
                env=env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            results = cluster.shared / "ray_results" / "lab"
            deadline = time.time() + 240
            while not training_on(cluster):  # two trials start at once, the head holds one: lose the worker
                assert driver.poll() is None and time.time() < deadline, "no trial on the worker node"
                time.sleep(0.2)
            cluster.kill_worker()  # its trial starts again on the head, from its last checkpoint
            while time.time() < deadline and not list(results.glob("*/checkpoint_00000[2-9]")):
                assert driver.poll() is None, "the sweep ended before the driver could be killed"
                time.sleep(0.2)
            time.sleep(1.5)  # Tune's experiment state past that checkpoint
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()

            resumed = subprocess.Popen(
                [str(BIN / "seedsweep"), "run", *args, "--resume"],
                cwd=cluster.work,
                env=env,
                start_new_session=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            out, err = resumed.communicate(timeout=400)
            client = MlflowClient(uri)
            assert resumed.returncode == 0, (out, err)
            # the tiny trials may have ended in the moments before the kill: then resume finds the sweep done
            assert "sweep 'lab' finished: 2 trials" in out or "sweep 'lab' already finished (2 trials)" in out, out

            experiment = client.get_experiment_by_name("lab").experiment_id
            seeds = client.search_runs([experiment], "tags.`seedsweep.kind` = 'seed'")
            keys = Counter((r.data.tags["config_id"], r.data.tags["seed"]) for r in seeds)
            assert len(keys) == 4 and set(keys.values()) == {1}
            for r in seeds:
                assert r.data.tags["status"] == "finished"
                steps = sorted(m.step for m in client.get_metric_history(r.info.run_id, "train/total"))
                assert steps == list(range(1, SPEC["epochs"] + 1)), steps
                assert r.data.tags["seedsweep.code"] == code_version()
            assert not list(cluster.worker_disk.rglob("mlruns.db")) and not list(cluster.work.rglob("mlruns.db"))
        finally:
            server.close()


def training_on(cluster) -> bool:
    """Whether a trial (Ray's ``ImplicitFunc`` actor) runs on the worker node."""
    for pid in cluster.worker_pids():
        try:
            if b"ImplicitFunc" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            pass
    return False


def code_version() -> str:
    from trainables.code import code_hash

    return code_hash()
