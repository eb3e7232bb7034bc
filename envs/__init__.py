"""seedsweep's physics worlds as gymnasium environments, and their cached datasets.

>>> import gymnasium as gym, envs
>>> env = gym.make("seedsweep/BouncingBall-v0")
"""

from gymnasium.envs.registration import register, registry

from envs.ball import BouncingBall
from envs.camera import Camera, Scene, render
from envs.dataset import ENV_IDS, generate, load_or_generate, to_numpy, trajectory_seeds
from envs.two_body import TwoBody

__all__ = [
    "BouncingBall",
    "TwoBody",
    "Camera",
    "Scene",
    "render",
    "ENV_IDS",
    "generate",
    "load_or_generate",
    "to_numpy",
    "trajectory_seeds",
    "register_envs",
]


def register_envs() -> None:
    """Register the worlds with gymnasium; importing ``envs`` does it."""
    for env_id, entry in (
        ("seedsweep/BouncingBall-v0", "envs.ball:BouncingBall"),
        ("seedsweep/TwoBody-v0", "envs.two_body:TwoBody"),
    ):
        if env_id not in registry:
            register(id=env_id, entry_point=entry, max_episode_steps=500)


register_envs()
