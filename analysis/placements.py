"""Where the stopped seeds that may have succeeded could lie: the exact check that a paired claim
holds for every placement of at most W+ of them (``seed_stop`` with ``decide_on: no_stop``).

A claim "x is better than y" must hold however up to W+ of each one's stopped seeds would have
ended. Turning a stopped seed into a success changes the pair's looks (``analysis.paired_sequential.looks``:
seeds seen n, discordant m, discordant favouring x w) only through its side, its kind and the look
it enters. For y's seed: where x succeeded the pair turns concordant (m - 1), where x failed it
turns discordant for y (m + 1); either way x's lead 2w - m falls by one. For x's seed, likewise
with the lead rising by one. The group-sequential test (``paired_sequential.difference``) reads a placement
through these counts only, so it is enough to go through the per-look cumulative counts of
converted seeds of each side and kind: each grows at a look by at most the stopped seeds of its
kind that enter there (a seed turns at the look it enters, and counts at every later one, or
never), each side's total at most its W+. ``holds`` searches them depth-first (a branch ends where
the claim's boundary is crossed; states with the same look, counts and discordant counts so far
are searched once; a claim needing more than ``LIMIT`` states is refused, which keeps it valid
and the time bounded); ``variants`` lists every count path. The claim "x is worse" is the mirror
image.

Turning the earliest stopped seeds into successes (what ``sequential.worst_cases`` does) is not
enough for this test: the boundaries depend on the discordant counts, so a later placement can
raise a later boundary. It is enough for the equivalence test (``paired_sequential.equivalent``): each
conversion lowers one of its betting martingales at every later seed and raises the other, so W+
conversions at the earliest seeds of each kind, over every split between the kinds, are the worst.
"""

from __future__ import annotations

import numpy as np

from analysis import paired_sequential


def available(common: np.ndarray, other: np.ndarray, stopped, counts: list[int]) -> tuple[list[int], list[int]]:
    """(won, lost): at each look (``counts``: seeds seen, in seed order of ``common``), how many
    ``stopped`` seeds were seen where the other configuration's counted outcome (``other``, aligned
    with ``common``) is a success, and where it is a failure."""
    mine = np.isin(common, np.fromiter(stopped, int, len(stopped)))
    won, lost = np.cumsum(mine & other), np.cumsum(mine & ~other)
    return [int(won[n - 1]) if n else 0 for n in counts], [int(lost[n - 1]) if n else 0 for n in counts]


LIMIT = 3000  # states (look, counts, discordant counts so far) ``holds`` goes through before refusing a claim

# a conversion's effect on a look, by (side, kind): (change of m, change of the claimed-better side's lead 2w - m)
EFFECT = {
    ("worse", "won"): (-1, -1),
    ("worse", "lost"): (1, -1),
    ("better", "won"): (-1, 1),
    ("better", "lost"): (1, 1),
}


def shifted(step: tuple[int, int, int], counts: dict, sign: int) -> tuple[int, int, int]:
    """One look (n, m, w) with ``counts`` ({(side, kind): converted by this look}) of the two
    configurations' stopped seeds turned into successes; ``sign`` +1: x is the claimed-better side."""
    n, m, w = step
    dm = sum(EFFECT[key][0] * c for key, c in counts.items())
    lead = 2 * w - m + sign * sum(EFFECT[key][1] * c for key, c in counts.items())
    return n, m + dm, (lead + m + dm) // 2


def paths(avail: dict, budget: dict, looks: int, k: int = 0, done: dict | None = None):
    """Every count path (one {(side, kind): converted by look k} per look) from look ``k`` on:
    non-decreasing, within each look's ``avail`` ({(side, kind): [per look]}) and each side's
    ``budget`` ({side: W+})."""
    done = done or dict.fromkeys(avail, 0)
    if k == looks:
        yield []
        return
    for now in steps_at(avail, budget, k, done):
        for rest in paths(avail, budget, looks, k + 1, now):
            yield [now, *rest]


