"""The settledness check (spec key ``settle: {seeds: 4, factor: 2}``): are a sweep's outcomes those
of a longer run? After a fixed sweep has finished (an adaptive one: on its first round, whose seeds
every configuration has), ``seeds`` of each configuration's finished seeds, a seeded random subset
(the same seed numbers in every configuration where they finished), go on from their final
checkpoint to ``factor`` x the spec's epochs; each one's outcome under the sweep's rule is compared
with the one it ended the sweep with. ``analysis.settle`` counts the flips (success <-> failure) per
configuration with an exact interval, in the table and the report.

How it runs (``sweeps.runner.settle_seeds``): as a Tune experiment of its own (``settle`` in the
sweep's results folder), one trial per sweep trial, each with the trial's resources, so the
continued seeds spread over the cluster's nodes like the sweep's and a killed driver's ``--resume``
finishes them. Each trial (``settle_trial``) restores the trainable's own ``Pack`` from the sweep
trial's final checkpoint (read back with ``tune.ExperimentAnalysis``, fetched from the storage with
``tune.Checkpoint``) and cuts it to the chosen seeds (``Pack.continue_only``): they train on exactly
as they would have in the trial (same generators, optimiser moments and LR schedule), and the seeds
left out cost nothing.

Each continued seed's MLflow run gets the tags ``settle.success`` and ``settle.status`` and the
metrics ``settle/<m>`` of every declared metric m at step ``factor x epochs`` (``records.SETTLE_TAGS``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainables.options import number
from trainables.records import SETTLE_TAGS


@dataclass(frozen=True)
class Settle:
    seeds: int  # seeds per configuration that go on (fewer where fewer finished)
    factor: float  # they train to factor x the spec's epochs (> 1)
    seed: int = 0  # the random subset's seed (the same subset on every rerun)

    @classmethod
    def parse(cls, raw) -> Settle:
        """``{seeds: N, factor: F[, seed: S]}`` -> a Settle; a ValueError says what is wrong."""
        if not isinstance(raw, dict) or set(raw) - {"seeds", "factor", "seed"} or not {"seeds", "factor"} <= set(raw):
            raise ValueError(f"settle must be {{seeds: N, factor: F}} (optionally seed: S), got {raw!r}")
        seeds = number(raw["seeds"], "settle.seeds", integer=True, low=1)
        factor = number(
            raw["factor"], "settle.factor", low=1, open_low=True, noun="a number (how many times the epochs)"
        )
        seed = number(raw.get("seed", 0), "settle.seed", integer=True)
        return cls(seeds, float(factor), seed)

    def __str__(self) -> str:
        return f"after the sweep, {self.seeds} finished seeds per configuration (subset seed {self.seed}) train on to {self.factor:g} x the epochs; outcome flips reported"

    def as_dict(self) -> dict:
        return {"seeds": self.seeds, "factor": self.factor, "seed": self.seed}

    def epochs(self, epochs: int) -> int:
        """The epochs the chosen seeds end at."""
        return max(epochs + 1, round(self.factor * epochs))

    def chosen(self, seeds: list[int], finished: list[int]) -> list[int]:
        """Up to ``self.seeds`` of ``finished`` (seed numbers), in the order of one seeded permutation
        of all ``seeds``: the same numbers in every configuration where they finished."""
        order = np.random.default_rng(self.seed).permutation(sorted(seeds))
        return [int(s) for s in order if s in set(finished)][: self.seeds]


def continue_trial(config: dict, checkpoint_dir: Path, settle: Settle, epochs: int) -> tuple[dict, list[dict]]:
    """One trial's chosen seeds, restored from its checkpoint folder and trained on to
    ``settle.epochs(epochs)``: (the checkpoint's MLflow run ids, the chosen seeds' final results)."""
    import torch

    from trainables.pack import Pack
    from trainables.train import split_config

    options, model_config = split_config(config)
    pack = Pack(model_config, list(options.seeds))
    pack.load_state_dict(torch.load(checkpoint_dir / "pack.pt", weights_only=False))
    meta = json.loads((checkpoint_dir / "meta.json").read_text())
    finished = [r["seed"] for r in meta["results"] if r["status"] == "finished"]
    keep = [pack.seeds.index(s) for s in settle.chosen(pack.seeds, finished)]
    if not keep:
        return meta["run_ids"], []
    pack.continue_only(keep)
    for _ in range(pack.epoch, settle.epochs(epochs)):
        pack.train_epoch()
    results = pack.evaluate()
    return meta["run_ids"], [results[i] for i in keep]


def settle_trial(config: dict) -> None:
    """Tune function trainable: one sweep trial's chosen seeds (``config["task"]``: its config and the
    URI of its final checkpoint) trained on and recorded on their MLflow runs."""
    from mlflow.entities import Metric, RunTag
    from ray import tune

    from sweeps.preflight import storage_fs
    from trainables.models import MODELS
    from trainables.records import open_client, retry
    from trainables.train import absolute_uri, split_config

    settle, task, epochs = Settle(**config["settle"]), config["task"], config["epochs"]
    fs, path = storage_fs(task["checkpoint"])
    with tune.Checkpoint(path, filesystem=fs).as_directory() as folder:
        run_ids, chosen = continue_trial(task["config"], Path(folder), settle, epochs)
    options, model_config = split_config(task["config"])
    client = open_client(absolute_uri(options.tracking_uri))
    step = settle.epochs(epochs)
    now = int(time.time() * 1000)
    for r in chosen:
        status = "finished" if r["status"] in ("running", "finished") else r["status"]
        tags = [RunTag(k, v) for k, v in zip(SETTLE_TAGS, (str(bool(r["success"])).lower(), status, str(step)))]
        metrics = [
            Metric(f"settle/{m.name}", float(r.get(m.name, math.nan)), now, step)
            for m in MODELS[model_config["model"]][1].metrics
        ]
        retry(client.log_batch, run_ids["seeds"][str(r["seed"])], metrics=metrics, tags=tags)
    flipped = sum(bool(r["success"]) != before for r, before in zip(chosen, started(run_ids, chosen, client)))
    print(f"[{config['sweep']}] settle: {len(chosen)} seeds of a configuration to epoch {step}, {flipped} flipped")
    n_success = sum(bool(r["success"]) for r in chosen)
    rate = n_success / len(chosen) if chosen else 0.0  # the metric the Tuner's config names
    tune.report(
        {"epoch": epochs, "continued": len(chosen), "flipped": flipped, "n_success": n_success, "success_rate": rate}
    )


def started(run_ids: dict, chosen: list[dict], client) -> list[bool]:
    """The chosen seeds' outcomes at the end of the sweep (their runs' ``success`` tags)."""
    return [client.get_run(run_ids["seeds"][str(r["seed"])]).data.tags.get("success") == "true" for r in chosen]
