"""The packed SPS module: symmetry actions invert, and a seed's losses do not depend on the seeds packed
with it (its packed layers are tested in test_packed.py)."""

import math

import pytest
import torch
from torch import nn

from trainables.models.sps import SPS, SPSConfig, teacher_forcing_prob
from trainables.models.symmetry import act, parse_symmetry, sample_action

SEEDS = [5, 0, 12]


def gens(seeds=SEEDS):
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.mark.parametrize("kind,n", [("T", 1), ("T", 2), ("T", 3), ("R", 2), ("R", 3)])
def test_action_then_inverse_is_identity(kind, n):
    cfg = SPSConfig(z_dim=4)
    g = torch.Generator().manual_seed(0)
    p = sample_action(kind, n, (2, 5), cfg, g)  # K=2 copies of a batch of 5
    z = torch.randn(1, 1, 5, 7, 4, generator=g)  # [S, 1, B, T, z_dim], broadcast over the K copies
    moved = act(kind, z, p)
    assert moved.shape == (1, 2, 5, 7, 4)
    assert not torch.allclose(moved[..., :n], z[..., :n].expand_as(moved[..., :n]))  # it does act ...
    assert torch.equal(moved[..., n:], z[..., n:].expand_as(moved[..., n:]))  # ... on the first n dims only
    assert torch.allclose(act(kind, moved, p, inverse=True), z.expand_as(moved), atol=1e-5)
    if kind == "R":  # rotations: orthogonal, det +1, norm-preserving
        eye = torch.eye(n).expand_as(p)
        assert torch.allclose(p @ p.transpose(-1, -2), eye, atol=1e-5)
        assert torch.allclose(torch.linalg.det(p), torch.ones(p.shape[:-2]), atol=1e-5)
        assert torch.allclose(moved[..., :n].norm(dim=-1), z[..., :n].norm(dim=-1).expand(1, 2, 5, 7), atol=1e-5)
    else:
        assert p.min() >= cfg.t_range[0] and p.max() <= cfg.t_range[1]


def test_parse_symmetry():
    assert parse_symmetry("T2R2", 3) == [("T", 2, 1), ("R", 2, 1)]
    assert parse_symmetry("T3R3x2", 6) == [("T", 3, 2), ("R", 3, 2)]
    assert parse_symmetry("none", 3) == []
    for bad in ("T4", "R1", "X2", "T2 R2", "TR", "T3R3x3", "x2", "T2x0", "T3R3x"):
        with pytest.raises(ValueError, match="symmetry"):
            parse_symmetry(bad, 6 if "x" in bad else 3)


@pytest.mark.parametrize("kind,n", [("T", 3), ("R", 3), ("R", 2)])
def test_one_action_on_several_slices(kind, n):
    """``x<m>``: the same sampled element moves each n-dim slice as it would move that slice alone;
    the inverse undoes it, and dims past the slices stay."""
    cfg, slices = SPSConfig(z_dim=2 * n + 1), 2
    g = torch.Generator().manual_seed(1)
    p = sample_action(kind, n, (2, 5), cfg, g)
    z = torch.randn(1, 1, 5, 7, 2 * n + 1, generator=g)
    moved = act(kind, z, p, slices=slices)
    for i in range(slices):
        alone = act(kind, z[..., i * n : (i + 1) * n], p)  # the slice as a z of its own
        assert torch.allclose(moved[..., i * n : (i + 1) * n], alone, atol=1e-6)
    assert torch.equal(moved[..., 2 * n :], z[..., 2 * n :].expand_as(moved[..., 2 * n :]))
    assert torch.allclose(act(kind, moved, p, inverse=True, slices=slices), z.expand_as(moved), atol=1e-5)
    if kind == "T":  # the two bodies keep their difference (a translation of both is a symmetry of two-body motion)
        diff = moved[..., :n] - moved[..., n : 2 * n]
        assert torch.allclose(diff, (z[..., :n] - z[..., n : 2 * n]).expand_as(diff), atol=1e-6)


def test_one_slice_action_equals_the_plain_action_bitwise():
    cfg, g = SPSConfig(z_dim=3), torch.Generator().manual_seed(2)
    z = torch.randn(2, 1, 4, 6, 3, generator=g)
    for kind in ("T", "R"):
        p = sample_action(kind, 2, (2, 4), cfg, g)
        n = p.shape[-1]
        head = z[..., :n] + p.unsqueeze(-2) if kind == "T" else z[..., :n] @ p  # the one-slice formula
        assert torch.equal(act(kind, z, p)[..., :n], head)


