"""What every benchmark prints: a dated title naming the machine, and a small markdown table."""

from __future__ import annotations

import os
import platform
from datetime import date
from pathlib import Path


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine() -> str:
    """``"<cpu model>, <n> cores"``."""
    return f"{cpu_name()}, {os.cpu_count()} cores"


def emit(title: str, columns: list[str], rows: list[str], out: str | None = None, where: str | None = None) -> str:
    """Print ``"TITLE, DATE, WHERE"`` (``where`` defaults to ``machine()``) and the table of
    ``columns`` and preformatted ``| ... |`` ``rows``; also write it to ``out`` if given."""
    table = "\n".join(
        [
            f"{title.split(';')[0]}, {date.today()}, {where or machine()}"
            + (f";{title.split(';', 1)[1]}" if ";" in title else ""),
            "",
            "| " + " | ".join(columns) + " |",
            "|" + "---|" * len(columns),
            *rows,
        ]
    )
    print(table)
    if out:
        Path(out).write_text(table + "\n")
    return table
