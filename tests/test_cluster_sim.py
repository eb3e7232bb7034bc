"""The two-node simulation (tests/cluster_sim.py) really separates the nodes: a task pinned to the worker
node sees neither the driver's working folder nor the host's loopback, but does see the shared folder
and the head's address; and nothing of the cluster is left once it is torn down."""

import http.server
import os
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest
from cluster_sim import TwoNodes, two_nodes
from cluster_sim import two_node_sim as two_node_sim  # a fixture
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


def serve(host: str) -> http.server.ThreadingHTTPServer:
    """An HTTP server on ``host`` (a free port) answering "served by HOST", in a daemon thread."""

    class Reply(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"served by {host}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Reply)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
def test_the_worker_node_shares_only_the_shared_folder_and_the_head_address(tmp_path):
    import ray

    hidden, shared = tmp_path / "work" / "driver.txt", tmp_path / "shared" / "nfs.txt"
    loopback = serve("127.0.0.1")

    def look(path: str, url: str) -> tuple[str | None, str, str]:
        """Where it runs: the text of ``path`` (None if absent), what ``url`` answers (or the error), and
        the node's dataset cache. Defined in the test, so Ray ships it by value, not as an import."""
        text = Path(path).read_text() if Path(path).exists() else None
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return text, reply.read().decode(), os.environ["SEEDSWEEP_CACHE"]
        except OSError as error:
            return text, f"error: {error}", os.environ["SEEDSWEEP_CACHE"]

    with two_nodes(tmp_path, worker_cpus=2, head_cpus=1) as cluster, cluster.driver():
        hidden.write_text("written by the driver")
        shared.write_text("on the shared folder")
        private = serve(cluster.head_ip)
        alive = [n for n in ray.nodes() if n["Alive"]]
        assert sorted(n["NodeManagerAddress"] for n in alive) == sorted([cluster.head_ip, cluster.worker_ip])
        assert sorted(n["Resources"]["CPU"] for n in alive) == [1.0, 2.0]

        pinned = NodeAffinitySchedulingStrategy(cluster.worker_node_id(), soft=False)
        on_worker = ray.remote(num_cpus=1, scheduling_strategy=pinned)(look)
        on_head = ray.remote(num_cpus=1, resources={f"node:{cluster.head_ip}": 0.01})(look)
        to_loopback = f"http://127.0.0.1:{loopback.server_port}/"
        to_head = f"http://{cluster.head_ip}:{private.server_port}/"
        seen, answer, cache = ray.get(on_worker.remote(str(hidden), to_loopback))
        assert seen is None  # the worker has its own (empty) folder there
        assert answer.startswith("error:"), answer  # the worker's 127.0.0.1 is its own
        assert cache == str(cluster.worker_cache)
        seen, answer, _ = ray.get(on_worker.remote(str(shared), to_head))
        assert (seen, answer) == ("on the shared folder", f"served by {cluster.head_ip}")
        seen, answer, cache = ray.get(on_head.remote(str(hidden), to_loopback))
        assert (seen, answer) == ("written by the driver", "served by 127.0.0.1")  # the control: the head does
        assert cache == str(cluster.head_cache) == cluster.env["SEEDSWEEP_CACHE"]

        assert cluster.worker_view(hidden) is None
        assert cluster.worker_view(shared) == "on the shared folder"
        assert cluster.worker_run("sh", "-c", f"echo mine > {cluster.work / 'mine.txt'}").returncode == 0
        assert cluster.worker_view(cluster.work / "mine.txt") == "mine\n"
        assert not (cluster.work / "mine.txt").exists()  # what the worker writes there stays on its "disk"
        assert sorted(p.name for p in cluster.worker_disk.iterdir()) == ["mine.txt"]
        assert cluster.netns in namespaces() and cluster.worker_pids() and cluster.processes() > cluster.worker_pids()
        private.shutdown()
    loopback.shutdown()
    assert cluster.netns not in namespaces()
    assert not cluster.processes()
    assert (cluster.worker_disk / "mine.txt").read_text() == "mine\n"  # the worker's disk outlives it
    addresses = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    assert f" {cluster.head_ip}/" not in addresses


@pytest.mark.slow
def test_kill_worker_leaves_the_head_running(two_node_sim: TwoNodes):
    import ray

    with two_node_sim.driver():
        raylet = two_node_sim.raylet_pid()
        two_node_sim.kill_worker()
        assert not two_node_sim.worker_pids() and raylet not in two_node_sim.processes()

        @ray.remote(num_cpus=1)
        def where() -> str:
            return ray.util.get_node_ip_address()

        assert ray.get(where.remote(), timeout=60) == two_node_sim.head_ip  # the head still runs tasks
