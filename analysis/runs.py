"""MLflow runs of a sweep -> one pandas row per seed (the layout: ``trainables.records``).

The trainable records one parent run per configuration (tag ``seedsweep.kind=config``) and one
child run per seed (``seedsweep.kind=seed``) in the experiment named after the sweep. A seed's
row holds its configuration params (typed: numbers become numbers), ``config_id``, ``trial_id``,
``seed``, ``status``, ``success`` (the stored tag, nullable boolean), ``run_id`` and the final
(latest-step) value of every metric. ``df.attrs`` lists which columns are ``params`` and
``metrics``, and holds the sweep's ``design`` (the adaptive seeds' rule as a dict, tag
``seedsweep.design`` on the experiment; ``None`` for fixed seeds) and the ``success_rule`` the configuration
runs store (a ``SuccessRule``, or ``None``) and the ``baselines`` they hold (``config_baselines``):
one load of the sweep serves the whole report.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.order import natural_key
from trainables import baselines
from trainables.records import (
    CODE_TAG,
    COUNTED,
    DESIGN_TAG,
    MLFLOW_STATUS,
    ROUND_TAG,
    SEED_STOP_TAGS,
    SETTLE_TAGS,
    SUCCESS,
    find_experiment,
    search_kind,
    stored_rule,
)
from trainables.rule import SuccessRule

SETTINGS = ("device", "precision", "code")  # what a seed was trained with: one rate needs one of each
INFO = ["run_id", "parent_run_id", "config_id", "trial_id", "seed", "round", "status", "success", *SETTINGS]


def client(tracking_uri: str):
    """An ``MlflowClient``; a ``sqlite:///`` URI must name an existing file (MLflow would create one)."""
    from mlflow import MlflowClient

    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri[len("sqlite:///") :])
        if not path.exists():
            raise ValueError(f"no MLflow store at {path} ({tracking_uri}); run a sweep first, or pass --tracking-uri")
    return MlflowClient(tracking_uri)


def search(mlflow_client, exp_id: str, sweep: str, kind: str) -> list:
    """All runs of one kind ("seed" or "config") of a sweep. The cyclic garbage collector is paused
    meanwhile: MLflow builds ~30 ORM objects per run, and collections triggered by those
    allocations took half the load time at 10,000 runs."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return search_kind(mlflow_client, exp_id, sweep, kind)
    finally:
        if was_enabled:
            gc.enable()


def load_runs(tracking_uri: str, sweep: str, mlflow_client=None) -> pd.DataFrame:
    """One row per seed run of ``sweep``; ``ValueError`` if there is no such sweep or it has no seed runs.
    ``mlflow_client``: one already open on ``tracking_uri`` (the report's, reused for its later calls)."""
    mlflow_client = mlflow_client or client(tracking_uri)
    exp_id = find_experiment(mlflow_client, sweep)
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
                "code": tags.get(CODE_TAG),
                "round": tags.get(ROUND_TAG),
                **{k: tags[k] for k in SEED_STOP_TAGS if k in tags},  # seed_stop's (trainables.tracking)
                **{k: tags[k] for k in SETTLE_TAGS if k in tags},  # the settledness check's (sweeps.settle)
            }
        )
        params.append(run.data.params)
        metrics.append(run.data.metrics)
    info = pd.DataFrame(info)
    info["seed"] = pd.to_numeric(info["seed"], errors="coerce").astype("Int64")
    info["round"] = pd.to_numeric(info["round"], errors="coerce").astype("Int64")  # adaptive sweeps' seed runs
    info["success"] = info["success"].astype("boolean")
    if "audit" in info:
        info["audit"] = info["audit"].map({"true": True, "false": False}).astype("boolean")
    for key in set(SEED_STOP_TAGS[1:]) & set(info):
        info[key] = pd.to_numeric(info[key], errors="coerce")
    params = pd.DataFrame(params).drop(columns=INFO, errors="ignore")
    params = params.apply(typed)
    metrics = pd.DataFrame(metrics, dtype=float).drop(columns=[SUCCESS], errors="ignore")  # the tag's 0/1 copy
    metrics.columns = [f"metric.{m}" if m in params.columns or m in INFO else m for m in metrics.columns]
    df = pd.concat([info, params.sort_index(axis=1), metrics.sort_index(axis=1)], axis=1)
    df = df.sort_values(["config_id", "seed"], key=sort_key, ignore_index=True)
    design = mlflow_client.get_experiment(exp_id).tags.get(DESIGN_TAG)
    configs = search(mlflow_client, exp_id, sweep, "config")
    rule = success_rule(configs, sweep)
    df.attrs.update(
        sweep=sweep,
        tracking_uri=tracking_uri,
        experiment_id=exp_id,
        params=list(params.columns),
        metrics=list(metrics.columns),
        design=json.loads(design) if design else None,
        success_rule=rule,
        baselines=config_baselines(configs),
    )
    return df


