"""How far a sweep has come, by MLflow's account: whether a sweep or a round trained all it was to
(``complete``, from the runs ``analysis.runs.load_runs`` loaded once), whether a sweep has begun
(``begun``), and the status of a trial's seed runs when Tune ends the trial (``mark_trial``, for
``sweeps.tuner.Progress``). The layout these read is ``trainables.records``'s."""

from __future__ import annotations

from sweeps.spec import SweepSpec
from trainables.records import KIND, MLFLOW_END, open_client, quote, retry, search_all


def complete(runs, spec: SweepSpec, round_: int | None = None, plan: list[dict] | None = None) -> bool:
    """Whether a sweep (``round_`` None) or one round of an adaptive sweep trained all it was to, by
    MLflow's account (``runs``: ``analysis.runs.load_runs``): no seed run of it still ``running``, and
    with a ``plan`` (a later round) a run of that round for every (configuration, seed) of the plan;
    without one (a fixed sweep, or round 1, whose configurations the searcher makes) as many trials as
    the spec makes, each with a run for every seed (the spec's, or the round's block)."""
    if round_ is not None:
        runs = runs[runs["round"].eq(round_)] if "round" in runs else runs.iloc[:0]
    if runs["status"].eq("running").any():
        return False
    if plan is None:
        seeds = spec.seeds if round_ is None else len(spec.adaptive.round_seeds(round_))
        per_trial = runs.groupby("trial_id")["seed"].nunique()
        return len(per_trial) == spec.trials() and (per_trial >= seeds).all()
    have = set(zip(runs["config_id"], runs["seed"].astype(int)))
    return all((c["config_id"], int(s)) in have for c in plan for s in c["seeds"])


def begun(tracking_uri: str, experiment: str) -> int:
    """How many configurations of a sweep's MLflow experiment have begun (their parent runs)."""
    client = open_client(tracking_uri)
    found = retry(client.get_experiment_by_name, experiment)
    if found is None:
        return 0
    return len(search_all(client, [found.experiment_id], f"tags.`{KIND}` = 'config'"))


def mark_trial(tracking_uri: str, trial_id: str, status: str = "pruned", experiment: str | None = None) -> int:
    """Give the seed runs of ``trial_id`` (in that MLflow experiment, or in any) still ``running``
    the status ``status`` (``pruned`` when ASHA stopped the trial, ``failed`` when it errored) and
    terminate them (KILLED / FAILED), with their parent. Returns the number of seed runs changed."""
    client = open_client(tracking_uri)
    if experiment is not None:
        found = retry(client.get_experiment_by_name, experiment)
        experiments = [found.experiment_id] if found else []
    else:
        experiments = [e.experiment_id for e in retry(client.search_experiments)]
    if not experiments:
        return 0
    query = f"tags.trial_id = {quote(trial_id)}"
    runs = search_all(client, experiments, query)
    end = MLFLOW_END.get(status, "FINISHED")
    changed = 0
    for run in runs:
        if run.data.tags.get(KIND) == "seed" and run.data.tags.get("status") == "running":
            retry(client.set_tag, run.info.run_id, "status", status)
            retry(client.set_terminated, run.info.run_id, end)
            changed += 1
    for run in runs:
        if run.data.tags.get(KIND) == "config" and run.info.status == "RUNNING":
            retry(client.set_tag, run.info.run_id, "status", status)
            retry(client.set_terminated, run.info.run_id, end)
    return changed
