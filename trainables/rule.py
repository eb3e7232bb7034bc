"""The success rule: a seed succeeds when a declared metric of its model ends below (or above) a
threshold, ``{"metric": NAME, "below": X}`` or ``{"metric": NAME, "above": X}`` in configs, specs
and MLflow params (``success.metric``, ``success.below``). One definition for the trainable, the
spec checker and the analysis; no torch here, so ``seedsweep analyze`` can use it without one."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Literal

BOUNDS = ("below", "above")


@dataclass(frozen=True)
class SuccessRule:
    metric: str  # a metric the model declares (``PackedModel.metrics``)
    bound: Literal["below", "above"]  # success is ``value < threshold`` or ``value > threshold``
    threshold: float

    @classmethod
    def parse(cls, rule, metrics: Iterable[str] | None = None) -> SuccessRule:
        """``{"metric": m, "below" | "above": x}`` -> a rule; with ``metrics`` (the model's declared
        names), ``m`` must be one of them. A ValueError says what is wrong."""
        names = list(metrics) if metrics is not None else None
        shape = f"{{metric: {'one of ' + ', '.join(names) if names else 'NAME'}, below|above: number}}"
        if not isinstance(rule, dict) or not isinstance(rule.get("metric"), str):
            raise ValueError(f"the success rule must be {shape}, got {rule!r}")
        bounds = [k for k in BOUNDS if k in rule]
        if len(bounds) != 1 or set(rule) - {"metric", *BOUNDS}:
            raise ValueError(f"the success rule needs a metric and exactly one of below / above, got {rule!r}")
        value = rule[bounds[0]]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"success.{bounds[0]} must be a finite number, got {value!r}")
        if names is not None and rule["metric"] not in names:
            raise ValueError(f"success.metric {rule['metric']!r} is not a metric of this model; it declares {', '.join(names)}")
        return cls(rule["metric"], bounds[0], float(value))

    def as_dict(self) -> dict:
        return {"metric": self.metric, self.bound: self.threshold}

    def meets(self, value):
        """Whether ``value`` (a number, numpy array or pandas Series) passes; NaN never does."""
        return value < self.threshold if self.bound == "below" else value > self.threshold

    def __str__(self) -> str:
        return f"{self.metric} {self.bound} {self.threshold:g}"
