"""BouncingBall-v0: a ball under gravity bouncing on the ground, seen by a pinhole camera.

Physics. A ball of radius ``radius`` and unit mass moves in 3-D (x right, y depth, z up;
metres and seconds) under gravity ``gravity`` along -z and an applied force (the action).
It bounces on the ground plane z = 0: at impact its vertical velocity is reversed and scaled
by ``restitution`` e, so each bounce keeps e² of the vertical kinetic energy; there is no
other loss (no drag, frictionless ground). Motion within a frame is integrated exactly
(constant acceleration) and impacts are resolved at their exact time inside the step, however
many fall in one step. A bounce slower than ``REST_SPEED`` leaves the ball resting.

Defaults follow the SPS authors' bouncing-ball data: g = 10, energy loss 0.19 per bounce
(e = 0.9), dt = 0.2 s, 20-frame sequences of 32 x 32 frames, initial horizontal speeds in
±2 and vertical speed in ±10. The initial position is drawn in x ∈ [-3, 3], depth
y ∈ [7, 13] and height z ∈ [1, 5] (ball centre), and redrawn until the ball stays wholly in
view for ``frames`` frames of free motion.

Observation: uint8 RGB frame (image_size, image_size, 3), camera at (0, 0, 4.5) looking
along +y with a 60° field of view, a shaded red ball on black.
Action: Box(-1, 1, (3,), float32), the force on the ball in units of ``max_force``; zeros = free motion.
Reward: 1 per step while the ball is wholly in view; the episode terminates when it is not.
Info: ``positions`` and ``velocities``, float arrays (1, 3) of the ball's centre.
"""

from __future__ import annotations

import numpy as np

from envs.base import PhysicsEnv
from envs.camera import Camera

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


class BouncingBall(PhysicsEnv):
    """A ball bouncing on the ground with restitution; see the module docstring."""

    colors = np.array([[0.95, 0.25, 0.15]])

    def __init__(
        self,
        render_mode: str | None = None,
        gravity: float = 10.0,
        restitution: float = 0.9,
        radius: float = 1.0,
        dt: float = 0.2,
        image_size: int = 32,
        frames: int = 20,
        max_force: float = 20.0,
        render_size: int = 256,
        camera: Camera = Camera(position=(0.0, 0.0, 4.5)),
    ):
        if not 0 <= restitution <= 1 or gravity < 0:
            raise ValueError(f"need 0 <= restitution <= 1 and gravity >= 0, got {restitution}, {gravity}")
        self.gravity, self.restitution = float(gravity), float(restitution)
        super().__init__(radius, dt, image_size, frames, max_force, render_mode, render_size, camera)

    def sample_state(self, rngs, k):
        u = np.stack([rng.uniform(size=(k, 6)) for rng in rngs])  # [n, k, 6]
        low = np.array([-3.0, 7.0, 1.0, -2.0, -2.0, -10.0])
        high = np.array([3.0, 13.0, 5.0, 2.0, 2.0, 10.0])
        x = low + (high - low) * u
        x[..., 2] = np.maximum(x[..., 2], self.radius)
        return x[..., None, :3], x[..., None, 3:]

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
