"""Packed layers: S independent copies of a ``torch.nn`` layer in one module, one per seed.

Every parameter has the seed dimension first ([S, ...]). Seed s's slice is initialised from the
s-th ``torch.Generator`` exactly as the nn layer's ``reset_parameters`` draws it (same functions,
same order), so it equals the nn layer built under that generator's stream; forward passes never
mix seeds. Layouts:

- convolutions, BatchNorm: seeds folded into the channels, [N, S*C, *spatial] (``fold``), computed
  by one grouped kernel (``groups=S``);
- Linear, RNN cells: [S, N, F], one batched matmul (``baddbmm``);
- LayerNorm, Embedding, attention: seed dimension first, [S, ...]; attention folds the seeds into
  the batch of ``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# ---- layouts ----


def fold(x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """[S, N, C, *spatial] -> [N, S*C, *spatial] (seeds folded into channels); ``channels_last``
    returns the same values in channels-last memory order."""
    S, N, C, *sp = x.shape
    if channels_last:
        d = len(sp)
        return x.permute(1, *range(3, 3 + d), 0, 2).reshape(N, *sp, S * C).permute(0, d + 1, *range(1, d + 1))
    return x.transpose(0, 1).reshape(N, S * C, *sp)


def unfold_seeds(x: torch.Tensor, S: int) -> torch.Tensor:
    """[N, S*C, *spatial] -> [S, N, C, *spatial], the inverse of ``fold``."""
    return x.unflatten(1, (S, -1)).transpose(0, 1)


def per_seed_sum(e: torch.Tensor, S: int, dims: int = 2) -> torch.Tensor:
    """Sum of a folded tensor [..., S*C, *spatial] (``dims`` spatial dims) per seed -> [S]."""
    e = e.unflatten(-1 - dims, (S, -1))
    seed_dim = e.dim() - 2 - dims
    return e.sum([d for d in range(e.dim()) if d != seed_dim])


def _tuple(v, n: int, name: str) -> tuple[int, ...]:
    t = (v,) * n if isinstance(v, int) else tuple(v)
    if len(t) != n or not all(isinstance(i, int) for i in t):
        raise ValueError(f"{name} must be an int or {n} ints for a {n}-D layer, got {v!r}")
    return t


def layer_params(gens, weight_shape, bias_size: int | None):
    """Weight [S, *weight_shape] and bias [S, bias_size] (or None) initialised per seed as
    ``nn.Linear`` / ``nn.ConvNd`` / ``nn.ConvTransposeNd`` do (``reset_parameters``):
    kaiming_uniform(a=sqrt(5)) weight, then U(+-1/sqrt(fan_in)) bias. Pass the nn layer's weight
    shape (transposed convolutions: [C_in, C_out, *k], whose torch fan_in is C_out * prod(k))."""
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(torch.empty(weight_shape))
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
    weights, biases = [], []
    for g in gens:  # per seed: weight then bias, as the nn layer draws them
        weights.append(nn.init.kaiming_uniform_(torch.empty(weight_shape), a=math.sqrt(5), generator=g))
        if bias_size is not None:
            biases.append(nn.init.uniform_(torch.empty(bias_size), -bound, bound, generator=g))
    bias = nn.Parameter(torch.stack(biases)) if bias_size is not None else None
    return nn.Parameter(torch.stack(weights)), bias


# ---- convolutions ----

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


class PackedConv(nn.Module):
    """S independent ``nn.Conv{1,2,3}d`` (or ``nn.ConvTranspose{1,2,3}d``, ``transpose=True``):
    [N, S*C_in, *spatial] -> [N, S*C_out, *spatial'] by one grouped convolution (``groups=S``).
    Weight [S, C_out, C_in, *k] ([S, C_in, C_out, *k] transposed), bias [S, C_out].
    ``gemm = True`` (2-D only): im2col + one batched matmul over the seeds, the same numbers."""

    def __init__(
        self,
        gens,
        c_in: int,
        c_out: int,
        kernel,
        stride=1,
        padding=0,
        dilation=1,
        dims: int = 2,
        transpose: bool = False,
        output_padding=0,
        bias: bool = True,
    ):
        super().__init__()
        if dims not in _CONV:
            raise ValueError(f"PackedConv dims must be 1, 2 or 3, got {dims!r}")
        self.dims, self.transpose = dims, transpose
        self.kernel = _tuple(kernel, dims, "kernel")
        self.stride = _tuple(stride, dims, "stride")
        self.padding = _tuple(padding, dims, "padding")
        self.dilation = _tuple(dilation, dims, "dilation")
        self.output_padding = _tuple(output_padding, dims, "output_padding")
        if not transpose and any(self.output_padding):
            raise ValueError("output_padding is for transposed convolutions only (transpose=True)")
        if transpose and any(p >= max(s, d) for p, s, d in zip(self.output_padding, self.stride, self.dilation)):
            raise ValueError(f"output_padding {self.output_padding} must be smaller than stride or dilation")
        shape = (c_in, c_out, *self.kernel) if transpose else (c_out, c_in, *self.kernel)
        self.weight, self.bias = layer_params(gens, shape, c_out if bias else None)
        self._gemm = False

    @property
    def gemm(self) -> bool:
        return self._gemm

    @gemm.setter
    def gemm(self, on: bool) -> None:
        if on and self.dims != 2:
            raise ValueError(
                f"PackedConv gemm path is 2-D only (F.unfold/fold), this layer has dims={self.dims}; leave gemm off"
            )
        self._gemm = bool(on)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        S = self.weight.shape[0]
        bias = None if self.bias is None else self.bias.flatten()
        if self._gemm:
            if self.transpose:
                return conv_transpose_gemm(
                    x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.output_padding
                )
            return conv_gemm(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        if self.transpose:
            return _CONV_T[self.dims](
                x,
                self.weight.flatten(0, 1),
                bias,
                stride=self.stride,
                padding=self.padding,
                output_padding=self.output_padding,
                groups=S,
                dilation=self.dilation,
            )
        return _CONV[self.dims](
            x,
            self.weight.flatten(0, 1),
            bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=S,
        )

    def extra_repr(self) -> str:
        S, a, b = self.weight.shape[:3]
        c_in, c_out = (a, b) if self.transpose else (b, a)
        return (
            f"S={S}, {c_in}, {c_out}, dims={self.dims}, kernel={self.kernel}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, transpose={self.transpose}, bias={self.bias is not None}"
        )


def conv_gemm(x, weight, bias, stride=(2, 2), padding=(1, 1), dilation=(1, 1)) -> torch.Tensor:
    """Grouped 2-D convolution as unfold (im2col) + ``baddbmm``: x [N, S*C_in, H, W], weight
    [S, C_out, C_in, kh, kw], bias [S, C_out] or None -> [N, S*C_out, H', W']."""
    S, c_out, c_in, kh, kw = weight.shape
    N, _, H, W = x.shape
    Ho = (H + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    Wo = (W + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    K = c_in * kh * kw
    cols = F.unfold(
        x, (kh, kw), dilation=dilation, padding=padding, stride=stride
    )  # [N, S*C_in*kh*kw, L], channels outermost
    L = cols.shape[-1]
    cols = cols.view(N, S, K, L).permute(1, 0, 3, 2).reshape(S, N * L, K)
    w = weight.reshape(S, c_out, K).transpose(1, 2)
    out = torch.bmm(cols, w) if bias is None else torch.baddbmm(bias.unsqueeze(1), cols, w)  # [S, N*L, C_out]
    return out.view(S, N, Ho, Wo, c_out).permute(1, 0, 4, 2, 3).reshape(N, S * c_out, Ho, Wo)


def conv_transpose_gemm(
    x, weight, bias, stride=(2, 2), padding=(1, 1), dilation=(1, 1), output_padding=(0, 0)
) -> torch.Tensor:
    """Grouped 2-D transposed convolution as ``bmm`` + fold (col2im): x [N, S*C_in, h, w], weight
    [S, C_in, C_out, kh, kw], bias [S, C_out] or None -> [N, S*C_out, H', W']."""
    S, c_in, c_out, kh, kw = weight.shape
    N, _, h, w = x.shape
    Ho = (h - 1) * stride[0] - 2 * padding[0] + dilation[0] * (kh - 1) + output_padding[0] + 1
    Wo = (w - 1) * stride[1] - 2 * padding[1] + dilation[1] * (kw - 1) + output_padding[1] + 1
    rows = x.reshape(N, S, c_in, h * w).permute(1, 0, 3, 2).reshape(S, N * h * w, c_in)
    cols = torch.bmm(rows, weight.reshape(S, c_in, c_out * kh * kw))  # [S, N*h*w, C_out*kh*kw]
    cols = cols.view(S, N, h * w, c_out * kh * kw).permute(1, 0, 3, 2).reshape(N, S * c_out * kh * kw, h * w)
    out = F.fold(
        cols, (Ho, Wo), (kh, kw), dilation=dilation, padding=padding, stride=stride
    )  # overlapping patches summed
    return out if bias is None else out + bias.reshape(1, S * c_out, 1, 1).to(out.dtype)


# ---- dense layers ----


class PackedLinear(nn.Module):
    """S independent ``nn.Linear``: [S, N, d_in] -> [S, N, d_out] by one batched matmul
    ([S, N, L, d_in] -> [S, N, L, d_out]: middle dims flattened). Weight [S, d_out, d_in], bias [S, d_out]."""

    def __init__(self, gens, d_in: int, d_out: int, bias: bool = True):
        super().__init__()
        self.weight, self.bias = layer_params(gens, (d_out, d_in), d_out if bias else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        if x.dim() != 3:
            x = x.reshape(shape[0], -1, shape[-1])
        w = self.weight.transpose(1, 2)
        y = torch.bmm(x, w) if self.bias is None else torch.baddbmm(self.bias.unsqueeze(1), x, w)
        return y if len(shape) == 3 else y.reshape(*shape[:-1], y.shape[-1])


class PackedLayerNorm(nn.Module):
    """S independent ``nn.LayerNorm(d)``: [S, ..., d] -> [S, ..., d], normalised over the last dim
    with per-seed weight and bias [S, d] (ones and zeros, as nn's init)."""

    def __init__(self, S: int, d: int, eps: float = 1e-5, elementwise_affine: bool = True):
        super().__init__()
        self.d, self.eps = d, eps
        self.weight = nn.Parameter(torch.ones(S, d)) if elementwise_affine else None
        self.bias = nn.Parameter(torch.zeros(S, d)) if elementwise_affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x, (self.d,), eps=self.eps)
        if self.weight is None:
            return y
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (self.d,)
        return torch.addcmul(self.bias.view(shape), y, self.weight.view(shape))


class PackedBatchNorm(nn.Module):
    """S independent ``nn.BatchNorm{1,2,3}d(C)`` on folded [N, S*C, *spatial] (``dims`` spatial
    dims; dims=1 also takes [N, S*C]): each (seed, channel) is normalised over the batch and space,
    i.e. per seed. Train mode uses and tracks the batch statistics, eval mode (``.eval()``) the
    running ones, as nn does. Weight, bias, running_mean, running_var: [S, C]."""

    def __init__(
        self,
        S: int,
        C: int,
        dims: int = 2,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ):
        super().__init__()
        if dims not in (1, 2, 3):
            raise ValueError(f"PackedBatchNorm dims must be 1, 2 or 3, got {dims!r}")
        self.S, self.C, self.dims, self.eps, self.momentum = S, C, dims, eps, momentum
        self.track_running_stats = track_running_stats
        self.weight = nn.Parameter(torch.ones(S, C)) if affine else None
        self.bias = nn.Parameter(torch.zeros(S, C)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(S, C))
            self.register_buffer("running_var", torch.ones(S, C))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ok = x.dim() == self.dims + 2 or (self.dims == 1 and x.dim() == 2)
        if not ok or x.shape[1] != self.S * self.C:
            raise ValueError(
                f"PackedBatchNorm(dims={self.dims}) expects [N, S*C={self.S * self.C}, *spatial], got {tuple(x.shape)}"
            )
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        flat = lambda t: None if t is None else t.view(-1)  # noqa: E731  views: batch_norm updates the [S, C] buffers in place
        return F.batch_norm(
            x,
            flat(self.running_mean) if track else None,
            flat(self.running_var) if track else None,
            flat(self.weight),
            flat(self.bias),
            use_batch,
            factor,
            self.eps,
        )


class PackedEmbedding(nn.Module):
    """S independent ``nn.Embedding(num, d)``: indices [S, ...] -> [S, ..., d]; seed s looks up its
    own table. Weight [S, num, d], N(0, 1) per seed as nn's init."""

    def __init__(self, gens, num: int, d: int):
        super().__init__()
        self.num = num
        self.weight = nn.Parameter(torch.stack([nn.init.normal_(torch.empty(num, d), generator=g) for g in gens]))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        S = self.weight.shape[0]
        offset = (torch.arange(S, device=idx.device) * self.num).view(S, *(1,) * (idx.dim() - 1))
        return F.embedding(idx + offset, self.weight.flatten(0, 1))


class PackedMultiheadAttention(nn.Module):
    """S independent ``nn.MultiheadAttention(d, heads, bias=bias, batch_first=True)`` (no dropout):
    query [S, B, L, d] (key, value [S, B, L_k, d], default: the query) -> [S, B, L, d]. Seeds are
    folded into the batch of ``F.scaled_dot_product_attention`` ([S*B, heads, L, d/heads]).
    ``attn_mask`` [L, L_k] bool with nn's meaning (True: may NOT attend); ``is_causal``: causal mask.
    Init as nn's, per seed in nn's draw order: out_proj as ``nn.Linear`` (its bias then zeroed),
    then in_proj_weight [S, 3d, d] xavier_uniform, in_proj_bias [S, 3d] zeros."""

    def __init__(self, gens, d: int, heads: int, bias: bool = True):
        super().__init__()
        if d % heads:
            raise ValueError(f"PackedMultiheadAttention: d={d} must be divisible by heads={heads}")
        self.d, self.heads = d, heads
        self.in_proj_weight = nn.Parameter(torch.empty(len(gens), 3 * d, d))
        self.in_proj_bias = nn.Parameter(torch.zeros(len(gens), 3 * d)) if bias else None
        self.out_proj = PackedLinear(gens, d, d, bias=bias)  # nn builds out_proj before _reset_parameters draws in_proj
        with torch.no_grad():
            for s, g in enumerate(gens):
                nn.init.xavier_uniform_(self.in_proj_weight[s], generator=g)
            if bias:
                self.out_proj.bias.zero_()

    def forward(self, query, key=None, value=None, attn_mask: torch.Tensor | None = None, is_causal: bool = False):
        S, B, L, d = query.shape
        w, b = self.in_proj_weight, self.in_proj_bias
        if key is None and value is None:  # self-attention: one matmul for q, k, v
            qkv = torch.matmul(query.flatten(1, 2), w.transpose(1, 2))
            qkv = qkv if b is None else qkv + b.unsqueeze(1)
            q, k, v = qkv.unflatten(1, (B, L)).chunk(3, -1)
        else:
            key = query if key is None else key
            value = key if value is None else value
            ws, bs = w.chunk(3, 1), (None,) * 3 if b is None else b.chunk(3, 1)
            q, k, v = (self._proj(t, wi, bi) for t, wi, bi in zip((query, key, value), ws, bs))
        heads = lambda t: t.reshape(S * B, t.shape[2], self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        mask = None if attn_mask is None else ~attn_mask  # sdpa's bool mask: True = may attend
        o = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=mask, is_causal=is_causal)
        return self.out_proj(o.transpose(1, 2).reshape(S, B, L, d))

    @staticmethod
    def _proj(x, w, b):
        y = torch.matmul(x.flatten(1, 2), w.transpose(1, 2))
        y = y if b is None else y + b.unsqueeze(1)
        return y.unflatten(1, x.shape[1:3])


class PackedRNNCell(nn.Module):
    """S independent ``nn.GRUCell`` (``kind="gru"``) or tanh ``nn.RNNCell`` (``"rnn"``): x [S, N, d_in],
    h [S, N, width] -> h' [S, N, width], same equations and init (U(+-1/sqrt(width)) for w_ih, w_hh,
    b_ih, b_hh in turn per seed; one-layer ``nn.GRU`` / ``nn.RNN`` draw the same)."""

    def __init__(self, gens, d_in: int, width: int, kind: str = "gru"):
        super().__init__()
        if kind not in ("gru", "rnn"):
            raise ValueError(f"PackedRNNCell kind must be 'gru' or 'rnn', got {kind!r}")
        self.kind, gates = kind, 3 if kind == "gru" else 1
        bound = 1 / math.sqrt(width)
        init = lambda t, g: nn.init.uniform_(t, -bound, bound, generator=g)  # noqa: E731
        # nn's parameter order: weight_ih, weight_hh, bias_ih, bias_hh (each drawn in turn per seed)
        shapes = {
            "w_ih": (gates * width, d_in),
            "w_hh": (gates * width, width),
            "b_ih": (gates * width,),
            "b_hh": (gates * width,),
        }
        per_seed = [[init(torch.empty(s), g) for s in shapes.values()] for g in gens]
        for i, name in enumerate(shapes):
            setattr(self, name, nn.Parameter(torch.stack([p[i] for p in per_seed])))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        gi = torch.baddbmm(self.b_ih.unsqueeze(1), x, self.w_ih.transpose(1, 2))
        gh = torch.baddbmm(self.b_hh.unsqueeze(1), h, self.w_hh.transpose(1, 2))
        if self.kind == "rnn":
            return torch.tanh(gi + gh)
        i_r, i_z, i_n = gi.chunk(3, -1)
        h_r, h_z, h_n = gh.chunk(3, -1)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return n + z * (h - n)  # = (1 - z) * n + z * h
