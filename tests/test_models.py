"""The model contract, for every registered family (``MODELS``; the test-only ``tiny`` included): the
declarations are consistent, the parameter groups cover every parameter once, ``fit`` returns
per-seed results with every declared metric, and seed 1 of a pack gives seed 1's numbers alone (run
alone with its 2-D convolutions as im2col + matmuls, ``conv_gemm``: the same numbers either way).

A family's tiny test sizes are its declared ``test_sizes`` (data keys and config fields), so a new
family is tested by registering it. ``register`` refuses a family that breaks the contract, with a
message naming the field (the last tests here)."""

import math
from dataclasses import dataclass

import pytest
import torch

from trainables import fit, resolve_config
from trainables.models import MODELS, ContractError, Metric, PackedModel, TrainConfig, metric_names, register

NAMES = sorted(MODELS)


def tiny(name: str) -> dict:
    """The family's test config: its ``test_sizes`` on the issue's small data sizes."""
    return {
        "model": name,
        "env": "ball",
        "n_train": 32,
        "n_val": 16,
        **MODELS[name][1].test_sizes,
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


@dataclass
class ProbeConfig(TrainConfig):
    width: int = 4
    init: str | None = None  # an optional string: typed by its annotation


class Probe(PackedModel):
    metrics = (Metric("mse", "lower", "reconstruction error"),)
    success = {"metric": "mse", "below": 0.1}
    scheduler_metric = "mse"

    def losses(self, x, rand, step):
        raise NotImplementedError("never trained")

    def evaluate(self, x, y):
        raise NotImplementedError("never evaluated")


def test_register_accepts_a_sound_family_and_an_optional_string_field():
    register("probe_ok", ProbeConfig, Probe)
    try:
        assert ProbeConfig(init="orthogonal").init == "orthogonal" and ProbeConfig().init is None
        with pytest.raises(ValueError, match="config key 'init' must be a string or None"):
            ProbeConfig(init=3)
    finally:
        MODELS.pop("probe_ok")


def test_register_refuses_a_missing_declaration_naming_it():
    class NoScheduler(Probe):
        pass

    del Probe.scheduler_metric  # as if the family never declared it
    try:
        with pytest.raises(ContractError, match="does not declare 'scheduler_metric'"):
            register("probe_missing", ProbeConfig, NoScheduler)
    finally:
        Probe.scheduler_metric = "mse"
    assert "probe_missing" not in MODELS

    class Undeclared(Probe):
        scheduler_metric = "psnr"

    with pytest.raises(ContractError, match="'scheduler_metric' 'psnr' is not a declared metric"):
        register("probe_undeclared", ProbeConfig, Undeclared)


def test_register_refuses_a_field_that_shadows_a_data_or_run_key_naming_it():
    @dataclass
    class FramesConfig(ProbeConfig):
        frames: int = 2  # meant per window; would silently take the dataset's frames

    @dataclass
    class EpochsConfig(ProbeConfig):
        epochs: int = 3

    with pytest.raises(ContractError, match="config field 'frames' shadows a data or common config key"):
        register("probe_frames", FramesConfig, Probe)
    with pytest.raises(ContractError, match="config field 'epochs' shadows a run option"):
        register("probe_epochs", EpochsConfig, Probe)
    assert "probe_frames" not in MODELS and "probe_epochs" not in MODELS
