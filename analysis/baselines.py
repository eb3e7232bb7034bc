"""The trivial baselines beside a success table: what each of the family's baselines (no training,
scored on the same validation data as the seeds; ``trainables.baselines``) scores on the rule's metric,
and whether it meets the rule. A rule a baseline meets counts a predictor that learned nothing as a
success, so the table's rate then says little about learning."""

from __future__ import annotations

import math

import pandas as pd

from trainables.baselines import Score, against

HEADER = "trivial baselines on the same validation data (no training; 95% bootstrap over validation sequences):"


def lines(table: pd.DataFrame) -> list[str]:
    """The baselines' lines for the table's rule (``table.attrs``: ``applied_rule``, ``baselines``): one
    per baseline when every configuration has the same score, else one per baseline and configuration."""
    rule = table.attrs.get("applied_rule")
    if rule is None:
        return []
    rows = [r for r in table.attrs.get("baselines") or [] if r["metric"] == rule.metric]
    if not rows:
        return [f"{HEADER} none recorded for {rule.metric} (a family without any, or runs logged before them)"]
    out = [HEADER]
    for name in dict.fromkeys(r["baseline"] for r in rows):
        mine = [r for r in rows if r["baseline"] == name]
        scores = [Score(r["baseline"], r["metric"], r["value"], r["low"], r["high"]) for r in mine]
        same = all(math.isclose(s.value, scores[0].value, rel_tol=1e-9, abs_tol=1e-12) for s in scores)
        if same:
            out += [f"  {line}" for line in against(scores[:1], rule)]
        else:
            out += [f"  config {r['config_id']}: {line}" for r, s in zip(mine, scores) for line in against([s], rule)]
    return out
