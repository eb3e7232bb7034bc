"""BouncingBall-v0: a ball under gravity bouncing on the ground, seen by a pinhole camera.

Physics. A ball of radius ``radius`` and unit mass moves in 3-D (x right, y depth, z up;
metres and seconds) under gravity ``gravity`` along -z and an applied force (the action).
It bounces on the ground plane z = 0: at impact its vertical velocity is reversed and scaled
by ``restitution`` e, so each bounce keeps e² of the vertical kinetic energy; there is no
other loss (no drag, frictionless ground). Motion within a frame is integrated exactly
(constant acceleration) and impacts are resolved at their exact time inside the step, however
many fall in one step. A bounce slower than ``REST_SPEED`` leaves the ball resting.

Defaults follow the SPS authors' bouncing-ball data (Xuanjie Liu's
``codes/S3Ball/ball_throwing_physical_model.py``): g = 10, energy loss 0.19 per bounce
(e = 0.9), dt = 0.2 s, 20-frame sequences of 32 x 32 frames.

Scenes (``scene``):

- ``"sps"`` (default): the authors' renders (``codes/S3Ball/ball_img_maker2.py``, with
  ``NORMAL_DATA`` and ``COLOR_INIT_ALWAYS_GREEN`` of ``ball_img_maker_initials.py``). A green
  (0.05, 0.9, 0.05) ball of radius 0.5 over a grey (0.4) background and a black grid floor
  (lines every 2 m on the ground, 3/320 of the image wide), seen from (0, -2, 4.5) looking at
  (0, 5, 0.5), i.e. about 30° down, with a 77.3° field of view (``glFrustum(±0.8, near 1,
  far 15)``: things beyond 15 m along the view axis are clipped); lit by a directional light
  from behind and above the camera, ambient 0.2 + diffuse 1.0, saturating. Initial state: the
  ball's centre 1 m above its resting height, vertical speed U(-8, 8); one of three regions
  with equal probability: x ∈ [-3, -1.5] moving right at U(0.2, 2), x ∈ [-1.5, 1.5] with
  U(-1, 1), or x ∈ [1.5, 3] moving left at U(0.2, 2); depth y ∈ [0, 3] ([0, 2] in the
  middle region) and depth speed U(0.2, 3) (U(0, 3) in the middle): the ball always
  recedes. The authors' depth axis points toward their camera; here y points away from it.
- ``"plain"``: seedsweep's first scene. A red ball of radius 1 on black, a level camera at
  (0, 0, 4.5) looking along +y with a 60° field of view, ambient 0.25 + diffuse 0.75 light
  from the upper left. Initial position x ∈ [-3, 3], depth y ∈ [7, 13], height z ∈ [1, 5]
  (ball centre), velocity in ±2, ±2, ±10.

In ``"sps"`` every trajectory is kept, as the authors kept theirs: measured over 2000, 85%
keep the ball wholly in view for 20 frames, 9% start with it partly outside the image (near
the lower corners) and 3% end beyond the far plane. In ``"plain"`` a trajectory is kept only
if the ball stays wholly in view for ``frames`` frames of free motion (redrawn otherwise).

Observation: uint8 RGB frame (image_size, image_size, 3).
Action: Box(-1, 1, (3,), float32), the force on the ball in units of ``max_force``; zeros = free motion.
Reward: 1 per step while the ball is wholly in view; the episode terminates when it is not.
Info: ``positions`` and ``velocities``, float arrays (1, 3) of the ball's centre.
"""

from __future__ import annotations

import numpy as np

from envs.base import PhysicsEnv
from envs.camera import Camera, Scene

REST_SPEED = 1e-3  # m/s: a bounce slower than this ends in rest
MAX_BOUNCES = 64  # impacts resolved per step; beyond this the ball rests (bounce times shrink geometrically)


def ballistic(pos, vel, acc, t):
    """Constant-acceleration motion for time ``t`` (broadcast over leading dims)."""
    return pos + vel * t + 0.5 * acc * t * t, vel + acc * t


def time_to_ground(h, vz, az):
    """Earliest t >= 0 with h + vz t + az t²/2 = 0 while moving down, else inf (h >= 0 is the height above contact)."""
    disc = vz * vz - 2.0 * az * h
    with np.errstate(divide="ignore", invalid="ignore"):
        quad = (-vz - np.sqrt(np.maximum(disc, 0.0))) / az
        lin = -h / vz
    t = np.where(az != 0, quad, lin)
    valid = (disc >= 0) & np.isfinite(t) & ((t > 0) | (vz < 0))
    return np.where(valid, t, np.inf)


