"""Adaptive seeds: the rule that decides, after each round, which configurations get more seeds,
with the anytime-valid intervals of ``analysis.confidence``.

A fixed-n interval (Wilson, Clopper-Pearson) or test (Fisher) holds only if n was chosen before
looking. Adding seeds while the answer is open and stopping once it looks settled is optional
stopping; the quantities below stay valid under it.

**The confidence sequence** of one rate is ``analysis.confidence``.

**The design** (``Design``): every configuration gets ``start`` seeds, then ``step`` more per round
while open, up to ``max``. ``until``:

- ``decided`` (default): every pair of configurations is compared by a paired, group-sequential
  test of the difference (``analysis.paired_sequential.difference``: discordant seeds, alpha spent by the
  share of ``max`` seen), at alpha / (number of pairs) (Bonferroni over the K(K-1)/2 pairs, so any
  configuration may be the witness). A configuration another beats is ``worse`` and gets no more
  seeds (successive elimination: seeds go only where the ranking is still open); the last one
  standing is ``best``. With ``margin`` eps, a pair whose paired difference is shown within +-eps
  (``analysis.paired_sequential.equivalent``) is a tie, and configurations tied with every other survivor
  stop as ``tied``. A survivor none of whose open pairs could still be decided by ``max`` (the
  most favourable continuation does not reach the boundary) stops as ``undecided`` (futility).
- ``separated``: a configuration stops once its confidence sequence (alpha / K) lies wholly below
  the best's, the best once it overlaps no other's (kept for old sweeps: it never tests the
  difference and spends 2.5-3.5x the seeds of a fixed design);
- ``halfwidth`` h: a configuration stops once its confidence sequence is at most 2h wide.

Either way a configuration stops at ``max`` seeds (``undecided`` if still open).

**With seed_stop** (trainables.seed_stop) ``Design.decide_on`` says which rate the verdicts are
about. ``recipe`` (default): the success rate of training with the stop rule. A stopped seed, and a
stop candidate that trained on as the audit, fails the recipe (``recipe``); that is an ordinary
paired binary outcome, so the tests above hold as they are, with no share of alpha for the stops
(the audit is then a check that the rule treats configurations alike, ``analysis.seed_stop``).
``no_stop``: the rate had no seed been stopped, which a stopped seed (predicted to fail, not seen
to) leaves open. ``Design.stop_share`` (``STOP_SHARE`` of alpha; the spec sets it) bounds, per
configuration and round, how many of its stopped seeds would have succeeded (W+ from its audited
candidates, ``analysis.audit``); the tests and intervals run at the rest of alpha. A claim that a
configuration is worse, or a tie, must hold for every placement of up to W+ of each
configuration's stopped seeds turned into successes (``analysis.placements``), and its interval's
upper end counts them: the claims stay valid at alpha when the stop rule errs (simulated in
tests/test_sequential.py), at the price of many more seeds (benchmarks/README.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analysis import paired_sequential, placements
from analysis.audit import stopped_successes_bound
from analysis.confidence import ALPHA, confidence_sequence
from analysis.order import natural_key
from trainables.seed_stop import RATES

UNTIL = ("decided", "separated", "halfwidth")
VERDICTS = ("best", "worse", "tied", "undecided", "open")


@dataclass(frozen=True)
class Design:
    """Adaptive seeds: ``start`` seeds per configuration, ``step`` more per round while open, up to ``max``."""

    start: int = 8  # seeds of the first round
    step: int = 8  # seeds added per round to each open configuration
    max: int = 64  # seeds per configuration at most
    until: str = "decided"  # "decided" (paired tests of the difference), "separated" or "halfwidth"
    halfwidth: float | None = None  # with until = "halfwidth": stop at this half-width
    alpha: float = ALPHA  # the family's error rate over all the sweep's claims
    margin: float | None = None  # with until = "decided": pairs shown within +-margin are ties
    spend: float = paired_sequential.RHO  # with until = "decided": alpha spent as alpha * t**spend, t = seeds / max
    stop_share: float = 0.0  # with decide_on no_stop: the share of alpha that bounds the stopped seeds' successes
    decide_on: str = "recipe"  # with seed_stop: verdicts on the rate with the stop rule, or "no_stop"

    @property
    def test_alpha(self) -> float:
        """The alpha of the tests and intervals: all of it, less ``stop_share`` when deciding on no_stop."""
        return self.alpha * (1 - self.stop_share) if self.decide_on == "no_stop" else self.alpha

    def round_seeds(self, round_: int) -> list[int]:
        """Seed numbers of round ``round_`` (1-based): 0..start-1, then blocks of ``step`` up to ``max``."""
        first = 0 if round_ == 1 else self.start + (round_ - 2) * self.step
        last = self.start if round_ == 1 else self.start + (round_ - 1) * self.step
        return list(range(first, min(last, self.max)))

    def round_of(self, seed: int) -> int:
        """The round whose block holds ``seed``."""
        return 1 if seed < self.start else 2 + (seed - self.start) // self.step

    def round_end(self, round_: int) -> int:
        """One past the last seed number of round ``round_``."""
        return min(self.max, self.start + (round_ - 1) * self.step)

    @property
    def rounds(self) -> int:
        """The most rounds a configuration can take."""
        return 1 + max(0, math.ceil((self.max - self.start) / self.step))

    def rule(self) -> str:
        if self.until == "halfwidth":
            return f"halfwidth {self.halfwidth:g}"
        return self.until + (f" (ties within +-{self.margin:g})" if self.margin else "")

    def describe(self, configurations: int | None = None, seed_stop: bool = False) -> str:
        k = configurations or 0
        if self.until == "decided":
            over = f" over {k} configurations" if k else ""
            how = f"paired group-sequential tests of the difference, Holm step-down{over}, family-wise alpha {self.alpha:g}"
        else:
            each = f", {self.alpha / k:.3g} each over {k} configurations, Bonferroni" if k else ""
            how = f"anytime-valid {1 - self.alpha:.0%} intervals, alpha {self.alpha:g}{each}"
        share = (
            f"; {self.stop_share:.0%} of alpha bounds the stopped seeds by the audit (a configuration with many "
            "stopped seeds is seldom shown worse, benchmarks/README.md)"
            if self.decide_on == "no_stop"
            else ""
        )
        stops = f"; seed_stop: verdicts on {RATES[self.decide_on]}{share}" if seed_stop else ""
        return (
            f"adaptive: {self.start} seeds, then {self.step} more a round to each open configuration, up to "
            f"{self.max}; until {self.rule()} ({how}){stops}"
        )

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in FIELDS}

    @classmethod
    def from_dict(cls, raw: dict) -> Design:
        # sweeps tagged before ``until: decided`` existed ran ``separated``, the default of that time;
        # those tagged before ``decide_on`` with a stop share decided on the no-stop rate
        old = {"until": "separated", "decide_on": "no_stop" if raw.get("stop_share") else "recipe"}
        return cls(**{**old, **{k: raw[k] for k in FIELDS if k in raw}})


FIELDS = ("start", "step", "max", "until", "halfwidth", "alpha", "margin", "spend", "stop_share", "decide_on")
STOP_SHARE = 0.2  # with seed_stop, Design.stop_share: a fifth of alpha bounds the stopped seeds, the rest tests


def pair_looks(a: dict[int, bool], b: dict[int, bool], design: Design, round_: int):
    """(looks, differences) of configurations with outcomes ``a`` and ``b`` ({seed: success}) over
    their common seeds: ``analysis.paired_sequential.looks`` at the end of each round up to ``round_``."""
    common = np.array(sorted(set(a) & set(b)), dtype=int)
    x = np.array([bool(a[s]) for s in common], dtype=bool)
    y = np.array([bool(b[s]) for s in common], dtype=bool)
    ends = [design.round_end(r) for r in range(1, round_ + 1)]
    return paired_sequential.looks(common, x, y, ends), x.astype(int) - y.astype(int)


def worst_cases(mine: dict[int, bool], stopped: list[int], other: dict[int, bool], w: int):
    """``mine`` with ``w`` of its ``stopped`` seeds turned into successes, in the placements most
    against a claim that it is tied with ``other`` (``paired_sequential.equivalent``): the earliest seeds first,
    for every split between seeds where ``other`` succeeded and where it failed (exact for the
    equivalence test, ``analysis.placements``; the difference test goes through every placement
    there). Stopped seeds ``other`` has not run leave the pair's test as it is."""
    common = sorted(s for s in stopped if s in other)
    won, lost = [s for s in common if other[s]], [s for s in common if not other[s]]
    w = min(w, len(common))
    for j in range(max(0, w - len(lost)), min(w, len(won)) + 1):
        yield {**mine, **dict.fromkeys(won[:j] + lost[: w - j], True)}


