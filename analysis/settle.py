"""The settledness check's counts (``sweeps.settle``): per configuration, how many of the seeds that
trained on to ``factor`` x the epochs changed outcome (success <-> failure) under the table's rule,
with an exact (Clopper-Pearson) 95% interval for the share that flips. Few flips say the table's
outcomes are those of a longer run; many say it measures how far training got (time to escape)."""

from __future__ import annotations

import pandas as pd

from trainables.rule import SuccessRule

TAG, STATUS, EPOCHS = "settle.success", "settle.status", "settle.epochs"


def settled_outcome(runs: pd.DataFrame, rule: SuccessRule | None) -> pd.Series:
    """Each continued seed's outcome after the longer run (NaN where none was continued): its
    ``settle/<metric>`` under ``rule`` when logged, else the stored tag; only a finished seed succeeds."""
    continued = runs[TAG].notna()
    column = f"settle/{rule.metric}" if rule else None
    if rule and column in runs:
        ok = rule.meets(runs[column].astype(float)) & runs[STATUS].eq("finished")
    else:
        ok = runs[TAG].eq("true")
    return ok.astype(object).where(continued)


def flips(runs: pd.DataFrame, ok: pd.Series, rule: SuccessRule | None) -> pd.DataFrame | None:
    """Per configuration: ``continued``, ``flips``, ``to_success``, ``to_failure``, ``epochs`` and the
    95% Clopper-Pearson ``flip_low``/``flip_high`` of the flip share; None without a settledness check."""
    from analysis.success import interval

    if TAG not in runs or not runs[TAG].notna().any():
        return None
    after = settled_outcome(runs, rule)
    rows = []
    for cid, idx in runs.groupby("config_id", sort=False).groups.items():
        mine = after[idx].dropna().astype(bool)
        before = ok[mine.index].astype(bool)
        epochs = pd.to_numeric(runs.loc[mine.index, EPOCHS], errors="coerce").max() if len(mine) else None
        rows.append(
            {
                "config_id": cid,
                "continued": len(mine),
                "flips": int((mine != before).sum()),
                "to_success": int((mine & ~before).sum()),
                "to_failure": int((~mine & before).sum()),
                "epochs": epochs,
            }
        )
    out = pd.DataFrame(rows)
    out["flip_low"], out["flip_high"] = interval(out["flips"], out["continued"], "beta")
    return out


def lines(table: pd.DataFrame) -> list[str]:
    """The settledness check's lines under the success table (``table.attrs["settle"]``)."""
    found = table.attrs.get("settle")
    if found is None:
        return []
    out = ["settledness check (seeds continued to more epochs; outcome flips, 95% Clopper-Pearson of the share):"]
    for r in found.itertuples(index=False):
        share = f"[{r.flip_low:.2f}, {r.flip_high:.2f}]" if r.continued else "-"
        out.append(
            f"  config {r.config_id}: {r.flips}/{r.continued} flipped by epoch {r.epochs:g} {share}"
            f" ({r.to_success} to success, {r.to_failure} to failure)"
            if r.continued
            else f"  config {r.config_id}: no finished seed to continue"
        )
    return out
