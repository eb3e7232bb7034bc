"""TwoBody-v0: two balls in orbit under Newtonian gravity, seen by a pinhole camera.

Physics. Two balls of equal radius ``radius`` and masses ``masses`` (kg) attract each other
with Newtonian gravity of constant ``G`` (x right, y depth, z up; metres and seconds), plus an
applied force on each (the action). They do not collide: initial states whose orbit would
bring them into contact are rejected. Integration is Yoshida's 4th-order symplectic scheme
with ``substeps`` substeps per frame, so energy and angular momentum drift stay far below
1e-4 (relative) over 100 frames, and momentum, hence the centre of mass, is conserved to
rounding.

Initial states: the centre of mass is drawn in x ∈ [-1.5, 1.5], depth y ∈ [9, 13], height
z ∈ [3, 6] and stays there (zero total momentum). The relative orbit lies in a random plane
with separation in [2, 4] and a speed of 0.7-1.25 times the circular speed, tilted up to
0.3 rad off the tangent; it is kept when bound with eccentricity below ``max_eccentricity``,
its periapsis keeps the balls apart, and both balls stay wholly in view for ``frames``
frames. With the defaults (G = 30, unit masses, dt = 0.2 s) an orbit takes about 2-10 s, so
a 20-frame sequence shows most of a revolution or more.

Observation: uint8 RGB frame (image_size, image_size, 3), camera at (0, 0, 4.5) looking
along +y with a 60° field of view; a red and a blue shaded ball on black.
Action: Box(-1, 1, (2, 3), float32), the force on each ball in units of ``max_force``; zeros = free motion.
Reward: 1 per step while both balls are wholly in view; the episode terminates when one is not.
Info: ``positions`` and ``velocities``, float arrays (2, 3), one row per ball.
"""

from __future__ import annotations

import numpy as np

from envs.base import PhysicsEnv
from envs.camera import Camera

_CBRT2 = 2.0 ** (1.0 / 3.0)
_W1 = 1.0 / (2.0 - _CBRT2)
_W0 = -_CBRT2 * _W1
DRIFT = (_W1 / 2, (_W0 + _W1) / 2, (_W0 + _W1) / 2, _W1 / 2)  # Yoshida 4th-order coefficients
KICK = (_W1, _W0, _W1)


def orbit_elements(pos, vel, masses, G):
    """Eccentricity and periapsis distance of the relative orbit of states [..., 2, 3]."""
    mu = G * (masses[0] + masses[1])
    r = pos[..., 0, :] - pos[..., 1, :]
    v = vel[..., 0, :] - vel[..., 1, :]
    rn = np.linalg.norm(r, axis=-1, keepdims=True)
    ecc = ((v * v).sum(-1, keepdims=True) - mu / rn) * r - (r * v).sum(-1, keepdims=True) * v
    e = np.linalg.norm(ecc / mu, axis=-1)
    energy = 0.5 * (v * v).sum(-1) - mu / rn[..., 0]
    with np.errstate(divide="ignore"):
        a = np.where(energy < 0, -mu / (2 * energy), np.inf)
    return e, a * (1 - e), energy


class TwoBody(PhysicsEnv):
    """Two balls orbiting their fixed centre of mass; see the module docstring."""

    colors = np.array([[0.95, 0.25, 0.15], [0.2, 0.5, 1.0]])

    def __init__(
        self,
        render_mode: str | None = None,
        G: float = 30.0,
        masses: tuple[float, float] = (1.0, 1.0),
        radius: float = 0.8,
        dt: float = 0.2,
        substeps: int = 50,
        max_eccentricity: float = 0.9,
        image_size: int = 32,
        frames: int = 20,
        max_force: float = 20.0,
        render_size: int = 256,
        camera: Camera = Camera(position=(0.0, 0.0, 4.5)),
    ):
        masses = np.asarray(masses, dtype=np.float64)
        if masses.shape != (2,) or not (masses > 0).all() or not G > 0 or substeps < 1:
            raise ValueError(f"need two positive masses, G > 0 and substeps >= 1, got {masses}, {G}, {substeps}")
        self.G, self.masses, self.substeps = float(G), masses, int(substeps)
        self.max_eccentricity = float(max_eccentricity)
        super().__init__(radius, dt, image_size, frames, max_force, render_mode, render_size, camera)

    def sample_state(self, rngs, k):
        u = np.stack([rng.uniform(size=(k, 10)) for rng in rngs])  # [n, k, 10]
        com = np.array([-1.5, 9.0, 3.0]) + u[..., 0:3] * [3.0, 4.0, 3.0]
        sep = 2.0 + 2.0 * u[..., 3]
        # The orbital plane: a uniformly random unit normal, and the separation direction in it.
        cos_t, phi = 2 * u[..., 4] - 1, 2 * np.pi * u[..., 5]
        sin_t = np.sqrt(1 - cos_t**2)
        normal = np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], -1)
        helper = np.where(np.abs(normal[..., :1]) < 0.9, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
        e1 = np.cross(normal, helper)
        e1 /= np.linalg.norm(e1, axis=-1, keepdims=True)
        e2 = np.cross(normal, e1)
        angle = 2 * np.pi * u[..., 6:7]
        radial = np.cos(angle) * e1 + np.sin(angle) * e2
        tangent = np.cross(normal, radial)
        mu = self.G * self.masses.sum()
        speed = (0.7 + 0.55 * u[..., 7:8]) * np.sqrt(mu / sep[..., None])
        tilt = 0.3 * (2 * u[..., 8:9] - 1)
        r_rel = sep[..., None] * radial
        v_rel = speed * (np.cos(tilt) * tangent + np.sin(tilt) * radial)
        m1, m2 = self.masses / self.masses.sum()
        pos = np.stack([com + m2 * r_rel, com - m1 * r_rel], axis=-2)
        vel = np.stack([m2 * v_rel, -m1 * v_rel], axis=-2)
        return pos, vel

    def accept(self, positions, velocities):
        e, periapsis, energy = orbit_elements(positions[:, 0], velocities[:, 0], self.masses, self.G)
        bound = (energy < 0) & (e < self.max_eccentricity) & (periapsis > 2.5 * self.radius)
        return bound & super().accept(positions, velocities)

    def acceleration(self, pos):
        """Gravitational acceleration of each body, [N, 2, 3]."""
        r = pos[:, 1] - pos[:, 0]
        inv3 = np.sum(r * r, axis=-1, keepdims=True) ** -1.5
        return self.G * inv3[:, None] * np.stack([self.masses[1] * r, -self.masses[0] * r], axis=1)

    def advance(self, pos, vel, force):
        h = self.dt / self.substeps
        push = force / self.masses[:, None]
        for _ in range(self.substeps):
            for c, d in zip(DRIFT, KICK + (None,)):
                pos = pos + c * h * vel
                if d is not None:
                    vel = vel + d * h * (self.acceleration(pos) + push)
        return pos, vel
