"""Pack: packed seeds equal lone seeds, a diverging seed is frozen while the others go on, exact
resume from a state_dict, falling losses on CPU, and config resolution / ids."""

import io
import math

import numpy as np
import pytest
import torch
from tiny_sps import TINY
from tolerances import PACKED, near

from trainables import Pack, config_id, fit, resolve_config
from trainables.data import load_data

METRICS = ("linear_proj_mse", "linear_proj_r2", "recon_mse", "pred_mse", "psnr", "train/total", "train/recon")


def close(a: dict, b: dict, tol=PACKED):
    for key in METRICS:
        assert a[key] == near(b[key], tol), key


def test_packed_seed_equals_lone_seed():
    packed, alone = Pack(TINY, [3, 7, 11], device="cpu"), Pack(TINY, [7], device="cpu")
    for _ in range(3):
        losses, lone = packed.train_epoch(), alone.train_epoch()
        for term in losses:
            assert losses[term][1] == pytest.approx(lone[term][0], rel=1e-4), term
    a, b = packed.evaluate(), alone.evaluate()
    assert [r["seed"] for r in a] == [3, 7, 11] and b[0]["seed"] == 7
    close(a[1], b[0])
    assert a[0]["linear_proj_mse"] != pytest.approx(a[1]["linear_proj_mse"], rel=1e-3)  # and seeds do differ
    with torch.no_grad():
        z, z_alone = packed.model.latents(packed.val_x)[1], alone.model.latents(alone.val_x)[0]
    assert z.shape == (16, 8, 3) and packed.val_y.shape == (16, 8, 3)
    assert torch.allclose(z, z_alone, atol=1e-4)


def test_decode_is_the_seeds_own_decoder():
    packed, alone = Pack(TINY, [3, 7, 11], device="cpu"), Pack(TINY, [7], device="cpu")
    packed.train_epoch()
    alone.train_epoch()
    with torch.no_grad():
        z = packed.model.latents(packed.val_x)[1].reshape(-1, 3).numpy()  # mu of every validation frame
        images, images_alone, other = (
            packed.model.decode_seed(1, z),
            alone.model.decode_seed(0, z),
            packed.model.decode_seed(0, z),
        )
    assert images.shape == (16 * 8, 16, 16, 3) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    assert np.allclose(images, images_alone, atol=1e-4)  # the same seed packed with others or alone
    assert not np.allclose(images, other, atol=1e-3)  # another seed's decoder differs
    frames = packed.val_x.permute(0, 1, 3, 4, 2).reshape(-1, 16, 16, 3).numpy()  # [N*T, H, W, 3]
    recon_mse = packed.evaluate()[1]["recon_mse"]  # the model's own reconstruction from mu
    assert ((images - frames) ** 2).mean() == pytest.approx(recon_mse, rel=1e-4)


def test_nan_seed_is_diverged_and_frozen_while_others_finish():
    pack, clean = Pack(TINY, [0, 1, 2], device="cpu"), Pack(TINY, [0, 1, 2], device="cpu")
    with torch.no_grad():
        pack.model.encoder[0].weight[1] = math.nan  # seed 1 turns NaN after init
    frozen = pack.model.fc_mu.weight[1].detach().clone()
    for _ in range(2):
        pack.train_epoch()
        clean.train_epoch()
    assert pack.status == ["running", "diverged", "running"]
    assert torch.equal(pack.model.fc_mu.weight[1], frozen)  # its other parameters kept their values
    pack.finish()
    assert pack.status == ["finished", "diverged", "finished"]
    results, reference = pack.evaluate(), clean.evaluate()
    assert results[1]["status"] == "diverged" and results[1]["success"] is False
    for s in (0, 2):  # the others trained exactly as without the NaN seed
        assert results[s]["status"] == "finished"
        assert all(math.isfinite(results[s][k]) for k in METRICS)
        assert 0 < results[s]["recon_mse"] < 0.3
        close(results[s], reference[s])


