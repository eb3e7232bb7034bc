"""The success rule: a seed succeeds when a declared metric of its model ends below (or above) a
threshold, ``{"metric": NAME, "below": X}`` or ``{"metric": NAME, "above": X}`` in configs, specs
and MLflow params (``success.metric``, ``success.below``). ``also: [X, ...]`` lists more thresholds of
the same metric that the report shows beside the rule (MLflow param ``success.also``); they do not
decide a seed's ``success`` tag. One definition for the trainable, the
spec checker and the analysis; no torch here, so ``seedsweep analyze`` can use it without one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from trainables.options import number

BOUNDS = ("below", "above")


@dataclass(frozen=True)
class SuccessRule:
    metric: str  # a metric the model declares (``PackedModel.metrics``)
    bound: Literal["below", "above"]  # success is ``value < threshold`` or ``value > threshold``
    threshold: float
    also: tuple[float, ...] = ()  # more thresholds to report (e.g. the notes' 0.03 beside 0.2)

    @classmethod
    def parse(cls, rule, metrics: Iterable[str] | None = None) -> SuccessRule:
        """``{"metric": m, "below" | "above": x}`` -> a rule; with ``metrics`` (the model's declared
        names), ``m`` must be one of them. A ValueError says what is wrong."""
        names = list(metrics) if metrics is not None else None
        shape = f"{{metric: {'one of ' + ', '.join(names) if names else 'NAME'}, below|above: number}}"
        if not isinstance(rule, dict) or not isinstance(rule.get("metric"), str):
            raise ValueError(f"the success rule must be {shape}, got {rule!r}")
        bounds = [k for k in BOUNDS if k in rule]
        if len(bounds) != 1 or set(rule) - {"metric", *BOUNDS, "also"}:
            raise ValueError(
                f"the success rule needs a metric and exactly one of below / above (and optionally also: [X, ...]), got {rule!r}"
            )
        value = number(rule[bounds[0]], f"success.{bounds[0]}")
        if names is not None and rule["metric"] not in names:
            raise ValueError(
                f"success.metric {rule['metric']!r} is not a metric of this model; it declares {', '.join(names)}"
            )
        also = rule.get("also", [])
        try:
            if not isinstance(also, (list, tuple)):
                raise ValueError
            [number(x) for x in also]
        except ValueError:
            raise ValueError(
                f"success.also must be a list of finite numbers (more thresholds of {rule['metric']} to report), got {also!r}"
            ) from None
        return cls(rule["metric"], bounds[0], float(value), tuple(float(x) for x in also))

    def as_dict(self) -> dict:
        return {"metric": self.metric, self.bound: self.threshold, **({"also": list(self.also)} if self.also else {})}

    def meets(self, value):
        """Whether ``value`` (a number, numpy array or pandas Series) passes; NaN never does."""
        return value < self.threshold if self.bound == "below" else value > self.threshold

    def __str__(self) -> str:
        also = f" (also reported: {', '.join(f'{x:g}' for x in self.also)})" if self.also else ""
        return f"{self.metric} {self.bound} {self.threshold:g}{also}"
