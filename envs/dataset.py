"""Datasets of world trajectories as Arrow tables, cached as Parquet.

``generate`` rolls out ``n`` trajectories with the same vectorised code as the gymnasium envs:
trajectory i is exactly what ``env.reset(seed=trajectory_seeds(seed, n)[i])`` followed by
``frames - 1`` zero-force steps produces. ``load_or_generate`` keeps one Parquet file per
parameter set, keyed by a hash of every parameter and of the worlds' source code, and rebuilds a
file that is truncated, corrupt or does not match.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gymnasium as gym
import numpy as np
import platformdirs
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock
from gymnasium.utils.seeding import np_random

ENV_IDS = {
    "ball": "seedsweep/BouncingBall-v0",
    "two_body": "seedsweep/TwoBody-v0",
}
CHUNK = 2048  # trajectories rolled out at a time (bounds memory; progress is shown per chunk)


def resolve_env_id(env_id: str) -> str:
    """Accept a short name (``ball``, ``two_body``) or a registered gymnasium id."""
    env_id = ENV_IDS.get(env_id.replace("-", "_"), env_id)
    if env_id not in gym.registry:
        known = ", ".join(sorted(ENV_IDS) + sorted(ENV_IDS.values()))
        raise ValueError(f"unknown env {env_id!r}; known: {known}")
    return env_id


def trajectory_seeds(seed: int, n: int) -> list[int]:
    """The ``reset`` seed of each of the ``n`` trajectories of a dataset with seed ``seed``."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n, dtype=np.uint64) >> np.uint64(1)]


def world_class(env_id: str) -> type:
    """The env class registered under ``env_id`` (or a short name)."""
    cls = gym.registry[resolve_env_id(env_id)].entry_point
    if isinstance(cls, str):
        module, name = cls.split(":")
        cls = getattr(importlib.import_module(module), name)
    return cls


def world_sources(env_id: str) -> list[Path]:
    """The files a world's trajectories come from: its env class's module and the modules of its
    package and of ``envs`` it imports, followed import by import, and this one (the rollout). The cache key reads
    them, so a world's data is rebuilt when its code changes, a new world included."""
    cls = world_class(env_id)
    packages = {cls.__module__.split(".")[0], __name__.split(".")[0]}
    todo, found = [cls.__module__, __name__], set()
    while todo:
        spec = importlib.util.find_spec(todo.pop())
        path = Path(spec.origin)
        if path in found:
            continue
        found.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] in packages:
                todo.append(node.module)
    return sorted(found)


def env_params(env_id: str, **env_kwargs) -> dict:
    """Every constructor parameter of the env, defaults filled in, as JSON-ready values."""
    sig = inspect.signature(world_class(env_id))
    unknown = set(env_kwargs) - set(sig.parameters)
    if unknown:
        raise TypeError(f"{env_id} has no parameter(s) {sorted(unknown)}; it takes {sorted(sig.parameters)}")
    params = {k: p.default for k, p in sig.parameters.items() if k != "render_mode"}
    params.update(env_kwargs)

    def plain(v):
        if dataclasses.is_dataclass(v):
            return plain(dataclasses.asdict(v))
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (tuple, list, np.ndarray)):
            return [plain(x) for x in v]
        return v.item() if isinstance(v, np.generic) else v

    return plain(params)


