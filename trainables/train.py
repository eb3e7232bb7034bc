"""The Ray Tune function trainable: one trial = one configuration, its seeds packed in one process.

``train(config)`` takes the model config (see ``trainables.config.resolve_config``) and, under
``config["run"]``, its ``RunOptions`` as a dict (``trainables.options``; the runner puts them there):

- ``seeds`` (the seed numbers packed in the trial), ``epochs``;
- ``checkpoint_every`` (default 5; also at the end), ``eval_every`` (default 1; also at the end);
- ``flush_every`` (seconds, default 10): MLflow gets the buffered metrics before the report of an
  epoch that evaluated, checkpointed or ended the run, or when this long has passed since the last
  send (one ``log_batch`` per run costs ~50 ms for 16 seeds on SQLite, next to GPU epochs of
  ~0.1 s). A crash loses nothing (the restore recomputes the epochs after the checkpoint and
  ``Tracker`` logs each step once); a trial stopped by the scheduler at an epoch that did not
  evaluate loses the per-seed training losses of the epochs since the last send (ASHA decides on
  evaluated metrics, so with rungs at multiples of ``eval_every`` nothing);
- ``tracking_patience`` (seconds, default 600): training goes on while the tracking server is
  unreachable, its records queued (and kept in checkpoints); past this the trial fails, and
  ``--resume`` continues it;
- ``sweep`` (name, tag on every run), ``experiment`` (MLflow experiment, default = sweep);
- ``tracking_uri``: default ``sqlite:///<driver cwd>/mlruns.db``. Tune runs trials in their own
  trial folder, so a relative ``sqlite:///`` path is taken relative to the driver's working
  folder (``TUNE_ORIG_WORKING_DIR``); the sweep runner passes absolute URIs.

The config is resolved and checked once per trial (``resolve_config``); the Pack and ``config_id``
take the resolved one as it is.

Each epoch it trains, evaluates (every ``eval_every``) and calls ``tune.report`` with aggregates
over the seeds only (``epoch`` is ASHA's time attribute): ``median_<m>`` / ``best_<m>`` of every
metric m the model declares (best by the metric's ``better``), ``n_success``, ``n_diverged``,
``success_rate``. Per-seed histories go to MLflow (``trainables.tracking``), and at the end the
PNGs the model draws of each seed (``PackedModel.artefacts``); the parent run holds the family's
trivial baselines at step 0 (``trainables.baselines``: scored on the same validation data) and is tagged with the
model's declared metrics, the Ray ``node_id`` and the ``pid`` of the process it ran in (its last
attempt). A checkpoint holds the pack state, the MLflow run ids and the records MLflow has not
taken yet; a restored trial continues the same seeds in the same runs.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import torch
from ray import tune

from trainables import baselines
from trainables.code import code_hash
from trainables.config import config_id, resolve_config
from trainables.models import Metric
from trainables.options import RUN_KEY, RunOptions
from trainables.pack import Pack
from trainables.placement import place
from trainables.records import CODE_TAG, DEVICE_TAG, METRICS_TAG, PRECISION_TAG, ROUND_TAG, SEED_STOP_TAGS
from trainables.tracking import Tracker, device_name

NOT_METRICS = ("seed", "status", "success", *SEED_STOP_TAGS)


def split_config(config: dict) -> tuple[RunOptions, dict]:
    """``(run options, model config)``: ``config["run"]`` typed (defaults filled in), and the rest."""
    options = RunOptions.from_dict(config.get(RUN_KEY, {}))
    return options, {k: v for k, v in config.items() if k != RUN_KEY}


def absolute_uri(uri: str | None) -> str:
    """The trial's tracking URI (default: ``./mlruns.db``); a relative ``sqlite:///`` path is made
    absolute against the driver's working folder."""
    uri = uri or "sqlite:///mlruns.db"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        base = Path(os.environ.get("TUNE_ORIG_WORKING_DIR", os.getcwd()))
        return f"sqlite:///{(base / uri[len('sqlite:///') :]).resolve()}"
    return uri


def aggregate(results: list[dict], metrics: tuple[Metric, ...]) -> dict[str, float]:
    """Over seeds: ``median_<m>`` / ``best_<m>`` for every declared metric m (best = min for a
    ``lower`` metric, max for a ``higher`` one; a diverged or NaN seed counts as the worst value,
    +-inf), ``n_success``, ``n_diverged``, ``success_rate``."""
    out = {}
    diverged = np.array([r["status"] == "diverged" for r in results])
    for m in metrics:
        worst, best = (math.inf, np.min) if m.better == "lower" else (-math.inf, np.max)
        values = np.array([r.get(m.name, math.nan) for r in results], dtype=float)
        values[~np.isfinite(values) | diverged] = worst
        out[f"median_{m.name}"] = float(np.median(values))
        out[f"best_{m.name}"] = float(best(values))
    out["n_success"] = sum(bool(r["success"]) for r in results)
    out["n_diverged"] = int(diverged.sum())
    out["n_stopped"] = sum(r["status"] == "stopped" for r in results)  # seed_stop: predicted failures
    out["success_rate"] = out["n_success"] / len(results)
    return out


def objective(metric: str | None, model_cls) -> tuple[str | None, str]:
    """(one of ``aggregate``'s names, min | max) for a spec's ``scheduler.metric`` (None: the model's
    ``scheduler_metric``; a bare declared metric m: ``median_<m>``); (None, "") for any other name."""
    if metric == "success_rate":
        return metric, "max"
    by_name = {m.name: m for m in model_cls.metrics}
    name = model_cls.scheduler_metric if metric is None else metric
    stat, base = ("median", name) if name in by_name else name.split("_", 1) if "_" in name else ("", name)
    if stat not in ("median", "best") or base not in by_name:
        return None, ""
    return f"{stat}_{base}", "min" if by_name[base].better == "lower" else "max"


