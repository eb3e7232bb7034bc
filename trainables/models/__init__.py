"""Model families. ``MODELS`` maps a config's ``model`` name to (config dataclass, packed module
class); the interface both implement is ``trainables.models.base`` (``TrainConfig``,
``PackedModel``). A new family is one module and one ``register`` call.

Families outside this package (e.g. the test-only ``tests/tiny_model.py``) are loaded from the
environment variable ``SEEDSWEEP_MODELS``: module names or ``.py`` paths separated by ``os.pathsep``,
each of which calls ``register`` when imported. An environment variable reaches every process of
a sweep (the CLI, the Ray workers it starts), where a registration made in one process would not.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from trainables.models.base import Metric, PackedModel, TrainConfig, find_metric, metric_names
from trainables.models.causal_ae3d import CausalAE3d, CausalAE3dConfig
from trainables.models.interp_transformer import InterpConfig, InterpTransformer
from trainables.models.sps import SPS, SPSConfig
from trainables.models.st_transformer import STTransformer, STTransformerConfig
from trainables.models.stacked_ae import StackedAE, StackedAEConfig
from trainables.models.vae import VAE, VAEConfig
from trainables.models.video_predictor import VideoPredictor, VideoPredictorConfig

MODELS: dict[str, tuple[type[TrainConfig], type[PackedModel]]] = {}
DEFAULT_MODEL = "sps"  # what a config or spec without ``model`` trains


def register(name: str, config_cls: type[TrainConfig], model_cls: type[PackedModel]) -> None:
    """Make ``model: name`` buildable: ``config_cls`` (a TrainConfig) and ``model_cls`` (a PackedModel)."""
    if not (issubclass(config_cls, TrainConfig) and issubclass(model_cls, PackedModel)):
        raise TypeError(f"model {name!r}: register a TrainConfig subclass and a PackedModel subclass")
    MODELS[name] = (config_cls, model_cls)


def load_plugins(value: str | None = None) -> None:
    """Import the families named in ``SEEDSWEEP_MODELS`` (or ``value``); each registers itself."""
    for item in filter(
        None, (value if value is not None else os.environ.get("SEEDSWEEP_MODELS", "")).split(os.pathsep)
    ):
        if item.endswith(".py"):
            path = Path(item).resolve()
            spec = importlib.util.spec_from_file_location(f"seedsweep_model_{path.stem}", path)
            if spec is None or not path.exists():
                raise ValueError(f"SEEDSWEEP_MODELS: no such file {item!r}")
            module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look it up
            spec.loader.exec_module(module)
        else:
            importlib.import_module(item)


register("sps", SPSConfig, SPS)
register("interp_transformer", InterpConfig, InterpTransformer)  # 002: middle frame of a 5-frame window, PSNR
register("stacked_ae", StackedAEConfig, StackedAE)  # 000: stacked 2-D AEs with z-optimisation
register("causal_ae3d", CausalAE3dConfig, CausalAE3d)  # 000: causal 3-D AE, reconstruction or one-step prediction
register(
    "st_transformer", STTransformerConfig, STTransformer
)  # 000: space-time transformer over a stacked AE's latents
register("vae", VAEConfig, VAE)
register("video_predictor", VideoPredictorConfig, VideoPredictor)
load_plugins()

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "Metric",
    "PackedModel",
    "SPS",
    "SPSConfig",
    "TrainConfig",
    "find_metric",
    "metric_names",
    "register",
]
