"""Adaptive seeds: a sweep in rounds (``seeds: {start, step, max, until}`` in the spec).

Round 1 is the sweep as the spec says it (searcher, ASHA) with seeds 0..start-1. After each
round the runner reads the seed runs from MLflow once, replays the rule (``analysis.adaptive.history``)
and writes the next round's plan: the configurations still open, each with its failed seeds again
and the next block of seed numbers. The plan alone drives that round: its Tune grid (no searcher,
no scheduler), the cleanup of a lost attempt and its completeness. Everything lives under the
sweep's results folder:

    ray_results/NAME/round_01/        round 1's Tune experiment, and seedsweep_done.json once complete
                                      (with the configurations round 1 made: swept values, config_id)
    ray_results/NAME/round_02/ ...     and plan.json, written before its Tuner starts: the configurations
                                      still open, each with its seeds (failed ones again, then the block)
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

import numpy as np
from ray import tune

from analysis.adaptive import history
from analysis.planning import RHO, power
from analysis.runs import load_runs
from analysis.sequential import Design
from sweeps.preflight import join, storage_fs
from sweeps.progress import complete
from sweeps.spec import SweepSpec
from sweeps.tuner import (
    Where,
    make_tuner,
    param_space,
    read_done,
    restorable,
    summary,
    write_done,
)
from trainables.options import RUN_KEY
from trainables.records import COUNTED, DESIGN_TAG, KIND, ROUND_TAG, open_client, retry, search_all

PLAN = "plan.json"  # a round's plan, beside its Tune experiment: [{config_id, params, seeds}]


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


def paired_reach(design: Design, k: int, base: tuple = (0.2, 0.5)) -> str:
    """What ``design.max`` seeds can tell apart: for each base rate, the nearest higher rate the exact
    paired McNemar test (``analysis.planning``, alpha / (K - 1)) tells from it with 80% power, at the
    assumed latent within-seed correlation ``planning.RHO``."""
    alpha, said = design.alpha / (k - 1), []
    for p in base:
        reach = next(
            (q for q in np.arange(p + 0.05, 1.0, 0.05) if power(p, q, design.max, alpha, "mcnemar", RHO) >= 0.8), None
        )
        if reach is not None:
            said.append(f"{p:g} from {reach:.2f}")
    return (
        f"max {design.max} seeds give 80% power (exact paired McNemar at alpha {alpha:.3g}, assuming a seed's "
        f"outcomes correlate across configurations with latent correlation {RHO:g}) to tell "
        + ("; ".join(said) or "no rate from 0.2 or 0.5 apart")
    )


def plan_lines(spec: SweepSpec) -> list[str]:
    """The dry-run plan's seed lines for a sweep in rounds (``runner.plan`` prints them)."""
    design, k = spec.adaptive, spec.trials()
    stops = {
        "decided": "a paired test shows it worse than another, it is the last one standing (best)"
        + (f", it is tied within +-{design.margin:g} with every other open one" if design.margin else "")
        + ", or no seeds up to max could decide it",
        "separated": "its interval lies below the best's, or (the best) overlaps no other's",
        "halfwidth": f"its interval's half-width is at most {design.halfwidth}",
    }[design.until]
    blocks = [f"{s[0]}..{s[-1]}" for s in (design.round_seeds(r) for r in range(1, design.rounds + 1))]
    reach = [f"  planning: {paired_reach(design, k)}"] if design.until == "decided" and k > 1 else []
    return [
        *reach,
        f"  seeds: {design.describe(k, seed_stop=bool(spec.seed_stop))}",
        f"  rounds: at most {design.rounds} (seed blocks {', '.join(blocks)}); seed runs: {k * design.start} to {k * design.max}",
        f"  a configuration stops getting seeds when {stops}, or at {design.max} seeds; failed seeds are retried"
        " in the next round",
    ]


