"""Adaptive seeds: a sweep in rounds (``seeds: {start, step, max, until}`` in the spec).

Round 1 is the sweep as the spec says it (searcher, ASHA) with seeds 0..start-1. After each
round the runner reads the seed runs from MLflow, replays the rule (``analysis.adaptive.history``)
and gives the configurations still open the next block of seed numbers, as one Tune experiment per
round over exactly those configurations (no searcher, no scheduler). Everything lives under the
sweep's results folder:

    ray_results/NAME/round_01/        round 1's Tune experiment, and seedsweep_done.json once complete
                                      (with the configurations round 1 made: swept values, config_id)
    ray_results/NAME/round_02/ ...
    ray_results/NAME/seedsweep_done.json   the whole sweep is done

``--resume`` continues the first round without its done marker (``Tuner.restore``), so a kill
in any round or between rounds neither repeats nor skips a seed; a finished sweep is not redone.
The design is tagged on the MLflow experiment (``seedsweep.design``) for the analysis.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from ray import tune

from analysis.adaptive import history
from analysis.sequential import Design
from sweeps.preflight import join
from sweeps.spec import SweepSpec
from sweeps.tuner import (
    AlreadyDone,
    Where,
    check_resume,
    grid_points,
    make_tuner,
    param_space,
    read_done,
    start_ray,
    summary,
    write_done,
)
from trainables.options import RUN_KEY
from trainables.records import COUNTED, DESIGN_TAG, KIND, ensure_experiment, open_client, retry, search_all


def round_dir(sweep_dir: str, round_: int) -> str:
    return join(sweep_dir, f"round_{round_:02d}")


def train_configuration(config: dict) -> None:
    """The trainable of rounds 2+: ``config["configuration"]`` (the swept values, and the
    configuration's own ``seeds`` when it retries failed ones) merged into the config."""
    from trainables.train import train

    swept = dict(config["configuration"])
    rest = {k: v for k, v in config.items() if k != "configuration"}
    if "seeds" in swept:  # a run option: it goes with the others under config["run"]
        rest[RUN_KEY] = {**rest[RUN_KEY], "seeds": swept.pop("seeds")}
    train({**rest, **swept})


def plan_lines(spec: SweepSpec) -> list[str]:
    """The dry-run plan's seed lines for a sweep in rounds (``runner.plan`` prints them)."""
    design, k = spec.adaptive, grid_points(spec) * spec.num_samples
    stops = {
        "decided": "a paired test shows it worse than another, it is the last one standing (best)"
        + (f", it is tied within +-{design.margin:g} with every other open one" if design.margin else "")
        + ", or no seeds up to max could decide it",
        "separated": "its interval lies below the best's, or (the best) overlaps no other's",
        "halfwidth": f"its interval's half-width is at most {design.halfwidth}",
    }[design.until]
    blocks = [f"{s[0]}..{s[-1]}" for s in (design.round_seeds(r) for r in range(1, design.rounds + 1))]
    return [
        f"  seeds: {design.describe(k)}",
        f"  rounds: at most {design.rounds} (seed blocks {', '.join(blocks)}); seed runs: {k * design.start} to {k * design.max}",
        f"  a configuration stops getting seeds when {stops}, or at {design.max} seeds; failed seeds are retried"
        " in the next round",
    ]


def run_rounds(
    spec: SweepSpec, where: Where, resume: bool, address: str | None, dashboard: bool, allow_mixed: bool = False
) -> dict[str, Any]:
    """Run (or resume) an adaptive sweep to its end; the summary as ``runner.run`` returns it.
    Rounds trained on different devices or precisions are refused unless ``allow_mixed``."""
    design = spec.adaptive
    sweep_dir = join(where.storage, spec.name)
    done = read_done(sweep_dir)
    if done is not None:
        raise AlreadyDone(spec.name, done)
    start_ray(spec, where, address, dashboard)  # on a cluster: every node checked before any run exists
    first = round_dir(sweep_dir, 1)
    started = read_done(first) is not None or tune.Tuner.can_restore(first)
    check_resume(spec, where, sweep_dir, started, resume, allow_mixed)
    client = open_client(where.tracking_uri)
    exp_id = ensure_experiment(client, spec.name)
    stored = retry(client.get_experiment, exp_id).tags.get(DESIGN_TAG)
    if started and stored and Design.from_dict(json.loads(stored)) != design:
        raise RuntimeError(
            f"{spec.path}: seeds: the sweep {spec.name!r} began with {json.loads(stored)}; "
            "resume it with that rule, or run the new one under another --name"
        )
    retry(client.set_experiment_tag, exp_id, DESIGN_TAG, json.dumps(design.to_dict()))

    start, trials, round_ = time.time(), 0, 1
    while True:
        seeds = design.round_seeds(round_)
        folder = round_dir(sweep_dir, round_)
        if read_done(folder) is None:
            configurations = None if round_ == 1 else open_configurations(spec, where, sweep_dir, round_ - 1)
            results = fit_round(spec, where, sweep_dir, round_, seeds, configurations)
            trials += len(results)
            if not round_complete(where, spec, design, round_, configurations):
                return summary(spec, where, trials, results, start, complete=False)
            marker = {"round": round_, "seeds": seeds, "trials": len(results)}
            if round_ == 1:
                marker["configurations"] = made_configurations(spec, results)
            write_done(folder, marker)
        rows = replay(spec, where, design, round_, allow_mixed)
        still = rows[rows["open"]]
        print(
            f"[{spec.name}] round {round_} done (seeds {seeds[0]}..{seeds[-1]}); "
            + (
                f"{len(still)} open: " + "; ".join(f"{r.config_id} {r.why}" for r in still.itertuples())
                if len(still)
                else "none open"
            ),
            flush=True,
        )
        for r in rows.itertuples():
            failed = f" ({r.failed} failed, retried next round)" if r.failed and r.open else ""
            failed = failed or (f" ({r.failed} failed)" if r.failed else "")
            print(
                f"  {r.config_id}: {r.successes}/{r.n}{failed}, anytime interval [{r.low:.2f}, {r.high:.2f}]: "
                f"{r.verdict}, {r.why}",
                flush=True,
            )
        if still.empty:
            out = summary(spec, where, trials, [], start, complete=True, rounds=round_)
            write_done(sweep_dir, out)
            return out
        round_ += 1


def replay(spec: SweepSpec, where: Where, design: Design, round_: int, allow_mixed: bool = False):
    """The rule's rows for ``round_`` (from MLflow, as the analysis computes them)."""
    from analysis.runs import load_runs

    runs = load_runs(where.tracking_uri, spec.name)
    if not allow_mixed:
        check_settings(runs, spec)
    table = history(runs, design, round_)
    return table[table["round"] == round_]


def check_settings(runs, spec: SweepSpec) -> None:
    """Refuse to pool seeds trained on different devices, precisions or code (bf16 on a GPU, fp32 on a
    CPU after a resume elsewhere, a changed model): one binomial per configuration needs one rate."""
    from analysis.runs import mixed_settings

    found = mixed_settings(runs)
    if found:
        raise RuntimeError(
            f"{spec.name}: the rounds trained with different settings ({found}): their seeds would pool into one rate. "
            "Resume where the sweep began, with its code, or pass --allow-mixed to pool them anyway"
        )


def retried(runs, design: Design, config_id: str, round_: int) -> list[int]:
    """Seeds of ``config_id`` up to round ``round_`` whose runs failed and that have no counted run."""
    mine = runs[runs["config_id"].eq(config_id) & runs["seed"].map(lambda s: design.round_of(int(s)) <= round_)]
    counted = set(mine.loc[mine["status"].isin(COUNTED), "seed"].astype(int))
    return sorted({int(s) for s in mine.loc[mine["status"].eq("failed"), "seed"]} - counted)


def open_configurations(spec: SweepSpec, where: Where, sweep_dir: str, after: int) -> list[dict]:
    """The swept values of the configurations still open after round ``after``, each with the
    seeds it gets next (the next block, and its failed seeds again)."""
    from analysis.runs import load_runs

    rows = replay(spec, where, spec.adaptive, after, allow_mixed=True)
    still = set(rows.loc[rows["open"], "config_id"])
    runs = load_runs(where.tracking_uri, spec.name)
    block = spec.adaptive.round_seeds(after + 1)
    return [
        {**c["params"], "seeds": retried(runs, spec.adaptive, c["config_id"], after) + block}
        for c in read_done(round_dir(sweep_dir, 1))["configurations"]
        if c["config_id"] in still
    ]


def fit_round(
    spec: SweepSpec, where: Where, sweep_dir: str, round_: int, seeds: list[int], configurations: list[dict] | None
):
    """Run (or continue) one round's Tune experiment ``round_NN`` under the sweep's folder."""
    inner = Where(storage=sweep_dir, tracking_uri=where.tracking_uri)
    name = f"round_{round_:02d}"
    this = dataclasses.replace(spec, seeds=len(seeds))  # the progress lines count this round's seeds
    if configurations is not None:
        fixed = dataclasses.replace(spec, params=spec.fixed())  # the swept values come per configuration
        space = {**param_space(fixed, where, seeds), "configuration": tune.grid_search(configurations)}
    else:
        space = param_space(spec, where, seeds)
    resume = tune.Tuner.can_restore(round_dir(sweep_dir, round_))
    if not resume and round_ > 1:
        forget_lost_attempt(spec, where, seeds)
    trainable = train_configuration if configurations is not None else None
    tuner = make_tuner(
        this, inner, resume=resume, name=name, space=space, trainable=trainable, search=configurations is None
    )
    return tuner.fit()


def forget_lost_attempt(spec: SweepSpec, where: Where, seeds: list[int]) -> None:
    """Runs of this round's seeds that MLflow holds although Tune kept no state of the round (the
    driver died as the round began) would double those seeds: delete them (MLflow's soft delete)."""
    client = open_client(where.tracking_uri)
    found = retry(client.get_experiment_by_name, spec.name)
    if found is None:
        return
    names = {str(s) for s in seeds}
    lost = [
        r
        for r in search_all(client, [found.experiment_id], f"tags.`{KIND}` = 'seed'")
        if r.data.tags.get("seed") in names
    ]
    trials = {r.data.tags.get("trial_id") for r in lost}
    parents = [
        r
        for r in search_all(client, [found.experiment_id], f"tags.`{KIND}` = 'config'")
        if r.data.tags.get("trial_id") in trials
    ]
    for run in lost + parents:
        retry(client.delete_run, run.info.run_id)
    if lost:
        print(
            f"[{spec.name}] deleted {len(lost)} seed runs of round seeds {seeds[0]}..{seeds[-1]} that Tune did not record; "
            "the round starts again",
            flush=True,
        )


def round_complete(
    where: Where, spec: SweepSpec, design: Design, round_: int, configurations: list[dict] | None
) -> bool:
    """Every configuration of the round has a run for each of the round's seeds and none is still running."""
    from analysis.runs import load_runs

    runs = load_runs(where.tracking_uri, spec.name)
    mine = runs[runs["seed"].map(lambda s: design.round_of(int(s)) == round_)]
    expected = grid_points(spec) * spec.num_samples if configurations is None else len(configurations)
    per_trial = mine.groupby("trial_id")["seed"].nunique()
    return (
        len(per_trial) == expected
        and (per_trial >= len(design.round_seeds(round_))).all()
        and not mine["status"].eq("running").any()
    )


def made_configurations(spec: SweepSpec, results) -> list[dict]:
    """Round 1's configurations (swept values and config_id), once each, for the later rounds."""
    from trainables.config import config_id
    from trainables.train import split_config

    seen, out = set(), []
    for result in results:
        cid = config_id(split_config(result.config)[1])
        if cid not in seen:
            seen.add(cid)
            out.append({"config_id": cid, "params": {k: result.config[k] for k in spec.swept()}})
    return out
