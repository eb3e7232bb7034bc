"""The Ray Tune pieces every sweep uses, fixed or in rounds (``sweeps.rounds``): the param space,
the Tuner (searcher, ASHA, failure and checkpoint settings), Ray's start and the resource check,
the begin-once / resume rules, the done marker a finished sweep leaves, and the progress lines.
``sweeps.runner`` puts them together for a sweep; nothing here imports the runner or rounds.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ray import tune

from sweeps import progress
from sweeps.preflight import Unusable, Where, join, storage_fs
from sweeps.spec import SweepSpec
from trainables.code import code_hash
from trainables.options import RUN_KEY
from trainables.records import sweep_codes, unreachable

DONE = "seedsweep_done.json"  # written beside the Tune results when a sweep has finished

__all__ = ["Where"]  # re-exported: where a sweep's results go (defined with the checks of it)


def search_space(spec: SweepSpec) -> dict[str, Any]:
    """Tune's param space for the swept params."""
    makers = {
        "grid": tune.grid_search,
        "choice": tune.choice,
        "uniform": lambda a: tune.uniform(*a),
        "loguniform": lambda a: tune.loguniform(*a),
        "randint": lambda a: tune.randint(a[0], a[1] + 1),  # inclusive bounds in the spec
    }
    return {key: makers[kind](args) for key, space in spec.swept().items() for kind, args in space.items()}


def param_space(
    spec: SweepSpec, where: Where, seeds: list[int] | None = None, round_: int | None = None
) -> dict[str, Any]:
    """Everything a trial's config holds: the base config, the search space and, under ``"run"``, the
    run options (``seeds``: a round's seed numbers, else 0..spec.seeds-1; ``round_``: its round)."""
    options = spec.run_options(where.tracking_uri, seeds, round_).as_dict()
    return {**spec.base_config(), **search_space(spec), RUN_KEY: options}


def grid_size(space: dict | None) -> int:
    """How many trials a param space of grid searches makes (1 without any)."""
    size = 1
    for value in (space or {}).values():
        if isinstance(value, dict) and "grid_search" in value:
            size *= len(value["grid_search"])
    return size


def make_searcher(spec: SweepSpec, run_dir: Path):
    """Optuna's TPE, its study kept in SQLite beside the results; ``None`` for grid / random (Tune's own)."""
    if spec.searcher != "optuna":
        return None
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    run_dir.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(f"sqlite:///{run_dir / 'optuna.db'}")
    metric, mode = objective(spec)
    return OptunaSearch(metric=metric, mode=mode, storage=storage, study_name=spec.name, seed=0)


def objective(spec: SweepSpec) -> tuple[str, str]:
    """The reported aggregate that the scheduler and searcher optimise."""
    if spec.scheduler:
        return spec.scheduler.metric, spec.scheduler.mode
    return "success_rate", "max"


def make_tuner(
    spec: SweepSpec,
    where: Where,
    resume: bool = False,
    name: str | None = None,
    space: dict | None = None,
    trainable=None,
    search: bool = True,
) -> tune.Tuner:
    """The sweep's Tuner (or its restore). For a round of adaptive seeds (``sweeps.rounds``): the Tune
    experiment ``name`` (default: the sweep's), its own ``space`` and ``trainable``, and without
    ``search`` no searcher or scheduler (the configurations are given)."""
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.schedulers import ASHAScheduler

    from trainables.train import train

    name = name or spec.name
    total = spec.trials() if search else grid_size(space)
    trainable = tune.with_resources(trainable or train, spec.trial_resources())
    # Optuna's study beside the results; with a URI storage, in ./optuna.db here (one study per sweep name)
    run_dir = Path(where.storage) / name if "://" not in where.storage else Path(".")
    if resume:
        return tune.Tuner.restore(
            join(where.storage, name), trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    metric, mode = objective(spec) if search else ("success_rate", "max")
    scheduler = None
    if spec.scheduler and search:
        scheduler = ASHAScheduler(
            time_attr="epoch",
            max_t=spec.epochs,
            grace_period=spec.scheduler.grace_period,
            reduction_factor=spec.scheduler.reduction_factor,
        )
    return tune.Tuner(
        trainable,
        param_space=space or param_space(spec, where),
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            scheduler=scheduler,
            search_alg=make_searcher(spec, run_dir) if search else None,
            num_samples=spec.num_samples if search else 1,
            max_concurrent_trials=spec.max_concurrent or None,
            reuse_actors=True,  # a trial after another starts in its warm process: no second start-up and imports
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=where.storage,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            # restored with the experiment on resume; Tune's own loggers but result.json are off (os.environ below):
            # the seeds' records are in MLflow, and a CSV and a TensorBoard file per result cost the driver CPU
            callbacks=[Progress(spec, where.tracking_uri, total), JsonLoggerCallback()],
            verbose=0,
        ),
    )