def generate(env_id: str, n: int, frames: int, seed: int, progress: bool = False, **env_kwargs) -> pa.Table:
    """``n`` free-motion trajectories of ``frames`` frames as a table with columns ``frames``
    (uint8 [frames, H, W, 3]), ``positions`` and ``velocities`` (float32 [frames, bodies, 3]),
    fixed-shape tensors, one row per trajectory. The env id and every parameter are in the
    schema metadata under ``seedsweep``. Same arguments, same table."""
    env_id = resolve_env_id(env_id)
    if n < 1 or frames < 1:
        raise ValueError(f"n and frames must be >= 1, got n={n}, frames={frames}")
    params = env_params(env_id, **env_kwargs, frames=frames)
    env = gym.make(env_id, **{**env_kwargs, "frames": frames}).unwrapped
    seeds = trajectory_seeds(seed, n)

    def chunk(start: int) -> dict[str, pa.Array]:
        data = env.rollout([np_random(s)[0] for s in seeds[start : start + CHUNK]])
        data["positions"] = data["positions"].astype(np.float32)
        data["velocities"] = data["velocities"].astype(np.float32)
        return {k: pa.FixedShapeTensorArray.from_numpy_ndarray(v) for k, v in data.items()}

    # numpy releases the GIL in its array loops, so chunks roll out in parallel on threads.
    bar = _progress(n, f"generating {env_id}", progress)
    parts = []
    with ThreadPoolExecutor(max_workers=threads()) as pool:
        for part in pool.map(chunk, range(0, n, CHUNK)):
            parts.append(part)
            bar.update(len(part["frames"]))
    bar.close()
    meta = {"env_id": env_id, "n": n, "frames": frames, "seed": seed, "params": params}
    table = pa.table({k: pa.chunked_array([p[k] for p in parts]) for k in parts[0]})
    return table.replace_schema_metadata({"seedsweep": json.dumps(meta, sort_keys=True)})


def threads() -> int:
    """Threads for generation: the CPUs this process may use, no more than ``OMP_NUM_THREADS`` (which Ray
    sets to a trial's ``resources.cpu``), so a trial generating its data keeps to its share of the node."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(cpus, int(limit))) if limit.isdigit() else cpus


def to_numpy(table: pa.Table) -> dict[str, np.ndarray]:
    """The table's columns as arrays: frames uint8 [n, frames, H, W, 3], positions and velocities float32 [n, frames, bodies, 3]."""
    return {name: table.column(name).combine_chunks().to_numpy_ndarray() for name in table.column_names}


def metadata(table: pa.Table) -> dict:
    """The ``seedsweep`` schema metadata of a generated table (env id, sizes, seed, parameters)."""
    return json.loads(table.schema.metadata[b"seedsweep"])


def default_cache_dir() -> Path:
    """``$SEEDSWEEP_CACHE`` if set, else the user's cache directory."""
    return Path(os.environ.get("SEEDSWEEP_CACHE") or platformdirs.user_cache_dir("seedsweep")) / "datasets"


def cache_path(env_id: str, n: int, frames: int, seed: int, cache_dir: str | Path | None = None, **env_kwargs) -> Path:
    """Where ``load_or_generate`` keeps this dataset: named by a hash of every parameter and of the world's code (``world_sources``)."""
    env_id = resolve_env_id(env_id)
    key = {
        "env_id": env_id,
        "n": n,
        "frames": frames,
        "seed": seed,
        "params": env_params(env_id, **env_kwargs, frames=frames),
        "numpy": np.__version__,  # its random streams and float kernels make the bytes
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode())
    for path in world_sources(env_id):
        digest.update(path.read_bytes())
    short = env_id.split("/")[-1].split("-")[0].lower()
    return Path(cache_dir or default_cache_dir()) / f"{short}-n{n}-f{frames}-s{seed}-{digest.hexdigest()[:16]}.parquet"


def load_or_generate(
    env_id: str,
    n: int,
    frames: int,
    seed: int,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    **env_kwargs,
) -> pa.Table:
    """``generate``'s table, read from the Parquet cache when a sound copy is there, else generated and
    written (atomically, with page checksums). A truncated, corrupt or mismatched file is rebuilt."""
    path = cache_path(env_id, n, frames, seed, cache_dir, **env_kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    # one process generates a dataset, the others (trials starting together on a node) wait and read it
    with FileLock(f"{path}.lock"):
        return _load_or_generate(path, env_id, n, frames, seed, progress, **env_kwargs)


def _load_or_generate(
    path: Path, env_id: str, n: int, frames: int, seed: int, progress: bool, **env_kwargs
) -> pa.Table:
    if path.exists():
        try:
            table = pq.read_table(path, page_checksum_verification=True)
            meta = metadata(table)
            if table.num_rows == n and (meta["n"], meta["frames"], meta["seed"]) == (n, frames, seed):
                return table
        except Exception:  # any unreadable file is rebuilt below
            pass
    table = generate(env_id, n, frames, seed, progress=progress, **env_kwargs)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd", write_page_checksum=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return table


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="traj", disable=not enabled)