def test_state_dict_round_trip_gives_identical_final_metrics():
    straight = Pack(TINY, [4, 9], device="cpu")
    for _ in range(3):
        straight.train_epoch()
    first = Pack(TINY, [4, 9], device="cpu")
    first.train_epoch()
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)  # as the trainable's checkpoint does
    buffer.seek(0)
    resumed = Pack(TINY, [4, 9], device="cpu")
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    assert (resumed.epoch, resumed.step) == (1, 2)
    for _ in range(2):
        resumed.train_epoch()
    for a, b in zip(straight.evaluate(), resumed.evaluate()):
        assert a == b  # exactly
    with pytest.raises(ValueError):
        Pack(TINY, [4, 10], device="cpu").load_state_dict(first.state_dict())


def test_tiny_config_trains_on_cpu_with_falling_losses():
    config = {**TINY, "image_size": 32, "n_train": 64, "frames": 10, "channels": [8, 16, 32], "rnn_min_context": 4}
    pack = Pack(config, [0, 1], device="cpu")
    before = pack.evaluate()
    history = [pack.train_epoch() for _ in range(12)]
    after = pack.evaluate()
    for s in range(2):
        for term in (
            "total",
            "recon",
            "pred",
        ):  # BCE against the SPS scene's grey keeps a high floor (its entropy): falling is the test
            assert history[-1][term][s] < 0.97 * history[0][term][s], (term, s)
        assert after[s]["recon_mse"] < 0.5 * before[s]["recon_mse"]
        assert after[s]["psnr"] > before[s]["psnr"] + 3


def test_fit_and_baselines():
    results = fit({**TINY, "use_rnn": False, "success": {"metric": "recon_mse", "below": 1.0}}, [0, 1], epochs=1)
    assert [r["status"] for r in results] == ["finished", "finished"]
    assert all(r["success"] is True for r in results)  # recon_mse < 1 always holds for images in [0, 1]
    assert all(math.isnan(r["pred_mse"]) for r in results)  # no RNN, no prediction
    ae = Pack({**TINY, "deterministic": True, "symmetry": "none"}, [0], device="cpu")
    assert set(ae.train_epoch()) == {"recon", "pred", "z_pred", "total"}


@pytest.mark.parametrize("z_dim, target, symmetry", [(3, "relative", "R3"), (6, "both", "T3R3x2")])
def test_two_bodies_train_against_relative_or_both_positions(z_dim, target, symmetry):
    # 25 frames: the two-body world keeps only sequences that cover a full orbit (envs/two_body.py)
    config = {
        **TINY,
        "env": "two_body",
        "frames": 25,
        "z_dim": z_dim,
        "projection_target": target,
        "symmetry": symmetry,
    }
    pack = Pack(config, [0, 1], device="cpu")
    assert pack.val_y.shape[-1] == z_dim  # r1 - r2 (3), or r1 and r2 (6)
    first = pack.train_epoch()["total"]
    pack.train_epoch()
    last = pack.train_epoch()["total"]
    assert all(b < a for a, b in zip(first, last))
    for result in pack.evaluate():
        assert result["status"] == "running" and 0 < result["linear_proj_mse"] < 5 and math.isfinite(result["pred_mse"])


def test_unknown_config_key_is_rejected_by_name():
    with pytest.raises(ValueError, match="'rnn_widht'"):
        resolve_config({**TINY, "rnn_widht": 16})
    with pytest.raises(ValueError, match="model"):
        resolve_config({"model": "transformer"})
    with pytest.raises(ValueError, match="'n_train'"):
        resolve_config({"n_train": 8, "batch_size": 16})
    with pytest.raises(ValueError, match="'success'"):
        resolve_config({"success": {"metric": "accuracy", "below": 1}})
    with pytest.raises(ValueError, match="'frames'"):
        resolve_config({"frames": 5})  # rnn_min_context is 5
    with pytest.raises(ValueError):
        resolve_config({"env": "nope"})