# ball_img_maker2.py draws in OpenGL's frame (y up, depth along -z, the floor grid at y = -0.5, the
# ball's resting centre at y = 0): its EYE (0, 4, 2) and LOOK_AT (0, 0, -5) are (0, -2, 4.5) and
# (0, 5, 0.5) here; glFrustum(-0.8, 0.8, -0.8, 0.8, 1, 15) is a 77.3° field of view, far plane 15;
# GL_LIGHT0 at (0, 1, 4, 0) in eye coordinates, OpenGL's default ambient 0.2; glClearColor 0.4.
SCENES = {
    "sps": Scene(
        camera=Camera(position=(0.0, -2.0, 4.5), look_at=(0.0, 5.0, 0.5), fov=2 * np.degrees(np.arctan(0.8)), far=15.0),
        background=0.4,
        grid=2.0,
        light=(0.0, -4.0, 1.0),
        ambient=0.2,
        diffuse=1.0,
    ),
    "plain": Scene(camera=Camera(position=(0.0, 0.0, 4.5))),
}
COLORS = {"sps": [[0.05, 0.9, 0.05]], "plain": [[0.95, 0.25, 0.15]]}
RADII = {"sps": 0.5, "plain": 1.0}
# The authors' NORMAL_DATA regions: x range, depth range, x-speed range, depth-speed range.
SPS_REGIONS = np.array(
    [
        [[-3.0, -1.5], [0.0, 3.0], [0.2, 2.0], [0.2, 3.0]],
        [[-1.5, 1.5], [0.0, 2.0], [-1.0, 1.0], [0.0, 3.0]],
        [[1.5, 3.0], [0.0, 3.0], [-2.0, -0.2], [0.2, 3.0]],
    ]
)


class BouncingBall(PhysicsEnv):
    """A ball bouncing on the ground with restitution; see the module docstring."""

    def __init__(
        self,
        render_mode: str | None = None,
        scene: str = "sps",
        gravity: float = 10.0,
        restitution: float = 0.9,
        radius: float | None = None,
        dt: float = 0.2,
        image_size: int = 32,
        frames: int = 20,
        max_force: float = 20.0,
        render_size: int = 256,
    ):
        if scene not in SCENES:
            raise ValueError(f"scene must be one of {', '.join(SCENES)}, got {scene!r}")
        if not 0 <= restitution <= 1 or gravity < 0:
            raise ValueError(f"need 0 <= restitution <= 1 and gravity >= 0, got {restitution}, {gravity}")
        self.scene_name, self.colors = scene, np.array(COLORS[scene])
        self.gravity, self.restitution = float(gravity), float(restitution)
        radius = RADII[scene] if radius is None else radius
        super().__init__(radius, dt, image_size, frames, max_force, render_mode, render_size, SCENES[scene])

    def sample_state(self, rngs, k):
        if self.scene_name == "sps":
            return self.sample_sps(rngs, k)
        u = np.stack([rng.uniform(size=(k, 6)) for rng in rngs])  # [n, k, 6]
        low = np.array([-3.0, 7.0, 1.0, -2.0, -2.0, -10.0])
        high = np.array([3.0, 13.0, 5.0, 2.0, 2.0, 10.0])
        x = low + (high - low) * u
        x[..., 2] = np.maximum(x[..., 2], self.radius)
        return x[..., None, :3], x[..., None, 3:]

    def sample_sps(self, rngs, k):
        """The authors' initial states (module docstring): a region, then uniform draws in it."""
        u = np.stack([rng.uniform(size=(k, 6)) for rng in rngs])  # [n, k, 6]
        box = SPS_REGIONS[np.minimum((3 * u[..., 0]).astype(int), 2)]  # [n, k, 4, 2]
        x, depth, vx, vdepth = (box[..., i, 0] + (box[..., i, 1] - box[..., i, 0]) * u[..., 1 + i] for i in range(4))
        height = np.full_like(x, self.radius + 1.0)
        vz = 16.0 * u[..., 5] - 8.0
        return np.stack([x, depth, height], -1)[..., None, :], np.stack([vx, vdepth, vz], -1)[..., None, :]

    def accept(self, positions, velocities):
        if self.scene_name == "sps":
            return np.ones(len(positions), dtype=bool)
        return super().accept(positions, velocities)

    def advance(self, pos, vel, force):
        acc = force[:, 0] - [0.0, 0.0, self.gravity]
        pos, vel = pos[:, 0].copy(), vel[:, 0].copy()
        idx, left = np.arange(len(pos)), np.full(len(pos), self.dt)
        for _ in range(MAX_BOUNCES):  # each pass moves to the next impact or the end of the step
            p, v, a = pos[idx], vel[idx], acc[idx]
            h = np.maximum(p[:, 2] - self.radius, 0.0)
            resting = (h == 0) & (v[:, 2] == 0) & (a[:, 2] <= 0)
            a[resting, 2] = 0.0  # the ground holds a resting ball
            t_ground = time_to_ground(h, v[:, 2], a[:, 2])
            hit = ~resting & (t_ground <= left)
            tau = np.where(hit, t_ground, left)
            p, v = ballistic(p, v, a, tau[:, None])
            p[hit, 2] = self.radius
            bounce = -self.restitution * v[hit, 2]
            v[hit, 2] = np.where(bounce > REST_SPEED, bounce, 0.0)
            pos[idx], vel[idx] = p, v
            idx, left = idx[hit], (left - tau)[hit]
            if not len(idx):
                break
        else:  # a Zeno cascade of ever shorter bounces: the ball rests for the rest of the step
            a = acc[idx] * [1.0, 1.0, 0.0]
            vel[idx, 2] = 0.0
            pos[idx], vel[idx] = ballistic(pos[idx], vel[idx], a, left[:, None])
        return pos[:, None], vel[:, None]
