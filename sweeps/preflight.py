"""Where a sweep writes (``Where``) and the checks ``seedsweep run`` makes of it, once, before it
loads torch and Ray (``check``: what was passed first, then the resolved defaults): each answers
within seconds and raises ``Unusable`` with one line that names what is wrong and what to do,
instead of a sweep that hangs in MLflow's HTTP retries (minutes) or fails in every trial.
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

TIMEOUT = 5.0  # seconds each network check waits for an answer
DATABASES = ("postgresql", "mysql", "mssql")  # SQLAlchemy dialects MLflow stores runs in (sqlite apart)


@dataclass
class Where:
    """Where a sweep's results go."""

    storage: str  # Tune's storage path (a local folder, or a shared path / URI on a cluster)
    tracking_uri: str  # MLflow (a SQLite store keeps its artifacts in mlartifacts/ beside it)

    @classmethod
    def default(cls, storage: str | None = None, tracking_uri: str | None = None) -> Where:
        here = Path.cwd()
        storage = storage or str(here / "ray_results")
        if "://" not in storage:
            storage = str(Path(storage).resolve())
        return cls(
            storage=storage,
            tracking_uri=tracking_uri or f"sqlite:///{here / 'mlruns.db'}",
        )


class Unusable(RuntimeError):
    """A tracking URI, storage path or Ray address the sweep cannot use."""


def shown(uri: str) -> str:
    """``uri`` with any password replaced by ``***``."""
    parsed = urlparse(uri)
    if parsed.password:
        return uri.replace(f":{parsed.password}@", ":***@", 1)
    return uri


def check_tracking(uri: str, timeout: float = TIMEOUT) -> None:
    """The MLflow tracking URI answers (a server), connects (a database) or is writable (SQLite)."""
    scheme = urlparse(uri).scheme.split("+")[0]
    if scheme in ("http", "https"):
        check_mlflow_server(uri, timeout)
    elif scheme == "sqlite":
        from trainables.records import sqlite_path

        db = sqlite_path(uri)
        if db is None:
            raise Unusable(
                f"tracking URI {uri}: a SQLite URI is sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        writable(db.parent, f"tracking URI {uri}: folder {db.parent}", "pick another --tracking-uri")
    elif scheme in DATABASES:
        check_database(uri, timeout)
    elif scheme in ("", "file"):
        folder = Path(urlparse(uri).path if scheme else uri)
        writable(folder, f"tracking URI {uri}", "pick another --tracking-uri")
    elif scheme != "databricks":
        raise Unusable(
            f"tracking URI {shown(uri)}: unknown scheme {scheme!r}; use http(s)://HOST:PORT (an MLflow "
            "server), sqlite:///FILE.db or postgresql://USER@HOST/DB"
        )


def check_mlflow_server(uri: str, timeout: float) -> None:
    import requests

    url = f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search"
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")  # the credentials MLflow's client sends, as it sends them
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = requests.get(
            url, params={"max_results": 1}, timeout=timeout, auth=(user, password) if user else None, headers=headers
        )
    except requests.exceptions.Timeout:
        raise Unusable(
            f"MLflow server {shown(uri)} did not answer within {timeout:g} s: check that it runs "
            "(seedsweep server) and that this machine reaches it, or fix --tracking-uri"
        ) from None
    except requests.exceptions.RequestException as err:
        reason = "connection refused" if "refused" in str(err).lower() else type(err).__name__
        raise Unusable(
            f"MLflow server {shown(uri)} does not answer ({reason}): start it (seedsweep server) or fix --tracking-uri"
        ) from None
    if response.status_code in (401, 403):
        raise Unusable(
            f"MLflow server {shown(uri)} refused access (HTTP {response.status_code}): set "
            "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN"
        )
    try:
        ok = response.status_code == 200 and "experiments" in response.json()
    except ValueError:
        ok = False
    if not ok:
        raise Unusable(
            f"{shown(uri)} answered HTTP {response.status_code} but is not an MLflow tracking server "
            "(no experiments API): check --tracking-uri's host, port and path"
        )


def check_database(uri: str, timeout: float) -> None:
    import sqlalchemy

    connect_args = {"connect_timeout": int(timeout)} if uri.startswith(("postgresql", "mysql")) else {}
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=connect_args)
        with engine.connect():
            pass
        engine.dispose()
    except ModuleNotFoundError as err:
        raise Unusable(
            f"tracking URI {shown(uri)} needs the database driver {err.name!r}: "
            "pip install -e '.[server]' (psycopg for PostgreSQL)"
        ) from None
    except Exception as err:
        first = str(getattr(err, "orig", err)).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise Unusable(
            f"cannot connect to the tracking database {shown(uri)} ({first}): "
            "check that it runs and the URI's host, port, user and database"
        ) from None


