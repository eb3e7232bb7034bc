"""The tracking stack a lab shares: a PostgreSQL server and an MLflow server on it.

``seedsweep server FOLDER`` keeps everything under FOLDER: ``postgres/`` (the database cluster,
created on first start with a generated password in ``pgpass``, mode 0600) and ``mlartifacts/``.
PostgreSQL listens on 127.0.0.1 only (the MLflow server beside it is its one client); MLflow on
127.0.0.1 unless ``--host`` says otherwise. No password appears on a command line: ``initdb``
reads it from a file and the MLflow server's database driver (psycopg, through libpq) from ``PGPASSFILE``.

PostgreSQL's server programs come from the system (Debian: ``apt-get install postgresql``).
PostgreSQL refuses to run as root; started by root, it runs as the ``postgres`` system user.
The tests and ``benchmarks/tracking_load.py`` start their servers through the same functions.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
PG_USER, PG_DATABASE = "seedsweep", "mlflow"
START_TIMEOUT = 180.0  # seconds a server may take to answer (MLflow imports and migrates its schema first)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, proc: subprocess.Popen, what: str, timeout: float = START_TIMEOUT) -> None:
    """Until ``host:port`` accepts a connection; a RuntimeError if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{what} exited with status {proc.returncode} before listening on {host}:{port}"
                ) from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on {host}:{port} within {timeout:.0f} s") from None
            time.sleep(0.3)


def pg_bindir() -> Path:
    """The folder of PostgreSQL's ``initdb`` and ``postgres`` (PATH, then Debian's versioned folders)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if versions:
        return Path(versions[-1]).parent
    raise RuntimeError(
        "PostgreSQL's server programs (initdb, postgres) are not installed: "
        "apt-get install postgresql (Debian/Ubuntu), or put their folder on PATH"
    )


def as_postgres() -> dict:
    """Popen keywords that drop root to the ``postgres`` system user (PostgreSQL refuses root)."""
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


def chown_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


@dataclass
class Postgres:
    """A running PostgreSQL server; ``uri`` holds no password (libpq reads ``pgpass``)."""

    folder: Path
    port: int
    proc: subprocess.Popen

    @property
    def pgpass(self) -> Path:
        return self.folder / "pgpass"

    @property
    def uri(self) -> str:
        return f"postgresql://{PG_USER}@{LOOPBACK}:{self.port}/{PG_DATABASE}"

    def env(self) -> dict[str, str]:
        """Environment for a client of this server (MLflow, psycopg2): ``PGPASSFILE`` set."""
        return {**os.environ, "PGPASSFILE": str(self.pgpass)}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_postgres(folder: str | Path, port: int | None = None) -> Postgres:
    """PostgreSQL on 127.0.0.1 with its cluster in ``folder/data`` (created on first start, with user
    ``seedsweep``, a generated password and the database ``mlflow``)."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    chown_postgres(folder)
    bindir, data, pgpass = pg_bindir(), folder / "data", folder / "pgpass"
    port = port or free_port()
    fresh = not (data / "PG_VERSION").exists()
    if fresh:
        password = secrets.token_urlsafe(24)
        pwfile = folder / "password"
        pwfile.write_text(password + "\n")
        os.chmod(pwfile, 0o600)
        chown_postgres(pwfile)
        done = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                PG_USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
            capture_output=True,
            text=True,
            **as_postgres(),
        )
        pwfile.unlink()
        if done.returncode:
            why = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:]
            raise RuntimeError(
                f"initdb {data} failed: {why[0] if why else done.returncode}"
                + (" (the postgres user must be able to enter every folder above it)" if as_postgres() else "")
            )
        pgpass.write_text(f"*:*:*:{PG_USER}:{password}\n")
        os.chmod(pgpass, 0o600)  # libpq ignores a pgpass file others can read
    log = open(folder / "postgres.log", "ab")
    chown_postgres(folder / "postgres.log")
    proc = subprocess.Popen(
        [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-c",
            f"listen_addresses={LOOPBACK}",
            "-p",
            str(port),
            "-c",
            f"unix_socket_directories={folder}",
            "-c",
            "max_connections=200",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **as_postgres(),
    )
    server = Postgres(folder, port, proc)
    try:
        wait_for_port(LOOPBACK, port, proc, "postgres")
        if fresh:
            create_database(server)
    except BaseException:
        server.stop()
        raise
    return server


def create_database(server: Postgres) -> None:
    """``CREATE DATABASE mlflow``, retried while the server finishes starting."""
    import psycopg

    for attempt in range(30):
        try:
            conn = psycopg.connect(
                host=LOOPBACK,
                port=server.port,
                user=PG_USER,
                dbname="postgres",
                passfile=str(server.pgpass),
                connect_timeout=5,
                autocommit=True,
            )
            break
        except psycopg.OperationalError as err:
            if "starting up" not in str(err) or attempt == 29:
                raise
            time.sleep(0.5)
    with conn:
        conn.execute(f"CREATE DATABASE {PG_DATABASE}")


@dataclass
class MlflowServer:
    """A running ``mlflow server``."""

    uri: str
    proc: subprocess.Popen

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server and its uvicorn workers
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_mlflow(
    backend: str,
    artifacts: str | Path,
    port: int | None = None,
    host: str = LOOPBACK,
    workers: int = 1,
    env: dict | None = None,
    log: str | Path | None = None,
    auth: Path | None = None,
) -> MlflowServer:
    """``mlflow server`` on ``host:port`` with ``backend`` (a SQLAlchemy URI without a password) and
    artifacts proxied to ``artifacts``; returns once it answers."""
    port = port or free_port()
    out = open(log, "ab") if log else subprocess.DEVNULL
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or os.environ)}  # no job workers: seedsweep runs none
    login = []
    if auth is not None:  # MLflow's own basic-auth app, configured by auth.ini (write_auth)
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth)
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = (auth.parent / "flask-secret").read_text().strip()  # CSRF
        login = ["--app-name", "basic-auth"]
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            backend,
            "--artifacts-destination",
            str(artifacts),
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            str(workers),
            *login,
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    server = MlflowServer(f"http://{reachable_host(host)}:{port}", proc)
    try:
        wait_until_healthy(server)
    except BaseException:
        server.stop()
        raise
    return server


