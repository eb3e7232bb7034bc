"""Symmetry actions on SPS latents: which group letters a ``symmetry`` string names, random group
elements, their action on z (and its inverse), and how a branch's letters combine into one element.

z is [..., T, z_dim]; an element's parameters broadcast over the time axis: translations [..., n],
rotations [..., n, n] acting on z as a row vector (z @ M).
"""

from __future__ import annotations

import re

import torch

COMBINE = ("branches", "sample", "compose")  # SPSConfig.symmetry_combine's values (sps.py says what each does)


def parse_symmetry(spec: str, z_dim: int) -> list[tuple[str, int, int]]:
    """``"T2R2"`` -> ``[("T", 2, 1), ("R", 2, 1)]``: (kind, n, slices), each letter its own augmented
    branch acting on the first n latent dims. A trailing ``x<m>`` applies every letter to m slices
    of n dims, the same group element on each: ``"T3R3x2"`` -> T(3) on z[0:3] and z[3:6] alike,
    then R(3) likewise. ``"none"`` (or ``""``, ``"I"``) -> ``[]``."""
    if spec in ("none", "", "I"):
        return []
    match = re.fullmatch(r"((?:[TR]\d+)+)(?:x(\d+))?", spec)
    if not match:
        raise ValueError(
            f"invalid value for 'symmetry': {spec!r} (use none or letters T<n>/R<n> with an optional x<slices>, e.g. T2R2, T3R3x2)"
        )
    slices = int(match.group(2) or 1)
    out = [(kind, int(n), slices) for kind, n in re.findall(r"([TR])(\d+)", match.group(1))]
    for kind, n, m in out:
        if not 1 <= n * m <= z_dim or m < 1 or (kind == "R" and n < 2):
            need = f"{'2' if kind == 'R' else '1'} <= n" + (
                f" and n x {m} slices <= z_dim={z_dim}" if m > 1 else f" <= z_dim={z_dim}"
            )
            raise ValueError(f"invalid value for 'symmetry': {kind}{n}{f'x{m}' if m > 1 else ''} needs {need}")
    return out


def sample_action(kind: str, n: int, shape: tuple[int, ...], cfg, g: torch.Generator) -> torch.Tensor:
    """Random group elements: translations [*shape, n] uniform in ``cfg.t_range``, or rotation
    matrices [*shape, n, n] (R2: angles uniform in ``cfg.r_range``; R3+: Haar on SO(n))."""
    if kind == "T":
        lo, hi = cfg.t_range
        return torch.rand(*shape, n, generator=g) * (hi - lo) + lo
    if n == 2:
        lo, hi = cfg.r_range
        theta = torch.rand(*shape, generator=g) * (hi - lo) + lo
        c, s = torch.cos(theta), torch.sin(theta)
        return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    q, r = torch.linalg.qr(torch.randn(*shape, n, n, generator=g))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)  # Haar-distributed on O(n)
    q[..., :, 0] *= torch.sign(torch.linalg.det(q)).unsqueeze(-1)  # reflections -> rotations: SO(n)
    return q


def act(kind: str, z: torch.Tensor, p: torch.Tensor, inverse: bool = False, slices: int = 1) -> torch.Tensor:
    """Apply the action ``p`` (or its inverse) to each of the first ``slices`` n-dim slices of z
    [..., T, z_dim] alike; ``p`` is [..., n] (translation) or [..., n, n] (rotation, z as a row
    vector: z @ M; inverse z @ M^T)."""
    n = p.shape[-1]
    head, tail = z[..., : n * slices], z[..., n * slices :]
    if kind == "T":
        head = head.unflatten(-1, (slices, n))
        shift = p.unsqueeze(-2).unsqueeze(-2)  # over time and slices
        head = (head - shift if inverse else head + shift).flatten(-2)
    else:
        rows = head.unflatten(-1, (slices, n)).flatten(-3, -2)  # [..., T*slices, n]: each slice a row vector
        head = (rows @ (p.transpose(-1, -2) if inverse else p)).unflatten(-2, (-1, slices)).flatten(-2)
    return torch.cat([head, tail.expand(*head.shape[:-1], -1)], -1)


def identity_where(kind: str, p: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``p`` where ``keep`` (bool, ``p``'s leading shape) is set, the identity element elsewhere
    (a zero translation, the identity matrix)."""
    if kind == "T":
        return torch.where(keep.unsqueeze(-1), p, torch.zeros_like(p))
    return torch.where(keep[..., None, None], p, torch.eye(p.shape[-1], dtype=p.dtype).expand_as(p))


def branch_groups(n_actions: int, combine: str) -> list[tuple[int, ...]]:
    """The augmented branches as tuples of action indices: ``branches`` one branch per letter,
    ``sample`` and ``compose`` one branch holding every letter (applied in order, undone in reverse)."""
    if combine == "branches":
        return [(i,) for i in range(n_actions)]
    return [tuple(range(n_actions))] if n_actions else []


def apply_group(z: torch.Tensor, steps: list[tuple[str, torch.Tensor, int]], inverse: bool = False) -> torch.Tensor:
    """z moved by the composed element of ``steps`` [(kind, params, slices), ...], applied in order
    (T then R for T2R2); ``inverse`` undoes it, the last step first."""
    for kind, p, slices in reversed(steps) if inverse else steps:
        z = act(kind, z, p, inverse=inverse, slices=slices)
    return z
