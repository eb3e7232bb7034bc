"""MLflow runs of a sweep -> one pandas row per seed.

The trainable records one parent run per configuration (tag ``seedsweep.kind=config``) and one
child run per seed (``seedsweep.kind=seed``) in the experiment named after the sweep. A seed's
row holds its configuration params (typed: numbers become numbers), ``config_id``, ``trial_id``,
``seed``, ``status``, ``success`` (the stored tag, nullable boolean), ``run_id`` and the final
(latest-step) value of every metric. ``df.attrs`` lists which columns are ``params`` and
``metrics``, and holds the sweep's ``design`` (the adaptive seeds' rule as a dict, tag
``seedsweep.design`` on the experiment; ``None`` for fixed seeds).
"""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from trainables.tracking import KIND, SEED_STOP_TAGS, quote, search_all

INFO = ["run_id", "parent_run_id", "config_id", "trial_id", "seed", "status", "success", "device", "precision"]
# MLflow's own run status, used only when a seed run has no `status` tag.
DESIGN_TAG = "seedsweep.design"  # experiment tag: the adaptive seeds' rule (analysis.sequential.Design) as JSON
MLFLOW_STATUS = {
    "RUNNING": "running",
    "SCHEDULED": "running",
    "FINISHED": "finished",
    "FAILED": "failed",
    "KILLED": "pruned",
}


def client(tracking_uri: str):
    """An ``MlflowClient``; a ``sqlite:///`` URI must name an existing file (MLflow would create one)."""
    from mlflow import MlflowClient

    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri[len("sqlite:///") :])
        if not path.exists():
            raise ValueError(f"no MLflow store at {path} ({tracking_uri}); run a sweep first, or pass --tracking-uri")
    return MlflowClient(tracking_uri)


def experiment_id(mlflow_client, sweep: str) -> str:
    """The id of the sweep's experiment, or a ``ValueError`` naming the sweeps that exist."""
    experiment = mlflow_client.get_experiment_by_name(sweep)
    if experiment is None:
        names = sorted(e.name for e in mlflow_client.search_experiments() if e.name != "Default")
        raise ValueError(
            f"no sweep {sweep!r} in {mlflow_client.tracking_uri}; sweeps there: {', '.join(names) or 'none'}"
        )
    return experiment.experiment_id


def search(mlflow_client, exp_id: str, sweep: str, kind: str) -> list:
    """All runs of one kind ("seed" or "config") of a sweep. The cyclic garbage collector is paused
    meanwhile: MLflow builds ~30 ORM objects per run, and collections triggered by those
    allocations took half the load time at 10,000 runs."""
    query = f"tags.sweep = {quote(sweep)} AND tags.`{KIND}` = '{kind}'"
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return search_all(mlflow_client, [exp_id], query)
    finally:
        if was_enabled:
            gc.enable()


def load_runs(tracking_uri: str, sweep: str) -> pd.DataFrame:
    """One row per seed run of ``sweep``; ``ValueError`` if there is no such sweep or it has no seed runs."""
    mlflow_client = client(tracking_uri)
    exp_id = experiment_id(mlflow_client, sweep)
    runs = search(mlflow_client, exp_id, sweep, "seed")
    if not runs:
        raise ValueError(f"sweep {sweep!r} has no seed runs yet in {tracking_uri}")
    info, params, metrics = [], [], []
    for run in runs:
        tags = run.data.tags
        success = tags.get("success")
        info.append(
            {
                "run_id": run.info.run_id,
                "parent_run_id": tags.get("mlflow.parentRunId"),
                "config_id": tags.get("config_id"),
                "trial_id": tags.get("trial_id"),
                "seed": tags.get("seed", run.data.params.get("seed")),
                "status": tags.get("status") or MLFLOW_STATUS.get(run.info.status, run.info.status.lower()),
                "success": None if success is None else success.lower() == "true",
                "device": tags.get("device"),
                "precision": tags.get("precision"),
                **{k: tags[k] for k in SEED_STOP_TAGS if k in tags},  # seed_stop's (trainables.tracking)
            }
        )
        params.append(run.data.params)
        metrics.append(run.data.metrics)
    info = pd.DataFrame(info)
    info["seed"] = pd.to_numeric(info["seed"], errors="coerce").astype("Int64")
    info["success"] = info["success"].astype("boolean")
    if "audit" in info:
        info["audit"] = info["audit"].map({"true": True, "false": False}).astype("boolean")
    for key in set(SEED_STOP_TAGS[1:]) & set(info):
        info[key] = pd.to_numeric(info[key], errors="coerce")
    params = pd.DataFrame(params).drop(columns=INFO, errors="ignore")
    params = params.apply(typed)
    metrics = pd.DataFrame(metrics, dtype=float)
    metrics.columns = [f"metric.{m}" if m in params.columns or m in INFO else m for m in metrics.columns]
    df = pd.concat([info, params.sort_index(axis=1), metrics.sort_index(axis=1)], axis=1)
    df = df.sort_values(["config_id", "seed"], key=sort_key, ignore_index=True)
    design = mlflow_client.get_experiment(exp_id).tags.get(DESIGN_TAG)
    df.attrs.update(
        sweep=sweep,
        tracking_uri=tracking_uri,
        params=list(params.columns),
        metrics=list(metrics.columns),
        design=json.loads(design) if design else None,
    )
    return df


def natural_key(text) -> tuple:
    """Sort "c2" before "c10" (split() alternates text and digits, so tuples always compare)."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(text)))


def sort_key(column: pd.Series) -> pd.Series:
    return column.map(natural_key) if column.dtype == object else column


def typed(column: pd.Series) -> pd.Series:
    """MLflow params are strings: a column whose values all parse as numbers becomes numeric."""
    try:
        return pd.to_numeric(column)
    except (ValueError, TypeError):
        return column


def success_rule(tracking_uri: str, sweep: str) -> dict | None:
    """The success rule stored on the sweep's configuration runs: ``{"metric": M, "below"|"above": X}``
    plus ``"also": [X, ...]`` where the spec listed more thresholds, or ``None`` if they store none.
    ``ValueError`` if configurations disagree."""
    mlflow_client = client(tracking_uri)
    rules = set()
    for run in search(mlflow_client, experiment_id(mlflow_client, sweep), sweep, "config"):
        p = run.data.params
        bound = next((k for k in ("below", "above") if f"success.{k}" in p), None)
        if "success.metric" in p and bound:
            also = tuple(float(x) for x in json.loads(p.get("success.also", "[]")))
            rules.add((p["success.metric"], bound, float(p[f"success.{bound}"]), also))
    if len(rules) > 1:
        raise ValueError(f"sweep {sweep!r}: configurations store different success rules: {sorted(rules)}")
    if not rules:
        return None
    metric, bound, value, also = rules.pop()
    return {"metric": metric, bound: value, **({"also": list(also)} if also else {})}


def metric_histories(tracking_uri: str, run_ids: list[str], metric: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{run_id: (steps, values)}`` of one metric (one MLflow call per run, so pass a sample)."""
    mlflow_client = client(tracking_uri)
    out = {}
    for run_id in run_ids:
        history = sorted((m.step, m.timestamp, m.value) for m in mlflow_client.get_metric_history(run_id, metric))
        if history:
            steps, _, values = zip(*history)
            out[run_id] = (np.asarray(steps), np.asarray(values, dtype=float))
    return out


def write_parquet(df: pd.DataFrame, path: str | Path) -> Path:
    """Write the runs table as Parquet (pyarrow), creating the folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, path)
    return path
