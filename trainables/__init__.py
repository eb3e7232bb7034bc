"""Models and the packed-seed training that the Ray Tune trainable (``trainables.train``) runs."""

from trainables.pack import Pack, config_id, fit, resolve_config

__all__ = ["Pack", "fit", "resolve_config", "config_id"]
