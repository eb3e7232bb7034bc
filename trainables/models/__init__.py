"""Model families. ``MODELS`` maps a config's ``model`` name to (config dataclass, packed module
class); the interface both implement is ``trainables.models.base`` (``TrainConfig``,
``PackedModel``), checked where a family registers (``trainables.models.registry``).

A new family is one module here that ends with ``register("name", NameConfig, Name)``, and one line
in ``FAMILIES`` below. Families outside this package (e.g. the test-only ``tests/tiny_model.py``)
are loaded from the environment variable ``SEEDSWEEP_MODELS`` (see ``registry.load_plugins``).
"""

from __future__ import annotations

import importlib

from trainables.models.base import Metric, PackedModel, TrainConfig, find_metric, metric_names
from trainables.models.registry import DEFAULT_MODEL, MODELS, ContractError, load_plugins, register

FAMILIES = (  # modules of trainables/models/, each registering its family when imported
    "sps",  # 004: symmetry-structured VAE + RNN (the default model)
    "interp_transformer",  # 002: middle frame of a 5-frame window, PSNR
    "stacked_ae",  # 000: stacked 2-D AEs with z-optimisation
    "causal_ae3d",  # 000: causal 3-D AE, reconstruction or one-step prediction
    "st_transformer",  # 000: space-time transformer over a stacked AE's latents
    "vae",  # 003: VAE with sum- or mean-reduced loss
    "video_predictor",  # 001: conv video predictor
)
for family in FAMILIES:
    importlib.import_module(f"trainables.models.{family}")
load_plugins()

from trainables.models.sps import SPS, SPSConfig  # noqa: E402  the default family, for convenience

__all__ = [
    "DEFAULT_MODEL",
    "FAMILIES",
    "MODELS",
    "ContractError",
    "Metric",
    "PackedModel",
    "SPS",
    "SPSConfig",
    "TrainConfig",
    "find_metric",
    "metric_names",
    "register",
]