def compare_pair(
    a: dict,
    b: dict,
    design: Design,
    round_: int,
    last: bool,
    level: float,
    ladder: tuple,
    stops: tuple = (((), 0), ((), 0)),
) -> str:
    """The state of a pair after ``round_``: ">" (a better), "<", "=" (tied within the margin),
    "futile" (no continuation up to max decides it) or "open". ``level``: the two-sided level of
    the difference test, a step of the Holm ``ladder`` (``rule_decided``). ``stops``: for a and
    for b, (its stopped seeds, W+ of them that may have succeeded, ``analysis.audit``): a claim
    that one is worse must hold however up to W+ of each one's stopped seeds would have ended
    (``analysis.placements``; ties: ``worst_cases``)."""

    (stopped_a, w_a), (stopped_b, w_b) = stops
    steps, d = pair_looks(a, b, design, round_)
    test = placements.direction_for(design.max, level, design.spend, ladder)
    found = test(steps)[0]
    if found and (w_a or w_b):  # it must hold for every placement of the W+ (analysis.placements)
        found *= placements.holds(steps, *placements.arrangement(a, b, steps, found, stops), found, test)
    if found:
        return ">" if found > 0 else "<"
    k = len(ladder) + 1
    tie_alpha = design.test_alpha / (k * (k - 1) // 2)
    variants = [(a, b)]
    variants += [(a2, b) for a2 in worst_cases(a, stopped_a, b, w_a)] if w_a else []
    variants += [(a, b2) for b2 in worst_cases(b, stopped_b, a, w_b)] if w_b else []
    if design.margin and all(
        paired_sequential.equivalent(pair_looks(x, y, design, round_)[1], design.margin, tie_alpha) for x, y in variants
    ):
        return "="
    future = [] if last else [design.round_end(r) for r in range(round_ + 1, design.rounds + 1)]
    n_now = steps[-1][0] if steps else 0
    future = [n for n in future if n > n_now]
    return (
        "open" if paired_sequential.could_decide(steps, future, design.max, level, design.spend, ladder) else "futile"
    )


def possible_successes(
    outcome: dict[int, bool], marks: dict[int, str], design: Design, configurations: int
) -> tuple[list[int], int]:
    """(stopped seeds, W+): a configuration's seeds that seed_stop stopped, and at most how many of
    them would have succeeded (``analysis.audit.stopped_successes_bound`` from its audited
    candidates), at its share of ``design.stop_share`` * alpha: split over the configurations and
    the rounds, so that every bound of the sweep holds at once. ``marks``: {seed: "stopped" |
    "audited"} (audited: a stop candidate that trained on; its outcome is in ``outcome``)."""
    stopped = sorted(s for s, m in marks.items() if m == "stopped" and s in outcome)
    if not stopped or design.decide_on == "recipe":  # the recipe's failures: nothing to vouch for
        return stopped, 0
    audited = [s for s, m in marks.items() if m == "audited" and s in outcome]
    share = design.alpha * design.stop_share / (design.rounds * max(configurations, 1))
    return stopped, stopped_successes_bound(len(stopped), sum(outcome[s] for s in audited), len(audited), share)


def recipe(outcome: dict[int, bool], marks: dict[int, str]) -> dict[int, bool]:
    """A configuration's outcomes as the recipe with its stop rule scores them: a stop candidate
    (``marks``: stopped, or audited and trained on) fails."""
    return {s: bool(v) and s not in marks for s, v in outcome.items()}


def decide(
    outcomes: dict[str, dict[int, bool]],
    design: Design,
    round_: int | None = None,
    stopped: frozenset = frozenset(),
    configurations: int | None = None,
    stops: dict[str, dict[int, str]] | None = None,
) -> dict[str, dict]:
    """After round ``round_``, from each configuration's outcomes ``{config_id: {seed: success}}``:
    per configuration ``successes``, ``n``, ``stopped`` and ``possible`` (seeds seed_stop stopped,
    counted as failures, and W+ of them that may have succeeded), ``low``/``high`` (its confidence
    sequence at alpha / K, the upper end from successes + W+), ``open`` (it gets the next round's
    seeds), ``verdict`` (one of ``VERDICTS``) and ``why``. Configurations in ``stopped`` stopped in
    an earlier round and stay stopped. K = ``configurations`` (default: those in ``outcomes``).
    Without ``round_``, the last round any seed belongs to. ``stops``: per configuration {seed:
    "stopped" | "audited"} for sweeps with seed_stop: with ``design.decide_on`` "recipe" every stop
    candidate is a failure (``recipe``), with "no_stop" the audit vouches for the stopped seeds
    (``possible_successes``)."""
    seeds = [s for o in outcomes.values() for s in o]
    round_ = round_ or (max(design.round_of(s) for s in seeds) if seeds else 1)
    k = configurations or len(outcomes)
    last = not design.round_seeds(round_ + 1)
    out, audit = {}, {}
    if design.decide_on == "recipe" and stops:  # a stop candidate fails the recipe, audited or not
        outcomes = {cid: recipe(o, stops.get(cid, {})) for cid, o in outcomes.items()}
    for cid, o in outcomes.items():
        s, n = sum(map(bool, o.values())), len(o)
        audit[cid] = possible_successes(o, (stops or {}).get(cid, {}), design, k)
        low, _ = confidence_sequence(s, n, design.test_alpha / max(k, 1))
        _, high = confidence_sequence(min(s + audit[cid][1], n), n, design.test_alpha / max(k, 1))
        gone = cid in stopped
        out[cid] = {"successes": s, "n": n, "stopped": len(audit[cid][0]), "possible": audit[cid][1]}
        out[cid].update(low=low, high=high, open=not gone, verdict="open")
        out[cid]["why"] = "stopped in an earlier round" if gone else ""
    if design.until == "decided":
        rule_decided(outcomes, design, round_, k, last, out, audit)
    elif design.until == "separated":
        rule_separated(out)
    for cid in stopped:  # stopped before: no more seeds, whatever the rule says of it now
        if cid in out and out[cid]["verdict"] == "open":
            out[cid].update(open=False, verdict="undecided", why="stopped in an earlier round")
        elif cid in out:
            out[cid]["open"] = False
    for d in out.values():
        if design.until == "halfwidth" and d["open"] and d["n"]:
            width = (d["high"] - d["low"]) / 2
            done = width <= design.halfwidth
            d.update(open=not done, why=f"half-width {width:.2f} {'<=' if done else '>'} {design.halfwidth:g}")
            d["verdict"] = "undecided" if done else "open"
        if d["open"] and last:
            d.update(open=False, verdict="undecided", why=f"reached max {design.max} ({d['why'] or 'open'})")
    return out


def rule_decided(outcomes: dict, design: Design, round_: int, k: int, last: bool, out: dict, audit: dict) -> None:
    """``until: decided`` (module docstring): verdicts and openness into ``out``.

    The claims are "i is worse than j". H_i, "i is a best configuration", is tested by its K - 1
    one-sided pair tests (Bonferroni within H_i), and the H_i by Holm's step-down over the J
    configurations not yet declared worse: each pair's two-sided level is 2 alpha / (J (K - 1)).
    While no true best is rejected J is at least the number m of true bests, so a false claim needs
    one of m (K - 1) one-sided tests to cross at alpha / (m (K - 1)): FWER <= alpha (the sequential
    Holm procedure of Bartroff & Lai 2010, with nested boundaries). Ties are claimed at alpha over
    the K (K - 1) / 2 pairs. With seed_stop, alpha here is ``design.test_alpha`` and a claim must
    hold however the W+ stopped seeds of ``audit`` ({config: (stopped seeds, W+)}) would have
    ended; the W+ bounds spend the rest, so the family's error stays at most ``design.alpha``."""
    ids = sorted(outcomes, key=natural_key)
    alpha = design.test_alpha
    ladder = tuple(2 * alpha / (j * (k - 1)) for j in range(2, k + 1)) or (alpha,)
    worse: set = set()
    while True:  # step down: each configuration declared worse raises the level of the others' tests
        level = ladder[max(k - len(worse), 2) - 2]  # J = k - len(worse); one survivor keeps J = 2's level
        state = {}
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                if outcomes[a] and outcomes[b]:
                    stops = (audit[a], audit[b])
                    state[a, b] = compare_pair(outcomes[a], outcomes[b], design, round_, last, level, ladder, stops)
                    state[b, a] = {">": "<", "<": ">"}.get(state[a, b], state[a, b])
        beaten = {a: sorted((b for b in ids if state.get((a, b)) == "<"), key=natural_key) for a in ids}
        now = {a for a in ids if beaten[a]}
        if now <= worse or len(now) >= k:
            break
        worse = now
    survivors = [c for c in ids if not beaten[c]]
    for c in ids:
        d = out[c]
        if beaten[c]:
            d.update(open=False, verdict="worse", why=f"worse than {', '.join(beaten[c])}")
        elif not outcomes[c]:
            d["why"] = "no counted seeds yet (failed seeds are retried)"
        elif len(survivors) == 1:
            d.update(open=False, verdict="best", why="better than all" if len(ids) > 1 else "only configuration")
        else:
            rivals = {b: state.get((c, b), "open") for b in survivors if b != c}
            still = sorted((b for b, s in rivals.items() if s == "open"), key=natural_key)
            if still:
                d["why"] = f"open against {', '.join(still)}"
            elif all(s == "=" for s in rivals.values()):
                d.update(open=False, verdict="tied", why=f"within +-{design.margin:g} of {', '.join(rivals)}")
            else:
                undecided = sorted((b for b, s in rivals.items() if s == "futile"), key=natural_key)
                d.update(
                    open=False, verdict="undecided", why=f"max {design.max} cannot decide vs {', '.join(undecided)}"
                )


def rule_separated(out: dict) -> None:
    """``until: separated``: non-overlap of the confidence sequences (module docstring)."""
    counted = {cid: d for cid, d in out.items() if d["n"] > 0}
    if not counted:
        return
    best = max(
        sorted(counted, key=natural_key), key=lambda c: (counted[c]["successes"] / counted[c]["n"], counted[c]["n"])
    )
    others = [c for c in counted if c != best]
    for cid in others:
        if out[cid]["high"] < out[best]["low"]:
            out[cid].update(open=False, verdict="worse", why=f"below best {best}")
    if out[best]["open"]:
        overlapping = [c for c in others if out[c]["verdict"] != "worse"]
        if overlapping:
            out[best]["why"] = f"best, overlaps {', '.join(overlapping)}"
        else:
            out[best].update(
                open=False, verdict="best", why="best, separated from all" if others else "only configuration"
            )
    for cid in others:
        if out[cid]["verdict"] == "open":
            out[cid]["why"] = out[cid]["why"] or f"overlaps best {best}"
