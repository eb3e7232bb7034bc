"""Pinhole-camera rendering of shaded spheres over a backdrop, vectorised over many frames.

World coordinates: x to the right, y away from the camera (depth), z up; lengths in world
units. A ``Camera`` sits at ``position`` and looks along +y with a level image plane, or toward
``look_at`` (then "up" in the image is the world's z tilted with the view). Camera coordinates
are (right, forward, up); depth is the forward distance, as in OpenGL. Each pixel is a ray
through its centre; a sphere covers the pixel where the ray passes within its radius (with a
one-pixel soft edge for anti-aliasing) and is shaded with ambient plus Lambertian light from a
directional light fixed to the camera. Spheres are drawn far to near, so a nearer sphere hides a
farther one, over the ``Scene``'s backdrop: a uniform grey, optionally with a grid of black
lines on the ground plane z = 0 (drawn once per image size and cached).

Only a square patch around each sphere's projection is shaded, which keeps the cost per
frame close to the sphere's area rather than the image's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SLAB = 2048  # frames rendered at a time
NEAR = 1.0  # near clipping distance of the floor grid (OpenGL's near plane in the SPS renderers)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera. ``fov`` is the full horizontal and vertical field of view in degrees;
    ``look_at`` None looks along +y with a level image plane; ``far`` clips what lies farther
    along the view axis (OpenGL's far plane)."""

    position: tuple[float, float, float] = (0.0, 0.0, 4.0)
    fov: float = 60.0
    look_at: tuple[float, float, float] | None = None
    far: float = math.inf

    def focal(self, image_size: int) -> float:
        """Focal length in pixels."""
        return 0.5 * image_size / np.tan(np.radians(self.fov) / 2)

    def axes(self) -> np.ndarray:
        """Rows: the camera's right, forward and up directions in world coordinates."""
        if self.look_at is None:
            return np.eye(3)
        forward = np.subtract(self.look_at, self.position, dtype=np.float64)
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        return np.stack([right, forward, np.cross(right, forward)])

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points [..., 3] -> camera coordinates (right, forward, up) [..., 3]."""
        q = np.asarray(points, dtype=np.float64) - np.asarray(self.position)
        return q if self.look_at is None else q @ self.axes().T

    def project(self, points: np.ndarray, image_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Project ``points`` [..., 3] to pixel coordinates [..., 2] (column, row; pixel centres at +0.5) and depth [...]."""
        q = self.to_camera(points)
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
        return (depth > near + radius) & (depth + radius <= self.far) & inside.all(axis=-1)


@dataclass(frozen=True)
class Scene:
    """What the bodies are drawn in: the camera, the backdrop and the light."""

    camera: Camera = Camera()
    background: float = 0.0  # grey level of the backdrop in [0, 1]
    grid: float = 0.0  # spacing of the black grid lines on the ground plane z = 0; 0: no floor
    grid_extent: float = 100.0  # the grid covers |x|, |y| <= this
    line_width: float = 3 / 320  # grid line width as a fraction of the image width
    light: tuple[float, float, float] = (-0.4, -0.6, 0.7)  # toward the light in camera coordinates (right, forward, up)
    ambient: float = 0.25  # shade = ambient + diffuse * max(normal . light, 0), clipped to 1 per channel
    diffuse: float = 0.75


@lru_cache(maxsize=16)
def backdrop(scene: Scene, image_size: int) -> np.ndarray:
    """The scene without bodies, uint8 [image_size, image_size, 3]: the grey background and the
    floor grid, each line a band ``line_width`` wide in the image, area-averaged over
    ``ceil(320 / image_size)``² subpixels per pixel (the SPS renderers draw at 320² and shrink)."""
    grey = np.full((image_size, image_size), scene.background * 255.0)
    if scene.grid > 0:
        sub = max(1, math.ceil(320 / image_size))
        size = image_size * sub
        centres = (np.arange(size) + 0.5) / sub  # subpixel centres in pixel units
        on_line = np.zeros((size, size), dtype=bool)
        for a, b in grid_segments(scene, image_size):
            on_line |= near_segment(centres, a, b, scene.line_width * image_size / 2)
        cover = on_line.reshape(image_size, sub, image_size, sub).mean((1, 3))
        grey *= 1.0 - cover  # black lines
    out = np.repeat(np.round(grey)[..., None], 3, axis=-1).astype(np.uint8)
    out.flags.writeable = False
    return out


