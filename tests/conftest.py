"""Every process of the test run (pytest, the ``seedsweep`` CLI it starts, that CLI's Ray workers)
knows the test-only model family ``tiny`` (tests/tiny_model.py) through ``SEEDSWEEP_MODELS``; no test
leaves a sweep driver running. Shared helpers live in tests/support.py."""

import os
from pathlib import Path

import pytest

TINY_MODEL = str(Path(__file__).parent / "tiny_model.py")
os.environ["SEEDSWEEP_MODELS"] = os.pathsep.join(filter(None, [os.environ.get("SEEDSWEEP_MODELS"), TINY_MODEL]))


@pytest.fixture(autouse=True)
def no_driver_left():
    """A sweep driver a test started (``support.start_sweep``) and left running is killed with its local Ray."""
    from support import STARTED, finish

    yield
    while STARTED:
        driver = STARTED.pop()
        if driver.poll() is None:
            finish(driver, timeout=0)
