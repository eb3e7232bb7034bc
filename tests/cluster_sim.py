"""Two Ray nodes that share no filesystem and no loopback, simulated on one Linux machine (root only).

    with two_nodes(tmp_path, worker_cpus=2) as cluster:  # or the fixture two_node_sim (defaults)
        subprocess.run([seedsweep, "run", spec, "--address", cluster.address], cwd=cluster.work, env=cluster.env)
        cluster.worker_disk / "mlruns.db"  # what the worker wrote at ./mlruns.db
        with cluster.driver():  # this process as a driver, e.g. to pin a task to the worker node:
            ray.remote(f).options(scheduling_strategy=NodeAffinitySchedulingStrategy(cluster.worker_node_id(), soft=False))

A function sent to the worker must be defined inside the test (Ray then ships it by value): the worker
cannot import a test module by name. To use the fixture in a test file:
``from cluster_sim import two_node_sim as two_node_sim``.

What is simulated:

* **Head node:** ``ray start --head`` on the host, at ``head_ip`` (a test-only 10.254.x.1), with its own
  temp folder and its own ``SEEDSWEEP_CACHE``. The driver (the test, or a ``seedsweep`` it starts) runs
  on the host too, as on a real head node.
* **Worker node:** ``ray start`` in its own *network* namespace, joined to the host by a veth pair
  (``worker_ip`` = 10.254.x.2, a /30 of its own; no other route), so its 127.0.0.1 is its own: a server
  on the host's loopback is out of its reach, one bound on ``head_ip`` is not. It also runs in its own
  *mount* namespace, where ``worker_disk`` (empty at the start) is bind-mounted over ``work``, the
  driver's working folder: whatever the driver writes there is invisible to the worker, and whatever the
  worker writes there (``./mlruns.db``, ``./ray_results``) stays on the worker's "disk", which the test
  reads at ``worker_disk``, also after the worker is killed. ``shared`` is visible to both nodes: the
  simulated NFS.
* **Faults:** ``kill_worker()`` SIGKILLs every process of the worker node at once, as a lost machine.

What is not (so a green scenario is not over-read): both nodes use one Python environment, one home
folder (one ``~/.ray/auth_token``), one ``/tmp`` and one CPU; nothing but ``work`` differs between them
(each node's ``SEEDSWEEP_CACHE`` differs by its path only: the worker could read the head's).
The veth link has no latency, bandwidth limit or firewall. GPUs are fake (``--num-gpus`` only counts).
The head node is never lost.

Cleanup kills only this cluster's processes (its netns, its GCS port), never ``ray stop`` (which would
stop every Ray on the machine), and removes the namespace and the veth pair, also when the test fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sweeps.server import free_port

BIN = Path(sys.executable).parent  # the venv's ray, python, seedsweep
SUBNETS = ipaddress.ip_network("10.254.0.0/16")  # test-only addresses, on this machine's own namespaces
LOCK = Path("/run/lock/seedsweep-cluster-sim.lock")  # two tests never pick the same /30
START_TIMEOUT = 120.0  # seconds for one `ray start` on a busy 2-core machine


def unavailable() -> str | None:
    """Why the simulation cannot run here (not root, no ``ip``/``unshare``/``nsenter``, no network or
    mount namespaces), or None."""
    if os.geteuid() != 0:
        return "the two-node simulation needs root (network and mount namespaces)"
    missing = [tool for tool in ("ip", "unshare", "nsenter") if shutil.which(tool) is None]
    if missing:
        return f"the two-node simulation needs {', '.join(missing)}"
    name = f"ssprobe{secrets.token_hex(3)}"
    probe = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"no network namespaces here: {probe.stderr.strip()}"
    try:
        masked = f"ip netns exec {name} unshare -m --propagation private mount --bind /tmp /mnt".split()
        probe = subprocess.run(masked, capture_output=True, text=True)
        if probe.returncode != 0:
            return f"no mount namespaces (or bind mounts) here: {probe.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


@dataclass
class TwoNodes:
    """A running two-node cluster; see the module's docstring for what each node sees."""

    address: str  # "HEAD_IP:PORT": the head's GCS, for `ray.init(address=...)` and `seedsweep run --address`
    head_ip: str  # the head node's address (host side of the veth): bind a server here to serve both nodes
    worker_ip: str  # the worker node's address, inside its network namespace
    netns: str  # the worker's network namespace (`ip netns exec NETNS ...`)
    work: Path  # tmp_path/"work": the driver's working folder; on the worker, worker_disk mounted over it
    worker_disk: Path  # tmp_path/"worker"/"work": on the host, what the worker has at `work` (kept after a kill)
    shared: Path  # tmp_path/"shared": seen alike by both nodes (the simulated NFS)
    head_cache: Path  # SEEDSWEEP_CACHE of the head node (and of `env`, the driver's)
    worker_cache: Path  # SEEDSWEEP_CACHE of the worker node
    env: dict[str, str] = field(repr=False)  # for a driver on the host: RAY_AUTH_MODE=token, the head's cache, `env`
    port: int  # the head's GCS port (what marks this cluster's processes)

    def worker_pids(self) -> set[int]:
        """Every live process of the worker node (its network namespace)."""
        out = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True).stdout
        return {int(pid) for pid in out.split()} - set(zombies())

    def raylet_pid(self) -> int:
        """The worker node's raylet: its mount namespace is the worker's view of the files."""
        for pid in self.worker_pids():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"/raylet"):
                    return pid
        raise RuntimeError(f"the worker node of {self.address} has no raylet (killed?)")

    def worker_run(self, *args: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        """Run a command as on the worker node (its network and mount namespaces); text output captured."""
        command = ["nsenter", "-t", str(self.raylet_pid()), "-n", "-m", "--", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)

    def worker_view(self, path: str | Path) -> str | None:
        """The text of ``path`` as the worker node sees it, or None where it has no such file."""
        done = self.worker_run("cat", "--", str(path))
        return done.stdout if done.returncode == 0 else None

    @contextlib.contextmanager
    def driver(self) -> Iterator[None]:
        """This process as a Ray driver on the head node (``ray.init(address=...)``), disconnected on exit.
        Ray reads RAY_AUTH_MODE once per process (and never turns token mode on itself for an explicit
        address), so it is set here and Ray's config re-read, as Ray's own ``_enable_token_auth`` does;
        both are put back on exit."""
        import ray
        from ray._raylet import Config

        saved = os.environ.get("RAY_AUTH_MODE")
        os.environ["RAY_AUTH_MODE"] = "token"
        Config.initialize("")
        try:
            ray.init(address=self.address, logging_level="ERROR", log_to_driver=False)
            yield
        finally:
            ray.shutdown()
            os.environ.pop("RAY_AUTH_MODE")
            if saved is not None:
                os.environ["RAY_AUTH_MODE"] = saved
            Config.initialize("")

    def worker_node_id(self) -> str:
        """The worker's Ray node id (for NodeAffinitySchedulingStrategy); needs `ray.init` in this process."""
        import ray

        (node,) = [n for n in ray.nodes() if n["Alive"] and n["NodeManagerAddress"] == self.worker_ip]
        return node["NodeID"]

    def kill_worker(self) -> None:
        """SIGKILL every process of the worker node, as a machine that is lost; waits until none is left."""
        deadline = time.monotonic() + 30
        while pids := self.worker_pids():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes of {self.netns} outlived SIGKILL: {sorted(pids)}")
            time.sleep(0.1)

    def processes(self) -> set[int]:
        """Every live process of this cluster: the worker's namespace and whatever names the head's GCS port."""
        return self.worker_pids() | head_processes(self.port)


def zombies() -> list[int]:
    """Dead processes nobody reaped (this machine's init does not): gone, though /proc still lists them."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                out.append(int(stat.parent.name))
    return out


def head_processes(port: int) -> set[int]:
    """The live processes of the Ray cluster whose GCS listens on ``port``, and their children (the agents
    rename themselves); not the calling process."""
    parent, cmdline = {}, {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline[proc.name] = proc.joinpath("cmdline").read_bytes()
            state, ppid = proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:
            continue
        if state != "Z":
            parent[proc.name] = ppid
    ours = re.compile(rf"(gcs-address=[^\0 ]*:|gcs_server_port=){port}(\0| )".encode())
    doomed = {pid for pid in parent if ours.search(cmdline[pid])}
    while grown := {pid for pid, ppid in parent.items() if ppid in doomed} - doomed:
        doomed |= grown
    return {int(pid) for pid in doomed} - {os.getpid()}


def stop_cluster(port: int, timeout: float = 30) -> None:
    """SIGKILL the processes of the Ray cluster whose GCS listens on ``port`` (``head_processes``) until
    none is left: not every Ray on the machine, as ``ray stop`` would."""
    deadline = time.monotonic() + timeout
    while pids := head_processes(port):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes of the Ray cluster on port {port} outlived SIGKILL: {sorted(pids)}")
        time.sleep(0.1)


def pick_subnet() -> ipaddress.IPv4Network:
    """A /30 of SUBNETS that no interface or route of the host uses (call under LOCK)."""
    used = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    used += subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    taken = {ipaddress.ip_network(word, strict=False) for word in re.findall(r"10\.254\.[\d./]+", used)}
    blocks = list(SUBNETS.subnets(new_prefix=30))[1:]  # 10.254.0.0/30 left out: a common first choice by hand
    start = secrets.randbelow(len(blocks))
    for block in blocks[start:] + blocks[:start]:
        if not any(block.overlaps(t) for t in taken):
            return block
    raise RuntimeError(f"no free /30 left in {SUBNETS}")


def ray_start(args: list[str], env: dict[str, str], cwd: Path, prefix: Sequence[str] = ()) -> None:
    done = subprocess.run(
        [*prefix, str(BIN / "ray"), "start", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ray start {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")


@contextlib.contextmanager
def two_nodes(
    tmp_path: Path,
    worker_cpus: int = 2,
    worker_gpus: int = 0,
    worker_resources: dict[str, float] | None = None,
    head_cpus: int = 1,
    env: dict[str, str] | None = None,
) -> Iterator[TwoNodes]:
    """Start a head node (``head_cpus`` CPUs, no GPU) on the host and a worker node (``worker_cpus``
    CPUs, ``worker_gpus`` fake GPUs, custom ``worker_resources`` such as ``{"accelerator_type:H100": 1}``)
    in its own namespaces; both nodes' ``ray start`` get ``env`` on top of this process's environment
    (e.g. ``{"SEEDSWEEP_MODELS": ""}`` for nodes that lack the driver's plugin, AWS_* for S3). Yields a TwoNodes; on exit (or
    failure) kills this cluster's processes and removes its namespace, veth pair and temp folders.
    Skips the calling test where the simulation cannot run (see ``unavailable``)."""
    if reason := unavailable():
        pytest.skip(reason)
    token = secrets.token_hex(3)
    netns, host_if, worker_if = f"sssim{token}", f"ssh{token}", f"ssw{token}"
    work, worker_disk, shared = tmp_path / "work", tmp_path / "worker" / "work", tmp_path / "shared"
    head_cache, worker_cache = tmp_path / "head" / "cache", tmp_path / "worker" / "cache"
    for folder in (work, worker_disk, shared, head_cache, worker_cache):
        folder.mkdir(parents=True, exist_ok=True)
    temps = [tempfile.mkdtemp(prefix="rs-"), tempfile.mkdtemp(prefix="rs-")]  # short: sockets fit 107 bytes
    base = {**os.environ, **(env or {}), "RAY_AUTH_MODE": "token"}
    cluster = None
    try:
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        with LOCK.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            subnet = pick_subnet()
            head_ip, worker_ip = (str(host) for host in subnet.hosts())
            for command in (
                f"ip netns add {netns}",
                f"ip link add {host_if} type veth peer name {worker_if}",
                f"ip link set {worker_if} netns {netns}",
                f"ip addr add {head_ip}/30 dev {host_if}",
                f"ip link set {host_if} up",
                f"ip -n {netns} addr add {worker_ip}/30 dev {worker_if}",
                f"ip -n {netns} link set {worker_if} up",
                f"ip -n {netns} link set lo up",
            ):
                subprocess.run(command.split(), check=True, capture_output=True)
        port = free_port()
        cluster = TwoNodes(
            address=f"{head_ip}:{port}",
            head_ip=head_ip,
            worker_ip=worker_ip,
            netns=netns,
            work=work,
            worker_disk=worker_disk,
            shared=shared,
            head_cache=head_cache,
            worker_cache=worker_cache,
            env={**base, "SEEDSWEEP_CACHE": str(head_cache)},
            port=port,
        )
        common = ["--num-gpus=0", "--disable-usage-stats"]
        head = [
            f"--node-ip-address={head_ip}",
            f"--port={port}",
            f"--num-cpus={head_cpus}",
            "--include-dashboard=false",
        ]
        ray_start(["--head", *head, *common, f"--temp-dir={temps[0]}"], cluster.env, tmp_path)
        worker = [f"--address={cluster.address}", f"--node-ip-address={worker_ip}", f"--num-cpus={worker_cpus}"]
        worker += [f"--num-gpus={worker_gpus}", "--disable-usage-stats", f"--temp-dir={temps[1]}"]
        if worker_resources:
            worker.append(f"--resources={json.dumps(worker_resources)}")
        # the mount lives in a private mount namespace, kept alive by the raylet `ray start` leaves behind
        masked = ["ip", "netns", "exec", netns, "unshare", "-m", "--propagation", "private"]
        masked += ["sh", "-c", f'mount --bind "{worker_disk}" "{work}" && exec "$0" "$@"']
        ray_start(worker, {**base, "SEEDSWEEP_CACHE": str(worker_cache)}, worker_cache.parent, masked)
        yield cluster
    finally:
        if cluster is not None:
            if (ray := sys.modules.get("ray")) and ray.is_initialized():
                if ray.get_runtime_context().gcs_address == cluster.address:
                    ray.shutdown()  # a driver left connected here would outlive its cluster
            cluster.kill_worker()
            stop_cluster(cluster.port)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)  # gone with the netns, normally
        for temp in temps:
            shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def two_node_sim(tmp_path) -> Iterator[TwoNodes]:
    """``two_nodes(tmp_path)`` with its defaults."""
    with two_nodes(tmp_path) as cluster:
        yield cluster
