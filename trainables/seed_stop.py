"""Stopping the seeds that have already failed (``seed_stop``), with an audit.

A config key and spec field ``seed_stop: {metric: M, above: X | below: X, from_epoch: E, audit: f,
patience: p}``. From epoch E on, at each evaluation a seed still running whose metric M is on the
failing side of X (``above``: M > X fails; ``below``: M < X; a NaN value fails) is a stop
*candidate*; after ``patience`` consecutive candidate evaluations (default 1) it stops, unless it
belongs to the **audit** (``audited``): in every block of ``BLOCK`` seed numbers (0..7, 8..15, ...,
the blocks adaptive rounds add) exactly round(f * 8) seeds hold an audit ticket, chosen by a
permutation salted with the sweep's ``salt``. The salt is drawn when the sweep starts and stored
with it (the MLflow experiment tag ``seedsweep.audit_salt``, sweeps.runner.audit_salt), so a
resumed sweep audits the same seeds, another sweep other ones, and which seeds are audited never
depends on how they train: the audited candidates are a random sample of the candidates. An
audited candidate trains to the end and keeps its real outcome; the epoch at which it would have
stopped is recorded, so the analysis measures the false-stop rate (audited candidates that
succeeded) and corrects the success-rate interval (``analysis.seed_stop``).

``decide_on`` says which success rate an adaptive sweep's verdicts are about (analysis.sequential):
``recipe`` (default), the rate of training *with* this stop rule, where a stopped seed and a stop
candidate that trained on for the audit are failures; or ``no_stop``, the rate had no seed been
stopped, which the audit has to vouch for.

A stopped seed leaves the pack: ``Pack`` rebuilds its stacked parameters, optimiser state and
generators from the surviving seeds (``shrink_state`` below), so the others train as before,
and its result is frozen at the stop (status ``stopped``, a failure).

``SeedStop`` has no torch, so the spec checker and the analysis can parse a rule without it.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from trainables.options import number

KEYS = ("metric", "above", "below", "from_epoch", "audit", "patience", "decide_on", "salt")
DECIDE_ON = ("recipe", "no_stop")  # what verdicts are about: the rate with this stop rule, or had none stopped
BLOCK = 8  # seed numbers per audit block: exactly round(audit * BLOCK) audit tickets in each


def audited(seed: int, share: float, salt: int, block: int = BLOCK) -> bool:
    """Whether ``seed`` holds an audit ticket: in its block of ``block`` seed numbers, exactly
    round(``share`` * block) tickets go to the positions a permutation salted by ``salt`` ranks first
    (sha256 of salt, block and position, sorted)."""
    first, place = divmod(int(seed), block)
    keys = [hashlib.sha256(f"seedsweep.audit:{int(salt)}:{first}:{j}".encode()).digest() for j in range(block)]
    rank = sorted(range(block), key=keys.__getitem__).index(place)
    return rank < math.floor(share * block + 0.5)


def draw_salt() -> int:
    """A fresh audit salt for a new sweep."""
    return secrets.randbits(48)


@dataclass(frozen=True)
class SeedStop:
    metric: str  # a metric the model declares
    bound: Literal["above", "below"]  # the failing side: value > threshold ("above") or < ("below")
    threshold: float
    from_epoch: int  # first epoch whose evaluation can make a seed a candidate
    audit: float  # share of seeds (exact in every block of 8 seed numbers) whose candidates train on
    patience: int = 1  # consecutive candidate evaluations before a seed stops
    decide_on: str = "recipe"  # verdicts about the rate with this rule ("recipe") or had none stopped ("no_stop")
    salt: int = 0  # the sweep's audit salt (drawn when it starts, sweeps.runner.audit_salt)

    @classmethod
    def parse(cls, rule, metrics: dict[str, str] | Iterable[str] | None = None) -> SeedStop:
        """``{"metric": m, "above" | "below": x, "from_epoch": e, "audit": f, "patience": p, "decide_on":
        "recipe" | "no_stop", "salt": s}`` -> a rule.
        ``metrics``: the model's declared names (or ``{name: "lower" | "higher"}``, which also checks
        that the failing side is the metric's worse side). A ValueError says what is wrong."""
        shape = (
            "{metric: M, above: X | below: X, from_epoch: E, audit: f, patience: p (optional), "
            "decide_on: recipe | no_stop (optional)}"
        )
        if not isinstance(rule, dict):
            raise ValueError(f"seed_stop must be a mapping {shape}, got {rule!r}")
        unknown = sorted(set(rule) - set(KEYS))
        if unknown:
            raise ValueError(f"seed_stop: unknown key(s) {', '.join(unknown)}; it takes {shape}")
        if not isinstance(rule.get("metric"), str):
            raise ValueError(f"seed_stop.metric must be a metric name, got {rule.get('metric')!r}")
        bounds = [k for k in ("above", "below") if k in rule]
        if len(bounds) != 1:
            raise ValueError(f"seed_stop needs exactly one of above / below (the failing side), got {rule!r}")
        value = number(rule[bounds[0]], f"seed_stop.{bounds[0]}")
        epoch = number(rule.get("from_epoch"), "seed_stop.from_epoch", integer=True, low=1)
        audit = number(rule.get("audit"), "seed_stop.audit", low=0, high=1, noun="a share of the stop candidates")
        patience = number(
            rule.get("patience", 1), "seed_stop.patience", integer=True, low=1, noun="a count of evaluations in a row"
        )
        decide_on = rule.get("decide_on", "recipe")
        if decide_on not in DECIDE_ON:
            raise ValueError(
                f"seed_stop.decide_on must be recipe (the rate with this stop rule) or no_stop (the rate had no "
                f"seed been stopped), got {decide_on!r}"
            )
        salt = number(rule.get("salt", 0), "seed_stop.salt", integer=True, low=0)
        if metrics is not None:
            names = dict(metrics) if isinstance(metrics, dict) else {m: None for m in metrics}
            if rule["metric"] not in names:
                raise ValueError(
                    f"seed_stop.metric {rule['metric']!r} is not a metric of this model; it declares {', '.join(names)}"
                )
            better = names[rule["metric"]]
            worse = {"lower": "above", "higher": "below"}.get(better)
            if worse is not None and bounds[0] != worse:
                raise ValueError(
                    f"seed_stop: {rule['metric']} is better {better}, so a failing seed is {worse} a threshold; "
                    f"use {worse}: X, not {bounds[0]}"
                )
        return cls(rule["metric"], bounds[0], float(value), epoch, float(audit), patience, decide_on, salt)

    def as_dict(self) -> dict:
        return {
            "metric": self.metric,
            self.bound: self.threshold,
            "from_epoch": self.from_epoch,
            "audit": self.audit,
            "patience": self.patience,
            "decide_on": self.decide_on,
            "salt": self.salt,
        }

    def failing(self, value) -> bool:
        """Whether ``value`` is on the failing side (NaN is)."""
        value = float(value)
        if not math.isfinite(value):
            return True
        return value > self.threshold if self.bound == "above" else value < self.threshold

    def audited(self, seed: int) -> bool:
        """Whether ``seed``, once a candidate, trains on as the audit (``audited``, this sweep's salt)."""
        return audited(seed, self.audit, self.salt)

    def __str__(self) -> str:
        return (
            f"stop a seed when {self.metric} {self.bound} {self.threshold:g} from epoch {self.from_epoch}"
            f"{f' for {self.patience} evaluations in a row' if self.patience > 1 else ''}; audit {self.audit:g}; "
            f"verdicts on {RATES[self.decide_on]}"
        )


