"""World datasets as training tensors: frames [N, T, 3, H, W] float32 in [0, 1] and the positions
the latent is projected onto."""

from __future__ import annotations

import numpy as np
import torch


def val_seed(data_seed: int) -> int:
    """The validation set's dataset seed: a stream of its own, derived from ``data_seed``
    (the training set uses ``data_seed`` itself), so the two never share trajectories."""
    return int(np.random.SeedSequence([data_seed, 1]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


PER_SEED = "per_seed"  # data_seed value: every seed trains on its own training set


def train_seed(seed: int) -> int:
    """With ``data_seed: per_seed``, the training set seed of seed number ``seed``: a stream of its
    own (never a validation stream, which ``val_seed`` derives with another key)."""
    return int(np.random.SeedSequence([seed, 2]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def projection_targets(positions: np.ndarray, target: str = "relative") -> np.ndarray:
    """positions [N, T, bodies, 3] -> targets [N, T, D]. One body: its position. Two bodies:
    ``relative`` = r1 - r2 (3-D), ``both`` = (r1, r2) concatenated (6-D)."""
    if positions.shape[2] == 1:
        return positions[:, :, 0]
    if target == "relative":
        return positions[:, :, 0] - positions[:, :, 1]
    if target == "both":
        return positions.reshape(*positions.shape[:2], -1)
    raise ValueError(f"unknown projection_target {target!r}; use relative or both")


def to_tensors(arrays: dict[str, np.ndarray], target: str = "relative") -> tuple[torch.Tensor, torch.Tensor]:
    """``envs.to_numpy`` arrays (frames uint8 [N, T, H, W, 3], positions [N, T, bodies, 3]) ->
    (frames float32 [N, T, 3, H, W] in [0, 1], targets float32 [N, T, D])."""
    frames = torch.from_numpy(np.array(arrays["frames"], copy=True)).permute(0, 1, 4, 2, 3).float().div_(255)
    targets = torch.from_numpy(np.array(projection_targets(arrays["positions"], target), dtype=np.float32))
    return frames.contiguous(), targets


def load_set(config: dict, n: int, seed: int, cache_dir=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` sequences of dataset seed ``seed`` of a resolved config's world, ``frames`` frames at
    ``image_size`` (in ``scene``, where given), from ``envs.load_or_generate`` (cached as Parquet)."""
    import envs

    scene = {"scene": config["scene"]} if config.get("scene") else {}  # else the world's default
    table = envs.load_or_generate(
        config["env"], n, config["frames"], seed, cache_dir, image_size=config["image_size"], **scene
    )
    return to_tensors(envs.to_numpy(table), config.get("projection_target", "relative"))


def load_val(config: dict, cache_dir=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation set of ``load_data`` alone (frames, targets): what the trivial baselines need."""
    seed = val_seed(0 if config["data_seed"] == PER_SEED else config["data_seed"])
    return load_set(config, config["n_val"], seed, cache_dir)


def load_data(
    config: dict, cache_dir=None, seeds: list[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_frames, train_targets, val_frames, val_targets) for a resolved config: ``n_train``
    sequences from dataset seed ``data_seed`` and ``n_val`` from ``val_seed(data_seed)`` (``load_set``);
    a config's ``train_size`` keeps the first that many training sequences, tiled to ``n_train``. With
    ``data_seed: per_seed`` each of ``seeds`` gets its own training set (``train_seed``; frames
    [S, N, T, 3, H, W]) and the validation set is ``val_seed(0)``'s, shared."""

    def train(seed: int):  # a family's ``train_size`` (SPS): its first sequences, tiled to n_train
        x, y = load_set(config, config["n_train"], seed, cache_dir)
        size = config.get("train_size")
        keep = torch.arange(config["n_train"]) % size if size else slice(None)
        return x[keep], y[keep]

    if config["data_seed"] == PER_SEED:
        if not seeds:
            raise ValueError("data_seed: per_seed needs the seeds whose training sets to load")
        sets = [train(train_seed(s)) for s in seeds]
        return torch.stack([x for x, _ in sets]), torch.stack([y for _, y in sets]), *load_val(config, cache_dir)
    return (*train(config["data_seed"]), *load_val(config, cache_dir))
