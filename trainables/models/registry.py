"""The registry of model families, and the model contract checked where a family registers.

``register(name, config_cls, model_cls)`` refuses, with a message naming the field, a family whose
packed module does not declare ``metrics`` / ``success`` / ``scheduler_metric`` consistently, does not
implement ``losses`` / ``evaluate``, declares ``test_sizes`` that are not a dict, or whose config has a
field named like a data, common or run key (``frames``, ``success``, ``epochs``, ...: the trainer would
take that key for itself), a field type it cannot coerce, or defaults its own ``checks`` refuse.

Families outside this package (e.g. the test-only ``tests/tiny_model.py``) are loaded from the
environment variable ``SEEDSWEEP_MODELS``: module names or ``.py`` paths separated by ``os.pathsep``,
each of which calls ``register`` when imported. An environment variable reaches every process of
a sweep (the CLI, the Ray workers it starts), where a registration made in one process would not.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import fields
from pathlib import Path

from trainables.models.base import Metric, PackedModel, TrainConfig
from trainables.options import COMMON, DEFAULT_MODEL, RUN_KEY, run_keys
from trainables.rule import SuccessRule

MODELS: dict[str, tuple[type[TrainConfig], type[PackedModel]]] = {}

DECLARATIONS = {  # what every PackedModel subclass declares (base.py documents each)
    "metrics": "a non-empty tuple of Metric",
    "success": "the default success rule, {metric: NAME, below|above: X}",
    "scheduler_metric": "the declared metric ASHA and Optuna decide on",
}

__all__ = ["DEFAULT_MODEL", "MODELS", "ContractError", "register", "load_plugins"]


class ContractError(TypeError):
    """A model family that breaks the model contract (``trainables.models.base``)."""


def register(name: str, config_cls: type[TrainConfig], model_cls: type[PackedModel]) -> None:
    """Make ``model: name`` buildable: ``config_cls`` (a TrainConfig) and ``model_cls`` (a PackedModel),
    once ``check_contract`` accepts them."""
    check_contract(name, config_cls, model_cls)
    MODELS[name] = (config_cls, model_cls)


def check_contract(name: str, config_cls, model_cls) -> None:
    """Raise ``ContractError`` naming the field if the family breaks the contract (module docstring)."""
    if not (
        isinstance(config_cls, type)
        and issubclass(config_cls, TrainConfig)
        and isinstance(model_cls, type)
        and issubclass(model_cls, PackedModel)
    ):
        raise ContractError(f"model {name!r}: register a TrainConfig subclass and a PackedModel subclass")
    where = f"model {name!r} ({model_cls.__name__})"
    for field, what in DECLARATIONS.items():
        if not hasattr(model_cls, field):
            raise ContractError(f"{where} does not declare '{field}' ({what})")
    metrics = model_cls.metrics
    if not isinstance(metrics, tuple) or not metrics or not all(isinstance(m, Metric) for m in metrics):
        raise ContractError(f"{where}: 'metrics' must be {DECLARATIONS['metrics']}, got {metrics!r}")
    names = [m.name for m in metrics]
    if len(set(names)) != len(names):
        raise ContractError(f"{where}: 'metrics' repeats a name: {', '.join(names)}")
    for m in metrics:
        if m.better not in ("lower", "higher") or not m.doc:
            raise ContractError(f"{where}: 'metrics' {m.name!r} needs better 'lower' or 'higher' and a doc line")
    try:
        SuccessRule.parse(model_cls.success, names)
    except ValueError as err:
        raise ContractError(f"{where}: 'success': {err}") from None
    if model_cls.scheduler_metric not in names:
        raise ContractError(
            f"{where}: 'scheduler_metric' {model_cls.scheduler_metric!r} is not a declared metric; "
            f"it declares {', '.join(names)}"
        )
    for method in ("losses", "evaluate"):
        if getattr(model_cls, method) is getattr(PackedModel, method):
            raise ContractError(f"{where} does not implement '{method}'")
    if not isinstance(model_cls.test_sizes, dict):
        raise ContractError(f"{where}: 'test_sizes' must be a dict of data keys and config fields")
    taken = {
        **{k: "a data or common config key" for k in COMMON},
        **{k: "a run option" for k in (*run_keys(), RUN_KEY)},
    }
    for f in fields(config_cls):
        if f.name in taken:
            raise ContractError(
                f"model {name!r} ({config_cls.__name__}): config field '{f.name}' shadows {taken[f.name]} "
                f"of the same name, which the trainer takes for itself; rename the field"
            )
    try:
        config_cls()  # the defaults: every field's type is one ``coerce`` knows, and ``checks`` accepts them
    except (TypeError, ValueError) as err:
        raise ContractError(f"model {name!r} ({config_cls.__name__}): {err}") from None


def load_plugins(value: str | None = None) -> None:
    """Import the families named in ``SEEDSWEEP_MODELS`` (or ``value``); each registers itself."""
    for item in filter(
        None, (value if value is not None else os.environ.get("SEEDSWEEP_MODELS", "")).split(os.pathsep)
    ):
        if item.endswith(".py"):
            path = Path(item).resolve()
            spec = importlib.util.spec_from_file_location(f"seedsweep_model_{path.stem}", path)
            if spec is None or not path.exists():
                raise ValueError(f"SEEDSWEEP_MODELS: no such file {item!r}")
            module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look it up
            spec.loader.exec_module(module)
        else:
            importlib.import_module(item)