@pytest.mark.parametrize(
    "reparam, sd", [("vae", lambda lv: torch.exp(lv / 2)), ("sps", lambda lv: 0.5 * torch.exp(lv))]
)
def test_reparam_noise_scales(reparam, sd):
    model = SPS(SPSConfig(**{**TINY, "use_rnn": False}, reparam=reparam), gens([0]), 16)
    x = torch.rand(1, 2, 3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    eps = torch.randn(1, 6, 3, generator=torch.Generator().manual_seed(5))
    seen = []
    model.dec_fc[0].register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))  # the decoded z
    with torch.no_grad():
        model.losses(x, {"eps": eps}, 0)
        mu, logvar = model.encode(model.fold(x))
    assert torch.allclose(seen[0], mu + eps * sd(logvar), atol=1e-6)
    assert not torch.allclose(
        seen[0],
        mu + eps * torch.exp(logvar / 2 if reparam == "sps" else logvar) * (1 if reparam == "sps" else 0.5),
        atol=1e-4,
    )


def test_defaults_are_the_authors():
    cfg = SPSConfig()
    assert cfg.reparam == "vae"  # the sd the KL term assumes; "sps" is the authors' (docs/sps.md says why)
    with pytest.raises(ValueError, match="'reparam'"):
        SPSConfig(reparam="half")
    assert cfg.rnn_cell == "rnn" and cfg.channels == (64, 128, 256) and cfg.lr_decay == 1.0
    assert (cfg.beta, cfg.z_loss_weight, cfg.symmetry_loss_weight, cfg.rnn_min_context, cfg.batch_size) == (
        0.01,
        2.0,
        2.0,
        5,
        32,
    )


def test_teacher_forcing_schedule():
    a, b = SPSConfig().tf_steps
    assert teacher_forcing_prob(0, (a, b)) == pytest.approx(a / (a + math.exp(b / a)))
    probs = [teacher_forcing_prob(s, (a, b)) for s in (0, 5000, 9000, 20000, 10**9)]
    assert probs[0] > 0.98 and probs == sorted(probs, reverse=True) and probs[-1] == 0.0
    assert 0.4 < probs[2] < 0.6  # the sigmoid's midpoint: a ln a - b ~ 8930 steps


TINY = dict(channels=(4, 8, 8), dec_hidden=(8,), rnn_width=16, symmetry="T2R2", k=2, rnn_min_context=2)


def make_batch(cfg, model, seeds, step, B=3, T=5, H=16):
    x = torch.rand(len(seeds), B, T, 3, H, H, generator=torch.Generator().manual_seed(1))
    draws = [model.draw(torch.Generator().manual_seed(100 + s), B, T, step) for s in seeds]
    return x, {k: torch.stack([d[k] for d in draws]) for k in draws[0]}


VARIANTS = [
    {},
    {"loss": "mse", "rnn_cell": "gru", "symmetry": "T3R3", "z_dim": 3, "reparam": "sps"},
    {"symmetry": "T3R3x2", "z_dim": 6},
    {"deterministic": True},
    {"use_rnn": False},
    {
        "symmetry_combine": "sample",
        "p_identity": 0.5,
        "stop_grad": "both",
        "tf_schedule": "linear",
        "tf_linear_steps": 9,
    },
    {"symmetry_combine": "compose", "p_identity": 0.5, "stop_grad": "target"},
]


@pytest.mark.parametrize("extra", VARIANTS)
def test_losses_of_a_seed_do_not_depend_on_its_pack(extra):
    cfg = SPSConfig(**{**TINY, **extra})
    packed, alone = SPS(cfg, gens(), 16), SPS(cfg, gens([SEEDS[1]]), 16)
    x, rand = make_batch(cfg, packed, SEEDS, step=20000)  # late enough that scheduled sampling feeds predictions back
    terms = packed.losses(x, rand, 0)
    single = alone.losses(x[1:2], {k: v[1:2] for k, v in rand.items()}, 0)
    assert set(terms) == set(single)
    for k in terms:
        assert torch.isfinite(terms[k]).all()
        assert torch.allclose(terms[k][1:2], single[k], rtol=1e-5), k
    expected = {"recon", "total"} | ({"kl"} if not cfg.deterministic else set())
    expected |= {"pred", "z_pred", "sym_z", "sym_recon"} if cfg.use_rnn else set()
    assert set(terms) == expected
    # gradients stay within each seed: a loss of seed 0 only moves seed 0's parameters
    terms["total"][0].backward()
    assert packed.fc_mu.weight.grad[0].abs().sum() > 0 and packed.fc_mu.weight.grad[1:].abs().sum() == 0


