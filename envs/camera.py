"""Pinhole-camera rendering of shaded spheres, vectorised over many frames.

World coordinates: x to the right, y away from the camera (depth), z up; lengths in world
units. The camera sits at ``Camera.position`` and looks along +y with a horizontal image
plane, so depth shows only as apparent size. Each pixel is a ray through its centre; a
sphere covers the pixel where the ray passes within its radius (with a one-pixel soft edge
for anti-aliasing) and is shaded with ambient plus Lambertian light, on a black background. Spheres are drawn far
to near, so a nearer sphere hides a farther one.

Only a square patch around each sphere's projection is shaded, which keeps the cost per
frame close to the sphere's area rather than the image's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LIGHT = np.array([-0.4, -0.6, 0.7]) / np.linalg.norm([-0.4, -0.6, 0.7])  # toward the light
AMBIENT, DIFFUSE = 0.25, 0.75
SLAB = 2048  # frames rendered at a time


@dataclass(frozen=True)
class Camera:
    """A pinhole camera looking along +y. ``fov`` is the full horizontal and vertical field of view in degrees."""

    position: tuple[float, float, float] = (0.0, 0.0, 4.0)
    fov: float = 60.0

    def focal(self, image_size: int) -> float:
        """Focal length in pixels."""
        return 0.5 * image_size / np.tan(np.radians(self.fov) / 2)

    def project(self, points: np.ndarray, image_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Project ``points`` [..., 3] to pixel coordinates [..., 2] (column, row; pixel centres at +0.5) and depth [...]."""
        q = np.asarray(points, dtype=np.float64) - np.asarray(self.position)
        depth = q[..., 1]
        f = self.focal(image_size)
        with np.errstate(divide="ignore", invalid="ignore"):
            col = f * q[..., 0] / depth + image_size / 2
            row = -f * q[..., 2] / depth + image_size / 2
        return np.stack([col, row], axis=-1), depth

    def in_view(self, points: np.ndarray, radius: float, image_size: int, near: float = 1.0) -> np.ndarray:
        """True where a sphere of ``radius`` centred at ``points`` [..., 3] is wholly inside the image."""
        uv, depth = self.project(points, image_size)
        margin = self.focal(image_size) * radius / np.maximum(depth, near)
        inside = (uv - margin[..., None] >= 0) & (uv + margin[..., None] <= image_size)
        return (depth > near + radius) & inside.all(axis=-1)


def _extent(c_lat, c_depth, radius):
    """Exact slopes (lateral / depth) of the two planes through the camera tangent to a sphere, i.e.
    the image-plane extent of its silhouette along one axis (in units of the focal length)."""
    a = np.maximum(c_depth**2 - radius**2, 1e-12)
    half = radius * np.sqrt(np.maximum(c_lat**2 + c_depth**2 - radius**2, 0.0))
    return (c_lat * c_depth - half) / a, (c_lat * c_depth + half) / a


def render(
    positions: np.ndarray,
    radius: float,
    colors: np.ndarray,
    image_size: int,
    camera: Camera = Camera(),
) -> np.ndarray:
    """Render frames of spheres.

    positions: [N, B, 3] sphere centres (world units) for N frames of B spheres.
    colors: [B, 3] RGB in [0, 1].
    Returns uint8 [N, image_size, image_size, 3].
    """
    positions = np.asarray(positions, dtype=np.float64)
    n, bodies, _ = positions.shape
    colors = np.asarray(colors, dtype=np.float32).reshape(bodies, 3) * 255.0
    out = np.zeros((n, image_size, image_size, 3), dtype=np.uint8)  # black
    for i in range(0, n, SLAB):  # temporaries that stay in cache are several times faster
        _render_slab(out[i : i + SLAB].reshape(-1, 3), positions[i : i + SLAB], radius, colors, image_size, camera)
    return out