RATES = {  # what a verdict is about, in words, per decide_on
    "recipe": "the success rate of training with this stop rule (stopped seeds and audited candidates fail)",
    "no_stop": "the success rate had no seed been stopped (the audit vouches for the stopped seeds)",
}


def shrink_state(old: dict, new: dict, positions: list[int], held: int) -> dict:
    """``old`` (a state dict of a pack of ``held`` seeds) cut to the seeds at ``positions``, shaped
    as ``new`` (the same module built for those seeds): a tensor whose shape does not depend on the
    seed count is kept, one with the seeds first ([S, ...]) or folded into its first dim
    ([S*C, ...]) is indexed. Anything else is a ValueError naming the key."""
    import torch

    out = {}
    for key, value in old.items():
        target = new[key]
        if not isinstance(value, torch.Tensor) or value.shape == target.shape:
            out[key] = value
            continue
        rows = value.shape[0] if value.dim() else 0
        if value.dim() and target.dim() == value.dim() and value.shape[1:] == target.shape[1:] and rows % held == 0:
            per = rows // held
            if target.shape[0] == per * len(positions):
                idx = torch.tensor(positions, device=value.device)
                out[key] = value.unflatten(0, (held, per)).index_select(0, idx).flatten(0, 1).clone()
                continue
        raise ValueError(
            f"seed_stop: cannot cut '{key}' {tuple(value.shape)} from {held} seeds to {tuple(target.shape)} for "
            f"{len(positions)}; the model keeps a tensor whose seed dimension is not first"
        )
    return out


def shrink_optimizer_state(old: dict, new: dict, params: list, positions: list[int], held: int) -> dict:
    """An optimiser ``state_dict`` cut like ``shrink_state`` (per-parameter state tensors such as
    Adam's moments indexed by seed; ``step`` and the groups' settings kept). ``new``: the fresh
    optimiser's state dict (for its param ids), ``params``: its parameters in that order."""
    state = {}
    for pid, per_param in old["state"].items():
        shape = {k: params[pid].detach() for k in per_param}
        state[pid] = shrink_state(
            {k: v for k, v in per_param.items()},
            {k: (shape[k] if getattr(v, "dim", lambda: 0)() else v) for k, v in per_param.items()},
            positions,
            held,
        )
    groups = [{**og, "params": ng["params"]} for og, ng in zip(old["param_groups"], new["param_groups"])]
    return {"state": state, "param_groups": groups}
