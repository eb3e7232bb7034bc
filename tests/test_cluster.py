"""The cluster pieces one can check without a cluster: node-by-node fit, tracking only this machine
can use, storage URIs with a query, what travels in the job's runtime_env, a CPU trial on a GPU node,
and credentials refused (not "unreachable"). The two-node runs are in tests/test_cluster_sim.py."""

import os

import pytest
import torch

from sweeps import cluster
from sweeps import spec as specs
from sweeps.preflight import Unusable, join, storage_fs
from trainables import Pack
from trainables.placement import place
from trainables.records import unreachable
from trainables.tracking import device_name

SPEC = {
    "name": "c",
    "model": "sps",
    "env": "ball",
    "data": {"n_train": 32, "n_val": 16, "frames": 8, "image_size": 16},
    "seeds": 2,
    "epochs": 2,
}


def node(i, **resources):
    return {"NodeID": f"{i:08x}" * 5, "NodeManagerAddress": f"10.0.0.{i}", "Resources": resources}


def load(tmp_path, resources):
    path = tmp_path / "spec.yaml"
    path.write_text(__import__("yaml").safe_dump({**SPEC, "resources": resources}))
    return specs.load(path)


def test_a_trial_must_fit_one_node_not_the_totals(tmp_path):
    nodes = [node(1, CPU=1.0), node(2, CPU=2.0, GPU=1.0, **{"accelerator_type:A100": 1.0})]
    cluster.check_fit(load(tmp_path, {"cpu": 2}), nodes)
    with pytest.raises(Unusable, match=r"no node fits a trial \(CPU 3; resources.cpu in .*spec.yaml\)"):
        cluster.check_fit(load(tmp_path, {"cpu": 3}), nodes)  # 3 CPUs in all, on no single node
    with pytest.raises(Unusable, match=r"resources.gpu"):
        cluster.check_fit(load(tmp_path, {"cpu": 2, "gpu": 0.5}), [node(1, CPU=4.0)])
    with pytest.raises(Unusable, match=r"resources.accelerator_type .*cards: A100"):
        cluster.check_fit(load(tmp_path, {"cpu": 1, "gpu": 0.5, "accelerator_type": "H100"}), nodes)
    cluster.check_fit(load(tmp_path, {"cpu": 1, "gpu": 0.5, "accelerator_type": "A100"}), nodes)
    with pytest.raises(Unusable, match=r"resources.custom.gpu_node"):
        cluster.check_fit(load(tmp_path, {"cpu": 1, "custom": {"gpu_node": 1}}), nodes)


@pytest.mark.parametrize(
    "uri, why",
    [
        ("sqlite:////work/mlruns.db", "a file on this machine"),
        ("file:///work/mlruns", "a file on this machine"),
        ("http://127.0.0.1:5000", "loopback"),
        ("http://localhost:5000", "loopback"),
        ("http://0.0.0.0:5000", "loopback"),
        ("postgresql://u:secret@10.0.0.1/mlflow", "database"),
    ],
)
def test_tracking_only_this_machine_can_use_is_refused_with_remote_nodes(uri, why):
    cluster.check_tracking_kind(uri, [])  # every node on this machine: fine
    with pytest.raises(Unusable, match=why) as err:
        cluster.check_tracking_kind(uri, ["abcd1234 (10.0.0.2)"])
    assert "10.0.0.2" in str(err.value) and "seedsweep server" in str(err.value) and "secret" not in str(err.value)
    cluster.check_tracking_kind("http://10.0.0.1:5000", ["abcd1234 (10.0.0.2)"])


def test_a_storage_uri_keeps_its_query_at_the_end(tmp_path):
    uri = "s3://bucket/results?endpoint_override=10.0.0.1:9000&scheme=http"
    assert (
        join(uri, "sweep", "round_01")
        == "s3://bucket/results/sweep/round_01?endpoint_override=10.0.0.1:9000&scheme=http"
    )
    assert join(str(tmp_path) + "/", "sweep") == f"{tmp_path}/sweep"
    fs, path = storage_fs(str(tmp_path))
    assert path == str(tmp_path) and fs.get_file_info(path).is_file is False