def writable(folder: Path, what: str, todo: str) -> None:
    """``folder`` exists (created if missing) and a file can be written in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".seedsweep-check-"):
            pass
    except OSError as err:
        raise Unusable(f"{what} is not writable ({err.strerror or err}): {todo}") from None


def join(storage: str, *parts: str) -> str:
    """``storage`` (a folder or a URI) with ``parts`` appended to its path: a URI's query (MinIO's
    ``?endpoint_override=...&scheme=http``) stays at the end, where pyarrow and Ray read it."""
    base, query = storage.split("?", 1) if "?" in storage else (storage, None)
    path = "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return f"{path}?{query}" if query else path


def storage_fs(storage: str):
    """``(pyarrow filesystem, path)`` of a storage folder or URI (a URI's query configures the filesystem)."""
    import pyarrow.fs

    if "://" not in storage:
        return pyarrow.fs.LocalFileSystem(), storage
    return pyarrow.fs.FileSystem.from_uri(storage)


def check_storage(storage: str) -> None:
    """Tune's storage: a local folder must be writable; a URI must name a filesystem pyarrow knows."""
    if "://" not in storage:
        writable(Path(storage), f"storage path {storage}", "pass --storage a folder you can write")
        return
    import pyarrow.fs

    try:
        pyarrow.fs.FileSystem.from_uri(storage)
    except Exception as err:  # a bad scheme, or a query key pyarrow does not know
        raise Unusable(
            f"storage URI {storage} cannot be opened ({str(err).splitlines()[0]}): "
            "fix --storage (a shared folder, s3://BUCKET/PATH or gs://BUCKET/PATH)"
        ) from None


def check_ray_address(address: str | None, timeout: float = TIMEOUT) -> None:
    """A Ray address given as HOST:PORT or ray://HOST:PORT accepts connections (``auto`` is Ray's to find)."""
    if not address or address in ("auto", "local"):
        return
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    if not parsed.hostname or parsed.port is None:
        raise Unusable(f"Ray address {address!r} is not HOST:PORT or ray://HOST:PORT: fix --address")
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout):
            pass
    except OSError as err:
        reason = "no answer" if isinstance(err, socket.timeout) else (err.strerror or str(err)).lower()
        raise Unusable(
            f"Ray at {address} does not answer ({reason}): start the head there (ray start --head), "
            "fix --address, or leave --address out to run on this machine"
        ) from None


def check(tracking_uri: str | None, storage: str | None, address: str | None, defaults: bool = True) -> Where:
    """Every check above, cheapest first, on what was passed; then (with ``defaults``) the local
    defaults that fill in what was not, so nothing is created before a given value fails. Returns
    the resolved ``Where``."""
    if storage:
        check_storage(storage)
    check_ray_address(address)
    if tracking_uri:
        check_tracking(tracking_uri)
    where = Where.default(storage, tracking_uri)
    if not defaults:
        return where
    if not storage:
        check_storage(where.storage)
    if not tracking_uri:
        check_tracking(where.tracking_uri)
    return where
