"""The hash of seedsweep's own code, as a process imported it: every seed run is tagged with it
(``records.CODE_TAG``), every node of a cluster reports it to the driver's check, and a resume or an
analysis that would pool runs of different code says so."""

from __future__ import annotations

import functools
import hashlib
import importlib
from pathlib import Path

PACKAGES = ("envs", "trainables", "sweeps", "analysis")  # seedsweep's import packages


@functools.cache
def code_hash() -> str:
    """12 hex digits of SHA-256 over every ``.py`` file of the packages (path within its package, bytes)."""
    digest = hashlib.sha256()
    for package in PACKAGES:
        root = Path(importlib.import_module(package).__path__[0])
        for path in sorted(root.rglob("*.py")):
            digest.update(f"{package}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
