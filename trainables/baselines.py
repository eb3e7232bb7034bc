"""Trivial baselines beside every rule: what a family's baselines (``PackedModel.baselines``: the data
alone, no training) score on its metrics, with a 95% percentile-bootstrap interval over the validation
sequences; their layout as metrics on the configuration's MLflow run; and whether a success rule is met
by one (then the rule counts a predictor that learned nothing as a success).

The bootstrap resamples the validation sequences with replacement within each half of the set (the
first ``round(N / 2)`` from the first half, the rest from the second), so a metric fitted on one half and
scored on the other (SPS's ``linear_proj_mse``) never sees a sequence on both sides. The interval says
how far the baseline's score moves with another validation set of this size: wide on a small set.
No torch at import (``seedsweep analyze`` reads the layout without it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trainables.rule import SuccessRule

PREFIX = "baseline"  # metric keys: baseline/<name>/<metric>, and .../<metric>/low, .../<metric>/high
RESAMPLES = 200  # bootstrap resamples of the validation sequences
LEVEL = 0.95  # the interval's coverage


@dataclass(frozen=True)
class Score:
    """One baseline's score on one metric: the value on the validation set, and its interval."""

    baseline: str  # e.g. hand_code, constant, blend, copy_last
    metric: str  # a metric the family declares
    value: float  # on the validation set itself
    low: float  # 95% percentile bootstrap over validation sequences (NaN: not computed)
    high: float

    @property
    def key(self) -> str:
        return f"{PREFIX}/{self.baseline}/{self.metric}"

    def shown(self) -> str:
        """``0.177 (95% 0.150-0.206)``."""
        ci = f" (95% {self.low:.3g}-{self.high:.3g})" if math.isfinite(self.low) and math.isfinite(self.high) else ""
        return f"{self.value:.3g}{ci}"


def halves_resample(n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of n sequences drawn with replacement, the first ``round(n / 2)`` from the first half."""
    half = round(n / 2)
    return np.concatenate([rng.integers(0, half, half), rng.integers(half, n, n - half)])


def estimate(model_cls, cfg, x, y, resamples: int = RESAMPLES, seed: int = 0) -> list[Score]:
    """Every baseline of ``model_cls`` on the validation frames ``x`` [N, T, 3, H, W] and targets ``y``,
    with its bootstrap interval (``resamples`` 0: no interval)."""
    import torch

    threads = torch.get_num_threads()
    if x.device.type == "cpu":  # many small ops: intra-op threads cost more than they save (20x on 2 busy cores)
        torch.set_num_threads(1)
    try:
        return _estimate(model_cls, cfg, x, y, resamples, seed)
    finally:
        torch.set_num_threads(threads)


def _estimate(model_cls, cfg, x, y, resamples: int, seed: int) -> list[Score]:
    import torch

    point = model_cls.baselines(cfg, x, y)
    draws = {(b, m): [] for b, scores in point.items() for m in scores}
    rng = np.random.default_rng(seed)
    for _ in range(resamples if len(x) > 1 else 0):
        idx = torch.as_tensor(halves_resample(len(x), rng), device=x.device)
        for b, scores in model_cls.baselines(cfg, x[idx], y[idx]).items():
            for m, v in scores.items():
                draws[(b, m)].append(v)
    out = []
    for (b, m), values in draws.items():
        v = np.asarray(values, float)
        v = v[np.isfinite(v)]
        low, high = np.quantile(v, [(1 - LEVEL) / 2, (1 + LEVEL) / 2]) if len(v) else (math.nan, math.nan)
        out.append(Score(b, m, float(point[b][m]), float(low), float(high)))
    return out


def as_metrics(scores: list[Score]) -> dict[str, float]:
    """The scores as metrics of the configuration's run (``baseline/<name>/<metric>``, ``/low``, ``/high``)."""
    out = {}
    for s in scores:
        out.update({s.key: s.value, f"{s.key}/low": s.low, f"{s.key}/high": s.high})
    return out


def from_metrics(metrics: dict[str, float]) -> list[Score]:
    """``as_metrics`` read back (other metrics are ignored)."""
    out = []
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == PREFIX:
            low, high = (float(metrics.get(f"{key}/{end}", math.nan)) for end in ("low", "high"))
            out.append(Score(parts[1], parts[2], float(value), low, high))
    return sorted(out, key=lambda s: (s.metric, s.baseline))


def against(scores: list[Score], rule: SuccessRule) -> list[str]:
    """One line per baseline scored on the rule's metric: its score, and whether it meets the rule or
    any of its ``also`` thresholds."""
    lines = []
    for s in (s for s in scores if s.metric == rule.metric):
        met = [t for t in (rule.threshold, *rule.also) if SuccessRule(rule.metric, rule.bound, t).meets(s.value)]
        verdict = (
            f"MEETS the rule ({rule.metric} {rule.bound} {rule.threshold:g}): the rule counts it a success"
            if rule.threshold in met
            else f"meets {rule.bound} {', '.join(f'{t:g}' for t in met)} (also reported)"
            if met
            else "fails the rule"
        )
        lines.append(f"baseline {s.baseline}: {rule.metric} {s.shown()}; {verdict}")
    return lines


def meeting(scores: list[Score], rule: SuccessRule) -> list[Score]:
    """The baselines whose score meets the rule itself."""
    return [s for s in scores if s.metric == rule.metric and rule.meets(s.value)]
