"""Models and the packed-seed training that the Ray Tune trainable (``trainables.train``) runs.

``Pack``, ``fit``, ``resolve_config`` and ``config_id`` load torch on first use, so that the torch-free
modules (``trainables.tracking``, ``trainables.rule``) serve the analysis without it."""

__all__ = ["Pack", "fit", "resolve_config", "config_id"]


def __getattr__(name: str):
    if name in ("Pack", "fit"):
        from trainables import pack

        return getattr(pack, name)
    if name in ("resolve_config", "config_id"):
        from trainables import config

        return getattr(config, name)
    raise AttributeError(f"module 'trainables' has no attribute {name!r}")
