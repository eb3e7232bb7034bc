"""Every process of the test run (pytest, the ``seedsweep`` CLI it starts, that CLI's Ray workers)
knows the test-only model family ``tiny`` (tests/tiny_model.py) through ``SEEDSWEEP_MODELS``."""

import os
from pathlib import Path

TINY_MODEL = str(Path(__file__).parent / "tiny_model.py")
os.environ["SEEDSWEEP_MODELS"] = os.pathsep.join(filter(None, [os.environ.get("SEEDSWEEP_MODELS"), TINY_MODEL]))
