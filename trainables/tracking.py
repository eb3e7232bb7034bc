"""MLflow records of one trial: a parent run per configuration, a child run per seed, in the
layout ``trainables.records`` states (tags, params, metrics; the lookups shared with the readers).
At the end each child holds the PNGs its model draws (``PackedModel.artefacts``).

Metrics are buffered and sent with ``log_batch`` (chunked to MLflow's limits). Exactly-once
across crash and restore: reopening a trial's runs reads the last step MLflow holds for each
(run, metric) once, and steps at or below it are not sent again, so the restored training,
which recomputes them identically, leaves no duplicate and no gap. SQLite's "database is
locked" is retried with backoff.

An unreachable tracking server (or database) does not stop training: a flush that cannot get
through keeps everything queued, tries again at most every ``RETRY_EVERY`` seconds, and sends
it all once the server answers; a send that failed may still have arrived, so before that run's
next send the last steps MLflow holds are read again. What is queued at a checkpoint goes into
it (``unsent()``, restored by ``Tracker(unsent=...)``). Unreachable for longer than ``patience``
seconds, the trial stops with ``TrackingDown``; ``--resume`` continues it from its checkpoint.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag

from trainables.options import PATIENCE
from trainables.records import (
    KIND,
    RUN_TAGS,
    SEED_STOP_TAGS,
    bound_mlflow_http,
    config_outcome,
    ensure_experiment,
    flatten,
    open_client,
    quote,
    retry,
    search_all,
    seed_outcome,
    unreachable,
)

MAX_ENTITIES = 1000  # MLflow's limit of metrics + params + tags per log_batch call
MAX_PARAMS_TAGS = 100  # and of params, and of tags
RETRY_EVERY = 5.0  # seconds between attempts to reach an unreachable tracking server


class TrackingDown(RuntimeError):
    """The tracking server stayed unreachable for longer than the trial's patience."""


def chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def device_name(device) -> str:
    """``"cpu"``, or ``"cuda <card name>"`` for a CUDA device."""
    import torch

    return f"cuda {torch.cuda.get_device_name(device)}" if device.type == "cuda" else device.type


