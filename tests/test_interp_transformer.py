"""interp_transformer (seed system 002): windows, source fields, baselines and metrics on known
inputs, the two loss scopes, and the encoder block against ``torch.nn.TransformerEncoderLayer``.
Packed-equals-alone and every declared metric from ``fit`` are the contract test (tests/test_models.py)."""

import math

import pytest
import torch
from tolerances import PACKED, near
from torch import nn
from torch.testing import assert_close

from trainables import fit, resolve_config
from trainables.models.interp_transformer import (
    Block,
    InterpConfig,
    InterpTransformer,
    centroids,
    draw_starts,
    seam_mask,
    windows,
)

TINY = InterpTransformer.test_sizes
SMALL = {k: v for k, v in TINY.items() if k not in ("frames", "image_size")}


def model(seeds=(0,), image_size=8, **kw):
    cfg = InterpConfig(**{**SMALL, **kw})
    return InterpTransformer(cfg, [torch.Generator().manual_seed(s) for s in seeds], image_size)


def numbered(N, T, size=8):
    """Sequences whose frame t is the constant image t (so a window's frames name themselves)."""
    return torch.arange(T, dtype=torch.float32).view(1, T, 1, 1, 1).expand(N, T, 3, size, size).clone()


@pytest.mark.parametrize("step", [0, 1, 3])
def test_windows_are_frames_step_apart_and_in_range(step):
    T = 13
    g = torch.Generator().manual_seed(0)
    t0 = draw_starts(g, 2000, T, step)
    assert t0.min() == 0 and t0.max() == T - 1 - 4 * step  # every start that fits, and only those
    w = windows(numbered(len(t0), T), t0, step)[:, :, 0, 0, 0]  # [N, 5] frame numbers
    assert_close(w, (t0.unsqueeze(1) + step * torch.arange(5)).float())
    if step == 0:
        assert (w == w[:, :1]).all()  # a static window: one frame five times


def test_window_starts_come_from_the_seed_generator_only():
    m = model()
    a = m.draw(torch.Generator().manual_seed(3), 4, 10, step=0)["t0"]
    b = m.draw(torch.Generator().manual_seed(3), 4, 10, step=7)["t0"]
    assert_close(a, b)


def test_source_fields_are_centred_on_their_patches():
    m = model(src=8, patch=4)  # 8 x 8 image: 2 x 2 patches, fields padded by 2
    frames = torch.rand(1, 1, 1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    f = m.fields(frames).view(1, 2, 2, 8, 8, 3)  # [S, row, col, src, src, 3]
    for r in range(2):
        for c in range(2):
            assert_close(
                f[0, r, c, 2:6, 2:6].permute(2, 0, 1), frames[0, 0, 0, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4]
            )
    assert (f[0, 0, 0, :2] == 0).all() and (f[0, 1, 1, -2:] == 0).all()  # zero padding outside the image
    stacked = torch.rand(2, 3, 4, 3, 8, 8, generator=torch.Generator().manual_seed(1))  # [S, B, F, 3, H, W]
    every = m.fields(stacked).unflatten(1, (3, 4))  # [S, B, P, L, 3]
    for patch in range(4):  # patch_step's one field per image, cut before the copy: the same numbers
        assert torch.equal(m.fields(stacked, patch), every[:, :, patch])


def test_baselines_psnr_on_known_frames():
    # frame t is the constant (t/10)^2: on the one window (t0 = 0) the blend of frames 1 and 3 is off by
    # (1 + 9)/200 - 4/100 = 0.01 and copying frame 1 by (4 - 1)/100 = 0.03: PSNR 40 dB and 30.46 dB
    x = (numbered(3, 5) / 10) ** 2
    out = model(frame_step=1).evaluate(x, torch.zeros(3, 5, 3))
    assert out["psnr_blend"].item() == pytest.approx(40.0, abs=1e-4)
    assert out["psnr_copy"].item() == pytest.approx(10 * math.log10(1 / 9e-4), abs=1e-4)
    assert out["psnr_gain"].item() == pytest.approx(out["psnr"].item() - 40.0, abs=1e-4)
    black = 10 * math.log10(1 / (0.04**2))  # the middle frame is the constant 0.04
    assert out["psnr_black"].item() == pytest.approx(black, abs=1e-4)
    assert out["psnr_gain_black"].item() == pytest.approx(out["psnr"].item() - black, abs=1e-4)


def test_seams_and_centroids():
    seam = seam_mask(16, 8)
    assert seam.sum() == 16 * 4 - 4 and seam[7, 0] and seam[0, 8] and not seam[6, 6] and not seam[0, 0]
    assert not seam_mask(8, 8).any()  # one patch: no seams
    img = torch.zeros(2, 3, 8, 8)
    img[0, :, 3, 5] = 1.0
    img[0, :, 0, 0] = 0.2  # dim background: below half the maximum, ignored
    assert_close(centroids(img), torch.tensor([[3.0, 5.0], [3.5, 3.5]]))  # a blank image: its centre


def test_loss_scopes_differ_only_where_the_head_crosses_a_seam():
    patch = model(src=8, patch=4, loss_scope="patch")
    image = model(src=8, patch=4, loss_scope="image")
    image.load_state_dict(patch.state_dict())  # the same weights
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 2, 5, 3, 8, 8, generator=g)
    rand = {"t0": torch.zeros(1, 2, dtype=torch.long)}
    a, b = patch(x[:, :, [0, 1, 3, 4]], None), image(x[:, :, [0, 1, 3, 4]], None)
    # the stride-2 head's first output row/column of each patch reads the row/column before its field:
    # zero padding per patch, the neighbour's features across a seam
    touched = torch.zeros(8, 8, dtype=torch.bool)
    touched[4, :] = touched[:, 4] = True
    assert_close(a[..., ~touched], b[..., ~touched])
    assert (a[..., touched] - b[..., touched]).abs().min() > 0
    la, lb = patch.losses(x, rand, 0)["total"], image.losses(x, rand, 0)["total"]
    assert la.item() != pytest.approx(lb.item(), rel=1e-4)


