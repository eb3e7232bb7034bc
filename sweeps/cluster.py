"""A sweep on a Ray cluster (``seedsweep run --address``): what travels to every node, and the checks
made from every node before any run or trial exists.

Nothing may depend on the driver's disk or loopback: trials run on other machines. So, once Ray is
joined and before MLflow or Tune is touched:

- where the cluster has nodes on other machines, tracking in a file (``sqlite:``, ``file:``), on a
  loopback server (``http://127.0.0.1``), or in a database whose artifacts would land in each node's
  own ``./mlruns`` is refused: each node would write its own store, or reach nothing;
- one small task per alive node (pinned there: ``NodeAffinitySchedulingStrategy``, no CPU asked)
  reads a marker the driver wrote into the storage (a local folder must be shared), reaches the
  tracking server from that node (HTTP 401/403 is "refused", not "unreachable"), loads the model
  family the spec trains, and reports the hash of the code it imported; a node that Ray marks
  dead before its check answers (lost between the list and the check, as on a resume after a
  lost node) is skipped with a line, and the others must still fit a trial;
- at least one node must fit a trial (CPUs, GPU share, card type, custom resources), node by node,
  not the cluster's totals.

Each refusal is one line naming the node and the fix (``preflight.Unusable``: exit 2), in seconds.

The driver's settings and code travel with the job (Ray's ``runtime_env``): the variables in
``carried_env`` (``SEEDSWEEP_*`` but the per-machine cache folder, ``MLFLOW_*``, ``AWS_*``), the
packages as ``py_modules`` (every node runs the driver's code, whatever its checkout), and plugin
families named by ``.py`` paths in ``SEEDSWEEP_MODELS`` copied into one module folder, the variable
rewritten to their module names.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlparse

from sweeps.preflight import DATABASES, Unusable, shown, storage_fs
from trainables.code import PACKAGES, code_hash

CARRIED = ("SEEDSWEEP_", "MLFLOW_", "AWS_")  # prefixes of the driver's variables every node gets
LOCAL_ONLY = ("SEEDSWEEP_CACHE",)  # per-machine folders: each node keeps its own
PLUGINS = "seedsweep_plugins"  # the module folder that carries plugin .py files to the nodes
MARKER = ".seedsweep-node-check"  # the file each node must read in the storage
NODE_TIMEOUT = 60.0  # seconds the node checks may take together (a worker and its runtime_env start on a busy node)


def is_loopback(host: str | None) -> bool:
    if host in (None, "", "localhost", "0.0.0.0", "::"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.endswith(".localhost")


def local_addresses() -> set[str]:
    """This machine's addresses (every interface of its network namespace)."""
    import psutil

    return {a.address.split("%")[0] for nics in psutil.net_if_addrs().values() for a in nics}


def carried_env(plugin_modules: str | None = None) -> dict[str, str]:
    """The driver's variables every node's trials get (``SEEDSWEEP_MODELS`` as module names)."""
    env = {k: v for k, v in os.environ.items() if k.startswith(CARRIED) and k not in LOCAL_ONLY}
    if plugin_modules is not None:
        env["SEEDSWEEP_MODELS"] = plugin_modules
    return env


def runtime_env(folder: Path) -> dict:
    """Ray's ``runtime_env`` for a sweep's job: the carried variables and the code. Plugin ``.py``
    files named in ``SEEDSWEEP_MODELS`` are copied into ``folder/seedsweep_plugins`` (a package the
    nodes import them from)."""
    import importlib

    modules = [str(Path(importlib.import_module(p).__path__[0])) for p in PACKAGES]
    names = []
    for entry in filter(None, os.environ.get("SEEDSWEEP_MODELS", "").split(os.pathsep)):
        if entry.endswith(".py"):
            package = folder / PLUGINS
            package.mkdir(parents=True, exist_ok=True)
            (package / "__init__.py").touch()
            shutil.copy(entry, package / Path(entry).name)
            names.append(f"{PLUGINS}.{Path(entry).stem}")
        else:
            names.append(entry)
    if names and (folder / PLUGINS).exists():
        modules.append(str(folder / PLUGINS))
    return {
        "env_vars": carried_env(os.pathsep.join(names) if names else None),
        "py_modules": modules,
        "excludes": ["__pycache__", "*.pyc"],
    }


def check_tracking_kind(uri: str, remote: list[str]) -> None:
    """Tracking that only this machine can use, refused when the cluster has ``remote`` nodes."""
    if not remote:
        return
    parsed = urlparse(uri)
    scheme = parsed.scheme.split("+")[0]
    where = f"node {remote[0]}" + (f" and {len(remote) - 1} more" if len(remote) > 1 else "")
    fix = (
        "run `seedsweep server FOLDER --host <this machine's cluster address>` and pass "
        "--tracking-uri http://<that address>:5000"
    )
    if scheme in ("", "file", "sqlite"):
        raise Unusable(f"tracking URI {shown(uri)} is a file on this machine, which {where} cannot see: {fix}")
    if scheme in ("http", "https") and is_loopback(parsed.hostname):
        raise Unusable(f"tracking URI {shown(uri)} is this machine's loopback, which {where} cannot reach: {fix}")
    if scheme in DATABASES:
        raise Unusable(
            f"tracking URI {shown(uri)} is a database: each node would write the seeds' pictures into its own "
            f"./mlruns ({where}); {fix} (it proxies artifacts)"
        )


