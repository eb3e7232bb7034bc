"""The MLflow layout of a sweep, in one place: what the trainable writes (``trainables.tracking``)
and what the driver and the analysis read (``sweeps.tuner``, ``sweeps.rounds``, ``analysis.runs``).
No torch here.

One MLflow experiment per sweep (named after it; the tag ``seedsweep.design`` holds the adaptive
seeds' rule as JSON). A parent run per configuration, a child run per seed. Both kinds carry the
tags ``sweep``, ``config_id``, ``trial_id`` and ``seedsweep.kind`` (``config`` | ``seed``); params are
the resolved config, flattened (``success.metric``, ``success.below``, ...: the success rule's
record, read back by ``stored_rule``), children add ``seed``. Children are tagged
``mlflow.parentRunId``, ``seed``, ``status`` (running | finished | diverged | pruned | failed |
stopped), ``success`` ("true" | "false"), ``device`` and ``precision`` (what trained it); with
``seed_stop`` (trainables.seed_stop) also ``audit`` ("true" for an audited stop candidate),
``would_stop_epoch`` (audited), ``stopped_epoch`` and ``seed_steps_saved`` (a stopped seed: its run
ends at the stop, its last metrics those of the stop; it counts in n as a failure). Per-seed metrics use
step = epoch; at its last epoch a counted seed (finished, diverged or stopped) also logs the metric
``success`` (1 or 0; a pruned or failed seed has none), so MLflow's own "group by config_id, average
success" shows k/n. The parent holds the aggregates over seeds at every evaluated epoch (``n_success``, ``success_rate``:
``train.aggregate``), at the last epoch also ``n`` (counted seeds) and the ends of its 95% Wilson
interval ``success_low`` / ``success_high`` (``config_outcome``), and the tag
``seedsweep.metrics``: the model's declared metrics as JSON (``{name: {"better": ..., "doc": ...}}``),
so the analysis knows them without the model.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from statistics import NormalDist
from urllib.parse import unquote, urlparse

import numpy as np
from mlflow import MlflowClient

from trainables.rule import BOUNDS, SuccessRule

KIND = "seedsweep.kind"  # run tag: "config" (parent) or "seed" (child)
DEVICE_TAG = "device"  # on seed runs: what trained it ("cpu", or "cuda <card name>")
ROUND_TAG = "seedsweep.round"  # on seed runs of an adaptive sweep: the round that trained them
CODE_TAG = "seedsweep.code"  # on seed runs: trainables.code.code_hash() of the process that trained it
PRECISION_TAG = "precision"  # on seed runs: "fp32" or "bf16"; rounds of an adaptive sweep must agree on both
METRICS_TAG = "seedsweep.metrics"  # on configuration runs: the model's declared metrics, JSON {name: {better, doc}}
DESIGN_TAG = "seedsweep.design"  # experiment tag: the adaptive seeds' rule (analysis.sequential.Design) as JSON
SALT_TAG = "seedsweep.audit_salt"  # experiment tag: the sweep's seed_stop audit salt (trainables.seed_stop.audited)
RUN_TAGS = ("sweep", "config_id", "trial_id")  # on both kinds of run
SUCCESS = "success"  # seed tag ("true" | "false") and, for finished or diverged seeds, metric (1 | 0)
TRAINED = ("finished", "diverged")  # seed statuses of seeds that trained to their last epoch
COUNTED = (*TRAINED, "stopped")  # seed statuses that count in n (stopped: seed_stop, a failure)
SEED_STOP_TAGS = ("stopped_epoch", "audit", "would_stop_epoch", "seed_steps_saved")  # seed_stop's, on seed runs
SETTLE_TAGS = (
    "settle.success",
    "settle.status",
    "settle.epochs",
)  # the settledness check's (sweeps.settle), on seed runs
PAGE = 5000  # runs per search_runs page (MLflow allows up to 50,000)
MLFLOW_END = {"pruned": "KILLED", "failed": "FAILED"}  # seed status -> MLflow run status (else FINISHED)
MLFLOW_STATUS = {  # MLflow's own run status -> seed status, used only when a seed run has no `status` tag
    "RUNNING": "running",
    "SCHEDULED": "running",
    "FINISHED": "finished",
    "FAILED": "failed",
    "KILLED": "pruned",
}


def seed_outcome(result: dict) -> dict[str, float]:
    """A seed's final ``success`` metric (1.0 / 0.0) if it counts (``COUNTED``), else nothing."""
    if result["status"] not in COUNTED:
        return {}
    return {SUCCESS: float(result["status"] == "finished" and bool(result["success"]))}


def config_outcome(results: list[dict]) -> dict[str, float]:
    """A configuration's final metrics over its seeds' results beside ``n_success`` and
    ``success_rate`` (``train.aggregate``'s, logged at the same step): ``n`` (counted seeds) and the
    ends of its 95% Wilson interval (``success_low``, ``success_high``; NaN when n = 0), as the
    analysis's success table computes them."""
    outcomes = [seed_outcome(r) for r in results]
    n = sum(1 for o in outcomes if o)
    low, high = wilson(sum(o.get(SUCCESS, 0.0) for o in outcomes), n)
    return {"n": float(n), "success_low": float(low), "success_high": float(high)}