def test_block_equals_nn_transformer_encoder_layer_per_seed():
    seeds, d, heads, ff = [4, 9], 16, 4, 32
    block = Block([torch.Generator().manual_seed(s) for s in seeds], d, heads, ff)
    x = torch.randn(2, 3, 10, d, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out = block(x)
    out.square().sum().backward()
    for i, seed in enumerate(seeds):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            ref = nn.TransformerEncoderLayer(
                d, heads, ff, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
            )
        pairs = {
            "self_attn.in_proj_weight": block.attn.in_proj_weight,
            "self_attn.out_proj.weight": block.attn.out_proj.weight,
            "linear1.weight": block.linear1.weight,
            "linear1.bias": block.linear1.bias,
            "linear2.weight": block.linear2.weight,
            "linear2.bias": block.linear2.bias,
        }
        params = dict(ref.named_parameters())
        for name, p in pairs.items():
            assert_close(p[i], params[name], msg=f"init of {name}")  # same init from the seed's stream
        xi = x[i].detach().requires_grad_()
        yi = ref(xi)
        yi.square().sum().backward()
        assert_close(out[i], yi, atol=1e-5, rtol=1e-4)
        for name, p in pairs.items():
            assert_close(p.grad[i], params[name].grad, atol=1e-4, rtol=1e-3, msg=f"grad of {name}")
        assert_close(x.grad[i], xi.grad, atol=1e-4, rtol=1e-3)


def test_noised_middle_frame_and_image_scope_pack_like_alone():
    config = {
        "model": "interp_transformer",
        "env": "ball",
        "n_train": 16,
        "n_val": 8,
        **TINY,
        "input_noise": 0.1,
        "middle_frame": True,
        "loss_scope": "image",
        "frame_step": 1,
    }
    packed = fit(config, seeds=[0, 1], epochs=1, device="cpu")
    alone = fit(config, seeds=[1], epochs=1, device="cpu")
    for key in ("psnr", "psnr_border", "centroid_error", "train/total"):
        assert packed[1][key] == near(alone[0][key], PACKED), key


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"middle_frame": True, "middle_noise": 0.0}, "middle_noise"),
        ({"src": 10, "patch": 4}, "src"),
        ({"loss_scope": "pixels"}, "loss_scope"),
        ({"frames": 8, "frame_step": 2}, "frames"),
        ({"image_size": 12, "patch": 8, "src": 16}, "image_size"),
    ],
)
def test_bad_settings_name_the_key(bad, field):
    with pytest.raises(ValueError, match=f"'{field}'"):
        resolve_config({"model": "interp_transformer", "env": "ball", **bad})


