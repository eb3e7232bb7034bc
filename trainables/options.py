"""The keys of a trial's config besides the model's own fields, torch-free (the spec checker, the
model registry and the trainable read them from here).

- ``COMMON``: what every config holds beside its model's fields: the ``model``, the world and its
  dataset (``DATA_KEYS``), the success rule, and where and how fast a pack computes (``RUN_ONLY``:
  device and speed settings, not part of ``config_id``).
- ``RunOptions``: how a trial runs (seeds, epochs, checkpoints, tracking); the spec makes one, the
  runner puts it in Tune's param space as ``config["run"]`` and the trainable reads it back.

A model's config field may not reuse any of these names (``trainables.models.register`` refuses it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

DEFAULT_MODEL = "sps"  # what a config or spec without ``model`` trains
PATIENCE = 600.0  # seconds a trial trains on with its tracking server unreachable before it fails

COMMON = {
    "model": DEFAULT_MODEL,  # a key of trainables.models.MODELS
    "env": "seedsweep/BouncingBall-v0",  # gymnasium id (or short name: ball, two_body)
    "n_train": 512,  # SPS ball: the 512-sequence training subset
    "n_val": 128,  # validation sequences (metrics, pictures)
    "frames": 20,  # SPS ball: 20-frame sequences
    "image_size": 32,  # SPS: 32 x 32 RGB
    "data_seed": 0,  # training set seed (validation: trainables.data.val_seed(data_seed)); "per_seed": each seed its own
    # training set, so the success rate covers the sampling of the data too (costs S x the training set's memory)
    "scene": None,  # the world's scene (ball: "sps", the SPS authors', or "plain"); None: the world's default
    "success": None,  # {metric: NAME, below|above: X}, NAME a metric the model declares; None: the model's ``success``
    "seed_stop": None,  # {metric, above|below, from_epoch, audit, patience}: stop failed seeds (trainables.seed_stop)
    "device": None,  # run-only: None = cuda if available, else cpu
    # run-only speed settings (see trainables.pack.Speed); None = the device's default
    "precision": None,  # "fp32" | "bf16" (autocast); None: bf16 on CUDA, fp32 on CPU
    "channels_last": None,  # NHWC convolutions; None: on CUDA
    "tf32": None,  # TF32 matmuls and convs (CUDA only); None: on with bf16
    "compile": None,  # torch.compile the model's losses: true, or a mode of COMPILE_MODES; None: off
    "conv_gemm": None,  # convolutions as unfold/fold + batched matmuls instead of grouped kernels; None: off
}
RUN_ONLY = ("device", "precision", "channels_last", "tf32", "compile", "conv_gemm")  # where and how fast, not what
NOT_IN_ID = (*RUN_ONLY, "success", "seed_stop")  # config_id names what is trained, not where, how fast or how judged
DATA_KEYS = ("n_train", "n_val", "frames", "image_size", "data_seed", "scene")  # what the world's dataset is made of
RUN_KEY = "run"  # the key of a trial config that holds its RunOptions (as a dict)


def number(
    value,
    name: str = "",
    *,
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
    open_high: bool = False,
    finite: bool = True,
    noun: str | None = None,
) -> float:
    """``value`` checked as a number (an ``int`` with ``integer``; a bool is neither; finite unless
    ``finite=False``) within ``low``/``high`` (excluded with ``open_low``/``open_high``), returned as is.
    Otherwise a ValueError: ``"[name ]must be <noun> <range>, got <value>"``, e.g. "must be an integer
    >= 1, got 0"; ``noun`` (default "an integer" or "a number") says what the number counts."""
    kinds = int if integer else (int, float)
    ok = not isinstance(value, bool) and isinstance(value, kinds) and (not finite or math.isfinite(value))
    ok = ok and (low is None or (value > low if open_low else value >= low))
    ok = ok and (high is None or (value < high if open_high else value <= high))
    if ok:
        return value
    if low is not None and high is not None:
        span = f" in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    elif low is not None:
        span = f" {'>' if open_low else '>='} {low:g}"
    elif high is not None:
        span = f" {'<' if open_high else '<='} {high:g}"
    else:
        span = ""
    noun = noun or ("an integer" if integer else "a finite number" if finite else "a number")
    raise ValueError(f"{name + ' ' if name else ''}must be {noun}{span}, got {value!r}")


@dataclass(frozen=True)
class RunOptions:
    """How one trial runs; everything else in its config is what it trains."""

    seeds: tuple[int, ...] = (0, 1, 2, 3)  # the seed numbers packed in the trial (a count n in a spec: 0..n-1)
    epochs: int = 20
    checkpoint_every: int = 5  # epochs between checkpoints (and one at the end)
    eval_every: int = 1  # epochs between evaluations (and one at the end)
    # seconds between MLflow sends at most (also sent before the report of an epoch that evaluated,
    # checkpointed or ended the run)
    flush_every: float = 10.0
    tracking_patience: float = PATIENCE  # seconds (> 0) of unreachable tracking server a trial trains through
    sweep: str = "default"  # the sweep's name, a tag on every run
    experiment: str | None = None  # the MLflow experiment; None: the sweep's name
    tracking_uri: str | None = None  # None: sqlite:///<driver cwd>/mlruns.db
    # the share of a GPU Ray gave the trial (resources.gpu): 0 trains on the CPU with CUDA hidden, a
    # fraction caps the trial's CUDA memory at that share of the card; None: not placed by a sweep
    gpu: float | None = None
    round: int | None = None  # adaptive seeds: the round this trial belongs to (a tag on its seed runs)

    def __post_init__(self):
        seeds = self.seeds
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            seeds = tuple(range(seeds)) if seeds >= 1 else None
        elif isinstance(seeds, (list, tuple)) and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            seeds = tuple(int(s) for s in seeds)
            if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
                seeds = None
        else:
            seeds = None
        if seeds is None:
            raise ValueError(
                f"run option 'seeds' must be a count >= 1 or a list of distinct ints >= 0, got {self.seeds!r}"
            )
        object.__setattr__(self, "seeds", seeds)
        for key in ("epochs", "checkpoint_every", "eval_every"):
            number(getattr(self, key), f"run option '{key}'", integer=True, low=1)
        # flush_every 0: send at every epoch; a patience of 0 would fail a trial at the first refused request
        for key, open_low in (("flush_every", False), ("tracking_patience", True)):
            seconds = number(
                getattr(self, key), f"run option '{key}'", low=0, open_low=open_low, noun="a number of seconds"
            )
            object.__setattr__(self, key, float(seconds))
        if self.gpu is not None:
            number(self.gpu, "run option 'gpu'", low=0, high=1, noun="a share of one GPU")
        if self.experiment is None:
            object.__setattr__(self, "experiment", self.sweep)

    @classmethod
    def from_dict(cls, options: dict) -> RunOptions:
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise ValueError(f"unknown run option {unknown[0]!r}; known: {', '.join(names)}")
        return cls(**options)

    def as_dict(self) -> dict:
        return {**asdict(self), "seeds": list(self.seeds)}


def run_keys() -> tuple[str, ...]:
    return tuple(f.name for f in fields(RunOptions))
