"""The part every seedsweep world shares: spaces, seeding, rendering, and batched rollouts.

A world subclass supplies its bodies (radius, colours) and two vectorised functions over N
trajectories: ``sample_state`` (one candidate initial state per trajectory) and ``advance``
(one frame of physics under an applied force). The single gymnasium env and the batch
generator (``rollout``) run the very same code, so they agree exactly.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.camera import Scene, render

CANDIDATES = 2  # initial states drawn per trajectory per rejection round


class PhysicsEnv(gym.Env):
    """Base class of the seedsweep worlds. See ``BouncingBall`` and ``TwoBody``."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 5}
    colors: np.ndarray  # [bodies, 3] RGB in [0, 1]

    def __init__(
        self,
        radius: float,
        dt: float,
        image_size: int,
        frames: int,
        max_force: float,
        render_mode: str | None,
        render_size: int,
        scene: Scene,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if not (radius > 0 and dt > 0 and max_force >= 0):
            raise ValueError(f"radius and dt must be positive and max_force >= 0, got {radius}, {dt}, {max_force}")
        if image_size < 8 or frames < 1:
            raise ValueError(f"image_size must be >= 8 and frames >= 1, got {image_size}, {frames}")
        self.radius, self.dt, self.image_size, self.frames = float(radius), float(dt), int(image_size), int(frames)
        self.render_mode, self.render_size = render_mode, int(render_size)
        self.scene, self.camera = scene, scene.camera
        self.bodies = len(self.colors)
        self.observation_space = spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
        shape = (3,) if self.bodies == 1 else (self.bodies, 3)
        self.action_space = spaces.Box(-1.0, 1.0, shape, np.float32)  # force in units of max_force
        self.max_force = float(max_force)
        self.pos = self.vel = None

    # --- physics, supplied by each world; arrays are [N, bodies, 3] float64 ---
    def sample_state(self, rngs: list[np.random.Generator], k: int) -> tuple[np.ndarray, np.ndarray]:
        """``k`` candidate initial states per generator: positions and velocities [len(rngs), k, bodies, 3]."""
        raise NotImplementedError

    def advance(self, pos: np.ndarray, vel: np.ndarray, force: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance N trajectories by one frame (``dt``) under a force [N, bodies, 3] held for the frame."""
        raise NotImplementedError

    def accept(self, positions: np.ndarray, velocities: np.ndarray) -> np.ndarray:
        """Which candidate trajectories [N, frames, bodies, 3] are kept: all bodies in view on every frame."""
        return self.camera.in_view(positions, self.radius, self.image_size).all(axis=(1, 2))

    # --- batched rollouts ---
    def simulate(self, pos: np.ndarray, vel: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Free motion of N trajectories from their initial state: positions and velocities [N, frames, bodies, 3]."""
        positions = np.empty((len(pos), frames) + pos.shape[1:])
        velocities = np.empty_like(positions)
        positions[:, 0], velocities[:, 0] = pos, vel
        zero = np.zeros_like(pos)
        for t in range(1, frames):
            pos, vel = self.advance(pos, vel, zero)
            positions[:, t], velocities[:, t] = pos, vel
        return positions, velocities

    def sample(self, rngs: list[np.random.Generator]) -> tuple[np.ndarray, np.ndarray]:
        """One free-motion trajectory of ``frames`` frames per generator: positions and velocities
        [len(rngs), frames, bodies, 3]. Generator i draws candidate initial states until one gives a
        trajectory that ``accept`` keeps (rejection sampling); it alone decides trajectory i."""
        n = len(rngs)
        positions = np.empty((n, self.frames, self.bodies, 3))
        velocities = np.empty_like(positions)
        pending = np.arange(n)
        for _ in range(1000):
            if not len(pending):
                return positions, velocities
            p, v = self.sample_state([rngs[i] for i in pending], CANDIDATES)
            flat = (len(pending) * CANDIDATES, self.bodies, 3)
            pos, vel = self.simulate(p.reshape(flat), v.reshape(flat), self.frames)
            ok = self.accept(pos, vel).reshape(len(pending), CANDIDATES)
            found = ok.any(axis=1)
            chosen = np.flatnonzero(found) * CANDIDATES + ok.argmax(axis=1)[found]
            positions[pending[found]], velocities[pending[found]] = pos[chosen], vel[chosen]
            pending = pending[~found]
        raise RuntimeError(
            f"{type(self).__name__}: found no initial state that stays in view for {self.frames} frames; "
            "the parameters put the bodies out of the camera's view"
        )

    def rollout(self, rngs: list[np.random.Generator]) -> dict[str, np.ndarray]:
        """``sample`` plus the frames: frames uint8 [N, frames, H, W, 3], positions and velocities [N, frames, bodies, 3]."""
        positions, velocities = self.sample(rngs)
        n = len(rngs)
        images = self.draw(positions.reshape(n * self.frames, self.bodies, 3))
        return {
            "frames": images.reshape(n, self.frames, self.image_size, self.image_size, 3),
            "positions": positions,
            "velocities": velocities,
        }

    def draw(self, positions: np.ndarray, size: int | None = None) -> np.ndarray:
        """Render frames of bodies at ``positions`` [N, bodies, 3]."""
        return render(positions, self.radius, self.colors, size or self.image_size, self.scene)

    # --- gymnasium API ---
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Draw an initial state that keeps every body in view for ``frames`` frames of free motion.
        ``options={"positions": ..., "velocities": ...}`` ([bodies, 3] each) starts from a given state instead."""
        super().reset(seed=seed)
        if options and "positions" in options:
            self.pos = np.asarray(options["positions"], dtype=np.float64).reshape(1, self.bodies, 3).copy()
            self.vel = np.asarray(options.get("velocities", np.zeros((self.bodies, 3))), dtype=np.float64)
            self.vel = self.vel.reshape(1, self.bodies, 3).copy()
        else:
            positions, velocities = self.sample([self.np_random])
            self.pos, self.vel = positions[:, 0], velocities[:, 0]
        return self._observe(), self._info()

    def step(self, action):
        """Push each body with force ``action * max_force`` (action in [-1, 1]) for one frame. Reward 1
        while every body is in view; the episode terminates when one leaves it."""
        if self.pos is None:
            raise RuntimeError("call reset() before step()")
        force = np.asarray(action, dtype=np.float64).reshape(1, self.bodies, 3)
        if not np.all(np.isfinite(force)):
            raise ValueError(f"action must be finite, got {action!r}")
        force = np.clip(force, -1.0, 1.0) * self.max_force
        self.pos, self.vel = self.advance(self.pos, self.vel, force)
        in_view = bool(self.camera.in_view(self.pos[0], self.radius, self.image_size).all())
        return self._observe(), 1.0 if in_view else 0.0, not in_view, False, self._info()

    def render(self):
        if self.render_mode == "rgb_array" and self.pos is not None:
            return self.draw(self.pos, self.render_size)[0]
        return None

    def _observe(self) -> np.ndarray:
        return self.draw(self.pos)[0]

    def _info(self) -> dict[str, np.ndarray]:
        return {"positions": self.pos[0].copy(), "velocities": self.vel[0].copy()}