def test_shipped_specs_are_valid():
    from sweeps import spec as specs

    quick, gpu = specs.load("sweeps/interp_quickstart.yaml"), specs.load("sweeps/interp_gpu.yaml")
    assert quick.model == gpu.model == "interp_transformer" and quick.data["image_size"] == 16
    assert gpu.seeds == 16 and set(gpu.swept()) == {
        "input_noise",
        "middle_frame",
        "frame_step",
        "d_model",
        "loss_scope",
    }


def test_patch_step_trains_one_patch_per_step_and_packs_like_alone():
    """loss_scope patch_step (one optimiser step per patch): the prediction of patch k from its field
    alone is patch k of the per-patch scope's image (same weights); the loss of step i is patch
    i mod P's MSE; an epoch takes P steps per batch; seed 1 packed trains as seed 1 alone."""
    per_patch = model(seeds=(0, 1), src=8, patch=4, loss_scope="patch")
    stepped = model(seeds=(0, 1), src=8, patch=4, loss_scope="patch_step")
    stepped.load_state_dict(per_patch.state_dict())
    assert (per_patch.steps_per_batch, stepped.steps_per_batch) == (1, 4)
    x = torch.rand(2, 3, 5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    whole = per_patch(x[:, :, [0, 1, 3, 4]], None)
    for k, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        one = stepped(x[:, :, [0, 1, 3, 4]], None, k)
        assert_close(one, whole[..., 4 * r : 4 * r + 4, 4 * c : 4 * c + 4], atol=1e-5, rtol=1e-4)
        rand = {"t0": torch.zeros(2, 3, dtype=torch.long)}
        want = (one - x[:, :, 2, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4]).square().mean((1, 2, 3, 4))
        assert_close(stepped.losses(x, rand, 8 + k)["total"], want, atol=1e-6, rtol=1e-5)
    config = {"model": "interp_transformer", "env": "ball", "n_train": 16, "n_val": 8, **TINY}
    config.update(loss_scope="patch_step", frame_step=1, batch_size=8)
    from trainables import Pack

    packed, alone = Pack(config, [0, 1], device="cpu"), Pack(config, [1], device="cpu")
    for p in (packed, alone):
        p.train_epoch()
    assert packed.step == alone.step == 2 * 4  # 16 sequences / 8 per batch, 4 patches of 8 x 8 at patch 4
    a, b = packed.evaluate()[1], alone.evaluate()[0]
    for key in ("psnr", "train/total"):
        assert a[key] == near(b[key], PACKED), key


def test_palette_tokens_quantise_to_512_colours_and_pack_like_alone():
    """tokens palette (note 002's exp .2, "pixel quantization of dim 512"): 8 levels per channel, the
    colour's index picks its seed's vector; nearby colours share a token; packed equals alone."""
    m = model(seeds=(0, 1), tokens="palette")
    assert m.palette.shape == (2, 512, SMALL["d_model"]) and not hasattr(m, "embed")
    pixels = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.99, 0.01, 0.02]])
    tokens = m.tokenise(pixels.view(1, 1, 4, 3).expand(2, 1, 4, 3))
    assert_close(tokens[:, 0, 0], m.palette[:, 0])
    assert_close(tokens[:, 0, 1], m.palette[:, 511])
    assert_close(tokens[:, 0, 2], m.palette[:, 7 * 64])
    assert_close(tokens[:, 0, 3], tokens[:, 0, 2])  # nearby colours share a token
    config = {"model": "interp_transformer", "env": "ball", "n_train": 16, "n_val": 8, **TINY}
    config.update(tokens="palette", frame_step=1, input_noise=0.1)
    packed = fit(config, seeds=[0, 1], epochs=1, device="cpu")
    alone = fit(config, seeds=[1], epochs=1, device="cpu")
    for key in ("psnr", "train/total"):
        assert packed[1][key] == near(alone[0][key], PACKED), key