def test_the_job_carries_the_drivers_settings_and_plugin_files(tmp_path, monkeypatch):
    plugin = tmp_path / "my_family.py"
    plugin.write_text("X = 1\n")
    monkeypatch.setenv("SEEDSWEEP_MODELS", f"{plugin}{os.pathsep}some.module")
    monkeypatch.setenv("SEEDSWEEP_CACHE", "/this/machine/cache")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://10.0.0.1:9000")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "lab")
    env = cluster.runtime_env(tmp_path / "job")
    assert env["env_vars"]["SEEDSWEEP_MODELS"] == f"seedsweep_plugins.my_family{os.pathsep}some.module"
    assert env["env_vars"]["AWS_ENDPOINT_URL"] == "http://10.0.0.1:9000"
    assert env["env_vars"]["MLFLOW_TRACKING_USERNAME"] == "lab"
    assert "SEEDSWEEP_CACHE" not in env["env_vars"]  # each node keeps its own cache folder
    assert (tmp_path / "job" / "seedsweep_plugins" / "my_family.py").read_text() == "X = 1\n"
    assert {os.path.basename(m) for m in env["py_modules"]} == {
        "envs",
        "trainables",
        "sweeps",
        "analysis",
        "seedsweep_plugins",
    }


def test_a_cpu_trial_on_a_gpu_node_hides_cuda_and_trains_on_the_cpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # what a GPU node's raylet passes on to every worker
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the device query says a card is there
    assert place(None) is None  # not placed by a sweep: the Pack's default (here: cuda)
    device = place(0.0)
    assert device == "cpu" and os.environ["CUDA_VISIBLE_DEVICES"] == ""
    pack = Pack(
        {**SPEC["data"], "model": "sps", "env": "ball", "channels": [4, 8], "dec_hidden": [8]}, [0], device=device
    )
    assert device_name(pack.device) == "cpu" and pack.speed.precision == "fp32"
    with pytest.raises(ValueError, match="needs resources.gpu > 0"):
        place(0.0, "cuda")


def test_a_refusing_tracking_server_is_not_unreachable():
    refused = "API request to endpoint /api/2.0/mlflow/runs/create failed with error code 401 != 200. Response body: ''"
    down = "API request to http://10.0.0.1:5000/api/2.0/mlflow/runs/create failed with exception ConnectionError"
    assert not unreachable(RuntimeError(refused)) and unreachable(RuntimeError(down))


def test_a_resume_with_other_code_is_refused_unless_allowed(tmp_path):
    from mlflow import MlflowClient

    from sweeps.preflight import Where
    from sweeps.tuner import check_resume
    from trainables.code import code_hash
    from trainables.records import CODE_TAG, KIND

    where = Where(storage=str(tmp_path / "ray_results"), tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}")
    client = MlflowClient(where.tracking_uri)
    experiment = client.create_experiment("c")
    run = client.create_run(experiment, tags={KIND: "seed", CODE_TAG: code_hash()})
    spec = load(tmp_path, {"cpu": 1})
    check_resume(spec, where, "results", started=True, resume=True)  # the same code: fine
    client.set_tag(run.info.run_id, CODE_TAG, "0123456789ab")  # trained by other code
    with pytest.raises(RuntimeError, match=r"trained by seedsweep code 0123456789ab, this is \w{12}.*--allow-mixed"):
        check_resume(spec, where, "results", started=True, resume=True)
    check_resume(spec, where, "results", started=True, resume=True, allow_mixed=True)


@pytest.mark.slow  # starts PostgreSQL and MLflow (~20-40 s)
def test_the_lab_server_offers_mlflows_login(monkeypatch):
    from mlflow import MlflowClient
    from support import LabServer

    from sweeps.preflight import check_tracking

    server = LabServer(auth=True)
    try:
        assert "MLFLOW_TRACKING_USERNAME=admin" in server.said[1]
        password = (server.folder / "mlflow-password").read_text().strip()
        assert (server.folder / "mlflow-password").stat().st_mode & 0o077 == 0  # the owner's only
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
        with pytest.raises(Unusable, match=r"refused access \(HTTP 401\)"):
            check_tracking(server.uri)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        check_tracking(server.uri)
        assert MlflowClient(server.uri).create_experiment("with-login")
        assert cluster.carried_env()["MLFLOW_TRACKING_PASSWORD"] == password  # what the nodes get
    finally:
        server.close()