def run_rounds(
    spec: SweepSpec, where: Where, sweep_dir: str, client, exp_id: str, began: bool, allow_mixed: bool = False
) -> dict[str, Any]:
    """The rounds of an adaptive sweep (begun before: ``began``), to its end or an interruption; the
    summary as ``runner.run`` returns it. Rounds trained on different devices, precisions or code are
    refused unless ``allow_mixed``. ``runner.run`` has made the preamble (Ray, the resume rules, the
    MLflow experiment ``exp_id`` on ``client``)."""
    design = spec.adaptive
    stored = retry(client.get_experiment, exp_id).tags.get(DESIGN_TAG)
    if began and stored and Design.from_dict(json.loads(stored)) != design:
        raise RuntimeError(
            f"{spec.path}: seeds: the sweep {spec.name!r} began with {json.loads(stored)}; "
            "resume it with that rule, or run the new one under another --name"
        )
    retry(client.set_experiment_tag, exp_id, DESIGN_TAG, json.dumps(design.to_dict()))

    start, trials, round_, rows, runs = time.time(), 0, 1, None, None
    while True:
        seeds = design.round_seeds(round_)
        folder = round_dir(sweep_dir, round_)
        if read_done(folder) is None:
            plan = (
                None if round_ == 1 else read_plan(folder) or write_plan(folder, next_plan(spec, runs, rows, sweep_dir))
            )
            results = fit_round(spec, where, sweep_dir, round_, seeds, plan)
            trials += len(results)
            runs = load_runs(where.tracking_uri, spec.name)  # once a round: completeness, the rule, the next plan
            if not complete(runs, spec, round_, plan):
                return summary(spec, where, trials, results, start, complete=False)
            marker = {"round": round_, "seeds": seeds, "trials": len(results)}
            if round_ == 1:
                marker["configurations"] = made_configurations(spec, results)
            write_done(folder, marker)
        else:
            runs = load_runs(where.tracking_uri, spec.name)
        rows = replay(runs, spec, design, round_, allow_mixed)
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
            return summary(spec, where, trials, [], start, complete=True, rounds=round_)
        round_ += 1


def replay(runs, spec: SweepSpec, design: Design, round_: int, allow_mixed: bool = False):
    """The rule's rows for ``round_`` (from the sweep's runs, as the analysis computes them)."""
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


def next_plan(spec: SweepSpec, runs, rows, sweep_dir: str) -> list[dict]:
    """The next round's plan: each configuration still open after the round ``rows`` replayed, with its
    config_id, swept values and seeds (its failed seeds again, then the next block)."""
    after = int(rows["round"].iloc[0])
    still = set(rows.loc[rows["open"], "config_id"])
    block = spec.adaptive.round_seeds(after + 1)
    return [
        {**c, "seeds": retried(runs, spec.adaptive, c["config_id"], after) + block}
        for c in read_done(round_dir(sweep_dir, 1))["configurations"]
        if c["config_id"] in still
    ]


def write_plan(folder: str, plan: list[dict]) -> list[dict]:
    """Keep a round's plan beside its Tune experiment before the Tuner starts: a resumed round runs
    the same plan (MLflow may by then hold runs of its lost attempt)."""
    fs, path = storage_fs(join(folder, PLAN))
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(json.dumps(plan).encode())
    return plan


def read_plan(folder: str) -> list[dict] | None:
    fs, path = storage_fs(join(folder, PLAN))
    if not fs.get_file_info(path).is_file:
        return None
    with fs.open_input_stream(path) as f:
        return json.loads(f.read())


def fit_round(spec: SweepSpec, where: Where, sweep_dir: str, round_: int, seeds: list[int], plan: list[dict] | None):
    """Run (or continue) one round's Tune experiment ``round_NN`` under the sweep's folder: round 1 as
    the spec says (searcher, ASHA), later rounds over exactly the plan's configurations and seeds."""
    inner = Where(storage=sweep_dir, tracking_uri=where.tracking_uri)
    name = f"round_{round_:02d}"
    if plan is not None:
        fixed = dataclasses.replace(spec, params=spec.fixed())  # the swept values come per configuration
        configurations = [{**c["params"], "seeds": c["seeds"]} for c in plan]
        space = {**param_space(fixed, where, seeds, round_), "configuration": tune.grid_search(configurations)}
    else:
        space = param_space(spec, where, seeds, round_)
    resume = restorable(round_dir(sweep_dir, round_))
    if not resume and plan is not None:
        forget_lost_attempt(spec, where, round_, plan)
    trainable = train_configuration if plan is not None else None
    tuner = make_tuner(spec, inner, resume=resume, name=name, space=space, trainable=trainable, search=plan is None)
    return tuner.fit()


def forget_lost_attempt(spec: SweepSpec, where: Where, round_: int, plan: list[dict]) -> None:
    """Runs of this round's plan (configuration, seed; retried seeds included) that MLflow holds although
    Tune kept no state of the round (the driver died as the round began) would double those seeds:
    delete them, and their trials' parent runs (MLflow's soft delete). Earlier rounds' runs of a
    retried seed stay: they are its failed attempts."""
    client = open_client(where.tracking_uri)
    found = retry(client.get_experiment_by_name, spec.name)
    if found is None:
        return
    pairs = {(c["config_id"], str(s)) for c in plan for s in c["seeds"]}
    lost = [
        r
        for r in search_all(
            client, [found.experiment_id], f"tags.`{KIND}` = 'seed' AND tags.`{ROUND_TAG}` = '{round_}'"
        )
        if (r.data.tags.get("config_id"), r.data.tags.get("seed")) in pairs
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
            f"[{spec.name}] deleted {len(lost)} seed runs of round {round_} that Tune did not record; "
            "the round starts again",
            flush=True,
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
