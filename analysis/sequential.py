"""Anytime-valid intervals for a success rate, and the rule that stops adding seeds.

A fixed-n interval (Wilson, Clopper-Pearson) covers the true rate with probability 1 - alpha only
if n was chosen before looking. Adding seeds while the answer is still open and stopping once it
looks settled is optional stopping, and those intervals then cover less. A confidence sequence
covers the rate at every n at once: P(the true rate ever leaves the interval) <= alpha, so seeds
may follow the evidence.

Construction (Robbins' mixture; Howard, Ramdas, McAuliffe & Sekhon, "Time-uniform, nonparametric,
nonasymptotic confidence sequences", Ann. Statist. 2021): for a candidate rate p, the likelihood
ratio of the Beta(a, b) mixture of Bernoulli laws against Bernoulli(p) after s successes in n seeds,

    M_n(p) = [B(s + a, n - s + b) / B(a, b)] / [p^s (1 - p)^(n - s)],

is a nonnegative martingale with M_0 = 1 when p is the true rate, so by Ville's inequality
P(exists n: M_n(p) >= 1/alpha) <= alpha. The confidence sequence is {p : M_n(p) < 1/alpha}, an
interval around s/n (log M_n is convex in p and negative at s/n) whose endpoints are the roots of
log M_n(p) = log(1/alpha) on either side (scipy's bracketing root finder, vectorised). The prior is Beta(1, 1) (uniform: no rate favoured; it spends its width evenly over
n and over p); ``prior`` changes it.

The adaptive design (``Design``) gives every configuration ``start`` seeds, then ``step`` more per
round to the configurations still open, up to ``max``. The family's alpha is split over the K
configurations (Bonferroni: alpha / K each), so all K intervals hold together at every round
with probability >= 1 - alpha, whatever the stopping rule does. ``until``:

- ``separated``: the best configuration is the one with the highest rate; a configuration stops
  once its interval lies wholly below the best's (it is worse), and the best stops once its
  interval overlaps no other's (all are decided);
- ``halfwidth`` h: a configuration stops once its interval is at most 2h wide.

Either way a configuration stops at ``max`` seeds, or with no counted seed (all pruned or failed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.optimize.elementwise import find_root
from scipy.special import betaln, xlog1py, xlogy

from analysis.runs import natural_key
from analysis.success import ALPHA, success_table

PRIOR = (1.0, 1.0)  # Beta(a, b) mixing prior: uniform
TABLED = 256  # confidence_sequence reads counts up to this n from a precomputed table (~1 s to build at 256)
EDGE = 1e-300  # the lower endpoint's bracket starts here (log M_n is +inf at p = 0)


def log_ratio(p: float, successes: int, n: int, prior: tuple[float, float] = PRIOR) -> float:
    """log M_n(p): the Beta mixture against Bernoulli(p), after ``successes`` in ``n``."""
    a, b = prior
    return betaln(successes + a, n - successes + b) - betaln(a, b) - xlogy(successes, p) - xlog1py(n - successes, -p)


def confidence_sequence(
    successes: int, n: int, alpha: float = ALPHA, prior: tuple[float, float] = PRIOR
) -> tuple[float, float]:
    """(low, high): the (1 - alpha) confidence sequence for a success rate after ``successes`` of
    ``n`` seeds, valid uniformly over n (see the module docstring). (0, 1) when n = 0; low is 0
    when successes = 0 and high is 1 when successes = n. Up to n = TABLED with the default prior
    it is read from ``sequence_table`` (one vectorised solve per size and alpha): a rule replayed
    over rounds, or simulated many times, asks for the same counts again and again."""
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if prior == PRIOR and n <= TABLED and 0 < alpha < 1:
        low, high = sequence_table(max(64, 1 << (int(n) - 1).bit_length()), float(alpha))
        return float(low[successes, n]), float(high[successes, n])
    low, high = confidence_bounds(np.array([successes]), np.array([n]), alpha, prior)
    return float(low[0]), float(high[0])


def confidence_bounds(
    successes, n, alpha: float = ALPHA, prior: tuple[float, float] = PRIOR
) -> tuple[np.ndarray, np.ndarray]:
    """``confidence_sequence`` elementwise over arrays of counts: both endpoints of every interval
    at once, as roots of log M_n(p) = log(1/alpha) bracketed by (0, s/n) and (s/n, 1) (scipy's
    vectorised ``elementwise.find_root``)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    s, n = np.broadcast_arrays(np.asarray(successes, dtype=float), np.asarray(n, dtype=float))
    low, high = np.zeros(s.shape), np.ones(s.shape)
    rate = np.divide(s, n, out=np.zeros(s.shape), where=n > 0)

    def excess(p, s, n):
        return log_ratio(p, s, n, prior) + math.log(alpha)

    for out, inner, edge in ((low, s > 0, EDGE), (high, s < n, 1 - 2**-53)):
        if inner.any():
            bracket = (
                (np.full(inner.sum(), edge), rate[inner]) if edge < 0.5 else (rate[inner], np.full(inner.sum(), edge))
            )
            found = find_root(excess, bracket, args=(s[inner], n[inner]), tolerances={"xatol": 1e-15, "xrtol": 4e-16})
            out[inner] = found.x
    return low, high