def test_channels_last_gives_the_same_losses():
    cfg = SPSConfig(**TINY)
    model = SPS(cfg, gens(), 16)
    x, rand = make_batch(cfg, model, SEEDS, step=0)
    ref = model.losses(x, rand, 0)["total"]
    model.channels_last = True
    assert torch.allclose(model.losses(x, rand, 0)["total"], ref, rtol=1e-5)


@pytest.mark.parametrize("extra", [{}, {"deterministic": True}])
def test_bf16_autocast_keeps_losses_fp32_and_close(extra):
    cfg = SPSConfig(**{**TINY, **extra})
    model = SPS(cfg, gens(), 16)
    x, rand = make_batch(cfg, model, SEEDS, step=20000)
    ref = model.losses(x, rand, 0)
    with torch.autocast("cpu", torch.bfloat16):
        terms = model.losses(x, rand, 0)
    for k in ref:
        assert terms[k].dtype == torch.float32, k  # reduced in fp32
        assert torch.allclose(terms[k], ref[k], rtol=2e-2), k  # bf16 convs and matmuls: ~1e-2
    assert not torch.equal(terms["total"], ref["total"])  # and they did run in bf16


def test_measure_shapes_and_open_loop_prediction():
    cfg = SPSConfig(**TINY)
    model = SPS(cfg, gens(), 16)
    x = torch.rand(len(SEEDS), 3, 5, 3, 16, 16)
    out = model.measure(x)
    assert out["z"].shape == (len(SEEDS), 3, 5, cfg.z_dim)
    assert out["recon_se"].shape == out["pred_se"].shape == (len(SEEDS),)
    # the open-loop rollout ignores the inputs after the context
    x2 = x.clone()
    x2[:, :, cfg.rnn_min_context :, :, :, :] = torch.rand_like(x2[:, :, cfg.rnn_min_context :])
    z = out["z"]
    z2 = model.measure(x2)["z"]
    z2[:, :, : cfg.rnn_min_context] = z[:, :, : cfg.rnn_min_context]
    assert torch.allclose(model.rollout(z, None), model.rollout(z2, None))


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="'loss'"):
        SPSConfig(loss="l1")
    with pytest.raises(ValueError, match="'rnn_width'"):
        SPSConfig(rnn_width=2.5)
    with pytest.raises(ValueError, match="'use_rnn'"):
        SPSConfig(use_rnn=1)
    assert SPSConfig(t_range=[-2, 2]).t_range == (-2.0, 2.0)  # YAML lists become tuples of floats


def plain_layers(model: SPS, s: int):
    """Seed ``s`` of a packed SPS as ordinary nn layers (its weights copied): encoder -> mu, decoder."""

    def copy(layer, packed):
        layer.weight.data.copy_(packed.weight[s])
        layer.bias.data.copy_(packed.bias[s])
        return layer

    enc = []
    for conv in model.encoder:
        c_out, c_in = conv.weight.shape[1:3]
        enc += [copy(nn.Conv2d(c_in, c_out, 4, 2, 1), conv), nn.ReLU()]
    enc += [nn.Flatten(), copy(nn.Linear(*model.fc_mu.weight.shape[:0:-1]), model.fc_mu)]
    dec = []
    for fc in model.dec_fc:
        dec += [copy(nn.Linear(*fc.weight.shape[:0:-1]), fc), nn.ReLU()]
    dec[-1] = nn.Unflatten(1, (model.cfg.channels[-1], model.side, model.side))
    for conv in model.decoder:
        c_in, c_out = conv.weight.shape[1:3]
        dec += [copy(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), conv), nn.ReLU()]
    dec[-1] = nn.Sigmoid()
    return nn.Sequential(*enc), nn.Sequential(*dec)


def test_packed_autoencoder_equals_plain_layers_and_bce_sum():
    cfg = SPSConfig(**{**TINY, "deterministic": True, "use_rnn": False})
    model = SPS(cfg, gens(), 16)
    B, T = 2, 4
    x = torch.rand(len(SEEDS), B, T, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    out, terms = model.measure(x), model.losses(x, {}, 0)
    for s in range(len(SEEDS)):
        enc, dec = plain_layers(model, s)
        frames = x[s].flatten(0, 1)
        mu = enc(frames)
        assert torch.allclose(out["z"][s].reshape(B * T, -1), mu, atol=1e-5)
        recon = dec(mu)
        assert torch.allclose(out["recon_se"][s], ((recon - frames) ** 2).sum(), rtol=1e-4)
        bce = (
            nn.functional.binary_cross_entropy(recon, frames, reduction="sum") / B
        )  # SPS: BCELoss(sum), here per sequence
        assert torch.allclose(terms["recon"][s], bce, rtol=1e-4)
