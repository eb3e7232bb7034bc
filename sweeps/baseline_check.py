"""``seedsweep run --dry-run``'s baseline check: the family's trivial baselines (``trainables.baselines``)
scored on the spec's own validation data, configuration by configuration (the data generated, nothing
trained), beside its success rule, and a warning naming each baseline that meets the rule.

Configurations are the grid points; a sampled param (choice, uniform, ...) takes its first value or
its lower bound, as the spec checker does. The bootstrap runs once per distinct validation set and
point scores (configurations that only change the model share it).
"""

from __future__ import annotations

import itertools

from sweeps.spec import SweepSpec, first_value
from trainables.baselines import against, meeting
from trainables.rule import SuccessRule


def configurations(spec: SweepSpec) -> list[dict]:
    """The spec's configurations as resolved trainable configs (grid points; sampled params at their first value)."""
    from trainables.config import resolve_config

    grids = {k: v["grid"] for k, v in spec.swept().items() if "grid" in v}
    sampled = {k: first_value(v) for k, v in spec.swept().items() if "grid" not in v}
    return [
        resolve_config({**spec.base_config(), **sampled, **dict(zip(grids, point))})
        for point in itertools.product(*grids.values())
    ]


def check(spec: SweepSpec) -> tuple[list[str], list[str]]:
    """(lines: the baselines' scores on the rule's metric, warnings: each baseline that meets the rule);
    one set of lines for every configuration when they score alike, else one per configuration."""
    from dataclasses import fields

    from trainables.baselines import estimate
    from trainables.data import load_val
    from trainables.models import MODELS
    from trainables.options import DATA_KEYS

    rule = SuccessRule.parse(spec.success)
    data_keys = ("env", *DATA_KEYS, "projection_target")  # what the validation set is made of
    data, done, per_config = {}, {}, []
    for config in configurations(spec):
        cfg_cls, model_cls = MODELS[config["model"]]
        cfg = cfg_cls(**{f.name: config[f.name] for f in fields(cfg_cls)})
        key = tuple(config.get(k) for k in data_keys)
        if key not in data:
            data[key] = load_val(config)
        point = model_cls.baselines(cfg, *data[key])
        found = (key, repr(sorted((b, sorted(m.items())) for b, m in point.items())))
        if found not in done:
            done[found] = [s for s in estimate(model_cls, cfg, *data[key]) if s.metric == rule.metric]
        per_config.append(done[found])
    alike = all(scores == per_config[0] for scores in per_config)
    named = (
        [("every configuration", per_config[0])]
        if alike
        else [(f"configuration {i}", s) for i, s in enumerate(per_config, 1)]
    )
    lines, warnings = [], []
    for where, scores in named:
        lines += [f"    {where}: {line}" for line in against(scores, rule)] or [
            f"    {where}: no trivial baseline of model {spec.model} is scored on {rule.metric}"
        ]
        warnings += [
            f"WARNING: {where}: the trivial baseline {s.baseline} scores {s.metric} {s.shown()}, which meets the "
            f"rule {rule.metric} {rule.bound} {rule.threshold:g}: the rule counts a predictor that learned nothing "
            "as a success"
            for s in meeting(scores, rule)
        ]
    return lines, warnings


def report(spec: SweepSpec) -> str:
    """The dry run's text: the rule's baselines, then the warnings."""
    lines, warnings = check(spec)
    n_val = spec.data.get("n_val", "the default number of")
    head = f"  trivial baselines on the validation data (no training; 95% bootstrap over its {n_val} sequences):"
    return "\n".join([head, *lines, *warnings])