@lru_cache(maxsize=16)
def sequence_table(max_n: int, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """``confidence_sequence`` for every (successes, n) up to ``max_n``: arrays low[s, n], high[s, n]
    (NaN where s > n), to look intervals up along many simulated paths at once."""
    s, n = np.meshgrid(np.arange(max_n + 1), np.arange(max_n + 1), indexing="ij")
    low, high = np.full(s.shape, np.nan), np.full(s.shape, np.nan)
    valid = s <= n
    low[valid], high[valid] = confidence_bounds(s[valid], n[valid], alpha)
    low.setflags(write=False)
    high.setflags(write=False)
    return low, high


UNTIL = ("separated", "halfwidth")


@dataclass(frozen=True)
class Design:
    """Adaptive seeds: ``start`` seeds per configuration, ``step`` more per round while open, up to ``max``."""

    start: int = 8  # seeds of the first round (the example)
    step: int = 8  # seeds added per round to each open configuration
    max: int = 64  # seeds per configuration at most
    until: str = "separated"  # "separated" or "halfwidth"
    halfwidth: float | None = None  # with until = "halfwidth": stop at this half-width
    alpha: float = ALPHA  # the family's error rate (analysis.success.ALPHA), split over the configurations

    def round_seeds(self, round_: int) -> list[int]:
        """Seed numbers of round ``round_`` (1-based): 0..start-1, then blocks of ``step`` up to ``max``."""
        first = 0 if round_ == 1 else self.start + (round_ - 2) * self.step
        last = self.start if round_ == 1 else self.start + (round_ - 1) * self.step
        return list(range(first, min(last, self.max)))

    def round_of(self, seed: int) -> int:
        """The round whose block holds ``seed``."""
        return 1 if seed < self.start else 2 + (seed - self.start) // self.step

    @property
    def rounds(self) -> int:
        """The most rounds a configuration can take."""
        return 1 + max(0, math.ceil((self.max - self.start) / self.step))

    def rule(self) -> str:
        return "separated" if self.until == "separated" else f"halfwidth {self.halfwidth:g}"

    def describe(self, configurations: int | None = None) -> str:
        each = (
            f", {self.alpha / configurations:.3g} each over {configurations} configurations" if configurations else ""
        )
        return (
            f"adaptive: {self.start} seeds, then {self.step} more a round to each open configuration, up to "
            f"{self.max}; until {self.rule()} (anytime-valid {1 - self.alpha:.0%} intervals, alpha {self.alpha:g}"
            f"{each}, Bonferroni)"
        )

    def to_dict(self) -> dict:
        return {
            "start": self.start,
            "step": self.step,
            "max": self.max,
            "until": self.until,
            "halfwidth": self.halfwidth,
            "alpha": self.alpha,
        }

    @classmethod
    def from_dict(cls, raw: dict) -> Design:
        return cls(**{k: raw[k] for k in ("start", "step", "max", "until", "halfwidth", "alpha") if k in raw})


def decide(
    counts: dict[str, tuple[int, int]],
    design: Design,
    configurations: int | None = None,
    round_: int | None = None,
    stopped: frozenset = frozenset(),
) -> dict[str, dict]:
    """After round ``round_``, per configuration ``{config_id: (successes, n)}``: ``low``, ``high``
    (the anytime interval at alpha / K), ``open`` (bool: it gets the next round's seeds) and ``why``
    (a short reason). K = ``configurations`` (default: the configurations in ``counts``); those in
    ``stopped`` stopped in an earlier round and stay stopped. Without ``round_``, ``max`` is reached
    at n >= max counted seeds."""
    k = configurations or len(counts)
    alpha = design.alpha / max(k, 1)
    out = {}
    for cid, (s, n) in counts.items():
        low, high = confidence_sequence(int(s), int(n), alpha)
        gone = cid in stopped
        out[cid] = {
            "successes": int(s),
            "n": int(n),
            "low": low,
            "high": high,
            "open": not gone,
            "why": "stopped in an earlier round" if gone else "",
        }
    counted = {cid: d for cid, d in out.items() if d["n"] > 0}
    if design.until == "separated" and counted:
        best = max(
            sorted(counted, key=natural_key), key=lambda c: (counted[c]["successes"] / counted[c]["n"], counted[c]["n"])
        )
        others = [c for c in counted if c != best]
        for cid in others:
            if out[cid]["open"] and out[cid]["high"] < out[best]["low"]:
                out[cid].update(open=False, why=f"below best {best}")
        if out[best]["open"]:
            overlapping = [c for c in others if out[c]["open"]]
            if overlapping:
                out[best]["why"] = f"best, overlaps {', '.join(overlapping)}"
            else:
                out[best].update(open=False, why="best, separated from all" if others else "only configuration")
        for cid in others:
            if out[cid]["open"]:
                out[cid]["why"] = f"overlaps best {best}"
    for d in out.values():
        if not d["open"]:
            continue
        if design.until == "halfwidth" and d["n"]:
            width = (d["high"] - d["low"]) / 2
            d.update(
                open=width > design.halfwidth,
                why=f"half-width {width:.2f} {'>' if width > design.halfwidth else '<='} {design.halfwidth:g}",
            )
        if d["n"] == 0:
            d.update(open=False, why="no counted seeds (pruned or failed)")
        elif d["open"] and (not design.round_seeds(round_ + 1) if round_ else d["n"] >= design.max):
            d.update(open=False, why=f"reached max {design.max} ({d['why']})")
    return out


def history(runs, design: Design, rounds: int | None = None):
    """The rule replayed from a sweep's seed runs (``analysis.runs.load_runs``): one row per round
    and configuration with the counts of the seeds given so far (``analysis.success.success_table``:
    finished and diverged seeds count), the anytime interval and whether seeds went on, and why.
    K for the alpha split is the number of configurations in the runs. ``rounds``: up to this one
    (default: the last round any seed ran in)."""
    import pandas as pd

    round_of = runs["seed"].map(lambda s: design.round_of(int(s)))
    last = int(round_of.max()) if rounds is None else rounds
    ids = sorted(runs["config_id"].unique(), key=natural_key)
    rows, stopped = [], frozenset()
    for r in range(1, last + 1):
        table = success_table(runs[round_of <= r], params=[]).set_index("config_id")
        counts = {
            cid: (int(table.at[cid, "successes"]), int(table.at[cid, "n"])) if cid in table.index else (0, 0)
            for cid in ids
        }
        decided = decide(counts, design, len(ids), r, stopped)
        rows += [
            {"round": r, "config_id": cid, **{k: d[k] for k in ("successes", "n", "low", "high", "open", "why")}}
            for cid, d in decided.items()
            if cid not in stopped
        ]
        stopped = frozenset(cid for cid, d in decided.items() if not d["open"])
    return pd.DataFrame(rows, columns=["round", "config_id", "successes", "n", "low", "high", "open", "why"])