def sort_key(column: pd.Series) -> pd.Series:
    return column.map(natural_key) if column.dtype == object else column


def typed(column: pd.Series) -> pd.Series:
    """MLflow params are strings: a column whose values all parse as numbers becomes numeric."""
    try:
        return pd.to_numeric(column)
    except (ValueError, TypeError):
        return column


def success_rule(configs: list, sweep: str) -> SuccessRule | None:
    """The success rule stored on the sweep's configuration runs ``configs``, or ``None`` if they store
    none. ``ValueError`` if configurations disagree."""
    rules = {stored_rule(run.data.params) for run in configs} - {None}
    if len(rules) > 1:
        raise ValueError(f"sweep {sweep!r}: configurations store different success rules: {sorted(map(str, rules))}")
    return rules.pop() if rules else None


def config_baselines(configs: list) -> list[dict]:
    """The trivial baselines each configuration run holds (``trainables.baselines``): one dict per
    (configuration, baseline, metric) with ``config_id``, ``baseline``, ``metric``, ``value``, ``low``, ``high``."""
    return [
        {"config_id": run.data.tags.get("config_id"), **dataclasses.asdict(score)}
        for run in configs
        for score in baselines.from_metrics(run.data.metrics)
    ]


def metric_histories(mlflow_client, run_ids: list[str], metric: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{run_id: (steps, values)}`` of one metric (one MLflow call per run, so pass a sample)."""
    out = {}
    for run_id in run_ids:
        history = sorted((m.step, m.timestamp, m.value) for m in mlflow_client.get_metric_history(run_id, metric))
        if history:
            steps, _, values = zip(*history)
            out[run_id] = (np.asarray(steps), np.asarray(values, dtype=float))
    return out


def seed_images(
    mlflow_client, runs: pd.DataFrame, ok: pd.Series, out_dir, tries: int = 10
) -> dict[str, dict[str, Path]]:
    """Download the PNGs the model drew (``PackedModel.artefacts``) of one successful and one failed
    finished seed (the first with any) into ``out_dir``; returns ``{"success": {stem: path},
    "failure": {stem: path}}`` for those found, keyed by file name without ``.png``."""
    finished = runs["status"].eq("finished")
    found = {}
    for name, pick in (("success", finished & ok), ("failure", finished & ~ok)):
        for run_id in runs.loc[pick, "run_id"].head(tries):
            artifacts = list_pngs(mlflow_client, run_id)
            if artifacts:
                target = Path(out_dir) / f"{name}_{run_id}"
                target.mkdir(parents=True, exist_ok=True)
                with no_progress_bar():
                    found[name] = {
                        Path(a).stem: Path(mlflow_client.download_artifacts(run_id, a, str(target))) for a in artifacts
                    }
                break
    return found


def list_pngs(mlflow_client, run_id: str, path: str | None = None, depth: int = 2) -> list[str]:
    """The PNG artifacts of a run (searching ``depth`` folders), in MLflow's order."""
    found = []
    for item in mlflow_client.list_artifacts(run_id, path):
        if item.is_dir and depth > 0:
            found += list_pngs(mlflow_client, run_id, item.path, depth - 1)
        elif item.path.lower().endswith(".png"):
            found.append(item.path)
    return found


@contextmanager
def no_progress_bar():
    """MLflow's download progress bar (tqdm) off meanwhile; the variable restored after."""
    key, before = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def write_parquet(df: pd.DataFrame, path: str | Path) -> Path:
    """Write the runs table as Parquet (pyarrow), creating the folder; ``attrs`` go along as JSON
    (the success rule as its ``as_dict()``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rule = df.attrs.get("success_rule")
    df = df.copy(deep=False)
    df.attrs = {**df.attrs, "success_rule": rule.as_dict() if rule else None}
    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, path)
    return path


def mixed_settings(runs: pd.DataFrame) -> str | None:
    """``None`` if every counted seed was trained on one device, in one precision, by one version of
    the code; else which settings were pooled ("cpu fp32 code 8a7b...; cuda H100 bf16 code 8a7b...")."""
    counted = runs[runs["status"].isin(COUNTED)] if len(runs) else runs
    columns = [c for c in SETTINGS if c in counted]
    found = counted[columns].fillna("?").drop_duplicates() if columns else []
    if len(found) <= 1:
        return None
    return "; ".join(
        " ".join(f"{c} {v}" if c == "code" else str(v) for c, v in zip(columns, row))
        for row in found.itertuples(index=False)
    )