def _render_slab(out, positions, radius, colors, image_size, camera):
    n, bodies, _ = positions.shape
    f = camera.focal(image_size)
    rel = positions - np.asarray(camera.position)  # [N, B, 3]
    depth = rel[..., 1]
    visible = depth > radius * 1.01
    # Pixel box of each silhouette (one pixel of margin for the soft edge), clipped to the image.
    c0, c1 = _extent(rel[..., 0], depth, radius)
    r0, r1 = _extent(-rel[..., 2], depth, radius)
    lo = np.floor(np.stack([c0, r0], -1) * f + image_size / 2 - 1)
    hi = np.ceil(np.stack([c1, r1], -1) * f + image_size / 2 + 1)
    lo, hi = np.clip(lo, 0, image_size), np.clip(hi, 0, image_size)
    drawn = visible & (hi > lo).all(-1)
    # Square patches with an even side, so that frames share a few sizes, moved inside the image
    # where they would overhang it (they still hold the whole box, which lies inside the image).
    side = np.where(drawn, np.minimum(2 * np.ceil((hi - lo).max(-1) / 2), image_size), 0).astype(np.int64)
    lo = np.where(drawn[..., None], np.minimum(lo, image_size - side[..., None]), 0).astype(np.int64)

    order = np.argsort(-depth, axis=1, kind="stable")  # far to near
    frames = np.arange(n)
    for rank in range(bodies):
        for b in range(bodies):  # one colour per call
            here = drawn[:, b] & (order[:, rank] == b)
            for size in np.unique(side[here, b]):
                sel = frames[here & (side[:, b] == size)]
                _splat(out, sel, lo[sel, b], rel[sel, b].astype(np.float32), int(size), radius,
                       colors[b], f, image_size, blend=rank > 0)


def _splat(out, frames, corner, c, size, radius, color, f, image_size, blend):
    """Shade a size x size patch at ``corner`` (col, row) for each of ``frames`` and paint it over ``out``."""
    offs = np.arange(size)
    rows = corner[:, 1, None] + offs  # [m, size]
    cols = corner[:, 0, None] + offs
    # The unit ray through pixel (row, col) is (dx, 1, dz) * inv.
    dx = ((cols + 0.5 - image_size / 2) / f).astype(np.float32)[:, None, :]
    dz = (-(rows + 0.5 - image_size / 2) / f).astype(np.float32)[:, :, None]
    inv = dx * dx + dz * dz + 1.0
    np.sqrt(inv, out=inv)
    np.reciprocal(inv, out=inv)
    cx, cy, cz = (c[:, i, None, None] for i in range(3))
    t = dz * cz + (dx * cx + cy)  # ray parameter of the closest approach to the centre (times 1/inv)
    t *= inv
    dist2 = cx * cx + cy * cy + cz * cz - t * t  # squared distance of the ray from the centre
    # Coverage with a one-pixel soft edge; one pixel spans |c| / f world units at the sphere.
    k = (f / np.sqrt(cx * cx + cy * cy + cz * cz)).astype(np.float32)
    cover = np.sqrt(np.maximum(dist2, 0.0))
    cover *= -k
    cover += radius * k + 0.5
    np.clip(cover, 0.0, 1.0, out=cover)
    # Lambertian shade at the front hit point: normal . light = (t_hit * ray - c) . light / radius.
    lx, ly, lz = LIGHT.astype(np.float32) / radius
    depth_in = np.maximum(radius * radius - dist2, 0.0)
    np.sqrt(depth_in, out=depth_in)
    t -= depth_in
    t *= inv
    t *= dz * lz + (dx * lx + ly)
    t -= cx * lx + cy * ly + cz * lz
    np.clip(t, 0.0, 1.0, out=t)
    alpha = t
    alpha *= DIFFUSE
    alpha += AMBIENT
    alpha *= cover  # coverage times shade
    idx = (frames[:, None, None] * image_size + rows[:, :, None]) * image_size + cols[:, None, :]
    value = alpha[..., None] * color
    if blend:  # over what is already drawn
        value += (1.0 - cover)[..., None] * out[idx]
    value += 0.5
    # Write whole 3-byte pixels: one scatter instead of one per channel.
    pixel = np.dtype((np.void, 3))
    out.view(pixel)[idx, 0] = value.astype(np.uint8).view(pixel)[..., 0]
