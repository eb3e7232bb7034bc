"""``seedsweep run`` stops within seconds, before Ray starts, when the tracking URI, the storage path or
the Ray address cannot be used, with one line naming it and what to do."""

import http.server
import threading
import time

import pytest
from support import seedsweep, write_spec

from sweeps import preflight
from sweeps.server import free_port

BOUND = 15.0  # seconds from the command to its error, Python's start-up included


@pytest.mark.parametrize("case", ["tracking", "storage", "ray"])
def test_run_fails_fast_and_says_why(tmp_path, case):
    spec = write_spec(tmp_path, name="pre")
    port = free_port()  # nothing listens there
    (tmp_path / "a_file").write_text("")
    args, expected = {
        "tracking": (
            ["--tracking-uri", f"http://127.0.0.1:{port}"],
            f"MLflow server http://127.0.0.1:{port} does not answer",
        ),
        "storage": (
            ["--storage", str(tmp_path / "a_file" / "results")],
            f"storage path {tmp_path / 'a_file' / 'results'} is not writable",
        ),
        "ray": (["--address", f"127.0.0.1:{port}"], f"Ray at 127.0.0.1:{port} does not answer"),
    }[case]
    start = time.monotonic()
    out = seedsweep(tmp_path, "run", spec, *args, check=False, timeout=60)
    took = time.monotonic() - start
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], out.stderr
    assert took < BOUND, f"took {took:.1f} s"
    assert not (tmp_path / "ray_results").exists() and not (tmp_path / "mlruns.db").exists()  # nothing began


class NotMlflow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_server_that_is_not_mlflow_is_named():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotMlflow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(preflight.Unusable, match=f"{uri} answered HTTP 404 but is not an MLflow tracking server"):
            preflight.check_tracking(uri)
    finally:
        server.shutdown()


def test_misconfigured_uris_are_named_quickly(tmp_path):
    port = free_port()
    with pytest.raises(
        preflight.Unusable, match=rf"cannot connect to the tracking database postgresql://me:\*\*\*@127.0.0.1:{port}/db"
    ):
        preflight.check_tracking(f"postgresql://me:secret@127.0.0.1:{port}/db")
    with pytest.raises(preflight.Unusable, match="unknown scheme 'htp'"):
        preflight.check_tracking("htp://127.0.0.1:5000")
    (tmp_path / "f").write_text("")
    with pytest.raises(preflight.Unusable, match=r"tracking URI sqlite:///.*/f/mlruns.db: folder .* is not writable"):
        preflight.check_tracking(f"sqlite:///{tmp_path / 'f' / 'mlruns.db'}")
    with pytest.raises(preflight.Unusable, match="Ray address 'nohost' is not HOST:PORT"):
        preflight.check_ray_address("nohost")
    preflight.check_tracking(f"sqlite:///{tmp_path / 'ok' / 'mlruns.db'}")  # a new folder is fine: it is created
    preflight.check_storage(str(tmp_path / "results"))