class Tracker:
    """The MLflow runs of one trial. ``run_ids`` (from a checkpoint) reopens them; without it the
    trial's runs are looked up by ``trial_id`` and created only if missing, so a trial restarted
    before its first checkpoint does not make a second set. ``unsent`` (from the checkpoint too) is
    what was still queued then; ``patience``: seconds to ride out an unreachable server; ``seed_tags``:
    what every seed run is tagged with, at its creation (the device, precision and code it trains
    with, an adaptive sweep's round: a run that exists carries them even if its trial dies before its
    first flush) and again when a restored trial reopens it (on another node, maybe another device)."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        sweep: str,
        trial_id: str,
        config_id: str,
        config: dict,
        seeds: list[int],
        run_ids: dict | None = None,
        unsent: dict | None = None,
        patience: float = PATIENCE,
        seed_tags: dict[str, str] | None = None,
    ):
        bound_mlflow_http()
        self.tracking_uri, self.seeds, self.patience = tracking_uri, list(seeds), patience
        self.down_since: float | None = None  # when the tracking server stopped answering (monotonic)
        self.tried = 0.0  # the last attempt to reach it
        self.uncertain: set[str] = set()  # runs whose last send failed, and may have arrived all the same
        self.client = self._wait(open_client, tracking_uri)
        self.tags = dict(zip(RUN_TAGS, (sweep, config_id, trial_id)))
        self.seed_tags = dict(seed_tags or {})
        self.params = [Param(k, v) for k, v in flatten(config).items()]
        self.experiment_id = self._wait(ensure_experiment, self.client, experiment)
        self.last_step: dict[str, dict[str, int]] = {}  # run -> metric -> last step MLflow holds
        self.buffer: dict[str, list[Metric]] = {}
        self.pending_tags: dict[str, dict[str, str]] = {}  # run -> tags to send with its next flush
        self.sent_tags: dict[str, dict[str, str]] = {}  # run -> tags sent by this process
        self.ending: set[str] = set()  # runs of stopped seeds (seed_stop) to terminate at the next send
        self.parent, self.children = self._wait(self._open, run_ids)
        for run_id, rows in (unsent or {}).get("metrics", {}).items():  # queued when the checkpoint was taken
            self.buffer[run_id] = [Metric(*row) for row in rows if row[3] > self.last_step[run_id].get(row[0], -1)]
        for run_id, tags in (unsent or {}).get("tags", {}).items():
            self.pending_tags[run_id] = {**tags, **self.pending_tags.get(run_id, {})}
        held = [s for steps in self.last_step.values() for s in steps.values()]
        self.step = max(held + [m.step for ms in self.buffer.values() for m in ms], default=0)  # the last step logged

    @property
    def run_ids(self) -> dict:
        return {"parent": self.parent, "seeds": dict(zip(map(str, self.seeds), self.children))}

    def _open(self, run_ids: dict | None) -> tuple[str, list[str]]:
        if run_ids is None:
            run_ids = self._find()
        parent = run_ids.get("parent")
        if parent is None:
            parent = self._create(
                {**self.tags, KIND: "config", "status": "running"}, self.tags["config_id"], self.params
            )
        else:
            self._reopen(parent)
            self.pending_tags[parent] = {"status": "running"}
        children = []
        for seed in self.seeds:
            child = run_ids.get("seeds", {}).get(str(seed))
            if child is None:
                tags = {
                    **self.tags,
                    **self.seed_tags,
                    KIND: "seed",
                    "mlflow.parentRunId": parent,
                    "seed": str(seed),
                    "status": "running",
                    "success": "false",
                }
                child = self._create(tags, f"{self.tags['config_id']}/{seed}", self.params + [Param("seed", str(seed))])
            else:
                self._reopen(child)
                self.pending_tags[child] = {"status": "running", **self.seed_tags}
            children.append(child)
        return parent, children

    def _find(self) -> dict:
        """Runs of this trial already in MLflow (a restart before any checkpoint)."""
        query = " AND ".join(f"tags.{k} = {quote(v)}" for k, v in self.tags.items())
        found = {"seeds": {}}
        for run in search_all(self.client, [self.experiment_id], query):
            tags = run.data.tags
            if tags.get(KIND) == "config":
                found["parent"] = run.info.run_id
            elif tags.get(KIND) == "seed":
                found["seeds"][tags["seed"]] = run.info.run_id
        if "parent" not in found:
            return {"seeds": {}}  # children without their parent: start over
        return found

    def _create(self, tags: dict, name: str, params: list[Param]) -> str:
        run_id = retry(self.client.create_run, self.experiment_id, tags=tags, run_name=name).info.run_id
        for part in chunks(params, MAX_PARAMS_TAGS):
            retry(self.client.log_batch, run_id, params=part)
        self.last_step[run_id], self.sent_tags[run_id] = {}, dict(tags)
        return run_id

    def _reopen(self, run_id: str) -> None:
        """Read the last logged step of each metric of a run, and mark it running again."""
        run = self._held(run_id)
        if run.info.status != "RUNNING":
            retry(self.client.update_run, run_id, status="RUNNING")

    def _held(self, run_id: str):
        """Read the last step MLflow holds of each metric of a run into ``last_step``; returns the run."""
        run = retry(self.client.get_run, run_id)
        self.last_step[run_id] = {
            key: max(m.step for m in retry(self.client.get_metric_history, run_id, key)) for key in run.data.metrics
        }
        return run

    def _wait(self, fn: Callable, *args, **kwargs):
        """``fn(*args, **kwargs)``, tried again every ``RETRY_EVERY`` s while the tracking server is
        unreachable, for up to ``patience`` s (then ``TrackingDown``)."""
        while True:
            try:
                result = retry(fn, *args, **kwargs)
            except Exception as err:
                if not unreachable(err):
                    raise
                self._down(err)
                time.sleep(RETRY_EVERY)
                continue
            self._up()
            return result

    def _down(self, err: BaseException) -> None:
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
            print(
                f"MLflow at {self.tracking_uri} unreachable; training goes on and its records wait "
                f"(up to {self.patience:g} s): {str(err).splitlines()[0][:300]}",
                flush=True,
            )
        self.tried = now
        if now - self.down_since > self.patience:
            raise TrackingDown(
                f"MLflow at {self.tracking_uri} unreachable for more than {self.patience:g} s "
                f"(tracking_patience); the trial stops, its checkpoint keeps what was not sent, "
                f"and --resume continues it once the server is back"
            ) from err

    def _up(self) -> None:
        if self.down_since is not None:
            print(
                f"MLflow at {self.tracking_uri} reachable again after {time.monotonic() - self.down_since:.0f} s",
                flush=True,
            )
            self.down_since = None

    def log(self, step: int, parent: dict[str, float], seeds: list[dict[str, float]]) -> None:
        """Buffer the aggregates (parent run) and each seed's metrics at ``step``; steps MLflow
        already holds are dropped, and a value queued again for the same step replaces the first."""
        now = int(time.time() * 1000)
        for run_id, metrics in zip([self.parent, *self.children], [parent, *seeds]):
            last = self.last_step[run_id]
            new = [Metric(k, float(v), now, step) for k, v in metrics.items() if step > last.get(k, -1)]
            queued = [m for m in self.buffer.get(run_id, []) if not (m.step == step and m.key in metrics)]
            self.buffer[run_id] = queued + new
        self.step = max(self.step, step)

    def set_seeds(self, results: list[dict]) -> None:
        """Queue each seed's ``status`` / ``success`` tags from ``Pack.evaluate()`` results."""
        for child, result in zip(self.children, results):
            tags = {"status": result["status"], "success": str(bool(result["success"])).lower()}
            tags.update({k: str(result[k]).lower() for k in SEED_STOP_TAGS if result.get(k) is not None})
            changed = {k: v for k, v in tags.items() if self.sent_tags.get(child, {}).get(k) != v}
            self.pending_tags[child] = {**self.pending_tags.get(child, {}), **changed}

    def end_seeds(self, indices: list[int]) -> None:
        """Terminate the runs of these seeds (stopped by seed_stop) once their records are sent."""
        self.ending.update(self.children[i] for i in indices)

    def tag_config(self, **tags: str) -> None:
        """Queue tags on the configuration's (parent) run, e.g. the Ray node it runs on."""
        self.pending_tags[self.parent] = {**self.pending_tags.get(self.parent, {}), **tags}

    def flush(self) -> bool:
        """Send the buffered metrics and queued tags: one ``log_batch`` per run (more past 1000
        metrics). False if the tracking server could not be reached (all stays queued; while it is
        down, at most one attempt per ``RETRY_EVERY`` s); ``TrackingDown`` past ``patience``."""
        if self.down_since is not None and time.monotonic() - self.tried < RETRY_EVERY:
            return False
        try:
            self._send()
        except Exception as err:
            if not unreachable(err):
                raise
            self._down(err)
            return False
        self._up()
        return True

    def _send(self) -> None:
        """``flush`` without the outage handling: the first failure re-queues what was not sent and raises."""
        for run_id in [self.parent, *self.children]:
            if run_id in self.uncertain:  # its last send failed: it may have arrived all the same
                self._held(run_id)
                self.uncertain.discard(run_id)
            last = self.last_step[run_id]
            metrics = [m for m in self.buffer.pop(run_id, []) if m.step > last.get(m.key, -1)]
            pending = self.pending_tags.pop(run_id, {})
            tags = [RunTag(k, v) for k, v in pending.items()]
            if not metrics and not tags:
                continue
            parts = list(chunks(metrics, MAX_ENTITIES - MAX_PARAMS_TAGS)) if metrics else [[]]
            for i, part in enumerate(parts):
                try:
                    retry(self.client.log_batch, run_id, metrics=part, tags=tags if i == 0 else [])
                except Exception:
                    self.buffer[run_id] = [m for p in parts[i:] for m in p] + self.buffer.get(run_id, [])
                    if i == 0:
                        self.pending_tags[run_id] = {**pending, **self.pending_tags.get(run_id, {})}
                    self.uncertain.add(run_id)
                    raise
                if i == 0:
                    self.sent_tags.setdefault(run_id, {}).update(pending)
                for m in part:
                    last[m.key] = max(m.step, last.get(m.key, -1))
        for run_id in sorted(self.ending):  # stopped seeds: their records are in, the run ends now
            retry(self.client.set_terminated, run_id, "FINISHED")
            self.ending.discard(run_id)

    def unsent(self) -> dict:
        """What is queued (metrics and tags per run), as JSON for the trial's checkpoint."""
        return {
            "metrics": {
                run: [[m.key, m.value, m.timestamp, m.step] for m in ms] for run, ms in self.buffer.items() if ms
            },
            "tags": {run: tags for run, tags in self.pending_tags.items() if tags},
        }

    def finish(self, results: list[dict], artefacts: Callable[[int, Path], list[Path]] | None = None) -> None:
        """Final tags; at the last step logged, each counted seed's ``success`` metric (1 / 0) and the
        configuration's ``n`` and interval ends (``records.config_outcome``); the PNGs
        ``artefacts(i, folder)`` writes for seed index i (the model's, if it draws any) logged on that
        seed's run; and every run terminated."""
        results = [{**r, "status": "finished" if r["status"] == "running" else r["status"]} for r in results]
        self.set_seeds(results)
        self.log(self.step, config_outcome(results), [seed_outcome(r) for r in results])
        self.pending_tags[self.parent] = {"n_seeds": str(len(results)), "status": "finished"}
        self._wait(self._send)
        if artefacts is not None:
            for i, child in enumerate(self.children):
                with tempfile.TemporaryDirectory() as tmp:
                    for path in artefacts(i, Path(tmp)):
                        self._wait(self.client.log_artifact, child, str(path))
        for run_id in [*self.children, self.parent]:
            self._wait(self.client.set_terminated, run_id, "FINISHED")
