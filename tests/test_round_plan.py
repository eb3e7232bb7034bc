"""A round's plan drives its cleanup and its completeness, retried seeds included: the runs of a lost
attempt at round 2 (the driver killed as it began, a retried seed's run already created) are deleted
and the seed's failed round-1 run is kept; a retried seed left ``running`` keeps the round open."""

from types import SimpleNamespace

import pytest
from mlflow import MlflowClient

from analysis.runs import load_runs
from sweeps.preflight import Where
from sweeps.progress import complete
from sweeps.rounds import forget_lost_attempt, read_plan, retried, write_plan
from trainables.records import KIND, ROUND_TAG

PLAN = [  # round 2: c1 retries its failed seed 1; both get the block 2, 3
    {"config_id": "c1", "params": {"lr": 0.01}, "seeds": [1, 2, 3]},
    {"config_id": "c2", "params": {"lr": 0.001}, "seeds": [2, 3]},
]


def seed_run(client, exp, config_id, seed, round_, status, trial):
    tags = {KIND: "seed", "sweep": "adapt", "config_id": config_id, "seed": str(seed), ROUND_TAG: str(round_)}
    run = client.create_run(exp, tags={**tags, "status": status, "trial_id": trial})
    return run.info.run_id


def test_the_plan_cleans_a_lost_attempt_and_decides_completeness(tmp_path):
    where = Where(storage=str(tmp_path / "results"), tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}")
    client, sweep = MlflowClient(where.tracking_uri), SimpleNamespace(name="adapt")
    exp = client.create_experiment("adapt")
    for config_id, trial in (("c1", "t1"), ("c2", "t2")):
        seed_run(client, exp, config_id, 0, 1, "finished", trial)
        seed_run(client, exp, config_id, 1, 1, "failed" if config_id == "c1" else "finished", trial)
    design = SimpleNamespace(round_of=lambda s: 1 if s < 2 else 2)
    assert retried(load_runs(where.tracking_uri, "adapt"), design, "c1", 1) == [1]

    assert write_plan(str(tmp_path / "round_02"), PLAN) == read_plan(str(tmp_path / "round_02")) == PLAN
    lost = [seed_run(client, exp, "c1", s, 2, "running", "t3") for s in (1, 2)]  # the retried seed's run too
    parent = client.create_run(exp, tags={KIND: "config", "sweep": "adapt", "trial_id": "t3"}).info.run_id
    assert not complete(load_runs(where.tracking_uri, "adapt"), sweep, 2, PLAN)

    forget_lost_attempt(sweep, where, 2, PLAN)
    assert all(client.get_run(r).info.lifecycle_stage == "deleted" for r in [*lost, parent])
    runs = load_runs(where.tracking_uri, "adapt")
    assert len(runs) == 4 and set(runs["round"]) == {1}  # round 1 whole, c1's failed seed 1 kept
    assert not complete(runs, sweep, 2, PLAN)

    again = {
        (c["config_id"], s): seed_run(client, exp, c["config_id"], s, 2, "finished", f"t{4 + i}")
        for i, c in enumerate(PLAN)
        for s in c["seeds"]
    }
    client.set_tag(again["c1", 1], "status", "running")  # the retried seed still in flight
    assert not complete(load_runs(where.tracking_uri, "adapt"), sweep, 2, PLAN)
    client.set_tag(again["c1", 1], "status", "finished")
    assert complete(load_runs(where.tracking_uri, "adapt"), sweep, 2, PLAN)
    client.delete_run(again["c2", 3])  # a seed of the plan without a run
    assert not complete(load_runs(where.tracking_uri, "adapt"), sweep, 2, PLAN)


@pytest.mark.slow  # an adaptive sweep of two rounds in this process (~1-2 min on 2 cores)
def test_a_round_loads_the_runs_once_and_the_first_round_settles(tmp_path, monkeypatch):
    import ray
    from support import ADAPTIVE, SPEC_TINY

    from sweeps import rounds, runner
    from sweeps import spec as specs

    loads = []
    monkeypatch.setattr(rounds, "load_runs", lambda *a, **k: loads.append(a) or load_runs(*a, **k))
    monkeypatch.setenv("SEEDSWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    seeds, settle = {"start": 4, "step": 4, "max": 8, "until": "decided"}, {"seeds": 2, "factor": 2}
    spec = specs.from_dict({**SPEC_TINY, **ADAPTIVE, "seeds": seeds, "settle": settle})
    where = Where(storage=str(tmp_path / "ray_results"), tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}")
    try:
        out = runner.run(spec, where)
    finally:
        ray.shutdown()
    assert out["complete"] and out["rounds"] == len(loads)  # one load a round
    plan = read_plan(str(tmp_path / "ray_results" / "rounds" / "round_02"))
    assert out["rounds"] == 1 or plan and all(c["seeds"][-4:] == [4, 5, 6, 7] for c in plan)
    runs = load_runs(where.tracking_uri, "rounds")
    settled = runs[runs["settle.success"].notna()]
    assert out["settled_seeds"] == len(settled) == 4 and set(settled["round"]) == {1}  # 2 of each configuration's
    assert settled.groupby("config_id")["seed"].nunique().tolist() == [2, 2]
