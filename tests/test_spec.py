"""Sweep specs: valid ones load into a typed spec, each kind of bad one gets its own clear message."""

import math

import pytest
import yaml

from sweeps import spec as specs
from sweeps.cli import main

GOOD = {
    "name": "t",
    "model": "sps",
    "env": "ball",
    "data": {"n_train": 32, "n_val": 16, "frames": 8, "image_size": 32, "data_seed": 0},
    "params": {"symmetry": {"grid": ["none", "T2R2"]}, "lr": {"loguniform": [1e-4, 1e-2]}, "rnn_width": 16},
    "seeds": 3,
    "epochs": 4,
    "scheduler": {"metric": "median_linear_proj_mse", "mode": "min", "grace_period": 2, "reduction_factor": 2},
    "resources": {"cpu": 1, "gpu": 0.25},
    "success": {"metric": "linear_proj_mse", "below": 0.2},
}


def write(tmp_path, spec, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


def test_good_spec_loads_typed(tmp_path):
    spec = specs.load(write(tmp_path, GOOD))
    assert spec.name == "t" and spec.seeds == 3 and spec.resources == {"cpu": 1, "gpu": 0.25}
    assert set(spec.swept()) == {"symmetry", "lr"} and spec.fixed() == {"rnn_width": 16}
    assert spec.scheduler.grace_period == 2
    base = spec.base_config()
    assert (
        base["n_train"] == 32
        and base["rnn_width"] == 16
        and base["success"] == {"metric": "linear_proj_mse", "below": 0.2}
    )


@pytest.mark.parametrize(
    "change, field, words",
    [
        ({"colour": "red"}, "colour", "unknown field"),
        ({"model": "resnet"}, "model", "unknown model"),
        ({"env": "pendulum"}, "env", "unknown env"),
        ({"params": {"symmetry": {"grid": []}}}, "params.symmetry", "non-empty list"),
        ({"params": {"lr": {"uniform": [0.1, 0.01]}}}, "params.lr", "low < high"),
        ({"params": {"lr": {"loguniform": [0, 0.01]}}}, "params.lr", "0 < low"),
        ({"params": {"lr": {"gaussian": [0, 1]}}}, "params.lr", "unknown search space"),
        ({"params": {"not_a_knob": 3}}, "params.not_a_knob", "not_a_knob"),
        ({"seeds": 0}, "seeds", ">= 1"),
        ({"resources": {"cpu": 1, "gpu": 1.5}}, "resources.gpu", "share of one GPU"),
        ({"resources": {"cpu": 0}}, "resources.cpu", "a number of CPUs > 0"),
        ({"success": {"metric": "linear_proj_mse", "below": 0.2, "above": 0.1}}, "success", "exactly one"),
        ({"searcher": "optuna"}, "searcher", "grid"),
        ({"searcher": "bayes"}, "searcher", "one of"),
        ({"scheduler": {"grace_period": 10}}, "scheduler.grace_period", "epochs=4"),
        ({"data": {"n_train": -1}}, "data.n_train", "an integer >= 1"),
        ({"name": ""}, "name", "required"),
        ({"params": {"precision": {"grid": ["fp32", "bf16"]}}}, "params.precision", "cannot be swept"),
        ({"tracking_patience": 0}, "tracking_patience", "seconds > 0"),
        (
            {"success": {"metric": "accuracy", "above": 0.9}},
            "success",
            "it declares linear_proj_mse, linear_proj_r2, recon_mse",
        ),
        (
            {"scheduler": {"metric": "median_accuracy"}},
            "scheduler.metric",
            "median_linear_proj_mse / best_linear_proj_mse",
        ),
        ({"scheduler": {"metric": "median_psnr", "mode": "min"}}, "scheduler.mode", "mode is max"),
        ({"model": "tiny", "params": {}}, "success", "it declares pooled_mse, code_std"),
    ],
)
def test_bad_spec_names_file_and_field(tmp_path, change, field, words):
    path = write(tmp_path, {**GOOD, **change})
    with pytest.raises(specs.SpecError) as err:
        specs.load(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {field}: "), message
    assert words in message


def test_without_scheduler_no_early_stopping_and_defaults_fit_epochs(tmp_path):
    short = {k: v for k, v in GOOD.items() if k != "scheduler"} | {"epochs": 2}
    spec = specs.load(write(tmp_path, short))
    assert spec.scheduler is None
    asha = specs.load(write(tmp_path, {**short, "scheduler": {"metric": "median_recon_mse"}}))
    assert asha.scheduler.grace_period == 2  # the default 5 would not fit 2 epochs; the user wrote no grace_period
    assert specs.load(write(tmp_path, {**short, "epochs": 30, "scheduler": {}})).scheduler.grace_period == 5


def test_success_may_list_more_thresholds(tmp_path):
    spec = specs.load(write(tmp_path, {**GOOD, "success": {"metric": "linear_proj_mse", "below": 0.2, "also": [0.03]}}))
    assert spec.base_config()["success"] == {"metric": "linear_proj_mse", "below": 0.2, "also": [0.03]}
    for bad in ([0.03, "x"], 0.03, [True]):
        with pytest.raises(specs.SpecError, match="success: success.also must be a list of finite numbers"):
            specs.load(write(tmp_path, {**GOOD, "success": {"metric": "linear_proj_mse", "below": 0.2, "also": bad}}))


def test_bad_yaml_and_missing_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed")
    with pytest.raises(specs.SpecError, match="not valid YAML"):
        specs.load(path)
    with pytest.raises(specs.SpecError, match="no such file"):
        specs.load(tmp_path / "absent.yaml")


def test_cli_exits_non_zero_with_the_message(tmp_path, capsys):
    path = write(tmp_path, {**GOOD, "seeds": 0})
    assert main(["run", str(path), "--dry-run"]) == 2
    assert f"{path}: seeds: must be an integer >= 1" in capsys.readouterr().err


def test_dry_run_prints_the_plan(tmp_path, capsys):
    assert main(["run", str(write(tmp_path, GOOD)), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "configurations: 2" in out and "seed runs: 6" in out and "0.25 GPU" in out
    assert "1. symmetry=none" in out and "2. symmetry=T2R2" in out and "samples of lr" in out


def test_dry_run_refuses_a_size_the_model_cannot_train_naming_the_field(tmp_path, capsys):
    # SPS's default encoder halves the image 3 times: 20 px does not divide (its check_data says so)
    path = write(tmp_path, {**GOOD, "data": {**GOOD["data"], "image_size": 20}})
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "image_size" in err and "must be divisible by 2**len(channels) = 8" in err, err


def test_shipped_specs_are_valid():
    for name in ("quickstart", "sps_ball", "sps_two_body"):
        spec = specs.load(f"sweeps/{name}.yaml")
        assert spec.seeds >= 8


def test_shipped_rate_comparisons_do_not_prune_and_report_both_thresholds():
    for name in ("sps_ball", "sps_two_body", "sps_width_batch_gpu"):
        spec = specs.load(f"sweeps/{name}.yaml")
        assert spec.scheduler is None and spec.seeds >= 16
        assert spec.success == {"metric": "linear_proj_mse", "below": 0.2, "also": [0.03]}


def test_two_body_spec_trains_a_6d_latent_with_one_action_on_both_slices(tmp_path, monkeypatch):
    from trainables import Pack

    monkeypatch.setenv("SEEDSWEEP_CACHE", str(tmp_path))
    spec = specs.load("sweeps/sps_two_body.yaml")
    config = {**spec.base_config(), **{k: specs.first_value(v) for k, v in spec.swept().items()}}
    assert config["symmetry"] == "T3R3x2" and config["z_dim"] == 6 and config["projection_target"] == "both"
    small = {
        "n_train": 16,
        "n_val": 8,
        "image_size": 16,
        "channels": [4, 8],
        "dec_hidden": [8],
        "rnn_width": 8,
        "batch_size": 8,
    }
    pack = Pack({**config, **small}, [0, 1], device="cpu")
    assert pack.model.actions == [("T", 3, 2), ("R", 3, 2)] and pack.val_y.shape[-1] == 6  # r1 and r2
    losses = pack.train_epoch()
    assert {"sym_z", "sym_recon"} <= set(losses) and all(math.isfinite(v) for term in losses.values() for v in term)
    assert all(r["status"] == "running" for r in pack.evaluate())


def test_resources_name_the_field_they_break(tmp_path):
    spec = specs.load(write(tmp_path, {**GOOD, "resources": {"cpu": 2, "gpu": 0.5, "accelerator_type": "H100"}}))
    assert spec.trial_resources() == {"cpu": 2, "gpu": 0.5, "accelerator_type:H100": 0.001}
    custom = specs.load(write(tmp_path, {**GOOD, "resources": {"cpu": 1, "custom": {"gpu_node": 1}}}))
    assert custom.trial_resources() == {"cpu": 1, "gpu": 0, "gpu_node": 1}
    for resources, field in (
        ({"cpu": 1, "gpu": 2}, "resources.gpu"),  # a pack trains on one device
        ({"cpu": 0}, "resources.cpu"),
        ({"cpu": 1, "gpu": 0, "accelerator_type": "H100"}, "resources.accelerator_type"),  # a card for a CPU trial
        ({"cpu": 1, "custom": {"gpu_node": -1}}, "resources.custom"),
        ({"cpu": 1, "memory": 4}, "resources"),
    ):
        with pytest.raises(ValueError, match=rf"{field.replace('.', '[.]')}\b"):
            specs.load(write(tmp_path, {**GOOD, "resources": resources}))


def test_defaults_come_from_the_model(tmp_path):
    tiny = {
        "name": "t",
        "model": "tiny",
        "data": {"n_train": 16, "n_val": 8, "frames": 4, "image_size": 8},
        "epochs": 8,
    }
    spec = specs.load(write(tmp_path, tiny))
    assert spec.success == {"metric": "pooled_mse", "below": 0.01}  # the tiny model's rule
    assert spec.scheduler is None  # no scheduler key: no early stopping
    asha = specs.load(write(tmp_path, {**tiny, "scheduler": {}}))  # ASHA with everything left to the model
    assert (asha.scheduler.metric, asha.scheduler.mode, asha.scheduler.grace_period) == ("median_pooled_mse", "min", 5)
    best = specs.load(write(tmp_path, {**tiny, "scheduler": {"metric": "best_code_std", "grace_period": 2}}))
    assert (best.scheduler.metric, best.scheduler.mode) == ("best_code_std", "max")  # code_std: higher is better
    bare = specs.load(write(tmp_path, {**tiny, "scheduler": {"metric": "code_std"}}))
    assert bare.scheduler.metric == "median_code_std"
