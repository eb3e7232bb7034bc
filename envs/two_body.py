"""TwoBody-v0: two balls in orbit under Newtonian gravity, seen by a pinhole camera.

Physics. Two balls of equal radius ``radius`` and masses ``masses`` attract each other with
Newtonian gravity of constant ``G`` (x right, y depth, z up), plus an applied force on each (the
action). They do not collide: initial states whose orbit would bring them into contact are
rejected. Integration is Yoshida's 4th-order symplectic scheme with ``substeps`` substeps per
frame (30: substeps of 0.13 at dt 4), so energy and angular momentum drift stay below 1e-4
(relative) over 100 frames, and momentum, hence the centre of mass, is conserved to rounding.

Defaults and data rules follow Dan Chin's two-body dataset for SPS (``Daniel-Chin/3S``,
``main/physics_two_body.py``, ``render_video_dataset_two_body.py``, ``dataset_definitions.py``):
G = 1, unit masses, radius 0.8, dt = 4, 25 frames. Initial state: body A at N(0, 2.5²) per
axis relative to the centre of mass, its velocity N(0, 0.3²) per axis made tangential (normal
to A's position); body B mirrors A (for unequal masses, the relative orbit is the same and the
bodies sit at their mass-weighted shares of it); total momentum zero; the centre of mass is
offset by N(0, 1.75²) per axis and stays there. Kept when the total energy lies in ``energy``
= [-0.10, -0.07] (so the relative orbit's semi-major axis is 5-7.1 and its period 50-85, which
25 frames of dt 4 cover 1.1-1.9 times), the sequence lasts at least ``min_orbits`` = 1 orbital
period (the relative vector turns at least once), body A's depth (y) has a standard deviation over the frames of at least
``min_depth_std`` = 1.4, the balls never touch (periapsis > 2 radius), neither hides the other
(the directions from the camera to the two centres never within 3.6°, cos > 0.998) and both
stay within ``view_radius`` = 7 of the origin, on every frame. As in Dan's data a ball may be
partly outside the image.

Scene: Dan's renderer (``render_video_dataset_shared.py``): a green (0, 1, 0) body A and a
magenta (1, 0, 1) body B on grey (0.6), seen from (0, -11.5, 0) looking along +y with a 77.3°
field of view (``glFrustum(±0.8, near 1)``), lit from behind and above the camera (ambient 0.2
+ diffuse 1.0, saturating).

Observation: uint8 RGB frame (image_size, image_size, 3).
Action: Box(-1, 1, (2, 3), float32), the force on each ball in units of ``max_force`` (0.1, of the
order of the bodies' mutual attraction, G m² / r² = 0.11 at r = 3); zeros = free motion.
Reward: 1 per step while both balls are wholly in view; the episode terminates when one is not.
Info: ``positions`` and ``velocities``, float arrays (2, 3), one row per ball.
"""

from __future__ import annotations

import numpy as np

from envs.base import PhysicsEnv
from envs.camera import Camera, Scene

_CBRT2 = 2.0 ** (1.0 / 3.0)
_W1 = 1.0 / (2.0 - _CBRT2)
_W0 = -_CBRT2 * _W1
DRIFT = (_W1 / 2, (_W0 + _W1) / 2, (_W0 + _W1) / 2, _W1 / 2)  # Yoshida 4th-order coefficients
KICK = (_W1, _W0, _W1)
SCENE = Scene(
    camera=Camera(position=(0.0, -11.5, 0.0), fov=2 * np.degrees(np.arctan(0.8))),
    background=0.6,
    light=(0.0, -4.0, 1.0),
    ambient=0.2,
    diffuse=1.0,
)
OCCLUSION_COS = (
    0.998  # Dan's OCCLUSION_THRES: bodies closer than this (cosine of the angle seen from the camera) hide each other
)


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

    colors = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])

    def __init__(
        self,
        render_mode: str | None = None,
        G: float = 1.0,
        masses: tuple[float, float] = (1.0, 1.0),
        radius: float = 0.8,
        dt: float = 4.0,
        substeps: int = 30,
        energy: tuple[float, float] = (-0.10, -0.07),
        min_orbits: float = 1.0,
        min_depth_std: float = 1.4,
        view_radius: float = 7.0,
        image_size: int = 32,
        frames: int = 25,
        max_force: float = 0.1,
        render_size: int = 256,
    ):
        masses = np.asarray(masses, dtype=np.float64)
        if masses.shape != (2,) or not (masses > 0).all() or not G > 0 or substeps < 1:
            raise ValueError(f"need two positive masses, G > 0 and substeps >= 1, got {masses}, {G}, {substeps}")
        if not energy[0] < energy[1] < 0:
            raise ValueError(f"energy must be a window [low, high] of negative (bound) energies, got {energy}")
        self.G, self.masses, self.substeps = float(G), masses, int(substeps)
        self.energy, self.min_orbits = (float(energy[0]), float(energy[1])), float(min_orbits)
        self.min_depth_std, self.view_radius = float(min_depth_std), float(view_radius)
        super().__init__(radius, dt, image_size, frames, max_force, render_mode, render_size, SCENE)

    def total_energy(self, pos, vel):
        """Kinetic plus potential energy of states [..., 2, 3]."""
        kinetic = 0.5 * (self.masses * (vel * vel).sum(-1)).sum(-1)
        return kinetic - self.G * self.masses.prod() / np.linalg.norm(pos[..., 0, :] - pos[..., 1, :], axis=-1)

    def sample_state(self, rngs, k):
        """``k`` initial states per generator that pass the checks on the state alone (energy
        window, no contact at periapsis, enough orbits); each generator draws blocks until it has them."""
        n, block = len(rngs), 8 * k
        kept = [[] for _ in range(n)]
        pending = np.arange(n)
        for _ in range(200):
            if not len(pending):
                break
            pos, vel = self.draw_state(np.stack([rngs[i].normal(size=(block, 9)) for i in pending]))
            ok = self.state_ok(pos, vel)
            for row, i in enumerate(pending):
                kept[i] += [(p, v) for p, v in zip(pos[row, ok[row]], vel[row, ok[row]])]
            pending = np.array([i for i in pending if len(kept[i]) < k], dtype=int)
        if len(pending):
            raise RuntimeError(
                f"TwoBody: no initial state has energy in {self.energy} and {self.min_orbits} orbit(s) in "
                f"{self.frames} frames of dt {self.dt}; widen 'energy', lower 'min_orbits' or add 'frames'"
            )
        pos = np.array([[p for p, _ in states[:k]] for states in kept])
        vel = np.array([[v for _, v in states[:k]] for states in kept])
        return pos, vel

    def state_ok(self, pos, vel):
        """The rules on initial states [..., 2, 3]: energy window, periapsis > 2 radius, orbit period short enough."""
        energy = self.total_energy(pos, vel)
        _, periapsis, _ = orbit_elements(pos, vel, self.masses, self.G)
        bound = energy < 0
        a = self.G * self.masses.prod() / (-2 * np.where(bound, energy, -1.0))  # semi-major axis of the relative orbit
        period = 2 * np.pi * np.sqrt(a**3 / (self.G * self.masses.sum()))
        ok = bound & (self.energy[0] <= energy) & (energy <= self.energy[1]) & (periapsis > 2 * self.radius)
        return ok & ((self.frames - 1) * self.dt >= self.min_orbits * period)

    def draw_state(self, z):
        """Dan's ``initBodies`` from standard normals z [..., 9]: positions and velocities [..., 2, 3]."""
        a, v, offset = 2.5 * z[..., 0:3], 0.3 * z[..., 3:6], 1.75 * z[..., 6:9]
        unit = a / np.linalg.norm(a, axis=-1, keepdims=True)
        v = v - (v * unit).sum(-1, keepdims=True) * unit  # tangential
        r_rel, v_rel = 2 * a, 2 * v  # B mirrors A: the relative orbit
        m1, m2 = self.masses / self.masses.sum()
        pos = np.stack([offset + m2 * r_rel, offset - m1 * r_rel], axis=-2)
        vel = np.stack([m2 * v_rel, -m1 * v_rel], axis=-2)
        return pos, vel

    def accept(self, positions, velocities):
        """Dan's rules over the frames: A's depth spread, no occlusion, within the view radius."""
        eye = np.asarray(self.camera.position)
        to_a, to_b = positions[:, :, 0] - eye, positions[:, :, 1] - eye
        cos = (to_a * to_b).sum(-1) / np.linalg.norm(to_a, axis=-1) / np.linalg.norm(to_b, axis=-1)
        ok = positions[:, :, 0, 1].std(axis=1) >= self.min_depth_std
        ok &= (cos <= OCCLUSION_COS).all(axis=1)
        ok &= (np.linalg.norm(positions, axis=-1) <= self.view_radius).all(axis=(1, 2))
        return ok

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