def grid_segments(scene: Scene, image_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The floor grid's lines, clipped to NEAR <= depth <= far, as pixel-coordinate segments (a, b) that reach the image."""
    camera, e = scene.camera, scene.grid_extent
    far = min(camera.far, 1e6)
    ticks = np.arange(-e, e + 1e-9, scene.grid)
    ends = [((t, -e, 0.0), (t, e, 0.0)) for t in ticks] + [((-e, t, 0.0), (e, t, 0.0)) for t in ticks]
    out = []
    for p, q in ends:
        (dp, dq) = camera.to_camera(np.array([p, q]))[:, 1]
        lo, hi = 0.0, 1.0  # the part of p + s (q - p) with NEAR <= depth <= far
        for bound, sign in ((NEAR, 1.0), (far, -1.0)):
            fp, fq = sign * (dp - bound), sign * (dq - bound)  # >= 0 inside
            if fp < 0 and fq < 0:
                lo, hi = 1.0, 0.0
            elif fp < 0:
                lo = max(lo, fp / (fp - fq))
            elif fq < 0:
                hi = min(hi, fp / (fp - fq))
        if lo >= hi:
            continue
        pts = np.array(p) + np.array([[lo], [hi]]) * (np.array(q) - np.array(p))
        uv, _ = camera.project(pts, image_size)
        if (uv.max(0) >= 0).all() and (uv.min(0) <= image_size).all():
            out.append((uv[0], uv[1]))
    return out


def near_segment(centres: np.ndarray, a: np.ndarray, b: np.ndarray, half_width: float) -> np.ndarray:
    """[len, len] bool: grid points (col = centres[j], row = centres[i]) within ``half_width`` of segment a-b."""
    d = b - a
    px, py = centres[None, :] - a[0], centres[:, None] - a[1]
    s = np.clip((px * d[0] + py * d[1]) / max(d @ d, 1e-12), 0.0, 1.0)
    return (px - s * d[0]) ** 2 + (py - s * d[1]) ** 2 <= half_width**2


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
    scene: Scene | Camera = Scene(),
) -> np.ndarray:
    """Render frames of spheres.

    positions: [N, B, 3] sphere centres (world units) for N frames of B spheres.
    colors: [B, 3] RGB in [0, 1].
    scene: a ``Scene``, or a ``Camera`` (then on black, with the default light).
    Returns uint8 [N, image_size, image_size, 3].
    """
    scene = Scene(camera=scene) if isinstance(scene, Camera) else scene
    positions = np.asarray(positions, dtype=np.float64)
    n, bodies, _ = positions.shape
    colors = np.asarray(colors, dtype=np.float32).reshape(bodies, 3) * 255.0
    plain = scene.background == 0 and scene.grid == 0
    if plain:
        out = np.zeros((n, image_size, image_size, 3), dtype=np.uint8)  # black
    else:
        out = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
        out[...] = backdrop(scene, image_size)
    for i in range(0, n, SLAB):  # temporaries that stay in cache are several times faster
        _render_slab(
            out[i : i + SLAB].reshape(-1, 3), positions[i : i + SLAB], radius, colors, image_size, scene, not plain
        )
    return out


def _render_slab(out, positions, radius, colors, image_size, scene, over_backdrop):
    n, bodies, _ = positions.shape
    camera = scene.camera
    f = camera.focal(image_size)
    rel = camera.to_camera(positions)  # [N, B, 3] (right, forward, up)
    depth = rel[..., 1]
    visible = (depth > radius * 1.01) & (depth - radius < camera.far)
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
                _splat(
                    out,
                    sel,
                    lo[sel, b],
                    rel[sel, b].astype(np.float32),
                    int(size),
                    radius,
                    colors[b],
                    f,
                    image_size,
                    scene,
                    blend=over_backdrop or rank > 0,
                )


def _splat(out, frames, corner, c, size, radius, color, f, image_size, scene, blend):
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
    light = np.asarray(scene.light) / np.linalg.norm(scene.light)
    lx, ly, lz = light.astype(np.float32) / radius
    depth_in = np.maximum(radius * radius - dist2, 0.0)
    np.sqrt(depth_in, out=depth_in)
    t -= depth_in
    t *= inv  # the front hit's depth
    if np.isfinite(scene.camera.far):
        cover *= t <= scene.camera.far  # clipped beyond the far plane
    t *= dz * lz + (dx * lx + ly)
    t -= cx * lx + cy * ly + cz * lz
    np.clip(t, 0.0, 1.0, out=t)
    alpha = t
    alpha *= scene.diffuse
    alpha += scene.ambient
    idx = (frames[:, None, None] * image_size + rows[:, :, None]) * image_size + cols[:, None, :]
    if scene.ambient + scene.diffuse > 1:  # saturates per channel, as OpenGL's lighting does
        value = np.minimum(alpha[..., None] * color, 255.0)
        value *= cover[..., None]
    else:
        alpha *= cover  # coverage times shade
        value = alpha[..., None] * color
    if blend:  # over what is already drawn
        value += (1.0 - cover)[..., None] * out[idx]
    value += 0.5
    # Write whole 3-byte pixels: one scatter instead of one per channel.
    pixel = np.dtype((np.void, 3))
    out.view(pixel)[idx, 0] = value.astype(np.uint8).view(pixel)[..., 0]
