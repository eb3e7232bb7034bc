"""Sweep specs: a YAML file -> a validated, typed ``SweepSpec``.

A spec names the model, the world and its data, the hyperparameters (fixed values or search
spaces), how many seeds each configuration gets, the searcher, ASHA, resources and the success
rule. Everything is checked before Ray starts; a bad field gives one ``SpecError`` naming the
file and the field.

    name: quickstart
    model: sps
    env: ball
    data: {n_train: 64, n_val: 32, frames: 12, image_size: 32, data_seed: 0}
    params:
      symmetry: {grid: [none, T2R2]}
      lr: {loguniform: [1.0e-4, 1.0e-2]}
      rnn_width: 32
    seeds: 8                  # or adaptive: {start: 8, step: 8, max: 64} (until: decided; or separated, {halfwidth: 0.1})
    searcher: grid            # grid | random | optuna
    num_samples: 1            # samples of the search space (grid: repeats of the grid)
    max_concurrent: 2
    epochs: 30
    eval_every: 1             # validation metrics every N epochs, and at the end
    scheduler: {grace_period: 5, reduction_factor: 2}  # ASHA (on the model's scheduler_metric); absent or none: no early stopping
    resources: {cpu: 1, gpu: 0}
    success: {metric: METRIC, below: 0.2, also: [0.03]}  # left out: the model's own rule; also: more thresholds to report
    seed_stop: {metric: METRIC, above: 0.6, from_epoch: 10, audit: 0.25, decide_on: recipe}  # optional: stop failed seeds (trainables.seed_stop)
    settle: {seeds: 4, factor: 2}  # optional: 4 seeds per configuration go on to 2 x epochs; flips reported (sweeps.settle)

``success.metric`` must be a metric the model declares (``PackedModel.metrics``); left out, the
model's own ``success`` rule applies. ``scheduler.metric`` is ``median_<m>`` or ``best_<m>`` of a
declared metric m (a bare ``<m>`` means ``median_<m>``) or ``success_rate``; left out, the model's
``scheduler_metric``. Its mode follows from the metric's ``better`` (min for lower, max for
higher); a ``mode`` that says otherwise is an error. Left out, ``grace_period`` is 5 epochs or all
of them, whichever is fewer.

ASHA stops whole configurations early, and their seeds leave the success counts: a spec that
compares success rates should not set ``scheduler`` (the report says how many seeds were pruned).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from analysis.sequential import STOP_SHARE, Design
from trainables.options import DATA_KEYS, RUN_ONLY, RunOptions, number, run_keys
from trainables.rule import SuccessRule
from trainables.seed_stop import SeedStop

SPACES = ("grid", "choice", "uniform", "loguniform", "randint")
SEARCHERS = ("grid", "random", "optuna")
# run options a spec fills from its other fields (name, resources.gpu) or the runner per trial: not spec keys
FILLED = ("seeds", "sweep", "experiment", "tracking_uri", "gpu", "round")
SCHEDULER_KEYS = ("metric", "mode", "grace_period", "reduction_factor")
ADAPTIVE_KEYS = ("start", "step", "max", "until", "alpha", "margin")


class SpecError(ValueError):
    """A sweep spec that cannot run; the message names the file and the field."""


class FieldError(ValueError):
    """One field of a spec is wrong: ``from_dict`` turns it into a ``SpecError`` naming the file."""

    def __init__(self, field_name: str, problem: str):
        super().__init__(f"{field_name}: {problem}")


def fail(field_name: str, problem: str):
    raise FieldError(field_name, problem)


def checked(field_name: str, value, hint: str = "", **bounds):
    """``trainables.options.number`` on a spec field: its ValueError names the field (``hint``: an example after it)."""
    try:
        return number(value, **bounds)
    except ValueError as err:
        fail(field_name, f"{err}{hint}")


@dataclass
class Scheduler:
    """ASHA over configurations; the time attribute is the epoch."""

    metric: str | None = None  # a reported aggregate; None: median_ of the model's scheduler_metric
    mode: str | None = None  # min | max; None: from the metric's better
    grace_period: int = 5  # epochs before a trial can be stopped; a spec with fewer epochs gets all of them
    reduction_factor: int = 2


@dataclass
class SweepSpec:
    name: str
    model: str | None = None  # a key of trainables.models.MODELS; None: trainables.models.DEFAULT_MODEL
    env: str = "ball"
    data: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # fixed values, or {space: args}
    seeds: int = 8  # per configuration; with adaptive seeds, those of the first round (adaptive.start)
    adaptive: Design | None = None  # adaptive seeds (analysis.sequential), or None: every configuration gets `seeds`
    searcher: str = "grid"
    num_samples: int = 1
    max_concurrent: int = 0  # 0: as many as resources allow
    scheduler: Scheduler | None = None  # None: no early stopping
    resources: dict[str, float] = field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    success: dict[str, Any] | None = None  # None: the model's default rule (filled in by from_dict)
    max_failures: int = 2
    seed_stop: dict[str, Any] | None = None  # stop failed seeds inside their pack (trainables.seed_stop); None: never
    settle: dict[str, Any] | None = None  # after the sweep, some seeds train longer (sweeps.settle); None: none
    # how each trial runs (epochs, eval_every, checkpoint_every, flush_every, tracking_patience: flat keys in
    # the YAML); its seeds and tracking URI are filled per trial by ``run_options``
    run: RunOptions = field(default_factory=RunOptions)
    path: str = "<dict>"

    # the run options the driver reads, as the spec's own
    epochs = property(lambda self: self.run.epochs)
    eval_every = property(lambda self: self.run.eval_every)
    checkpoint_every = property(lambda self: self.run.checkpoint_every)
    tracking_patience = property(lambda self: self.run.tracking_patience)

    def swept(self) -> dict[str, dict]:
        """The params that are search spaces."""
        return {k: v for k, v in self.params.items() if is_space(v)}

    def fixed(self) -> dict[str, Any]:
        """The params with one value."""
        return {k: v for k, v in self.params.items() if not is_space(v)}

    def grid_points(self) -> int:
        """How many points the swept grids make (1 without a grid)."""
        return math.prod(len(v["grid"]) for v in self.swept().values() if "grid" in v)

    def trials(self) -> int:
        """How many configurations (Tune trials) the sweep makes: its grid points x ``num_samples``."""
        return self.grid_points() * self.num_samples

    def run_options(
        self, tracking_uri: str | None = None, seeds: list[int] | None = None, round_: int | None = None
    ) -> RunOptions:
        """How each trial of the sweep runs (``seeds``: a round's seed numbers, else 0..seeds-1;
        ``round_``: the round of an adaptive sweep)."""
        seeds = tuple(seeds) if seeds is not None else self.seeds
        return dataclasses.replace(
            self.run,
            seeds=seeds,
            sweep=self.name,
            experiment=self.name,
            tracking_uri=tracking_uri,
            gpu=self.resources["gpu"],
            round=round_,
        )

    def trial_resources(self) -> dict[str, float]:
        """What each trial asks Ray for, as ``tune.with_resources`` takes it (a card type is Ray's
        ``accelerator_type:<type>`` node resource, asked for in a token amount as Ray's own tasks do)."""
        r = self.resources
        card = {f"accelerator_type:{r['accelerator_type']}": 0.001} if r.get("accelerator_type") else {}
        return {"cpu": r["cpu"], "gpu": r["gpu"], **card, **r.get("custom", {})}

    def base_config(self) -> dict[str, Any]:
        """The trainable's config without the swept params: model, env, data, fixed params, success rule."""
        base = {"model": self.model, "env": self.env, **self.data, **self.fixed(), "success": dict(self.success)}
        return {**base, "seed_stop": dict(self.seed_stop)} if self.seed_stop else base


RUN_KEYS = tuple(k for k in run_keys() if k not in FILLED)  # a spec's run options, flat in the YAML
TOP_KEYS = (*(f.name for f in dataclasses.fields(SweepSpec) if f.name not in ("adaptive", "run", "path")), *RUN_KEYS)
RESOURCE_KEYS = ("cpu", "gpu", "accelerator_type", "custom")  # what a trial may ask Ray for


def is_space(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in SPACES


def load(path: str | Path) -> SweepSpec:
    """Read and validate a YAML sweep spec."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: no such file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from None
    return from_dict(raw, str(path))


def from_dict(raw: Any, where: str = "<dict>") -> SweepSpec:
    """Validate a spec given as a dict (as parsed from YAML): each part by its checker, in order; the
    first wrong field raises one ``SpecError`` naming ``where`` and the field."""
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: a sweep spec is a mapping of fields, got {type(raw).__name__}")
    try:
        spec = SweepSpec(name=check_top(raw), path=where)
        check_plain(spec, raw)
        model_cls = check_model(spec)
        spec.data, spec.params = check_data(raw.get("data", {}) or {}), check_params(raw.get("params", {}) or {})
        check_search(spec)
        spec.resources = check_resources(raw.get("resources", spec.resources))
        check_rules(spec, raw, model_cls)
        spec.settle = check_settle(raw.get("settle"), spec)
        spec.scheduler = check_scheduler(raw.get("scheduler"), spec, model_cls)
        check_model_config(spec)
    except FieldError as err:
        raise SpecError(f"{where}: {err}") from None
    return spec


def check_top(raw: dict) -> str:
    """The keys known and the name given; returns the name."""
    for key in raw:
        if key not in TOP_KEYS:
            fail(key, f"unknown field; known fields: {', '.join(TOP_KEYS)}")
    if not isinstance(raw.get("name"), str) or not raw["name"].strip() or "/" in raw["name"]:
        fail("name", "required: a non-empty name without '/'")
    return raw["name"]


def check_plain(spec: SweepSpec, raw: dict) -> None:
    """The strings, the seeds (a count or adaptive), the counts and the run options."""
    for key in ("model", "env", "searcher"):
        if key in raw:
            if not isinstance(raw[key], str):
                fail(key, f"must be a string, got {raw[key]!r}")
            setattr(spec, key, raw[key])
    if isinstance(raw.get("seeds"), dict):
        spec.adaptive = adaptive_seeds(raw["seeds"])
        spec.seeds = spec.adaptive.start
    elif "seeds" in raw:
        spec.seeds = checked("seeds", raw["seeds"], integer=True, low=1)
    for key, low in (("num_samples", 1), ("max_concurrent", 0), ("max_failures", 0)):
        if key in raw:
            setattr(spec, key, checked(key, raw[key], integer=True, low=low))
    options = {k: raw[k] for k in RUN_KEYS if k in raw}
    try:
        spec.run = RunOptions(seeds=spec.seeds, sweep=spec.name, **options)
    except ValueError as err:  # "run option 'KEY' must be ...": name the spec's field
        key = next(k for k in options if f"'{k}'" in str(err))
        fail(key, str(err).split(f"'{key}' ", 1)[1])


def check_model(spec: SweepSpec):
    """The model, the world and the searcher are known; returns the model's class."""
    from envs.dataset import resolve_env_id
    from trainables.models import DEFAULT_MODEL, MODELS

    spec.model = spec.model or DEFAULT_MODEL
    if spec.model not in MODELS:
        fail("model", f"unknown model {spec.model!r}; known: {', '.join(sorted(MODELS))}")
    try:
        resolve_env_id(spec.env)
    except ValueError as err:
        fail("env", str(err))
    if spec.searcher not in SEARCHERS:
        fail("searcher", f"must be one of {', '.join(SEARCHERS)}, got {spec.searcher!r}")
    return MODELS[spec.model][1]


def check_data(data) -> dict:
    """The dataset's keys (their values are checked with the model config, ``check_model_config``)."""
    if not isinstance(data, dict):
        fail("data", "must be a mapping")
    for key in data:
        if key not in DATA_KEYS:
            fail(f"data.{key}", f"unknown; known: {', '.join(DATA_KEYS)}")
    return dict(data)


def check_params(params) -> dict:
    """Hyperparameters: fixed values, or search spaces of a known kind; never a run-only key."""
    if not isinstance(params, dict):
        fail("params", "must be a mapping of hyperparameter -> value or search space")
    for key, value in params.items():
        if key in DATA_KEYS or key in ("model", "env", "success", "seeds", "seed_stop"):
            fail(f"params.{key}", "is not a hyperparameter; set it at the top level or under data")
        if isinstance(value, dict) and len(value) == 1 and next(iter(value)) not in SPACES:
            fail(f"params.{key}", f"unknown search space {next(iter(value))!r}; use one of {', '.join(SPACES)}")
        if is_space(value):
            check_space(f"params.{key}", value)
            if key in RUN_ONLY:
                fail(
                    f"params.{key}",
                    "says how to run, not what to train (it is not in config_id), so it cannot be swept",
                )
    return dict(params)


def check_search(spec: SweepSpec) -> None:
    if spec.searcher == "optuna" and any("grid" in v for v in spec.swept().values()):
        fail("searcher", "optuna cannot search a grid space; use choice, or searcher: grid")
    if spec.searcher != "grid" and not spec.swept() and spec.num_samples > 1:
        fail("num_samples", "nothing is swept, so one sample is the whole sweep")


def check_resources(resources) -> dict:
    """``resources``: ``cpu`` (> 0), ``gpu`` (a share of one card in [0, 1]: a pack trains on one
    device), ``accelerator_type`` (a card type, Ray's ``accelerator_type:<type>`` node resource, e.g.
    H100) and ``custom`` ({name: amount} of a node's custom resources, ``ray start --resources``)."""
    if not isinstance(resources, dict) or set(resources) - set(RESOURCE_KEYS):
        fail("resources", f"must be a mapping with keys among {', '.join(RESOURCE_KEYS)}, got {resources!r}")
    cpu = checked("resources.cpu", resources.get("cpu", 1), low=0, open_low=True, noun="a number of CPUs")
    one_card = " (a pack trains on one device; 0.25 puts four trials on a card)"
    gpu = checked("resources.gpu", resources.get("gpu", 0), one_card, low=0, high=1, noun="a share of one GPU")
    card, custom = resources.get("accelerator_type"), resources.get("custom") or {}
    if card is not None and (not isinstance(card, str) or not card or gpu == 0):
        fail("resources.accelerator_type", f"must name a card type (e.g. H100) for a trial with gpu > 0, got {card!r}")
    if not isinstance(custom, dict) or not all(isinstance(k, str) for k in custom):
        fail("resources.custom", f"must map node resource names to positive amounts, got {custom!r}")
    for name, amount in custom.items():
        checked(f"resources.custom.{name}", amount, low=0, open_low=True, noun="a positive amount")
    optional = {"accelerator_type": card, "custom": custom}
    return {"cpu": cpu, "gpu": gpu, **{k: v for k, v in optional.items() if v}}


def check_rules(spec: SweepSpec, raw: dict, model_cls) -> None:
    """The success rule (the model's own when left out) and the optional seed_stop rule."""
    declared = [m.name for m in model_cls.metrics]
    try:
        spec.success = SuccessRule.parse(raw.get("success", model_cls.success), declared).as_dict()
    except ValueError as err:
        fail("success", f"{err} (model {spec.model})")
    if raw.get("seed_stop") is None:
        return
    try:
        spec.seed_stop = SeedStop.parse(raw["seed_stop"], {m.name: m.better for m in model_cls.metrics}).as_dict()
    except ValueError as err:
        fail("seed_stop", f"{err} (model {spec.model})")
    if spec.seed_stop["from_epoch"] >= spec.epochs:
        fail("seed_stop.from_epoch", f"must be below epochs ({spec.epochs}): no seed could stop")
    if spec.adaptive is not None:  # verdicts on the recipe, or on the no-stop rate (analysis.sequential)
        decide_on = spec.seed_stop["decide_on"]  # no_stop: a share of alpha bounds the stopped seeds
        share = STOP_SHARE if decide_on == "no_stop" else 0.0
        spec.adaptive = dataclasses.replace(spec.adaptive, decide_on=decide_on, stop_share=share)


def check_settle(settle, spec: SweepSpec) -> dict | None:
    """The optional settle check: some seeds train longer after the sweep (or its first round; sweeps.settle)."""
    from sweeps.settle import Settle

    try:
        return None if settle is None else Settle.parse(settle).as_dict()
    except ValueError as err:
        fail("settle", str(err))


def check_scheduler(scheduler, spec: SweepSpec, model_cls) -> Scheduler | None:
    """ASHA's settings, its metric an aggregate of a declared metric and its mode that metric's."""
    if scheduler in (None, "none", False):
        return None
    if spec.adaptive is not None:
        fail(
            "scheduler",
            "ASHA cannot be combined with adaptive seeds: a pruned configuration has no counted seeds, so the rule "
            "could never compare it and would call another best without that comparison; drop scheduler, or give "
            "seeds a number",
        )
    if not isinstance(scheduler, dict):
        fail("scheduler", "must be an ASHA mapping or none")
    for key in scheduler:
        if key not in SCHEDULER_KEYS:
            fail(f"scheduler.{key}", f"unknown; ASHA takes {', '.join(SCHEDULER_KEYS)}")
    asha = Scheduler(**{"grace_period": min(Scheduler.grace_period, spec.epochs), **scheduler})
    from trainables.train import objective

    metric, mode = objective(asha.metric, model_cls)
    if metric is None:
        aggregates = ", ".join(f"median_{m.name} / best_{m.name}" for m in model_cls.metrics)
        fail(
            "scheduler.metric",
            f"{asha.metric!r} is not an aggregate of model {spec.model}'s metrics; use one of {aggregates}, success_rate",
        )
    if asha.mode is not None and asha.mode != mode:
        better = "lower" if mode == "min" else "higher"
        fail("scheduler.mode", f"{metric} is better {better}, so the mode is {mode}, got {asha.mode!r}")
    asha.metric, asha.mode = metric, mode
    noun = f"an integer (epochs={spec.epochs})"
    checked("scheduler.grace_period", asha.grace_period, integer=True, low=1, high=spec.epochs, noun=noun)
    checked("scheduler.reduction_factor", asha.reduction_factor, low=2)
    return asha


def check_model_config(spec: SweepSpec) -> None:
    """The model itself: data sizes, and every fixed and swept param one of its config fields."""
    from trainables.config import resolve_config

    sample = {k: first_value(v) for k, v in spec.swept().items()}
    try:
        resolve_config({**spec.base_config(), **sample})
    except (ValueError, TypeError) as err:
        fields = [f"params.{k}" for k in spec.params] + [f"data.{k}" for k in spec.data]
        bad = next(
            (f for f in fields if f"'{f.split('.', 1)[1]}'" in str(err) or f" {f.split('.', 1)[1]}" in str(err)), None
        )
        fail(bad or "params", str(err))


def adaptive_seeds(raw: dict) -> Design:
    """``seeds: {start, step, max, until: decided | separated | {halfwidth: h}, alpha, margin}`` -> a ``Design``."""
    for key in raw:
        if key not in ADAPTIVE_KEYS:
            fail(f"seeds.{key}", f"unknown; adaptive seeds take {', '.join(ADAPTIVE_KEYS)}")
    example = "(e.g. seeds: {start: 8, step: 8, max: 64, until: decided})"
    for key in ("start", "step", "max"):
        checked(f"seeds.{key}", raw.get(key), f" {example}", integer=True, low=1)
    if raw["max"] < raw["start"]:
        fail("seeds.max", f"must be at least seeds.start ({raw['start']}), got {raw['max']}")
    until, halfwidth = raw.get("until", "decided"), None
    if isinstance(until, dict) and set(until) == {"halfwidth"}:
        until, halfwidth = "halfwidth", until["halfwidth"]
        checked("seeds.until.halfwidth", halfwidth, low=0, high=0.5, open_low=True, open_high=True)
    elif until not in ("decided", "separated"):
        fail("seeds.until", f"must be decided, separated or {{halfwidth: H}}, got {until!r}")
    alpha = checked("seeds.alpha", raw.get("alpha", 0.05), low=0, high=1, open_low=True, open_high=True)
    margin = raw.get("margin")
    if margin is not None:
        if until != "decided":
            fail("seeds.margin", f"ties within a margin need until: decided, got until: {until}")
        checked("seeds.margin", margin, low=0, high=1, open_low=True, open_high=True, noun="a rate difference")
    halfwidth, margin = (None if x is None else float(x) for x in (halfwidth, margin))
    return Design(raw["start"], raw["step"], raw["max"], until, halfwidth, float(alpha), margin)


def check_space(name: str, space: dict) -> None:
    kind, args = next(iter(space.items()))
    if kind in ("grid", "choice"):
        if not isinstance(args, list) or not args:
            fail(name, f"{kind} needs a non-empty list of values, got {args!r}")
        return
    try:
        low, high = (number(a) for a in (args if isinstance(args, list) and len(args) == 2 else ()))
    except ValueError:
        fail(name, f"{kind} needs [low, high], got {args!r}")
    if not low < high:
        fail(name, f"{kind} needs low < high, got [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        fail(name, f"loguniform needs 0 < low, got {low}")
    if kind == "randint":
        for bound in args:
            checked(name, bound, integer=True, noun="randint's bound, an integer,")


def first_value(space: dict) -> Any:
    kind, args = next(iter(space.items()))
    if kind in ("grid", "choice"):
        return args[0]
    return int(args[0]) if kind == "randint" else float(args[0])