def write_marker(storage: str) -> tuple[str, str]:
    """A marker file with a fresh token in the storage; returns (its path or URI, the token)."""
    token = uuid.uuid4().hex
    fs, path = storage_fs(storage)
    fs.create_dir(path, recursive=True)
    marker = f"{path.rstrip('/')}/{MARKER}-{token[:8]}"
    with fs.open_output_stream(marker) as f:
        f.write(token.encode())
    return marker, token


def probe(storage: str, marker: str, token: str, tracking_uri: str, model: str) -> dict:
    """Run on one node: what it sees of the storage, tracking, the family and the code."""
    import ray

    out = {"node": ray.get_runtime_context().get_node_id(), "code": None, "problem": None}
    try:
        fs, _ = storage_fs(storage)
        with fs.open_input_stream(marker) as f:
            seen = f.read().decode()
        if seen != token:
            raise OSError("another sweep's marker")
    except Exception as err:
        out["problem"] = (
            f"does not see the storage {storage} ({str(err).splitlines()[0] if str(err) else type(err).__name__}): "
            "pass --storage a folder every node mounts (NFS) or an object store URI (s3://BUCKET/PATH)"
        )
        return out
    from sweeps.preflight import check_tracking

    try:
        check_tracking(tracking_uri)
    except Unusable as err:
        out["problem"] = str(err)
        return out
    try:
        from trainables.models import MODELS, load_plugins

        load_plugins()
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r} (known: {', '.join(sorted(MODELS))})")
    except Exception as err:
        out["problem"] = f"cannot load model family {model!r}: {str(err).splitlines()[0]}"
        return out
    out["code"] = code_hash()
    return out


def check_nodes(spec, where) -> None:
    """Every check of the module docstring, on the Ray cluster this process has joined."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    here = local_addresses()
    remote = [f"{n['NodeID'][:8]} ({n['NodeManagerAddress']})" for n in nodes if n["NodeManagerAddress"] not in here]
    check_tracking_kind(where.tracking_uri, remote)
    check_fit(spec, nodes)
    marker, token = write_marker(where.storage)
    task = ray.remote(num_cpus=0, max_retries=0)(probe)
    refs = {
        task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
            where.storage, marker, token, where.tracking_uri, spec.model
        ): n
        for n in nodes
    }
    gone = []
    try:
        done, late = ray.wait(list(refs), num_returns=len(refs), timeout=NODE_TIMEOUT)
        for ref in done:
            node = refs[ref]
            name = f"node {node['NodeID'][:8]} ({node['NodeManagerAddress']})"
            try:
                seen = ray.get(ref)
            except Exception as err:
                if not alive(node):
                    gone.append(name)
                    continue
                raise Unusable(f"{name} failed its check: {str(err).strip().splitlines()[-1]}") from None
            if seen["problem"]:
                raise Unusable(f"{name} {seen['problem']}")
            if seen["code"] != code_hash():
                raise Unusable(
                    f"{name} runs seedsweep code {seen['code']}, this machine {code_hash()}: "
                    "the job's code did not reach it (check its runtime_env log)"
                )
        for ref in late:
            node = refs[ref]
            name = f"node {node['NodeID'][:8]} ({node['NodeManagerAddress']})"
            if not alive(node):
                gone.append(name)
                continue
            raise Unusable(
                f"{name} did not answer its check within "
                f"{NODE_TIMEOUT:g} s: is it alive and can it set up the job's runtime_env?"
            )
    finally:
        fs, _ = storage_fs(where.storage)
        try:
            fs.delete_file(marker)
        except OSError:
            pass
    if gone:  # a node lost between Ray's list and its check (a resume after a lost node): the sweep goes on without it
        print(f"left the cluster during the node checks: {', '.join(gone)}; the sweep goes on without it", flush=True)
        check_fit(spec, [n for n in nodes if alive(n)])


def alive(node: dict) -> bool:
    """Whether Ray's control store still lists the node alive (a killed node is marked dead within its health checks)."""
    import ray

    return any(n["NodeID"] == node["NodeID"] and n.get("Alive") for n in ray.nodes())


def check_fit(spec, nodes: list[dict]) -> None:
    """At least one alive node holds every resource a trial asks for."""
    want = {{"cpu": "CPU", "gpu": "GPU"}.get(k, k): v for k, v in spec.trial_resources().items() if v}
    if any(all(n.get("Resources", {}).get(k, 0) >= v for k, v in want.items()) for n in nodes):
        return
    field = "resources"
    cards = sorted(
        {k.split(":", 1)[1] for n in nodes for k in n.get("Resources", {}) if k.startswith("accelerator_type:")}
    )
    for key, v in want.items():
        if not any(n.get("Resources", {}).get(key, 0) >= v for n in nodes):
            field = {"CPU": "resources.cpu", "GPU": "resources.gpu"}.get(
                key, "resources.accelerator_type" if key.startswith("accelerator_type:") else f"resources.custom.{key}"
            )
            break
    shapes = "; ".join(
        f"{n['NodeID'][:8]} ({n['NodeManagerAddress']}): "
        + ", ".join(f"{k} {v:g}" for k, v in sorted(n.get("Resources", {}).items()) if k in ("CPU", "GPU") or k in want)
        for n in nodes
    )
    raise Unusable(
        f"no node fits a trial ({', '.join(f'{k} {v:g}' for k, v in want.items())}; {field} in {spec.path}): "
        f"nodes {shapes}; cards: {', '.join(cards) or 'none'}. Lower {field} or add a node that has it"
    )


def scratch() -> Path:
    """A folder for the job's runtime_env files (plugin copies), removed at exit."""
    import atexit

    folder = Path(tempfile.mkdtemp(prefix="seedsweep-job-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder
