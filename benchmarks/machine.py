"""The machine a benchmark ran on, for its table header."""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine() -> str:
    """``"<cpu model>, <n> cores"``."""
    return f"{cpu_name()}, {os.cpu_count()} cores"