def test_resolved_config_and_id():
    resolved = resolve_config({"env": "ball"})
    assert resolved["env"] == "seedsweep/BouncingBall-v0" and resolved["z_dim"] == 3 and resolved["rnn_width"] == 256
    assert resolved["symmetry"] == "T2R2" and resolved["success"] == {"metric": "linear_proj_mse", "below": 0.2}
    assert resolve_config(resolved) == resolved  # idempotent
    same = {"rnn_width": 32, "env": "seedsweep/BouncingBall-v0", "lr": 1e-3, "device": "cpu", "t_range": [-1, 1]}
    assert config_id({"env": "ball", "rnn_width": 32}) == config_id(same)  # defaults, env alias, lists, device: same id
    assert config_id({"rnn_width": 32}) != config_id({"rnn_width": 64})
    assert len(config_id({})) == 10


def test_param_group_multipliers_decay_and_evaluation_in_eval_mode():
    config = {
        "model": "tiny",
        "env": "ball",
        "n_train": 16,
        "n_val": 8,
        "frames": 4,
        "image_size": 8,
        "lr": 0.01,
        "lr_decay": 0.9,
    }
    pack = Pack(config, [0, 1], device="cpu")
    assert [g["lr"] for g in pack.optimizer.param_groups] == [
        0.01,
        0.005,
    ]  # the tiny model's decoder runs at half the rate
    pack.train_epoch()  # 2 steps of 8
    assert [g["lr"] for g in pack.optimizer.param_groups] == pytest.approx([0.01 * 0.81, 0.005 * 0.81])
    seen, evaluate = [], pack.model.evaluate
    pack.model.evaluate = lambda x, y: (seen.append((pack.model.training, torch.is_grad_enabled())), evaluate(x, y))[1]
    assert set(pack.evaluate()[0]) >= {"seed", "status", "success", "pooled_mse", "code_std", "train/recon"}
    assert seen == [(False, False)] and pack.model.training  # evaluated in eval mode without grad, back to training


def test_scene_is_a_data_key_of_the_ball_only():
    """``scene`` picks the ball world's scene; left out, the world's default, and ids stay as before it existed."""
    base = {"env": "ball", "n_train": 32, "n_val": 4, "frames": 6, "image_size": 16}
    assert config_id({**base, "scene": None}) == config_id(base) != config_id({**base, "scene": "plain"})
    with pytest.raises(ValueError, match="scene.*has no scenes"):
        resolve_config({**base, "env": "two_body", "scene": "plain"})
    with pytest.raises(ValueError, match="scene must be one of"):
        resolve_config({**base, "scene": "foo"})
    plain = load_data(resolve_config({**base, "scene": "plain"}))[0]
    default = load_data(resolve_config(base))[0]
    assert plain.mean() < 0.05 < default.mean()  # black background vs the SPS scene's grey


def test_per_seed_data_gives_each_seed_its_own_training_set():
    """data_seed: per_seed: seed 7 packed with others trains exactly as seed 7 alone (its own set
    follows it), on frames that differ from seed 3's set and from the shared set's."""
    config = {**TINY, "data_seed": "per_seed"}
    packed, alone, shared = (
        Pack(config, [3, 7], device="cpu"),
        Pack(config, [7], device="cpu"),
        Pack(TINY, [7], device="cpu"),
    )
    assert packed.train_x.shape[:2] == (2, 32) and not torch.equal(packed.train_x[0], packed.train_x[1])
    assert torch.equal(packed.train_x[1], alone.train_x[0]) and not torch.equal(alone.train_x[0], shared.train_x)
    losses, lone, common = packed.train_epoch(), alone.train_epoch(), shared.train_epoch()
    assert losses["total"][1] == pytest.approx(lone["total"][0], rel=1e-5)
    assert lone["total"][0] != pytest.approx(common["total"][0], rel=1e-6)
    assert config_id(config) != config_id(TINY)
    with pytest.raises(ValueError, match="'per_seed' or an integer >= 0"):
        resolve_config({**TINY, "data_seed": "each"})