def wilson(k, n, alpha: float = 0.05) -> tuple:
    """Wilson's score interval for k/n at level 1 - alpha (Newcombe 1998, method 3; what statsmodels'
    ``proportion_confint(method="wilson")`` computes, tests/test_analysis.py checks it), for numbers or
    arrays: NaN where n = 0, exactly 0 / 1 at k = 0 / n. The one definition, here so the trainable
    needs neither scipy nor statsmodels; ``analysis.success.interval`` reads it."""
    z = NormalDist().inv_cdf(1 - alpha / 2)
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre, denominator = k + z * z / 2, n + z * z
        half = z * np.sqrt(k * (n - k) / n + z * z / 4)
        low = np.where(n > 0, np.where(k == 0, 0.0, (centre - half) / denominator), np.nan)
        high = np.where(n > 0, np.where(k == n, 1.0, (centre + half) / denominator), np.nan)
    return low, high


def stored_rule(params: dict[str, str]) -> SuccessRule | None:
    """The success rule a configuration run's params record, or ``None`` if they hold none."""
    bound = next((k for k in BOUNDS if f"success.{k}" in params), None)
    if "success.metric" not in params or bound is None:
        return None
    also = [float(x) for x in json.loads(params.get("success.also", "[]"))]
    rule = {"metric": params["success.metric"], bound: float(params[f"success.{bound}"])}
    return SuccessRule.parse({**rule, **({"also": also} if also else {})})


def unreachable(err: BaseException) -> bool:
    """Whether ``err`` says the tracking server or database cannot be reached now (worth trying later),
    as opposed to a request it refused."""
    text = str(err)
    if re.search(r"error code 40[13]\b", text):  # the server answered: no or wrong credentials (refused)
        return False
    if text.startswith("API request to") and "failed with" in text:  # MLflow's HTTP client: refused, timeout, 5xx
        return True
    return "OperationalError" in f"{type(err).__name__} {text}" and "database is locked" not in text


def retry(fn: Callable, *args, attempts: int = 8, **kwargs):
    """``fn(*args, **kwargs)``, retried with jittered exponential backoff while SQLite is locked."""
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # MlflowException or sqlalchemy's OperationalError, depending on the path
            if "database is locked" not in str(e) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2**attempt * (1 + random.random()))


def bound_mlflow_http(retries: int = 2, timeout: int = 20) -> None:
    """Bound MLflow's HTTP retries in this process (its default, 7 retries with exponential backoff,
    waits minutes on a dead server; the Tracker rides out outages itself). Values already set in the
    environment are kept; set before ``ray.init`` it reaches the local Ray workers too."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout))


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    """``{"success": {"metric": m}}`` -> ``{"success.metric": "m"}``, values as strings."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)
    return out


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else ``None``."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return (
        Path(unquote(urlparse(tracking_uri).path))
        if tracking_uri.startswith("sqlite:////")
        else Path(tracking_uri[len("sqlite:///") :])
    )


def default_artifacts(tracking_uri: str) -> str | None:
    """``mlartifacts/`` beside a SQLite store (as a file URI), else ``None`` (the server decides)."""
    db = sqlite_path(tracking_uri)
    return None if db is None else (db.resolve().parent / "mlartifacts").as_uri()


def open_client(tracking_uri: str) -> MlflowClient:
    """An ``MlflowClient`` with its store opened. MLflow creates a new SQLite store's schema on first
    contact, and concurrent creators corrupt each other's migrations, so for SQLite that first
    contact holds an exclusive lock on ``<db>.lock`` beside the database."""
    db = sqlite_path(tracking_uri)
    if db is None:
        return MlflowClient(tracking_uri)
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{db}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        client = MlflowClient(tracking_uri)
        retry(client.search_experiments, max_results=1)
    return client


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created if missing (tolerating a concurrent creator)."""
    for _ in range(3):
        experiment = retry(client.get_experiment_by_name, name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return retry(client.create_experiment, name, artifact_location=default_artifacts(client.tracking_uri))
        except Exception as e:
            if "already exists" not in str(e) and "UNIQUE constraint" not in str(e):
                raise
    raise RuntimeError(f"could not get or create MLflow experiment {name!r}")


def quote(value: str) -> str:
    """A string literal for an MLflow search filter."""
    return f'"{value}"' if "'" in value else f"'{value}'"


def search_all(client: MlflowClient, experiment_ids: list[str], query: str) -> list:
    """Every run of ``experiment_ids`` matching ``query``, page by page."""
    runs, token = [], None
    while True:
        page = retry(client.search_runs, experiment_ids, query, max_results=PAGE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_experiment(client: MlflowClient, sweep: str) -> str:
    """The id of the sweep's experiment, or a ``ValueError`` naming the sweeps that exist (for readers:
    nothing is created)."""
    experiment = retry(client.get_experiment_by_name, sweep)
    if experiment is None:
        names = sorted(e.name for e in retry(client.search_experiments) if e.name != "Default")
        raise ValueError(f"no sweep {sweep!r} in {client.tracking_uri}; sweeps there: {', '.join(names) or 'none'}")
    return experiment.experiment_id


def search_kind(client: MlflowClient, exp_id: str, sweep: str, kind: str) -> list:
    """All runs of one kind ("seed" or "config") of a sweep."""
    return search_all(client, [exp_id], f"tags.sweep = {quote(sweep)} AND tags.`{KIND}` = '{kind}'")


def sweep_codes(tracking_uri: str, experiment: str) -> set[str]:
    """The code hashes (``CODE_TAG``) a sweep's seed runs were trained with ("?" for a run without one)."""
    client = open_client(tracking_uri)
    found = retry(client.get_experiment_by_name, experiment)
    if found is None:
        return set()
    runs = search_all(client, [found.experiment_id], f"tags.`{KIND}` = 'seed'")
    return {r.data.tags.get(CODE_TAG, "?") for r in runs}
