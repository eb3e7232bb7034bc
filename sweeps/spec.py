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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from analysis.sequential import STOP_SHARE, Design
from trainables.options import PATIENCE, RunOptions

SPACES = ("grid", "choice", "uniform", "loguniform", "randint")
SEARCHERS = ("grid", "random", "optuna")
TOP_KEYS = (
    "name",
    "model",
    "env",
    "data",
    "params",
    "seeds",
    "searcher",
    "num_samples",
    "max_concurrent",
    "epochs",
    "checkpoint_every",
    "eval_every",
    "scheduler",
    "resources",
    "success",
    "max_failures",
    "tracking_patience",
    "seed_stop",
    "settle",
)
SCHEDULER_KEYS = ("metric", "mode", "grace_period", "reduction_factor")
ADAPTIVE_KEYS = ("start", "step", "max", "until", "alpha", "margin")


class SpecError(ValueError):
    """A sweep spec that cannot run; the message names the file and the field."""


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
    epochs: int = 20
    checkpoint_every: int = 5
    eval_every: int = (
        1  # validation metrics (and the success count ASHA sees) at the first epoch, every N, and the last
    )
    scheduler: Scheduler | None = None  # None: no early stopping
    resources: dict[str, float] = field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    success: dict[str, Any] | None = None  # None: the model's default rule (filled in by from_dict)
    max_failures: int = 2
    tracking_patience: float = PATIENCE  # seconds a trial trains on with MLflow unreachable, then fails
    seed_stop: dict[str, Any] | None = None  # stop failed seeds inside their pack (trainables.seed_stop); None: never
    settle: dict[str, Any] | None = None  # after the sweep, some seeds train longer (sweeps.settle); None: none
    path: str = "<dict>"

    def swept(self) -> dict[str, dict]:
        """The params that are search spaces."""
        return {k: v for k, v in self.params.items() if is_space(v)}

    def fixed(self) -> dict[str, Any]:
        """The params with one value."""
        return {k: v for k, v in self.params.items() if not is_space(v)}

    def run_options(
        self, tracking_uri: str | None = None, seeds: list[int] | None = None, round_: int | None = None
    ) -> RunOptions:
        """How each trial of the sweep runs (``seeds``: a round's seed numbers, else 0..seeds-1;
        ``round_``: the round of an adaptive sweep)."""
        return RunOptions(
            seeds=tuple(seeds) if seeds is not None else self.seeds,
            epochs=self.epochs,
            checkpoint_every=self.checkpoint_every,
            eval_every=self.eval_every,
            tracking_patience=self.tracking_patience,
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


RESOURCE_KEYS = ("cpu", "gpu", "accelerator_type", "custom")  # what a trial may ask Ray for


def check_resources(resources: Any, fail) -> dict:
    """``resources``: ``cpu`` (> 0), ``gpu`` (a share of one card in [0, 1]: a pack trains on one
    device), ``accelerator_type`` (a card type, Ray's ``accelerator_type:<type>`` node resource, e.g.
    H100) and ``custom`` ({name: amount} of a node's custom resources, ``ray start --resources``)."""
    if not isinstance(resources, dict) or set(resources) - set(RESOURCE_KEYS):
        fail("resources", f"must be a mapping with keys among {', '.join(RESOURCE_KEYS)}, got {resources!r}")
    cpu, gpu = resources.get("cpu", 1), resources.get("gpu", 0)
    card, custom = resources.get("accelerator_type"), resources.get("custom") or {}
    if isinstance(cpu, bool) or not isinstance(cpu, (int, float)) or cpu <= 0:
        fail("resources.cpu", f"must be a positive number, got {cpu!r}")
    if isinstance(gpu, bool) or not isinstance(gpu, (int, float)) or not 0 <= gpu <= 1:
        fail(
            "resources.gpu",
            f"must be a share of one GPU in [0, 1] (a pack trains on one device; 0.25 puts four trials on a "
            f"card), got {gpu!r}",
        )
    if card is not None and (not isinstance(card, str) or not card or gpu == 0):
        fail("resources.accelerator_type", f"must name a card type (e.g. H100) for a trial with gpu > 0, got {card!r}")
    if not isinstance(custom, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
        for k, v in custom.items()
    ):
        fail("resources.custom", f"must map node resource names to positive amounts, got {custom!r}")
    return {
        "cpu": cpu,
        "gpu": gpu,
        **({"accelerator_type": card} if card else {}),
        **({"custom": custom} if custom else {}),
    }


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
    """Validate a spec given as a dict (as parsed from YAML)."""

    def fail(field_name: str, problem: str):
        raise SpecError(f"{where}: {field_name}: {problem}")

    if not isinstance(raw, dict):
        raise SpecError(f"{where}: a sweep spec is a mapping of fields, got {type(raw).__name__}")
    for key in raw:
        if key not in TOP_KEYS:
            fail(key, f"unknown field; known fields: {', '.join(TOP_KEYS)}")
    if not isinstance(raw.get("name"), str) or not raw["name"].strip() or "/" in raw["name"]:
        fail("name", "required: a non-empty name without '/'")

    spec = SweepSpec(name=raw["name"], path=where)
    for key in ("model", "env", "searcher"):
        if key in raw:
            if not isinstance(raw[key], str):
                fail(key, f"must be a string, got {raw[key]!r}")
            setattr(spec, key, raw[key])
    if isinstance(raw.get("seeds"), dict):
        spec.adaptive = adaptive_seeds(raw["seeds"], fail)
        spec.seeds = spec.adaptive.start
    for key, low in (
        ("seeds", 1),
        ("num_samples", 1),
        ("max_concurrent", 0),
        ("epochs", 1),
        ("checkpoint_every", 1),
        ("eval_every", 1),
        ("max_failures", 0),
    ):
        if key in raw and not (key == "seeds" and spec.adaptive):
            value = raw[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                fail(key, f"must be an integer >= {low}, got {value!r}")
            setattr(spec, key, value)

    if "tracking_patience" in raw:
        value = raw["tracking_patience"]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            fail("tracking_patience", f"must be a number of seconds > 0, got {value!r}")
        spec.tracking_patience = float(value)

    from trainables.models import DEFAULT_MODEL, MODELS
    from trainables.options import DATA_KEYS, RUN_ONLY
    from trainables.rule import SuccessRule

    spec.model = spec.model or DEFAULT_MODEL
    if spec.model not in MODELS:
        fail("model", f"unknown model {spec.model!r}; known: {', '.join(sorted(MODELS))}")
    from envs.dataset import resolve_env_id

    try:
        resolve_env_id(spec.env)
    except ValueError as err:
        fail("env", str(err))
    if spec.searcher not in SEARCHERS:
        fail("searcher", f"must be one of {', '.join(SEARCHERS)}, got {spec.searcher!r}")

    data = raw.get("data", {}) or {}
    if not isinstance(data, dict):
        fail("data", "must be a mapping")
    for key in data:
        if key not in DATA_KEYS:
            fail(f"data.{key}", f"unknown; known: {', '.join(DATA_KEYS)}")
    spec.data = dict(data)  # values are checked with the model config below

    params = raw.get("params", {}) or {}
    if not isinstance(params, dict):
        fail("params", "must be a mapping of hyperparameter -> value or search space")
    for key, value in params.items():
        if key in DATA_KEYS or key in ("model", "env", "success", "seeds", "seed_stop"):
            fail(f"params.{key}", "is not a hyperparameter; set it at the top level or under data")
        if isinstance(value, dict) and len(value) == 1 and next(iter(value)) not in SPACES:
            fail(f"params.{key}", f"unknown search space {next(iter(value))!r}; use one of {', '.join(SPACES)}")
        if is_space(value):
            check_space(f"params.{key}", value, fail)
            if key in RUN_ONLY:
                fail(
                    f"params.{key}",
                    "says how to run, not what to train (it is not in config_id), so it cannot be swept",
                )
    spec.params = dict(params)
    if spec.searcher == "optuna" and any("grid" in v for v in spec.swept().values()):
        fail("searcher", "optuna cannot search a grid space; use choice, or searcher: grid")
    if spec.searcher != "grid" and not spec.swept() and spec.num_samples > 1:
        fail("num_samples", "nothing is swept, so one sample is the whole sweep")

    spec.resources = check_resources(raw.get("resources", spec.resources), fail)

    model_cls = MODELS[spec.model][1]
    declared = [m.name for m in model_cls.metrics]
    try:
        spec.success = SuccessRule.parse(raw.get("success", model_cls.success), declared).as_dict()
    except ValueError as err:
        fail("success", f"{err} (model {spec.model})")

    if raw.get("seed_stop") is not None:
        from trainables.seed_stop import SeedStop

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

    if raw.get("settle") is not None:
        from sweeps.settle import Settle

        try:
            spec.settle = Settle.parse(raw["settle"], fixed=spec.adaptive is None).as_dict()
        except ValueError as err:
            fail("settle", str(err))

    scheduler = raw.get("scheduler")
    if scheduler in (None, "none", False):
        spec.scheduler = None
    elif spec.adaptive is not None:
        fail(
            "scheduler",
            "ASHA cannot be combined with adaptive seeds: a pruned configuration has no counted seeds, so the rule "
            "could never compare it and would call another best without that comparison; drop scheduler, or give "
            "seeds a number",
        )
    elif isinstance(scheduler, dict):
        for key in scheduler:
            if key not in SCHEDULER_KEYS:
                fail(f"scheduler.{key}", f"unknown; ASHA takes {', '.join(SCHEDULER_KEYS)}")
        spec.scheduler = Scheduler(**{"grace_period": min(Scheduler.grace_period, spec.epochs), **scheduler})
        metric, mode = scheduler_objective(spec.scheduler.metric, model_cls)
        if metric is None:
            aggregates = ", ".join(f"median_{m} / best_{m}" for m in declared)
            fail(
                "scheduler.metric",
                f"{spec.scheduler.metric!r} is not an aggregate of model {spec.model}'s metrics; use one of {aggregates}, success_rate",
            )
        if spec.scheduler.mode is not None and spec.scheduler.mode != mode:
            fail(
                "scheduler.mode",
                f"{metric} is better {'lower' if mode == 'min' else 'higher'}, so the mode is {mode}, got {spec.scheduler.mode!r}",
            )
        spec.scheduler.metric, spec.scheduler.mode = metric, mode
        if not isinstance(spec.scheduler.grace_period, int) or not 1 <= spec.scheduler.grace_period <= spec.epochs:
            fail("scheduler.grace_period", f"must be an integer in [1, epochs={spec.epochs}]")
        if not isinstance(spec.scheduler.reduction_factor, (int, float)) or spec.scheduler.reduction_factor < 2:
            fail("scheduler.reduction_factor", "must be >= 2")
    else:
        fail("scheduler", "must be an ASHA mapping or none")

    # Finally the model itself: data sizes, and every fixed and swept param one of its config fields.
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
    return spec


def adaptive_seeds(raw: dict, fail) -> Design:
    """``seeds: {start, step, max, until: decided | separated | {halfwidth: h}, alpha, margin}`` -> a ``Design``."""
    for key in raw:
        if key not in ADAPTIVE_KEYS:
            fail(f"seeds.{key}", f"unknown; adaptive seeds take {', '.join(ADAPTIVE_KEYS)}")
    for key in ("start", "step", "max"):
        value = raw.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            fail(
                f"seeds.{key}",
                f"must be an integer >= 1, got {value!r} (e.g. seeds: {{start: 8, step: 8, max: 64, until: decided}})",
            )
    if raw["max"] < raw["start"]:
        fail("seeds.max", f"must be at least seeds.start ({raw['start']}), got {raw['max']}")
    until, halfwidth = raw.get("until", "decided"), None
    if isinstance(until, dict) and set(until) == {"halfwidth"}:
        until, halfwidth = "halfwidth", until["halfwidth"]
        if isinstance(halfwidth, bool) or not isinstance(halfwidth, (int, float)) or not 0 < halfwidth < 0.5:
            fail("seeds.until.halfwidth", f"must be a number in (0, 0.5), got {halfwidth!r}")
    elif until not in ("decided", "separated"):
        fail("seeds.until", f"must be decided, separated or {{halfwidth: H}}, got {until!r}")
    alpha = raw.get("alpha", 0.05)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        fail("seeds.alpha", f"must be a number in (0, 1), got {alpha!r}")
    margin = raw.get("margin")
    if margin is not None:
        if until != "decided":
            fail("seeds.margin", f"ties within a margin need until: decided, got until: {until}")
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 < margin < 1:
            fail("seeds.margin", f"must be a rate difference in (0, 1), got {margin!r}")
    return Design(
        raw["start"],
        raw["step"],
        raw["max"],
        until,
        None if halfwidth is None else float(halfwidth),
        float(alpha),
        None if margin is None else float(margin),
    )


def scheduler_objective(metric: str | None, model_cls) -> tuple[str | None, str]:
    """(reported aggregate, min | max) for a spec's ``scheduler.metric`` (None: the model's
    ``scheduler_metric``); (None, "") if it is not an aggregate of a declared metric."""
    if metric == "success_rate":
        return metric, "max"
    by_name = {m.name: m for m in model_cls.metrics}
    name = model_cls.scheduler_metric if metric is None else metric
    stat, base = ("median", name) if name in by_name else name.split("_", 1) if "_" in name else ("", name)
    if stat not in ("median", "best") or base not in by_name:
        return None, ""
    return f"{stat}_{base}", "min" if by_name[base].better == "lower" else "max"


def check_space(name: str, space: dict, fail) -> None:
    kind, args = next(iter(space.items()))
    if kind in ("grid", "choice"):
        if not isinstance(args, list) or not args:
            fail(name, f"{kind} needs a non-empty list of values, got {args!r}")
        return
    if not isinstance(args, list) or len(args) != 2 or not all(isinstance(a, (int, float)) for a in args):
        fail(name, f"{kind} needs [low, high], got {args!r}")
    low, high = args
    if not low < high:
        fail(name, f"{kind} needs low < high, got [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        fail(name, f"loguniform needs 0 < low, got {low}")
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        fail(name, f"randint needs integer bounds, got {args!r}")


def first_value(space: dict) -> Any:
    kind, args = next(iter(space.items()))
    if kind in ("grid", "choice"):
        return args[0]
    return int(args[0]) if kind == "randint" else float(args[0])