def steps_at(avail: dict, budget: dict, k: int, done: dict):
    """The counts a path can reach at look ``k`` from ``done`` at the look before: a stopped seed
    turns at the look it enters (and counts at every later one) or never."""

    def new(key) -> int:  # stopped seeds of this kind that enter at look k: only those can turn now
        seen = avail.get(key, [0] * (k + 1))
        return seen[k] - (seen[k - 1] if k else 0)

    ranges = []
    for side in ("worse", "better"):
        won, lost = (side, "won"), (side, "lost")
        u0, v0, w = done.get(won, 0), done.get(lost, 0), budget.get(side, 0)
        ranges.append(
            [
                {won: u, lost: v}
                for u in range(u0, min(u0 + new(won), w - v0) + 1)
                for v in range(v0, min(v0 + new(lost), w - u) + 1)
            ]
        )
    for worse in ranges[0]:
        for better in ranges[1]:
            yield {**worse, **better}


def variants(steps: list, avail: dict, budget: dict, sign: int):
    """The looks of every placement (one per count path)."""
    for path in paths(avail, budget, len(steps)):
        yield [shifted(s, c, sign) for s, c in zip(steps, path)]


def holds(steps: list, avail: dict, budget: dict, sign: int, test) -> bool:
    """Whether the claim that the ``sign`` side is better (``test(looks)`` returns
    ``paired_sequential.difference``'s (direction, look)) stands under every placement: on every count path
    the first crossing is the claim's. ``avail``, ``budget``: as ``paths`` takes them. A claim
    whose count paths reach more than ``LIMIT`` states is not made: unchecked, it may not stand."""
    seen: set = set()

    def search(k: int, done: dict, prefix: tuple) -> bool:
        for now in steps_at(avail, budget, k, done):
            look = shifted(steps[k], now, sign)
            key = (k, tuple(sorted(now.items())), tuple(m for _, m, _ in prefix) + (look[1],))
            if key in seen:
                continue
            if len(seen) >= LIMIT:  # too many to go through: not shown for every placement
                return False
            seen.add(key)
            here = (*prefix, look)
            found = test(list(here))[0]
            if found == sign:
                continue
            if found == -sign or k + 1 == len(steps) or not search(k + 1, now, here):
                return False
        return True

    return bool(steps) and search(0, {}, ())


def arrangement(a: dict, b: dict, steps: list, sign: int, stops: tuple) -> tuple[dict, dict]:
    """(avail, budget) for ``holds`` of the claim that a (``sign`` +1) or b (-1) is better, from
    their outcomes ({seed: success}), their looks ``steps`` and ``stops`` (for a and for b: (stopped
    seeds, W+)). A seed both stopped counts in both sides' availability: the paths then include a
    few that no placement gives (both turned, a pair counted discordant twice), which can only make
    the check stricter."""
    common = np.array(sorted(set(a) & set(b)), dtype=int)
    counts = [n for n, _, _ in steps]
    (better, (s_better, w_better)), (worse, (s_worse, w_worse)) = sorted(
        [(a, stops[0]), (b, stops[1])], key=lambda side: side[0] is not (a if sign > 0 else b)
    )
    avail = {}
    for side, other, stopped in (("worse", better, s_worse), ("better", worse, s_better)):
        outcome = np.array([bool(other[s]) for s in common], dtype=bool)
        avail[side, "won"], avail[side, "lost"] = available(common, outcome, list(stopped), counts)
    return avail, {"worse": int(w_worse), "better": int(w_better)}


def direction_for(max_seeds: int, level: float, rho: float = paired_sequential.RHO, ladder: tuple = ()):
    """``test`` for ``holds``: the paired group-sequential test at ``level`` in its Holm ``ladder``."""
    return lambda looks: paired_sequential.difference(looks, max_seeds, level, rho, ladder)
