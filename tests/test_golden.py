"""SPS reproduces the numbers its code gave before the model interface (``tests/golden/``, written by
``tests/golden/make_sps_golden.py``): the epoch losses and final metrics of seeds 0-3, and the
checkpoint that code wrote after epoch 2 restores and finishes the run to the same numbers."""

import json
from pathlib import Path

import pytest
import torch
from tolerances import GOLDEN as TOL
from tolerances import near

from trainables import Pack

GOLDEN = Path(__file__).parent / "golden"


def check(results: list[dict], want: list[dict]) -> None:
    for got, ref in zip(results, want, strict=True):
        assert got.keys() == ref.keys()
        for key, value in ref.items():
            assert got[key] == (near(value, TOL) if isinstance(value, float) else value), (
                ref["seed"],
                key,
            )


def check_losses(losses: dict, want: dict) -> None:
    assert losses.keys() == want.keys()
    for term, values in want.items():
        assert losses[term] == near(values, TOL), term


@pytest.fixture(scope="module")
def golden():
    return json.loads((GOLDEN / "sps.json").read_text())


def test_sps_reproduces_the_golden_run(golden):
    pack = Pack(golden["config"], golden["seeds"], device="cpu")
    for want in golden["losses"]:
        check_losses(pack.train_epoch(), want)
    assert pack.step == golden["epochs"] * golden["steps_per_epoch"]
    pack.finish()
    check(pack.evaluate(), golden["results"])


def test_checkpoint_of_the_golden_run_restores_and_finishes_it(golden):
    pack = Pack(golden["config"], golden["seeds"], device="cpu")
    pack.load_state_dict(torch.load(GOLDEN / "sps_pack.pt", weights_only=False))
    assert pack.epoch == golden["checkpoint_epoch"]
    for want in golden["losses"][golden["checkpoint_epoch"] :]:
        check_losses(pack.train_epoch(), want)
    pack.finish()
    check(pack.evaluate(), golden["results"])


@pytest.mark.parametrize("change", [{"z_loss_weight": 2.02}, {"beta": 0.0101}, {"symmetry_loss_weight": 2.02}])
def test_the_golden_fails_a_loss_weight_changed_by_one_percent(golden, change):
    """The tolerance is wide enough for any CPU's kernels, and still far too narrow for a changed loss."""
    pack = Pack({**golden["config"], **change}, golden["seeds"], device="cpu")
    with pytest.raises(AssertionError):
        for want in golden["losses"]:
            check_losses(pack.train_epoch(), want)
        pack.finish()
        check(pack.evaluate(), golden["results"])
