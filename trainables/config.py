"""A model config: every default filled in and checked (``resolve_config``), its stable name
(``config_id``) and the rule that judges a seed's result (``succeeded``)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, fields

from trainables.data import PER_SEED
from trainables.models import MODELS, PackedModel, metric_names
from trainables.options import COMMON, DATA_KEYS, NOT_IN_ID, number
from trainables.rule import SuccessRule
from trainables.seed_stop import SeedStop

PRECISIONS = ("fp32", "bf16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's


def model_class(config: dict) -> type[PackedModel]:
    """The packed module class of a config's ``model`` (the default one if it names none)."""
    name = config.get("model", COMMON["model"])
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; known: {', '.join(sorted(MODELS))}")
    return MODELS[name][1]


class Resolved(dict):
    """A config as ``resolve_config`` returns it: every default filled in and checked, so the Pack
    and ``config_id`` take it as it is (a trial checks its config, and makes its world, once)."""


def resolve_config(config: dict) -> Resolved:
    """``config`` with every default filled in and checked; an unknown key is a ValueError naming it.
    A ``Resolved`` config is returned as it is."""
    if isinstance(config, Resolved):
        return config
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    model = config.get("model", COMMON["model"])
    model_cls = model_class(config)
    cfg_cls = MODELS[model][0]
    names = [f.name for f in fields(cfg_cls)]
    for key in config:
        if key not in COMMON and key not in names:
            raise ValueError(f"unknown config key '{key}' for model '{model}'; known: {', '.join([*COMMON, *names])}")
    cfg = cfg_cls(**{k: config[k] for k in names if k in config})
    out = {**COMMON, **{k: config[k] for k in COMMON if k in config}}
    for key in DATA_KEYS[:-1]:  # the counts and the seed
        value = out[key]
        if key == "data_seed" and value == PER_SEED:
            continue
        noun = f"{PER_SEED!r} or an integer" if key == "data_seed" else "an integer"
        number(value, f"config key '{key}'", integer=True, low=0 if key == "data_seed" else 1, noun=noun)
    from envs.dataset import resolve_env_id

    out["env"] = resolve_env_id(out["env"])
    if out["scene"] is not None:
        import gymnasium as gym

        try:
            gym.make(out["env"], scene=out["scene"]).close()
        except TypeError:
            raise ValueError(f"config key 'scene': {out['env']} has no scenes; leave it out") from None
        except ValueError as err:
            raise ValueError(f"config key 'scene': {err}") from None
    out["success"] = check_success(model_cls.success if out["success"] is None else out["success"], model_cls)
    out["seed_stop"] = check_seed_stop(out["seed_stop"], model_cls)
    if out["device"] is not None and not isinstance(out["device"], str):
        raise ValueError(f"config key 'device' must be a string or None, got {out['device']!r}")
    if out["precision"] is not None and out["precision"] not in PRECISIONS:
        raise ValueError(
            f"config key 'precision' must be one of {', '.join(PRECISIONS)} or None (by device), got {out['precision']!r}"
        )
    for key in ("channels_last", "tf32", "compile", "conv_gemm"):
        if (
            out[key] is not None
            and not isinstance(out[key], bool)
            and not (key == "compile" and out[key] in COMPILE_MODES)
        ):
            modes = f", one of {', '.join(COMPILE_MODES)}" if key == "compile" else ""
            raise ValueError(f"config key '{key}' must be true, false{modes} or None (by device), got {out[key]!r}")
    if out["n_train"] < cfg.batch_size:
        raise ValueError(f"config key 'n_train' ({out['n_train']}) must be at least 'batch_size' ({cfg.batch_size})")
    model_cls.check_data(cfg, {k: out[k] for k in (*DATA_KEYS, "env")})
    return Resolved({**out, **asdict(cfg)})


def check_success(rule, model_cls: type[PackedModel]) -> dict:
    """The rule as a plain dict, its metric one that ``model_cls`` declares (else a ValueError naming them)."""
    try:
        return SuccessRule.parse(rule, metric_names(model_cls)).as_dict()
    except ValueError as err:
        raise ValueError(f"config key 'success': {err}") from None


def check_seed_stop(rule, model_cls: type[PackedModel]) -> dict | None:
    """The seed-stop rule as a plain dict (or None), checked against the model's declared metrics."""
    if rule is None:
        return None
    try:
        return SeedStop.parse(rule, {m.name: m.better for m in model_cls.metrics}).as_dict()
    except ValueError as err:
        raise ValueError(f"config key 'seed_stop': {err}") from None


def succeeded(result: dict, rule: dict) -> bool:
    """Whether a (non-diverged) seed's ``result`` passes the success rule; NaN never does."""
    parsed = SuccessRule.parse(rule)
    value = float(result.get(parsed.metric, math.nan))
    return result.get("status") != "diverged" and math.isfinite(value) and bool(parsed.meets(value))


def config_id(config: dict) -> str:
    """Stable short hash of the resolved config, without run-only keys (device, speed) and the success rule."""
    resolved = resolve_config(config)
    # a scene left to the world's default is not named, so ids from before scenes existed still hold
    payload = json.dumps(
        {k: v for k, v in resolved.items() if k not in NOT_IN_ID and not (k == "scene" and v is None)}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:10]
