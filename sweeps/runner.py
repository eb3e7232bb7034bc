"""Run a sweep on Ray Tune: one trial per configuration, its seeds packed inside the trial.

Local by default (Ray started here, MLflow in ``./mlruns.db`` with artifacts in
``./mlartifacts``, results in ``./ray_results/NAME``); ``address`` joins a Ray cluster and
``tracking_uri`` points at an MLflow server. An interrupted sweep continues with
``resume=True`` (``Tuner.restore``); each trial continues from its checkpoint and its MLflow runs.
This module is the entry point (``plan``, ``run``); the Tune pieces are in ``sweeps.tuner``, the
adaptive sweep in rounds in ``sweeps.rounds``.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Any

from analysis.runs import load_runs
from sweeps import cost, preflight, rounds, settle
from sweeps.progress import complete
from sweeps.spec import SweepSpec
from sweeps.tuner import (
    AlreadyDone,
    Where,
    check_resume,
    make_tuner,
    read_done,
    restorable,
    start_ray,
    summary,
    write_done,
)
from trainables.records import SALT_TAG, bound_mlflow_http, ensure_experiment, open_client, retry, unreachable
from trainables.rule import SuccessRule
from trainables.seed_stop import SeedStop, draw_salt

__all__ = ["AlreadyDone", "Where", "plan", "run"]

MAX_LISTED = 50  # grid points listed one per line by the plan


def plan(spec: SweepSpec) -> str:
    """A human-readable plan: configurations, seeds and resources, without training."""
    grid = spec.grid_points()
    configs = grid * spec.num_samples
    if spec.adaptive:  # the seed lines say the rule instead
        seed_count, seed_lines = "", rounds.plan_lines(spec)
    else:
        seed_count = f", seeds per configuration: {spec.seeds}, seed runs: {configs * spec.seeds}"
        seed_lines = [f"  seeds: {spec.seeds} per configuration (0..{spec.seeds - 1}, the same in every configuration)"]
    lines = [
        f"sweep {spec.name!r} ({spec.path}): model {spec.model} on {spec.env}",
        f"  configurations: {configs} ({spec.searcher} search"
        + (f", {grid} grid points x {spec.num_samples} samples" if grid > 1 else "")
        + f"){seed_count}",
        f"  epochs: {spec.epochs}, evaluate every {spec.eval_every}, checkpoint every {spec.checkpoint_every}, "
        + (
            f"ASHA on {spec.scheduler.metric} ({spec.scheduler.mode}), grace {spec.scheduler.grace_period}, "
            f"reduction {spec.scheduler.reduction_factor}"
            if spec.scheduler
            else "no early stopping"
        ),
        f"  each trial: {spec.resources['cpu']} CPU, {spec.resources['gpu']} GPU, {spec.seeds} seeds packed; "
        f"at most {spec.max_concurrent or 'as many as fit'} at once",
        f"  success: {SuccessRule.parse(spec.success)}",
        *([f"  seed_stop: {SeedStop.parse(spec.seed_stop)}"] if spec.seed_stop else []),
        *([f"  settle: {settle.Settle.parse(spec.settle)}"] if spec.settle else []),
        *seed_lines,
        *cost.plan_lines(spec),
        f"  fixed: {spec.fixed() or '-'}",
        f"  swept: {spec.swept() or '-'}",
    ]
    grids = {k: v["grid"] for k, v in spec.swept().items() if "grid" in v}
    sampled = [k for k in spec.swept() if k not in grids]
    points = list(itertools.product(*grids.values()))
    if grids and len(points) <= MAX_LISTED:
        lines.append(
            "  grid points"
            + (f" (each with {spec.num_samples} samples of {', '.join(sampled)})" if sampled else "")
            + ":"
        )
        lines += [
            f"    {i + 1}. " + ", ".join(f"{k}={v}" for k, v in zip(grids, point)) for i, point in enumerate(points)
        ]
    return "\n".join(lines)


def run(
    spec: SweepSpec,
    where: Where,
    *,
    address: str | None = None,
    resume: bool = False,
    dashboard: bool = False,
    allow_mixed: bool = False,
) -> dict[str, Any]:
    """Run (or resume) a sweep to the end; returns a summary. ``where`` was checked already
    (``preflight.check`` returns it, as the CLI's first step). Raises ``AlreadyDone`` if the sweep
    finished, ``RuntimeError`` if it was interrupted and ``resume`` is not set, ``preflight.Unusable``
    if the cluster cannot run it. ``allow_mixed``: resume or pool seeds trained on other devices,
    precisions or code. One preamble, then a fixed fit or the rounds of adaptive seeds."""
    bound_mlflow_http()  # the driver's and local trials' MLflow calls give up in seconds, not minutes
    run_dir = preflight.join(where.storage, spec.name)  # a local path or a URI (s3://, gs://, ...)
    done = read_done(run_dir)
    if done is not None:
        raise AlreadyDone(spec.name, done)
    start_ray(spec, where, address, dashboard)  # on a cluster: every node checked before any run exists
    first = rounds.round_dir(run_dir, 1) if spec.adaptive else run_dir  # the sweep's first Tune experiment
    started = read_done(first) is not None or restorable(first)  # begun: an adaptive sweep's first round may be done
    check_resume(spec, where, run_dir, started, resume, allow_mixed)
    client = open_client(where.tracking_uri)
    exp_id = ensure_experiment(client, spec.name)  # one MLflow experiment per sweep
    spec = audit_salt(spec, client, exp_id)  # seed_stop's audit salt: stored on it, kept on resume
    start = time.time()
    if spec.adaptive:
        out = rounds.run_rounds(spec, where, run_dir, client, exp_id, started, allow_mixed)
    else:
        out = fit(spec, where, resume, start)
    if out["complete"] and spec.settle:  # some seeds train on (sweeps.settle): a fixed sweep's, or round 1's
        out["settled_seeds"] = settle_seeds(spec, first, run_dir, where.tracking_uri)
    if out["complete"]:
        write_done(run_dir, out)
    return out


def audit_salt(spec: SweepSpec, client, exp_id: str) -> SweepSpec:
    """``spec`` with its seed_stop's audit salt: the one stored on the sweep's MLflow experiment
    (``SALT_TAG``: a resumed sweep audits the same seeds), else a fresh one, stored there now."""
    if not spec.seed_stop:
        return spec
    stored = retry(client.get_experiment, exp_id).tags.get(SALT_TAG)
    salt = int(stored) if stored is not None else draw_salt()
    if stored is None:
        retry(client.set_experiment_tag, exp_id, SALT_TAG, str(salt))
    return dataclasses.replace(spec, seed_stop={**spec.seed_stop, "salt": salt})


def fit(spec: SweepSpec, where: Where, resume: bool, start: float) -> dict[str, Any]:
    """A sweep with a fixed number of seeds: one Tune experiment, complete as ``progress.complete``
    says from its runs (after Ctrl-C, Tune returns normally with trials left to --resume)."""
    results = make_tuner(spec, where, resume=resume).fit()
    try:
        done, reachable = complete(load_runs(where.tracking_uri, spec.name), spec), True
    except ValueError:  # no seed run yet
        done, reachable = False, True
    except Exception as err:
        if not unreachable(err):
            raise
        done, reachable = False, False
    return summary(spec, where, len(results), results, start, done, reachable)  # summary adds: no errors


def settle_seeds(spec: SweepSpec, experiment: str, sweep_dir: str, tracking_uri: str) -> int:
    """The settledness check (``sweeps.settle``): continue the chosen seeds of every trial of a finished
    Tune experiment (``experiment``: its folder or URI; a fixed sweep's, or an adaptive sweep's first
    round) in the Tune experiment ``settle`` under ``sweep_dir`` (continued where a killed driver left
    it), and record their outcomes on their MLflow runs; returns the seeds continued."""
    import posixpath

    from ray import tune

    fs, root = preflight.storage_fs(experiment)
    done = tune.ResultGrid(tune.ExperimentAnalysis(root, storage_filesystem=fs))
    tasks = [
        {"config": r.config, "checkpoint": preflight.join(experiment, posixpath.relpath(r.checkpoint.path, root))}
        for r in done
        if not r.error and r.checkpoint is not None
    ]
    if not tasks:
        return 0
    check = settle.Settle.parse(spec.settle)
    space = {"task": tune.grid_search(tasks), "settle": check.as_dict(), "epochs": spec.epochs, "sweep": spec.name}
    tuner = make_tuner(
        dataclasses.replace(spec, seeds=check.seeds),  # the progress lines count the continued seeds
        Where(storage=sweep_dir, tracking_uri=tracking_uri),
        resume=restorable(preflight.join(sweep_dir, "settle")),
        name="settle",
        space=space,
        trainable=settle.settle_trial,
        search=False,
    )
    return sum(int(r.metrics.get("continued", 0)) for r in tuner.fit() if r.metrics)
