"""Note 000's families: stacked 2-D AEs with z-optimisation, causal 3-D AEs, the space-time
transformer. The contract (fit returns every metric, packed seed == seed alone) is tests/test_models.py;
here: z-SGD per seed against plain torch.nn, causality in time, stages by step, baselines."""

import pytest
import torch
from tolerances import PACKED, near
from torch import nn

from trainables.models.causal_ae3d import CausalAE3d, CausalAE3dConfig
from trainables.models.frame_stats import Moments
from trainables.models.frames import centroid
from trainables.models.st_transformer import STTransformer, STTransformerConfig
from trainables.models.stacked_ae import StackedAE, StackedAEConfig, z_sgd


def gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def frames(S, N, T=4, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(N, T, 3, size, size, generator=g)
    return x.unsqueeze(0).expand(S, -1, -1, -1, -1, -1).contiguous()


def grads_by_module(model, terms):
    model.zero_grad(set_to_none=True)
    terms["total"].sum().backward()
    return {name: p.grad is not None and bool(p.grad.abs().sum() > 0) for name, p in model.named_parameters()}


# ---- stacked_ae: z-optimisation ----


def test_z_sgd_of_a_packed_seed_equals_plain_torch_on_that_seed_alone():
    """Seed 1 of a pack of 3: z* after 5 steps equals SGD on nn.MSELoss() of an nn.ConvTranspose2d
    holding seed 1's weights, frame by frame (so the step is the seed's own gradient, not 1/S of it)."""
    cfg = StackedAEConfig(channels=(4, 8), zsteps=5, lr_z=(50.0,))
    model = StackedAE(cfg, gens([0, 1, 2]), 16)
    x = frames(3, 2, T=2)
    h = model.frames(x)
    z0 = model.encode(0, h)
    zs = model.zopt_level(0, z0, h).unflatten(1, (3, -1))[:, 1]  # seed 1's z* [N, 4, 8, 8]

    dec = nn.ConvTranspose2d(4, 3, 6, 2, 2)
    with torch.no_grad():
        dec.weight.copy_(model.dec[0].weight[1])
        dec.bias.copy_(model.dec[0].bias[1])
    z = z0.unflatten(1, (3, -1))[:, 1].detach().clone().requires_grad_(True)
    opt = torch.optim.SGD([z], lr=50.0)
    target = x[1].flatten(0, 1)
    for _ in range(5):  # each frame's own mean error (the code's batches of one frame), summed over frames
        opt.zero_grad()
        sum(nn.MSELoss()(torch.sigmoid(dec(z[i : i + 1])), target[i : i + 1]) for i in range(len(z))).backward()
        opt.step()
    torch.testing.assert_close(zs, z.detach(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(zs, z0.unflatten(1, (3, -1))[:, 1]), "z must have moved"


def test_z_sgd_packed_seed_equals_seed_alone_and_lowers_error():
    cfg = StackedAEConfig(channels=(4, 8), zsteps=10, lr_z=(30.0,))
    packed, alone = StackedAE(cfg, gens([0, 1, 2]), 16), StackedAE(cfg, gens([1]), 16)
    xp, xa = frames(3, 2), frames(1, 2)
    for l in range(2):
        hp, ha = packed.frames(xp), alone.frames(xa)
        for k in range(l):
            hp, ha = packed.encode(k, hp), alone.encode(k, ha)
        zp, za = packed.zopt_level(l, packed.encode(l, hp), hp), alone.zopt_level(l, alone.encode(l, ha), ha)
        torch.testing.assert_close(zp.unflatten(1, (3, -1))[:, 1], za.unflatten(1, (1, -1))[:, 0], rtol=1e-5, atol=1e-6)
        before = ((alone.decode(l, alone.encode(l, ha)) - ha) ** 2).mean()
        after = ((alone.decode(l, za) - ha) ** 2).mean()
        assert after < before


def test_z_sgd_runs_in_fp32_under_autocast_and_no_grad():
    z = torch.zeros(1, 2, dtype=torch.bfloat16)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        out = z_sgd([z], lambda zs: ((zs[0] - 1.0) ** 2).sum(1), [0.25], 1)[0]
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.full((1, 2), 0.5))  # z - 0.25 * 2 (z - 1)


def test_joint_variant_packed_seed_equals_seed_alone():
    cfg = StackedAEConfig(variant="joint", channels=(4, 8), zsteps=4, lr_z=(30.0, 10.0))
    packed, alone = StackedAE(cfg, gens([0, 1, 2]), 16), StackedAE(cfg, gens([1]), 16)
    tp, ta = packed.losses(frames(3, 2), {}, 0), alone.losses(frames(1, 2), {}, 0)
    for k in ("dec", "enc", "total"):
        torch.testing.assert_close(tp[k][1], ta[k][0], rtol=1e-5, atol=1e-7)


# ---- stacked_ae: stages, sparse blocks, metrics ----


def test_layerwise_stage_by_step_trains_only_that_level():
    cfg = StackedAEConfig(channels=(4, 8), zsteps=2, lr_z=(10.0,), stage_steps=3)
    model = StackedAE(cfg, gens([0, 1]), 16)
    x = frames(2, 2)
    for step, level in ((0, 0), (2, 0), (3, 1), (100, 1)):
        got = grads_by_module(model, model.losses(x, {}, step))
        assert {n for n, g in got.items() if g} == {
            f"{p}.{level}.{w}" for p in ("enc", "dec") for w in ("weight", "bias")
        }, step
    joint = StackedAE(StackedAEConfig(variant="joint", channels=(4, 8), zsteps=2), gens([0]), 16)
    assert all(grads_by_module(joint, joint.losses(frames(1, 2), {}, 0)).values())


def test_sparse_code_is_a_softmax_per_block():
    cfg = StackedAEConfig(variant="sparse", channels=(2, 3), block_channels=4)
    model = StackedAE(cfg, gens([0, 1]), 16)
    z = model.encode(0, model.frames(frames(2, 1)))  # [N, S*2*4, 8, 8]
    assert z.shape[1] == 2 * 2 * 4
    torch.testing.assert_close(z.unflatten(1, (4, 4)).sum(2), torch.ones(z.shape[0], 4, 8, 8))
    assert "dec_z" not in model.losses(frames(2, 1), {}, 0)


def test_moments_baseline_is_the_mse_of_the_mean_frame():
    h = torch.rand(10, 2 * 3, 4, 4, dtype=torch.float64)
    m = Moments()
    m.add(h[:4])
    m.add(h[4:])
    direct = ((h - h.mean(0)) ** 2).unflatten(1, (2, -1)).transpose(0, 1).flatten(1).mean(1)
    torch.testing.assert_close(m.mean_baseline(2), direct)


def test_centroid_of_a_dot_and_of_black():
    f = torch.zeros(2, 3, 8, 8)
    f[0, 0, 2, 5] = 1.0
    torch.testing.assert_close(centroid(f), torch.tensor([[2.5, 5.5], [4.0, 4.0]]))


def test_evaluate_relative_errors_are_consistent():
    cfg = StackedAEConfig(channels=(4, 8), zsteps=2, lr_z=(10.0,))
    model = StackedAE(cfg, gens([0, 1]), 16)
    x = frames(1, 3, T=2)[0]
    with torch.no_grad():
        m = model.evaluate(x, None)
    torch.testing.assert_close(m["straight_rel"], m["straight_mse"] / m["mean_frame_mse"])
    flat = x.flatten(0, 1)
    torch.testing.assert_close(m["mean_frame_mse"][0].float(), ((flat - flat.mean(0)) ** 2).mean())
    assert torch.isnan(m["l2_ae_rel"]).all() and torch.isfinite(m["l1_zopt_rel"]).all()


# ---- causal_ae3d ----


@pytest.mark.parametrize("variant", ["reconstruct", "predict"])
def test_causal_output_for_frame_t_depends_on_no_later_input(variant):
    cfg = CausalAE3dConfig(variant=variant, channels=(4, 8), time_kernel=3)
    model = CausalAE3d(cfg, gens([0, 1]), 16)
    x = frames(2, 1, T=12)
    out, target = model.run(model.clips(x), range(2))
    first = 12 - target.shape[2]  # index in x of the first scored frame
    assert out.shape == target.shape and first == 2 * 2 * 2 + model.dx
    for k in range(target.shape[2]):
        t = first + k  # out[:, :, k] is frame t's reconstruction (or prediction)
        later = x.clone()
        later[:, :, t + 1 :] = torch.rand_like(later[:, :, t + 1 :])
        same = model.run(model.clips(later), range(2))[0]
        torch.testing.assert_close(same[:, :, k], out[:, :, k])
        now = x.clone()
        now[:, :, t] = 1 - now[:, :, t]
        changed = model.run(model.clips(now), range(2))[0]
        assert torch.equal(changed[:, :, k], out[:, :, k]) == (variant == "predict"), (variant, t)


def test_causal_stage_by_step_and_data_check():
    cfg = CausalAE3dConfig(channels=(4, 8), time_kernel=2, stage_steps=5)
    model = CausalAE3d(cfg, gens([0]), 16)
    x = frames(1, 1, T=8)
    assert {n for n, g in grads_by_module(model, model.losses(x, {}, 4)).items() if g} == {
        "enc.0.weight",
        "enc.0.bias",
        "dec.0.weight",
        "dec.0.bias",
    }
    assert {n for n, g in grads_by_module(model, model.losses(x, {}, 5)).items() if g} == {
        "enc.1.weight",
        "enc.1.bias",
        "dec.1.weight",
        "dec.1.bias",
    }
    with pytest.raises(ValueError, match="'frames'"):
        CausalAE3d.check_data(CausalAE3dConfig(channels=(4, 8, 8)), {"frames": 18, "image_size": 32})


def test_causal_baselines_are_on_the_scored_frames():
    model = CausalAE3d(CausalAE3dConfig(variant="predict", channels=(4,), time_kernel=3), gens([0, 1]), 16)
    x = frames(1, 3, T=8)[0]
    with torch.no_grad():
        m = model.evaluate(x, None)
    first = 2 * 2 + 1  # frames 5..7 are scored
    torch.testing.assert_close(m["copy_last_mse"][0].float(), ((x[:, first:] - x[:, first - 1 : -1]) ** 2).mean())
    torch.testing.assert_close(m["black_mse"][1].float(), (x[:, first:] ** 2).mean())
    torch.testing.assert_close(m["copy_last_rel"], m["straight_mse"] / m["copy_last_mse"])


# ---- st_transformer ----


def tiny_st(**kw):
    cfg = STTransformerConfig(
        channels=(4, 8), zsteps=1, stage_steps=2, d_model=16, heads=2, spatial_layers=1, temporal_layers=2, **kw
    )
    return STTransformer(cfg, gens([0, 1]), 16)


@pytest.mark.parametrize("finetune", [False, True])
def test_st_transformer_stages_and_finetune_after(finetune):
    """Stage 1 trains the AE level by level; stage 2 the transformer on frozen latents (vt_0) for
    finetune_after steps, then (vt_0e) the AE unfreezes and the loss becomes the pixel loss."""
    model = tiny_st(finetune_ae=finetune, finetune_after=3)  # stage 2 from step 4, fine-tune from step 7
    x = frames(2, 2, T=6)
    ae = lambda n: n.startswith("ae.")  # noqa: E731
    stage1 = grads_by_module(model, model.losses(x, {}, 3))  # level 1 of the AE
    assert {n for n, g in stage1.items() if g} == {
        "ae.enc.1.weight",
        "ae.enc.1.bias",
        "ae.dec.1.weight",
        "ae.dec.1.bias",
    }
    for step in (4, 6):  # vt_0 phase: AE frozen in both arms, the latent loss
        got = grads_by_module(model, model.losses(x, {}, step))
        assert all(g for n, g in got.items() if not ae(n)) and not any(g for n, g in got.items() if ae(n)), step
        assert not model.finetuning(step)
    late = model.losses(x, {}, 7)
    got = grads_by_module(model, late)
    assert all(g for n, g in got.items() if not ae(n))
    assert any(g for n, g in got.items() if ae(n)) == finetune  # unfrozen after finetune_after steps
    assert model.finetuning(7) == finetune
    if finetune:  # the pixel BCE (the AE's loss) against the next frame, not the latent MSE
        assert not torch.allclose(late["pred"], model.losses(x, {}, 6)["pred"])
    assert set(model.losses(x, {}, 0)) == set(model.losses(x, {}, 4)) == set(late)  # the same terms in every stage


def test_st_transformer_prediction_is_causal_in_time_and_per_seed():
    model = tiny_st()
    tok = torch.rand(2, 1, 5, 16, 8)
    out = model.predict(tok)
    later = tok.clone()
    later[:, :, 3:] = torch.rand_like(later[:, :, 3:])
    torch.testing.assert_close(model.predict(later)[:, :, :3], out[:, :, :3])
    other = tok.clone()
    other[0] = torch.rand_like(other[0])  # seed 0's input changes, seed 1's output does not
    torch.testing.assert_close(model.predict(other)[1], out[1])


def tiny_st3d(S=2):
    cfg = STTransformerConfig(
        variant="causal3d",
        channels=(4, 8),
        time_kernel=2,
        stage_steps=2,
        d_model=16,
        heads=2,
        spatial_layers=1,
        temporal_layers=2,
    )
    return STTransformer(cfg, gens(range(S)), 16)


def test_st_transformer_over_3d_features_decodes_as_the_causal_ae3d_alone():
    """variant causal3d: the tokens are the causal 3-D AE's latent frames (T - D of them, D = 2 here),
    and decoding the last n of them after the others gives exactly the AE's own straight (trimmed)
    reconstruction of the last n frames: the frame alignment the predictor is judged with."""
    model = tiny_st3d()
    x = frames(2, 3, T=9)
    tok = model.tokens(x)
    assert tok.shape == (2, 3, 9 - 2, 4 * 4, 8)
    out, target = model.ae.run(model.ae.clips(x), range(2))  # frames 2D = 4 .. 8
    alone = out.unflatten(1, (2, 3)).transpose(0, 1).transpose(2, 3)  # [S, B, 5, 3, H, W]
    for n in (1, 3, 5):  # n new latents after 7 - n >= D context ones
        torch.testing.assert_close(model.pixels(tok[:, :, : 7 - n], tok[:, :, 7 - n :]), alone[:, :, -n:])
    torch.testing.assert_close(target.unflatten(1, (2, 3)).transpose(0, 1).transpose(2, 3), x[:, :, 4:])


def test_st_transformer_over_3d_features_stages_and_rules():
    model = tiny_st3d()
    x = frames(2, 2, T=9)
    stage1 = grads_by_module(model, model.losses(x, {}, 2))  # the 3-D AE's level 1
    assert {n for n, g in stage1.items() if g} == {
        "ae.enc.1.weight",
        "ae.enc.1.bias",
        "ae.dec.1.weight",
        "ae.dec.1.bias",
    }
    stage2 = grads_by_module(model, model.losses(x, {}, 4))
    assert {n for n, g in stage2.items() if g} == {n for n in stage2 if not n.startswith("ae.")}  # the AE frozen
    assert set(model.losses(x, {}, 0)) == set(model.losses(x, {}, 4)) == {"ae", "pred", "total"}
    from trainables import resolve_config

    base = {"model": "st_transformer", "variant": "causal3d", "channels": [4, 8], "time_kernel": 2, "image_size": 16}
    with pytest.raises(ValueError, match="finetune_ae"):
        resolve_config({**base, "frames": 9, "finetune_ae": True})
    with pytest.raises(ValueError, match="'frames' \\(7\\) must be at least 8"):  # 4 ahead after 2D = 4 context frames
        resolve_config({**base, "frames": 7})


def test_st_transformer_over_3d_features_packed_seed_equals_alone():
    from trainables import fit

    config = {  # the family's test sizes over a causal 3-D AE (its time kernel needs more frames)
        "model": "st_transformer",
        "n_train": 16,
        "n_val": 8,
        **STTransformer.test_sizes,
        "variant": "causal3d",
        "frames": 8,
        "time_kernel": 2,
        "stage_steps": 4,
    }
    packed, alone = fit(config, seeds=[0, 1, 2], epochs=3, device="cpu"), fit(config, seeds=[1], epochs=3, device="cpu")
    for key in ("pred_h1_rel", "pred_h4_mse", "ae_straight_rel", "train/total"):
        assert packed[1][key] == near(alone[0][key], PACKED), key
    assert packed[0]["pred_h1_rel"] != pytest.approx(packed[1]["pred_h1_rel"], rel=1e-3)


def test_shipped_specs_load():
    from pathlib import Path

    from sweeps import spec as specs

    paths = sorted(Path("sweeps").glob("seed000_*.yaml")) + [
        Path(f"sweeps/{m}_quickstart.yaml") for m in ("stacked_ae", "causal_ae3d", "st_transformer")
    ]
    assert len(paths) >= 9
    for path in paths:
        spec = specs.load(str(path))
        assert spec.model in ("stacked_ae", "causal_ae3d", "st_transformer") and spec.seeds >= 4, path


def test_causal_ae3d_with_time_kernel_1_scores_from_the_second_frame():
    """time_kernel 1 (no time context, a per-frame AE in 3-D form): the copy-last baseline starts at
    frame 1, and every score is over frames 1.. alike."""
    model = CausalAE3d(CausalAE3dConfig(channels=(4,), time_kernel=1), gens([0, 1]), 16)
    x = frames(1, 3, T=5)[0]
    m = model.evaluate(x, torch.zeros(3, 5, 2))
    torch.testing.assert_close(m["copy_last_mse"][0].float(), ((x[:, 1:] - x[:, :-1]) ** 2).mean())
    torch.testing.assert_close(m["black_mse"][1].float(), (x[:, 1:] ** 2).mean())


def test_speed_switches_reach_the_ae_inside_st_transformer():
    model = tiny_st()
    model.set_channels_last(True)
    model.conv_gemm(True)
    assert model.channels_last and model.ae.channels_last
    assert all(conv.gemm for conv in (*model.ae.enc, *model.ae.dec))


# ---- the pixel loss (issue 21): bce / fg_mse leave the black-frame plateau, mse sits on it ----


def sparse_frames(N=8, T=1, size=16, seed=0):
    """Ball-like frames: a 3 x 3 lit square (~3.5 % of the pixels) on black, at random places."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(N, T, 3, size, size)
    for i in range(N):
        for t in range(T):
            r, c = torch.randint(0, size - 3, (2,), generator=g).tolist()
            x[i, t, 1, r : r + 3, c : c + 3] = 1.0
    return x


def test_pixel_loss_keeps_a_gradient_on_the_black_plateau():
    """On the plateau (every output near black, logit -6) a lit target pixel pulls its logit under bce
    with (s - y) ~ -1, under fg_mse 21x the mse pull, and under the note's mse with 2(s - y) s (1 - s) ~ 0.005:
    the vanishing gradient that keeps sigmoid AEs on ball frames black for thousands of steps (docs/seed000.md)."""
    from trainables.models.pixel_loss import per_seed_pixel_loss

    x = sparse_frames(N=2)[:, 0]  # [N, 3, H, W]: one seed
    grads = {}
    for loss in ("mse", "bce", "fg_mse"):
        logits = torch.full_like(x, -6.0, requires_grad=True)
        per_seed_pixel_loss(logits, x, 1, loss, fg_weight=21.0).sum().backward()
        grads[loss] = float(logits.grad[x > 0.5].abs().mean() * x.numel())  # per lit element, undoing the mean
    assert grads["bce"] == pytest.approx(1.0, rel=0.01)
    assert grads["mse"] == pytest.approx(2 * torch.sigmoid(torch.tensor(-6.0)).item(), rel=0.02)
    assert grads["fg_mse"] == pytest.approx(21 * grads["mse"], rel=1e-4)
    assert grads["bce"] > 100 * grads["mse"]


def test_pixel_losses_are_per_seed_and_on_logits():
    from trainables.models.pixel_loss import per_seed_pixel_loss

    logits, target = torch.randn(4, 2 * 3, 8, 8), torch.rand(4, 2 * 3, 8, 8)
    bce = per_seed_pixel_loss(logits, target, 2, "bce")
    direct = nn.functional.binary_cross_entropy(torch.sigmoid(logits[:, 3:]), target[:, 3:])
    torch.testing.assert_close(bce[1], direct)
    mse = per_seed_pixel_loss(logits, target, 2, "mse")
    torch.testing.assert_close(mse[0], ((torch.sigmoid(logits[:, :3]) - target[:, :3]) ** 2).mean())
    fg = per_seed_pixel_loss(logits, target, 2, "fg_mse", fg_weight=21.0)
    w = torch.where(target > 0.05, 21.0, 1.0)
    torch.testing.assert_close(fg, ((torch.sigmoid(logits) - target) ** 2 * w).unflatten(1, (2, 3)).mean((0, 2, 3, 4)))


# ---- causal_ae3d causal: false (note 000's ae_3) ----


def test_non_causal_3d_ae_reconstructs_every_frame_from_both_sides():
    cfg = CausalAE3dConfig(channels=(4, 8), time_kernel=4, causal=False)
    model = CausalAE3d(cfg, gens([0, 1]), 16)
    x = frames(2, 1, T=8)
    out, target = model.run(model.clips(x), range(2))
    assert out.shape == target.shape and target.shape[2] == 8  # every frame, no trimming
    later = x.clone()
    later[:, :, 5] = 1 - later[:, :, 5]
    changed = model.run(model.clips(later), range(2))[0]
    assert not torch.allclose(changed[:, :, 4], out[:, :, 4])  # frame 4's output sees frame 5: not causal
    k1 = [CausalAE3d(CausalAE3dConfig(channels=(4,), time_kernel=1, causal=c), gens([0]), 16) for c in (True, False)]
    torch.testing.assert_close(*(m.run(m.clips(x[:1]), range(1))[0] for m in k1))  # kernel 1: the same AE
    with pytest.raises(ValueError, match="causal"):
        CausalAE3dConfig(variant="predict", causal=False)
    with torch.no_grad():
        m = model.evaluate(x[0], None)
    torch.testing.assert_close(m["copy_last_mse"][0].float(), ((x[0, :, 1:] - x[0, :, :-1]) ** 2).mean())


# ---- st_transformer: re-encoded rollouts, the AE's floor ----


def test_reencode_changes_the_rollout_after_its_first_frame():
    model = tiny_st()
    x = frames(2, 2, T=6)
    with torch.no_grad():
        tok = model.tokens(x[:, :, :3])
        plain, reenc = model.rollout(tok, 3), model.rollout(tok, 3, reencode=True)
        first = model.tokens(model.pixels(tok[:, :, :0], plain[:, :, :1]))
    torch.testing.assert_close(reenc[:, :, 0], first[:, :, 0])  # the prediction, decoded and re-encoded
    assert not torch.allclose(reenc[:, :, 0], plain[:, :, 0])
    assert not torch.allclose(reenc[:, :, 2], plain[:, :, 2])
    with pytest.raises(ValueError, match="reencode"):
        STTransformerConfig(variant="causal3d", reencode=True)


def test_st_transformer_floor_and_centroid_ratios():
    model = tiny_st()
    x = frames(1, 3, T=6)[0]
    with torch.no_grad():
        m = model.evaluate(x, None)
        floor = model.ae.decode_all(
            model.ae.encode_all(model.ae.frames(x[:, 2:3].unsqueeze(0).expand(2, -1, -1, -1, -1, -1)))[-1]
        )
    c = 6 - 4  # the first predicted frame
    copy = ((x[:, c] - x[:, c - 1]) ** 2).mean()
    seed1 = floor.unflatten(1, (2, 3))[:, 1]
    torch.testing.assert_close(m["ae_floor_h1_rel"][1].float(), ((seed1 - x[:, c]) ** 2).mean() / copy)
    torch.testing.assert_close(m["centroid_h1_ratio"], m["centroid_h1_px"] / m["copy_centroid_h1_px"])
    torch.testing.assert_close(m["pred_h4_rel"], m["latent_h4_rel"])  # reencode false: the latent rollout


def test_paired_per_seed_differences_and_ratios():
    import pandas as pd

    from analysis.seed_ratios import per_seed, summary, within

    runs = pd.DataFrame(
        {
            "config_id": ["a"] * 3 + ["b"] * 3,
            "seed": [0, 1, 2, 0, 1, 3],
            "time_kernel": [4, 4, 4, 1, 1, 1],
            "mean_frame_rel": [0.03, 0.04, 0.5, 0.02, 0.02, 0.9],
            "l0_zopt_rel": [0.027, 0.036, 0.45, 0.02, 0.02, 0.9],
        }
    )
    t = per_seed(runs, "time_kernel", 4, 1, "mean_frame_rel")
    assert list(t.index) == [0, 1]  # seeds in both configurations only
    assert t["ratio"].tolist() == pytest.approx([1.5, 2.0]) and t["diff"].tolist() == pytest.approx([0.01, 0.02])
    assert "geometric-mean ratio 1.73" in summary(t) and "2/2" in summary(t)
    lr = pd.concat([runs.assign(lr=1e-3), runs.assign(lr=1e-4, config_id=runs["config_id"] + "2")])
    with pytest.raises(ValueError, match="matches 2 configurations"):  # another swept param: say which
        per_seed(lr, "time_kernel", 4, 1, "mean_frame_rel")
    assert per_seed(lr, "time_kernel", 4, 1, "mean_frame_rel", {"lr": 1e-4})["ratio"].tolist() == pytest.approx(
        [1.5, 2.0]
    )
    w = within(runs, "l0_zopt_rel", "mean_frame_rel")
    assert w["ratio"].iloc[:3].tolist() == pytest.approx([0.9, 0.9, 0.9])