def write_auth(folder: Path) -> Path:
    """MLflow's basic-auth settings under ``folder`` (users in ``basic_auth.db`` beside them) and, on first
    start, the admin's generated password in ``mlflow-password`` and the key Flask signs its CSRF
    tokens with in ``flask-secret`` (both mode 0600); returns the settings file."""
    import secrets

    for name in ("mlflow-password", "flask-secret"):  # made once, kept across restarts
        if not (folder / name).exists():
            (folder / name).touch(mode=0o600)
            (folder / name).write_text(secrets.token_urlsafe(18))
    password = folder / "mlflow-password"
    ini = folder / "auth.ini"
    ini.touch(mode=0o600)
    ini.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{folder / 'basic_auth.db'}\n"
        "admin_username = admin\n"
        f"admin_password = {password.read_text().strip()}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    return ini


def reachable_host(host: str) -> str:
    """The address to give others for a server bound to ``host``: for a wildcard (0.0.0.0, ::) this
    machine's first non-loopback IPv4 address (a cluster's nodes cannot use 127.0.0.1), else ``host``."""
    if host not in ("0.0.0.0", "::"):
        return host
    import ipaddress

    import psutil

    for nics in psutil.net_if_addrs().values():
        for a in nics:
            if a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback:
                return a.address
    return LOOPBACK


def wait_until_healthy(server: MlflowServer, timeout: float = START_TIMEOUT) -> None:
    """Until the server's ``/health`` answers 200 (it listens before its app has loaded)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{server.uri}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"mlflow server exited with status {server.proc.returncode} before answering at {server.uri}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"mlflow server did not answer at {server.uri} within {timeout:.0f} s")
        time.sleep(0.3)


def serve(
    folder: str | Path,
    host: str = LOOPBACK,
    port: int = 5000,
    pg_port: int | None = None,
    workers: int = 4,
    auth: bool = False,
) -> int:
    """Start PostgreSQL and MLflow under ``folder``, print the tracking URI, run until SIGINT/SIGTERM.
    ``auth``: MLflow's basic-auth login (user admin, password generated into FOLDER/mlflow-password)."""
    folder = Path(folder).resolve()
    postgres = start_postgres(folder / "postgres", pg_port)
    try:
        mlflow = start_mlflow(
            postgres.uri,
            folder / "mlartifacts",
            port,
            host,
            workers,
            env=postgres.env(),
            log=folder / "mlflow.log",
            auth=write_auth(folder) if auth else None,
        )
    except BaseException:
        postgres.stop()
        raise
    print(
        f"MLflow on PostgreSQL: --tracking-uri {mlflow.uri}  (PostgreSQL {postgres.uri}, logs in {folder})", flush=True
    )
    if auth:
        print(
            "login: MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=$(cat "
            f"{folder / 'mlflow-password'}) in the environment of seedsweep run (it carries them to the nodes)",
            flush=True,
        )
    if host == LOOPBACK:
        print(
            "listening on loopback only; --host ADDRESS to serve other machines (see README: Running on a Ray cluster)",
            flush=True,
        )
    stopped = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.append(True))
    try:
        while not stopped and mlflow.proc.poll() is None and postgres.proc.poll() is None:
            time.sleep(0.5)
    finally:
        mlflow.stop()
        postgres.stop()
    return 0 if stopped else 1
