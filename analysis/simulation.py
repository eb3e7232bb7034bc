"""Simulated adaptive sweeps through ``analysis.sequential.decide``, the way the runner calls it:
what the tests and benchmarks/adaptive_seeds.py measure the rule by.

Seed s of every configuration shares a latent N(0, 1) draw (a Gaussian copula with correlation
``rho``: the seeds are common random numbers, as the same init and data order make them); seed s
succeeds in configuration i when its latent value is below the normal quantile of rate i. A stop
rule (``seed_stop``) flags a failing seed with probability flag_fail and a succeeding one with
flag_success (its false stops); a flagged seed holding an audit ticket of the sweep
(``trainables.seed_stop.audited`` with a salt drawn per sweep) trains on, the others stop at
``stop_at`` of their training and count as failures.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from analysis.sequential import Design, decide
from trainables.seed_stop import audited


def simulate(
    rates,
    design: Design,
    rng: np.random.Generator,
    seed_stop: tuple | None = None,
    corrected: bool = True,
    rho: float = 0.0,
    stop_at: float = 0.5,
) -> tuple[np.ndarray, dict[str, str], np.ndarray]:
    """One adaptive sweep of configurations ``c0, c1, ...`` with success ``rates``: (seeds each got,
    verdict of each, seed-steps each spent: 1 per seed trained to the end, ``stop_at`` per stopped
    seed). ``seed_stop``: (flag_fail, flag_success, audit), per configuration or one for all (module
    docstring). ``corrected=False`` hides which seeds stopped from ``decide``, as a rule without the
    audit would. ``rho``: the seeds' latent correlation across configurations."""
    rates = np.asarray(rates, float)
    shape = (len(rates), design.max)
    latent = np.sqrt(rho) * rng.standard_normal(design.max) + np.sqrt(1 - rho) * rng.standard_normal(shape)
    draws = latent < stats.norm.ppf(rates)[:, None]
    ids = [f"c{i}" for i in range(len(rates))]
    seen, stops, halted = draws, None, np.zeros(shape, bool)
    if seed_stop is not None:
        rule = np.broadcast_to(np.asarray(seed_stop, float), (len(rates), 3))
        fail, success, audit = (rule[:, j : j + 1] for j in range(3))
        flagged = rng.random(shape) < np.where(draws, success, fail)
        salt = int(rng.integers(2**48))  # the sweep's audit salt
        tickets = np.array([[audited(s, a, salt) for s in range(design.max)] for a in audit[:, 0]])
        halted = flagged & ~tickets
        seen = draws & ~halted
        marks = np.where(flagged & tickets, "audited", np.where(flagged, "stopped", ""))
        if corrected:
            stops = {c: {s: str(m) for s, m in enumerate(marks[i]) if m} for i, c in enumerate(ids)}
    n, stopped, round_ = np.zeros(len(rates), int), frozenset(), 1
    while True:
        n[[i for i, c in enumerate(ids) if c not in stopped]] = design.round_end(round_)
        out = decide(
            {c: dict(enumerate(seen[i, : n[i]].tolist())) for i, c in enumerate(ids)},
            design,
            round_,
            stopped,
            stops=stops,
        )
        stopped = frozenset(c for c, d in out.items() if not d["open"])
        if len(stopped) == len(ids):
            given = np.arange(design.max)[None, :] < n[:, None]
            steps = (given * np.where(halted, stop_at, 1.0)).sum(axis=1)
            return n, {c: d["verdict"] for c, d in out.items()}, steps
        round_ += 1
