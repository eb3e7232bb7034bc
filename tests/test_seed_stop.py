"""seed_stop: failed seeds leave the pack (its tensors shrink), the others train exactly as without
the stop, audited candidates train to the end, and the stop state survives a checkpoint."""

import io
import time

import pytest
import torch

from trainables import Pack, fit
from trainables.seed_stop import SeedStop, audit_draw

TINY = {
    "env": "ball",
    "n_train": 64,
    "n_val": 16,
    "frames": 8,
    "image_size": 16,
    "channels": [8, 16, 16],
    "dec_hidden": [16],
    "rnn_width": 32,
    "batch_size": 16,
    "rnn_min_context": 3,
    "grad_clip": 1.0,
    "lr": 3e-3,
    "success": {"metric": "linear_proj_mse", "below": 0.5},
}
# linear_proj_mse of seeds 0-7 at epoch 3 of this config: 0.54 0.70 0.55 0.43 0.60 0.35 0.41 0.66;
# audit 0.25 audits seeds 0 and 3 (audit_draw 0.17, 0.01): above 0.5 stops 1, 2, 4, 7 and audits 0
STOP = {"metric": "linear_proj_mse", "above": 0.5, "from_epoch": 3, "audit": 0.25}
METRICS = ("linear_proj_mse", "linear_proj_r2", "recon_mse", "pred_mse", "psnr", "train/total")


def test_fit_stops_failed_seeds_and_leaves_the_others_unchanged():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the timing compares like with like on a shared machine
    try:
        t0 = time.perf_counter()
        plain = fit(TINY, seeds=range(8), epochs=8, device="cpu")
        t1 = time.perf_counter()
        stopped = fit({**TINY, "seed_stop": STOP}, seeds=range(8), epochs=8, device="cpu")
        t2 = time.perf_counter()
    finally:
        torch.set_num_threads(threads)
    status = [r["status"] for r in stopped]
    stops = [r for r in stopped if r["status"] == "stopped"]
    assert len(stops) >= 3, status
    assert all(not r["success"] and r["stopped_epoch"] >= 3 and not r["audit"] for r in stops)
    audited = [r for r in stopped if r["audit"]]
    assert audited and all(r["status"] == "finished" and r["would_stop_epoch"] >= 3 for r in audited)
    assert all(audit_draw(r["seed"]) < 0.25 for r in audited)
    for a, b in zip(plain, stopped):
        if b["status"] == "finished":  # ran to the end: the same numbers as without the stop
            assert b["stopped_epoch"] is None
            for key in METRICS:
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (b["seed"], key)
            assert b["success"] == a["success"]
    assert t2 - t1 < t1 - t0, (t2 - t1, t1 - t0)


def test_stopped_seeds_leave_the_stacked_tensors_and_a_checkpoint_keeps_them_out():
    config = {**TINY, "seed_stop": {**STOP, "from_epoch": 1, "audit": 0.0}}
    pack = Pack(config, list(range(4)), device="cpu")
    pack.train_epoch()
    results = pack.stop_seeds(pack.evaluate())
    stopped = [r["seed"] for r in results if r["status"] == "stopped"]
    assert stopped and len(stopped) < 4
    S = 4 - len(stopped)
    assert all(p.shape[0] == S for p in pack.model.parameters())
    assert all(s["exp_avg"].shape[0] == S for s in pack.optimizer.state.values())
    pack.train_epoch()
    buffer = io.BytesIO()
    torch.save(pack.state_dict(), buffer)  # as a checkpoint: no tensor shared with the live pack
    buffer.seek(0)
    resumed = Pack(config, list(range(4)), device="cpu")
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    assert resumed.held == pack.held and set(resumed.stopped) == set(pack.stopped)
    pack.train_epoch()
    resumed.train_epoch()
    a, b = pack.evaluate(), resumed.evaluate()
    assert [r["status"] for r in a] == [r["status"] for r in b]
    for x, y in zip(a, b):
        assert x["linear_proj_mse"] == pytest.approx(y["linear_proj_mse"], rel=1e-5)


@pytest.mark.parametrize(
    "rule, problem",
    [
        ({"metric": "linear_proj_mse", "above": 0.5, "from_epoch": 0, "audit": 0.1}, "from_epoch"),
        ({"metric": "linear_proj_mse", "above": 0.5, "from_epoch": 2, "audit": 1.5}, "audit"),
        ({"metric": "linear_proj_mse", "below": 0.5, "from_epoch": 2, "audit": 0.1}, "better lower"),
        ({"metric": "nope", "above": 0.5, "from_epoch": 2, "audit": 0.1}, "not a metric"),
        ({"metric": "linear_proj_mse", "from_epoch": 2, "audit": 0.1}, "above / below"),
        ({"metric": "linear_proj_mse", "above": 0.5, "from_epoch": 2, "audit": 0.1, "x": 1}, "unknown key"),
        ({"metric": "linear_proj_mse", "above": 0.5, "from_epoch": 2, "audit": 0.1, "patience": 0}, "patience"),
    ],
)
def test_rule_errors_name_the_field(rule, problem):
    from trainables import resolve_config

    with pytest.raises(ValueError, match=problem) as err:
        resolve_config({**TINY, "seed_stop": rule})
    assert "seed_stop" in str(err.value)


def test_rule_parse_and_audit_is_by_seed_number():
    rule = SeedStop.parse({**STOP, "patience": 2})
    assert rule.failing(0.6) and not rule.failing(0.4) and rule.failing(float("nan"))
    assert SeedStop.parse(rule.as_dict()) == rule
    share = sum(SeedStop.parse({**STOP, "audit": 0.3}).audited(s) for s in range(2000)) / 2000
    assert share == pytest.approx(0.3, abs=0.04)


def tiny(name: str) -> dict:
    """A family's test config (as tests/test_models.py)."""
    import sys

    from trainables.models import MODELS

    module = sys.modules[MODELS[name][1].__module__]
    return {"model": name, "env": "ball", "n_train": 32, "n_val": 16, **getattr(module, "TINY", {})}


def family_names():
    from trainables.models import MODELS

    return sorted(MODELS)


@pytest.mark.parametrize("name", family_names())
def test_every_family_shrinks_to_the_same_numbers(name):
    """Seed 0 leaves a pack of 0, 1, 2 after an epoch; 1 and 2 then train as in the full pack."""
    full, cut = Pack(tiny(name), [0, 1, 2], device="cpu"), Pack(tiny(name), [0, 1, 2], device="cpu")
    full.train_epoch()
    cut.train_epoch()
    cut.stopped[0] = {**cut.evaluate()[0], "status": "stopped", "success": False, "stopped_epoch": 1}
    cut._shrink(cut.active)
    assert all(p.shape[0] == 2 for p in cut.model.parameters())
    a, b = full.train_epoch(), cut.train_epoch()
    for term in a:
        assert b[term][1:] == pytest.approx(a[term][1:], rel=1e-4, abs=1e-6), term
    ra, rb = full.evaluate(), cut.evaluate()
    assert rb[0]["status"] == "stopped"
    for x, y in zip(ra[1:], rb[1:]):
        for key, value in x.items():
            if isinstance(value, float) and value == value:
                assert y[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