def summary(
    spec: SweepSpec,
    where: Where,
    trials: int,
    results,
    start: float,
    complete: bool,
    reachable: bool = True,
    rounds: int | None = None,
) -> dict[str, Any]:
    """What ``run`` returns (and a finished sweep keeps in its DONE file): complete means every
    trial ran to its end without an error and MLflow answered."""
    errors = [str(r.error) for r in results if r.error]
    out = {
        "name": spec.name,
        "trials": trials,
        "errors": len(errors),
        "complete": complete and reachable and not errors,
        "seconds": round(time.time() - start, 1),
        "tracking_uri": where.tracking_uri,
        "tracking_reachable": reachable,
    }
    if rounds:
        out["rounds"] = rounds
    return out


def check_resume(
    spec: SweepSpec, where: Where, run_dir: str, started: bool, resume: bool, allow_mixed: bool = False
) -> None:
    """A sweep begins once and is continued only with ``resume``, by the code that began it (unless
    ``allow_mixed``); MLflow runs of the sweep without Tune results to continue would double its
    seeds. Each case is an error saying what to do."""
    if started and not resume:
        raise RuntimeError(
            f"sweep {spec.name!r} was started before and did not finish ({run_dir}); "
            "continue it with --resume, or pick another --name"
        )
    if resume and not started:
        raise RuntimeError(f"nothing to resume: no sweep {spec.name!r} under {where.storage}")
    if resume and not allow_mixed:
        other = sweep_codes(where.tracking_uri, spec.name) - {code_hash()}
        if other:
            raise RuntimeError(
                f"sweep {spec.name!r} was trained by seedsweep code {', '.join(sorted(other))}, this is "
                f"{code_hash()}: its seeds would pool into one rate. Resume with the code that began it, "
                "or pass --allow-mixed to pool them anyway"
            )
    if not started and progress.begun(where.tracking_uri, spec.name):
        raise RuntimeError(
            f"MLflow ({where.tracking_uri}) already holds runs of sweep {spec.name!r}, but "
            f"{run_dir} has no Tune results to continue; pick another --name (or --storage)"
        )


def start_ray(spec: SweepSpec, where: Where, address: str | None = None, dashboard: bool = False) -> None:
    """Join ``address`` (or ``RAY_ADDRESS``) or start a local Ray (unless one is up), and check that
    a trial fits. Joining a cluster, the driver's settings and code go with the job and every node is
    checked first (``sweeps.cluster``): a refusal raises ``preflight.Unusable``."""
    import ray

    from sweeps import cluster

    address = address or os.environ.get("RAY_ADDRESS") or None
    if not ray.is_initialized():
        if address and address != "local":
            try:
                ray.init(address=address, log_to_driver=False, runtime_env=cluster.runtime_env(cluster.scratch()))
            except ConnectionError as err:
                raise Unusable(
                    f"Ray at {address} cannot be joined ({str(err).splitlines()[0]}): start the head "
                    "(ray start --head), fix --address, or leave it out to run here"
                ) from None
        else:
            # Ray starts its workers at nice 15 (worker_niceness) so that its own processes stay responsive; on a
            # shared machine that starves the trials behind any busy process of the user's: a tiny sweep beside two
            # busy loops took 15x its time alone, at nice 0 1.6x (benchmarks/sweep_under_load.py)
            os.environ.setdefault("RAY_worker_niceness", "0")
            try:  # the dashboard, if asked for, on loopback only (README: reaching it from elsewhere)
                ray.init(include_dashboard=dashboard, dashboard_host="127.0.0.1", log_to_driver=False)
            except Exception as err:
                if "missing packages" not in str(err):
                    raise
                raise RuntimeError(
                    "Ray's dashboard needs ray[default]: .venv/bin/pip install -e '.[dashboard]'"
                ) from None
    if address and address != "local":
        cluster.check_nodes(spec, where)
    else:
        cluster.check_fit(
            spec, [{"NodeID": "local", "NodeManagerAddress": "this machine", "Resources": ray.cluster_resources()}]
        )
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no Tune tables; Progress prints instead
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # make_tuner adds the JSON logger alone


