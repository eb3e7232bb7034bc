"""Packed layers: seed s of a pack equals the ``torch.nn`` layer built alone under seed s's generator
stream (same init, by nn's own ``reset_parameters``), forward and gradients of every parameter and
of the input; the im2col path equals the grouped convolution."""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from trainables.models.packed import (
    PackedBatchNorm,
    PackedConv,
    PackedEmbedding,
    PackedLayerNorm,
    PackedLinear,
    PackedMultiheadAttention,
    PackedRNNCell,
    fold,
    per_seed_sum,
    unfold_seeds,
)

SEEDS = [5, 0, 12]
S = len(SEEDS)
TOL = dict(atol=1e-5, rtol=1e-4)


def gens():
    return [torch.Generator().manual_seed(s) for s in SEEDS]


def alone(build):
    """One nn layer per seed, each built (and initialised by its own reset_parameters) on the global
    RNG seeded as that seed's generator: the same stream as ``torch.Generator().manual_seed(seed)``."""
    layers = []
    for seed in SEEDS:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            layers.append(build())
    return layers


def rand(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def on_seed_axis(t, s):  # [S, ...] layouts
    return t[s]


def on_channels(c):  # folded [N, S*C, ...] layouts
    return lambda t, s: t[:, c * s : c * (s + 1)]


def assert_seedwise(
    packed, plains, inputs, names, take_in=on_seed_axis, take_out=on_seed_axis, call=lambda m, *xs: m(*xs), init=True
):
    """For each seed s: (init) packed parameters [s] == the nn layer's; the nn layer on seed s's
    slice of ``inputs`` gives seed s's slice of the packed output, and the same gradients of its
    parameters and float inputs under seed s's slice of one upstream gradient. ``names``: pairs
    (packed parameter, nn parameter)."""
    inputs = [x.clone().requires_grad_(x.is_floating_point()) for x in inputs]
    y = call(packed, *inputs)
    gy = rand(*y.shape, seed=9)
    y.backward(gy)
    for s, plain in enumerate(plains):
        if init:
            for p_name, n_name in names:
                assert torch.equal(packed.get_parameter(p_name)[s], plain.get_parameter(n_name)), (s, p_name)
        xs = [take_in(x.detach(), s).clone().requires_grad_(x.is_floating_point()) for x in inputs]
        ys = call(plain, *xs)
        assert_close(take_out(y.detach(), s), ys, **TOL)
        ys.backward(take_out(gy, s))
        for x, x_s in zip(inputs, xs):
            if x.is_floating_point():
                assert_close(take_in(x.grad, s), x_s.grad, **TOL)
        for p_name, n_name in names:
            assert_close(packed.get_parameter(p_name).grad[s], plain.get_parameter(n_name).grad, **TOL)


# ---- layouts ----


@pytest.mark.parametrize("sp", [(7,), (5, 6), (3, 4, 5)])
def test_fold_unfold_and_per_seed_sum(sp):
    x = rand(S, 2, 3, *sp)  # [S, N, C, *spatial]
    f = fold(x)
    assert f.shape == (2, S * 3, *sp)
    for s in range(S):
        assert torch.equal(f[:, 3 * s : 3 * (s + 1)], x[s])
    assert torch.equal(unfold_seeds(f, S), x)
    cl = fold(x, channels_last=True)
    assert torch.equal(cl, f)
    if len(sp) == 2:
        assert cl.is_contiguous(memory_format=torch.channels_last)
    e = rand(4, *f.shape)  # extra leading dims are summed too
    assert_close(per_seed_sum(e, S, dims=len(sp)), torch.stack([e[:, :, 3 * s : 3 * (s + 1)].sum() for s in range(S)]))


# ---- convolutions ----

CONVS = [  # dims, transpose, kernel, stride, padding, dilation, output_padding, bias, spatial
    (1, False, 3, 1, 1, 1, 0, True, (9,)),
    (1, False, 5, 2, 2, 2, 0, False, (11,)),
    (1, True, 3, 2, 1, 1, 1, True, (6,)),
    (2, False, 4, 2, 1, 1, 0, True, (8, 8)),
    (2, False, (3, 5), (2, 1), (0, 2), (2, 1), 0, True, (9, 8)),
    (2, True, 4, 2, 1, 1, 0, True, (4, 5)),
    (2, True, (3, 2), (2, 3), (1, 0), 1, (1, 2), False, (4, 3)),
    (2, True, 3, 1, 1, 2, 1, True, (5, 5)),
    (3, False, 3, 1, 1, 1, 0, True, (4, 5, 5)),
    (3, False, (3, 4, 4), (1, 2, 2), 1, 1, 0, True, (4, 6, 6)),
    (3, True, (3, 4, 4), (1, 2, 2), 1, 1, 0, True, (3, 3, 3)),
    (3, True, 3, 2, 1, 1, 1, False, (2, 3, 2)),
]
NN_CONV = {
    (1, False): nn.Conv1d,
    (2, False): nn.Conv2d,
    (3, False): nn.Conv3d,
    (1, True): nn.ConvTranspose1d,
    (2, True): nn.ConvTranspose2d,
    (3, True): nn.ConvTranspose3d,
}


@pytest.mark.parametrize("dims,transpose,kernel,stride,padding,dilation,output_padding,bias,sp", CONVS)
def test_conv_equals_nn_per_seed(dims, transpose, kernel, stride, padding, dilation, output_padding, bias, sp):
    c_in, c_out = 2, 3
    geometry = dict(stride=stride, padding=padding, dilation=dilation, bias=bias)
    extra = dict(output_padding=output_padding) if transpose else {}
    packed = PackedConv(gens(), c_in, c_out, kernel, dims=dims, transpose=transpose, **geometry, **extra)
    plains = alone(lambda: NN_CONV[dims, transpose](c_in, c_out, kernel, **geometry, **extra))
    names = [("weight", "weight")] + ([("bias", "bias")] if bias else [])
    assert_seedwise(packed, plains, [rand(2, S * c_in, *sp)], names, on_channels(c_in), on_channels(c_out))


GEMM_2D = [  # kernel, stride, padding, dilation, output_padding (transposed only), bias, spatial
    (4, 2, 1, 1, 0, True, (8, 8)),
    (3, 1, 1, 1, 0, True, (7, 6)),
    ((3, 5), (2, 1), (0, 2), (2, 1), (1, 0), False, (9, 8)),
    (2, 3, 0, 1, (2, 1), True, (7, 5)),
]


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("kernel,stride,padding,dilation,output_padding,bias,sp", GEMM_2D)
def test_conv_as_batched_matmuls_equals_the_grouped_conv(
    transpose, kernel, stride, padding, dilation, output_padding, bias, sp
):
    kw = dict(stride=stride, padding=padding, dilation=dilation, bias=bias, transpose=transpose)
    kw.update(output_padding=output_padding) if transpose else None
    grouped, gemm = PackedConv(gens(), 2, 3, kernel, **kw), PackedConv(gens(), 2, 3, kernel, **kw)
    gemm.gemm = True
    x = rand(4, S * 2, *sp).requires_grad_()
    y1, y2 = grouped(x), gemm(x)
    assert y1.shape == y2.shape
    assert_close(y1, y2, **TOL)
    g = rand(*y1.shape, seed=2)
    params = lambda m: [p for p in (m.weight, m.bias) if p is not None]  # noqa: E731
    for a, b in zip(torch.autograd.grad(y1, [x, *params(grouped)], g), torch.autograd.grad(y2, [x, *params(gemm)], g)):
        assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_conv_rejects_bad_geometry():
    with pytest.raises(ValueError, match="2-D only"):
        PackedConv(gens(), 2, 3, 3, dims=3).gemm = True
    with pytest.raises(ValueError, match="kernel"):
        PackedConv(gens(), 2, 3, (3, 3), dims=3)
    with pytest.raises(ValueError, match="output_padding"):
        PackedConv(gens(), 2, 3, 3, stride=2, transpose=True, output_padding=2)
    with pytest.raises(ValueError, match="dims"):
        PackedConv(gens(), 2, 3, 3, dims=4)


# ---- dense layers ----


@pytest.mark.parametrize("shape,bias", [((4,), True), ((2, 3), True), ((4,), False)])
def test_linear_equals_nn_per_seed(shape, bias):
    packed = PackedLinear(gens(), 5, 7, bias=bias)
    plains = alone(lambda: nn.Linear(5, 7, bias=bias))
    names = [("weight", "weight")] + ([("bias", "bias")] if bias else [])
    assert_seedwise(packed, plains, [rand(S, *shape, 5)], names)


def test_layer_norm_equals_nn_per_seed():
    packed = PackedLayerNorm(S, 6, eps=1e-4)
    plains = [nn.LayerNorm(6, eps=1e-4) for _ in SEEDS]
    for s, plain in enumerate(plains):  # the init (ones, zeros) ...
        assert torch.equal(packed.weight[s], plain.weight) and torch.equal(packed.bias[s], plain.bias)
    with torch.no_grad():  # ... then distinct per-seed affine parameters, copied into the nn layers
        packed.weight.copy_(rand(S, 6, seed=3))
        packed.bias.copy_(rand(S, 6, seed=4))
        for s, plain in enumerate(plains):
            plain.weight.copy_(packed.weight[s])
            plain.bias.copy_(packed.bias[s])
    assert_seedwise(packed, plains, [rand(S, 2, 3, 6) * 3 + 1], [("weight", "weight"), ("bias", "bias")])
    bare = PackedLayerNorm(S, 6, elementwise_affine=False)
    assert_seedwise(bare, [nn.LayerNorm(6, elementwise_affine=False) for _ in SEEDS], [rand(S, 4, 6)], [])


NN_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


@pytest.mark.parametrize("dims,sp,momentum", [(1, (), 0.3), (1, (5,), 0.1), (2, (4, 3), 0.3), (3, (2, 3, 3), None)])
def test_batch_norm_equals_nn_per_seed_in_train_then_eval_mode(dims, sp, momentum):
    C = 4
    packed = PackedBatchNorm(S, C, dims=dims, eps=1e-4, momentum=momentum)
    plains = [NN_BN[dims](C, eps=1e-4, momentum=momentum) for _ in SEEDS]
    with torch.no_grad():
        packed.weight.copy_(rand(S, C, seed=3))
        packed.bias.copy_(rand(S, C, seed=4))
        for s, plain in enumerate(plains):
            plain.weight.copy_(packed.weight[s])
            plain.bias.copy_(packed.bias[s])
    names = [("weight", "weight"), ("bias", "bias")]
    for step in range(3):  # train mode: batch statistics per (seed, channel), running stats updated
        x = rand(6, S * C, *sp, seed=10 + step) * (step + 1) + step
        assert_seedwise(packed, plains, [x], names, on_channels(C), on_channels(C), init=False)
        for m in (packed, *plains):
            m.zero_grad()
    for s, plain in enumerate(plains):
        assert_close(packed.running_mean[s], plain.running_mean, **TOL)
        assert_close(packed.running_var[s], plain.running_var, **TOL)
    assert int(packed.num_batches_tracked) == 3
    before = packed.running_mean.clone()
    for m in (packed, *plains):
        m.eval()
    x = rand(2, S * C, *sp, seed=20)  # eval mode: the running statistics, not this batch's
    assert_seedwise(packed, plains, [x], names, on_channels(C), on_channels(C), init=False)
    assert torch.equal(packed.running_mean, before)
    with pytest.raises(ValueError, match="expects"):
        packed(rand(2, S * C + 1, *sp))


def test_batch_norm_without_running_stats_uses_the_batch_in_eval_mode():
    packed = PackedBatchNorm(S, 2, dims=2, affine=False, track_running_stats=False).eval()
    plains = [nn.BatchNorm2d(2, affine=False, track_running_stats=False).eval() for _ in SEEDS]
    assert_seedwise(packed, plains, [rand(3, S * 2, 4, 4) + 2], [], on_channels(2), on_channels(2))


def test_embedding_equals_nn_per_seed():
    packed = PackedEmbedding(gens(), 11, 4)
    plains = alone(lambda: nn.Embedding(11, 4))
    idx = torch.randint(0, 11, (S, 3, 5), generator=torch.Generator().manual_seed(2))
    assert_seedwise(packed, plains, [idx], [("weight", "weight")])


MHA_NAMES = [("in_proj_weight", "in_proj_weight"), ("out_proj.weight", "out_proj.weight")]
MHA_BIAS = [("in_proj_bias", "in_proj_bias"), ("out_proj.bias", "out_proj.bias")]


@pytest.mark.parametrize("mask", ["none", "causal", "bool"])
@pytest.mark.parametrize("bias", [True, False])
def test_self_attention_equals_nn_per_seed(mask, bias):
    L, d, heads = 5, 8, 2
    packed = PackedMultiheadAttention(gens(), d, heads, bias=bias)
    plains = alone(lambda: nn.MultiheadAttention(d, heads, bias=bias, batch_first=True))
    causal = torch.triu(torch.ones(L, L, dtype=torch.bool), 1)  # nn's meaning: True = may not attend
    blocked = (torch.rand(L, L, generator=torch.Generator().manual_seed(3)) < 0.4).fill_diagonal_(False)

    def call(m, x):
        if isinstance(m, PackedMultiheadAttention):
            return m(x, is_causal=mask == "causal", attn_mask=blocked if mask == "bool" else None)
        attn_mask = {"none": None, "causal": causal, "bool": blocked}[mask]
        return m(x, x, x, attn_mask=attn_mask, is_causal=mask == "causal", need_weights=False)[0]

    assert_seedwise(packed, plains, [rand(S, 2, L, d)], MHA_NAMES + (MHA_BIAS if bias else []), call=call)


def test_cross_attention_equals_nn_per_seed():
    d, heads = 6, 3
    packed = PackedMultiheadAttention(gens(), d, heads)
    plains = alone(lambda: nn.MultiheadAttention(d, heads, batch_first=True))

    def call(m, q, k, v):
        return m(q, k, v) if isinstance(m, PackedMultiheadAttention) else m(q, k, v, need_weights=False)[0]

    inputs = [rand(S, 2, 4, d, seed=1), rand(S, 2, 7, d, seed=2), rand(S, 2, 7, d, seed=3)]
    assert_seedwise(packed, plains, inputs, MHA_NAMES + MHA_BIAS, call=call)


@pytest.mark.parametrize("kind", ["gru", "rnn"])
def test_rnn_cells_equal_nn_per_seed(kind):
    packed = PackedRNNCell(gens(), 3, 8, kind)
    plains = alone(lambda: nn.GRUCell(3, 8) if kind == "gru" else nn.RNNCell(3, 8))
    names = [("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh")]
    assert_seedwise(packed, plains, [rand(S, 4, 3, seed=1), rand(S, 4, 8, seed=2)], names)
