"""Where a trial trains, given the share of a GPU it asked Ray for (``RunOptions.gpu``).

Ray sets ``CUDA_VISIBLE_DEVICES`` to the cards it gave a GPU trial, but no longer blanks it for a
trial that asked for none (ray#54868), so a ``gpu: 0`` trial on a GPU node would see CUDA and, by
the Pack's default, train on GPU 0 unaccounted. And a fractional GPU is only a scheduling label:
Ray does not isolate memory, so one large pack could take its neighbours' share.

- ``gpu == 0``: CUDA is hidden from the process (before torch initialises it) and the pack trains
  on the CPU;
- ``0 < gpu < 1``: the process's CUDA memory is capped at that share of the card
  (``torch.cuda.set_per_process_memory_fraction``): a pack that needs more fails alone with an
  out-of-memory error instead of starving the trials beside it;
- ``gpu == 1`` or ``None`` (not placed by a sweep): the Pack's own default device.
"""

from __future__ import annotations

import os

import torch


def place(gpu: float | None, device: str | None = None) -> str | None:
    """The device a trial's Pack trains on (``None``: the Pack's default), after hiding CUDA from a
    CPU trial or capping a fractional trial's CUDA memory. ``device`` is the config's own choice."""
    if gpu == 0:
        if device not in (None, "cpu"):
            raise ValueError(f"device {device!r} needs resources.gpu > 0 (the trial was given no GPU)")
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # torch reads it when CUDA first initialises
        return "cpu"
    if gpu is not None and 0 < gpu < 1 and device != "cpu" and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(gpu, torch.cuda.current_device())
    return device
