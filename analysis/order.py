"""The order configurations are listed and compared in: "c2" before "c10"."""

from __future__ import annotations

import re


def natural_key(text) -> tuple:
    """Sort "c2" before "c10" (split() alternates text and digits, so tuples always compare)."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(text)))