def restorable(run_dir: str) -> bool:
    """Whether Tune left state to continue in ``run_dir``: ``Tuner.can_restore`` (its tuner.pkl) and an
    experiment state file. A driver killed between the two (as a round's Tuner starts) left only the
    first, and ``Tuner.restore`` then fails: such a folder starts again."""
    import pyarrow.fs

    if not tune.Tuner.can_restore(run_dir):
        return False
    fs, path = storage_fs(run_dir)
    found = fs.get_file_info(pyarrow.fs.FileSelector(path.split("?")[0]))
    return any(f.base_name.startswith("experiment_state-") for f in found)


def read_done(run_dir: str) -> dict | None:
    """The summary a finished sweep left in its results folder (local or a URI), or ``None``."""
    fs, path = storage_fs(join(run_dir, DONE))
    if not fs.get_file_info(path).is_file:
        return None
    with fs.open_input_stream(path) as f:
        return json.loads(f.read())


def write_done(run_dir: str, summary: dict) -> None:
    fs, path = storage_fs(join(run_dir, DONE))
    with fs.open_output_stream(path) as f:
        f.write(json.dumps(summary).encode())


class AlreadyDone(RuntimeError):
    def __init__(self, name: str, summary: dict):
        super().__init__(
            f"sweep {name!r} already finished ({summary.get('trials')} trials); "
            "its table follows. Run it again under another --name to redo it."
        )
        self.summary = summary


class Progress(tune.Callback):
    """Progress lines: every ``EVERY`` seconds (epochs of the running trials, seeds meeting the rule
    now) and per finished trial (trials done, seeds succeeded so far). Marks the seed runs of a
    trial stopped early by ASHA as ``pruned`` in MLflow (``failed`` if it errored)."""

    EVERY = 30.0  # seconds between progress lines while trials run

    def __init__(self, spec: SweepSpec, tracking_uri: str, total: int | None = None):
        self.spec, self.tracking_uri, self.total = spec, tracking_uri, total  # total: trials the sweep will run
        self.done: dict[str, int] = {}
        self.latest: dict[str, dict] = {}  # trial id -> its last result
        self.seeds: dict[str, int] = {}  # trial id -> how many seeds it trains
        self.shown = time.time()

    def count(self, trial) -> int:
        """How many seeds ``trial`` trains: its own list (a round's plan gives a configuration its retried
        seeds beside the block), else the spec's number."""
        config = trial.config
        listed = (config.get("configuration") or {}).get("seeds") or (config.get(RUN_KEY) or {}).get("seeds")
        self.seeds[trial.trial_id] = len(listed) if listed else self.spec.seeds
        return self.seeds[trial.trial_id]

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.latest[trial.trial_id] = result
        self.count(trial)
        if time.time() - self.shown < self.EVERY:
            return
        self.shown = time.time()
        running = [r for t, r in self.latest.items() if t not in self.done]
        epochs = ", ".join(f"{r.get('epoch', 0)}/{self.spec.epochs}" for r in running)
        now = sum(int(r.get("n_success", 0)) for r in self.latest.values())
        print(
            f"[{self.spec.name}] trials done {len(self.done)}/{self.of(trials)}; running at epoch {epochs or '-'}; "
            f"seeds meeting the success rule now {now}/{sum(self.seeds[t] for t in self.latest)}",
            flush=True,
        )

    def of(self, trials) -> int:
        """The trials the sweep will run (a searcher makes them one by one: Tune knows only those made)."""
        return max(getattr(self, "total", None) or 0, len(trials))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trials, trial, "pruned")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trials, trial, "failed")

    def _finish(self, trials, trial, status):
        last = trial.last_result or {}
        if status == "failed" or last.get("epoch", 0) < self.spec.epochs:
            try:
                progress.mark_trial(
                    self.tracking_uri, trial.trial_id, status, experiment=self.spec.name
                )  # touches only seed runs still running
            except Exception as err:
                if not unreachable(err):
                    raise
                print(
                    f"[{self.spec.name}] MLflow unreachable: trial {trial.trial_id}'s seed runs stay 'running' "
                    "until --resume continues them",
                    flush=True,
                )
        self.done[trial.trial_id] = int(last.get("n_success", 0))
        self.count(trial)
        print(
            f"[{self.spec.name}] trials done {len(self.done)}/{self.of(trials)}; seeds succeeded so far "
            f"{sum(self.done.values())}/{sum(self.seeds[t] for t in self.done)}",
            flush=True,
        )
