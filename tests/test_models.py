"""The model contract, for every registered family (``MODELS``; the test-only ``tiny`` included): the
declarations are consistent, the parameter groups cover every parameter once, ``fit`` returns
per-seed results with every declared metric, and seed 1 of a pack gives seed 1's numbers alone (run
alone with its 2-D convolutions as im2col + matmuls, ``conv_gemm``: the same numbers either way).

A family's tiny test sizes are the module-level ``TINY`` dict of its module (data keys and config
fields), so a new family is tested by registering it."""

import math
import sys

import pytest
import torch

from trainables import fit, resolve_config
from trainables.models import MODELS, metric_names

NAMES = sorted(MODELS)


def tiny(name: str) -> dict:
    """The family's test config: its module's ``TINY`` on the issue's small data sizes."""
    return {
        "model": name,
        "env": "ball",
        "n_train": 32,
        "n_val": 16,
        **getattr(sys.modules[MODELS[name][1].__module__], "TINY", {}),
    }


@pytest.mark.parametrize("name", NAMES)
def test_declarations(name):
    model_cls = MODELS[name][1]
    names = metric_names(model_cls)
    assert len(names) == len(set(names)) and names, "metric names must be unique and at least one"
    assert all(m.better in ("lower", "higher") and m.doc for m in model_cls.metrics)
    assert model_cls.success["metric"] in names and model_cls.scheduler_metric in names
    assert resolve_config(tiny(name))["success"] == model_cls.success  # the default rule is the model's


@pytest.mark.parametrize("name", NAMES)
def test_param_groups_cover_every_parameter_once(name):
    cfg_cls, model_cls = MODELS[name]
    config = resolve_config(tiny(name))
    cfg = cfg_cls(**{k: config[k] for k in cfg_cls.__dataclass_fields__})
    model = model_cls(cfg, [torch.Generator().manual_seed(s) for s in (0, 1)], config["image_size"])
    grouped = [id(p) for params, mult in model.param_groups() for p in params]
    assert all(mult > 0 for _, mult in model.param_groups())
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each once
    assert all(p.shape[0] == 2 for p in model.parameters()), "every parameter carries the seed dimension first"


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_every_declared_metric_and_seeds_are_independent(name):
    config = tiny(name)
    packed = fit(config, seeds=[0, 1, 2], epochs=1, device="cpu")
    alone = fit({**config, "conv_gemm": True}, seeds=[1], epochs=1, device="cpu")
    names = metric_names(MODELS[name][1])
    assert [r["seed"] for r in packed] == [0, 1, 2]
    for r in packed:
        assert r["status"] == "finished" and isinstance(r["success"], bool)
        assert set(names) <= set(r) and "train/total" in r
    for key in (*names, "train/total"):
        a, b = packed[1][key], alone[0][key]
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-3, abs=1e-6), (
            key
        )  # float rounding of the two conv paths