def metrics_json(metrics: tuple[Metric, ...]) -> str:
    """The model's declared metrics as the ``seedsweep.metrics`` tag: JSON {name: {better, doc}}."""
    return json.dumps({m.name: {"better": m.better, "doc": m.doc} for m in metrics})


def finite_median(values) -> float:
    """Median of the finite values (NaN if none)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else math.nan


def seed_metrics(losses: dict[str, list[float]], results: list[dict] | None) -> list[dict[str, float]]:
    """Each seed's metrics for MLflow: ``train/<term>`` losses, and the evaluation if there is one."""
    n = len(next(iter(losses.values())))
    rows = [{f"train/{term}": float(values[i]) for term, values in losses.items()} for i in range(n)]
    for row, result in zip(rows, results or []):
        row.update({k: float(v) for k, v in result.items() if k not in NOT_METRICS and isinstance(v, (int, float))})
    return rows


def plain(result: dict) -> dict:
    """A result with numpy scalars made Python ones (JSON for the checkpoint)."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in result.items()}


def report_with_checkpoint(report: dict, pack, meta: dict) -> None:
    """``tune.report`` with a checkpoint folder: ``pack.pt`` (``pack.state_dict()``) and ``meta.json``."""
    with tempfile.TemporaryDirectory(prefix="seedsweep-ckpt-") as folder:
        torch.save(pack.state_dict(), Path(folder) / "pack.pt")
        (Path(folder) / "meta.json").write_text(json.dumps(meta))
        tune.report(report, checkpoint=tune.Checkpoint.from_directory(folder))


def train(config: dict) -> None:
    """Ray Tune function trainable (see the module docstring)."""
    run, model_config = split_config(config)
    resolved = resolve_config(model_config)  # the one check of this trial's config
    seeds, epochs = list(run.seeds), run.epochs
    pack = Pack(resolved, seeds, device=place(run.gpu, resolved["device"]))

    meta = {"epoch": 0, "run_ids": None, "results": None, "report": None, "unsent": None}
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            pack.load_state_dict(torch.load(Path(folder) / "pack.pt", weights_only=False))
            meta = json.loads((Path(folder) / "meta.json").read_text())
    start = meta["epoch"]
    tracker = Tracker(
        absolute_uri(run.tracking_uri),
        run.experiment,
        run.sweep,
        tune.get_context().get_trial_id(),
        config_id(resolved),
        resolved,
        seeds,
        meta["run_ids"],
        meta.get("unsent"),
        run.tracking_patience,
        {
            DEVICE_TAG: device_name(pack.device),
            PRECISION_TAG: pack.speed.precision,
            CODE_TAG: code_hash(),
            **({ROUND_TAG: str(run.round)} if run.round else {}),
        },
    )
    metrics = type(pack.model).metrics
    tracker.tag_config(**{METRICS_TAG: metrics_json(metrics)})
    if ray.is_initialized():  # where it ran (last attempt)
        tracker.tag_config(node_id=ray.get_runtime_context().get_node_id(), pid=str(os.getpid()))
    if start == 0:  # the family's trivial baselines on this configuration's validation data, once
        scores = baselines.estimate(type(pack.model), pack.cfg, pack.val_x, pack.val_y)
        tracker.log(0, baselines.as_metrics(scores), [{} for _ in seeds])
    results, report = meta["results"], meta["report"]
    if results and pack.stopped:  # restored: the stopped seeds' runs keep their records and end again
        tracker.set_seeds(results)
        tracker.end_seeds(sorted(pack.stopped))
    flushed = time.monotonic()

    for epoch in range(start + 1, epochs + 1):
        gone = set(pack.stopped)  # seeds that left the pack before this epoch: nothing new to log
        losses = pack.train_epoch()
        fresh = None
        if epoch == epochs:
            pack.finish()  # seeds still running become finished
        if epoch % run.eval_every == 0 or epoch == epochs or results is None:
            results = fresh = [plain(r) for r in pack.stop_seeds(pack.evaluate())]
            saved = (epochs - epoch) * pack.steps_per_epoch
            for i in set(pack.stopped) - gone:  # stopped now: their metrics at the stop are the last ones
                results[i]["seed_steps_saved"] = pack.stopped[i]["seed_steps_saved"] = saved
            tracker.set_seeds(results)
            tracker.end_seeds(sorted(set(pack.stopped) - gone))
        train_medians = {f"median_train/{t}": finite_median(v) for t, v in losses.items()}
        report = {"epoch": epoch, **aggregate(results, metrics), **train_medians}
        parent = {**train_medians, **(aggregate(fresh, metrics) if fresh else {})}
        rows = seed_metrics(losses, fresh)
        tracker.log(epoch, parent, [{} if i in gone else row for i, row in enumerate(rows)])
        last = epoch == epochs
        save = last or epoch % run.checkpoint_every == 0
        if fresh or save or time.monotonic() - flushed >= run.flush_every:
            tracker.flush()  # before reporting: Tune may stop the trial inside tune.report
            flushed = time.monotonic()
        if last:
            tracker.finish(results, pack.artefacts)
        if save:
            unsent = tracker.unsent()  # what an unreachable tracking server has not taken yet
            meta = dict(epoch=epoch, run_ids=tracker.run_ids, results=results, report=report, unsent=unsent)
            report_with_checkpoint(report, pack, meta)
        else:
            tune.report(report)

    if start >= epochs:  # restored from the final checkpoint: nothing left to train
        tracker.finish(results, pack.artefacts)
        tune.report(report)
