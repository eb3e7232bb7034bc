"""seed_stop: failed seeds leave the pack (its tensors shrink), the others train exactly as without
the stop, audited candidates train to the end, and the stop state survives a checkpoint."""

import io
import time

import numpy as np
import pytest
import torch
from support import fit_crashing_once, kill, seed_runs, seedsweep, start_sweep, wait_for
from tiny_sps import TINY as SPS_TINY
from tolerances import PACKED, STOPPED, near

from analysis.sequential import STOP_SHARE
from trainables import Pack, fit
from trainables.seed_stop import SeedStop
from trainables.seed_stop import audited as ticket

TINY = {**SPS_TINY, "n_train": 64, "success": {"metric": "linear_proj_mse", "below": 0.5}}
# linear_proj_mse of seeds 0-7 at epoch 3 of this config: 0.54 0.70 0.55 0.43 0.60 0.35 0.41 0.66;
# audit 0.25 with salt 30 audits seeds 0 and 3 (trainables.seed_stop.audited): above 0.5 stops 1, 2, 4, 7 and audits 0
STOP = {"metric": "linear_proj_mse", "above": 0.5, "from_epoch": 3, "audit": 0.25, "salt": 30}
METRICS = ("linear_proj_mse", "linear_proj_r2", "recon_mse", "pred_mse", "psnr", "train/total")


def test_fit_stops_failed_seeds_and_leaves_the_others_unchanged():
    plain = fit(TINY, seeds=range(8), epochs=8, device="cpu")
    stopped = fit({**TINY, "seed_stop": STOP}, seeds=range(8), epochs=8, device="cpu")
    status = [r["status"] for r in stopped]
    stops = [r for r in stopped if r["status"] == "stopped"]
    assert len(stops) >= 3, status
    assert all(not r["success"] and r["stopped_epoch"] >= 3 and not r["audit"] for r in stops)
    audited = [r for r in stopped if r["audit"]]
    assert audited and all(r["status"] == "finished" and r["would_stop_epoch"] >= 3 for r in audited)
    assert sorted(r["seed"] for r in audited) == [0] and [s for s in range(8) if ticket(s, 0.25, 30)] == [0, 3]
    for a, b in zip(plain, stopped):
        if b["status"] == "finished":  # ran to the end: the same numbers as without the stop
            assert b["stopped_epoch"] is None
            for key in METRICS:
                assert b[key] == near(a[key], STOPPED), (b["seed"], key)
            assert b["success"] == a["success"]
    # what stopping saves is measured side by side in benchmarks/seed_stopping.py, not timed here


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
    assert rule.decide_on == "recipe" and SeedStop.parse({**STOP, "decide_on": "no_stop"}).decide_on == "no_stop"
    with pytest.raises(ValueError, match="decide_on must be recipe"):
        SeedStop.parse({**STOP, "decide_on": "stopped"})


@pytest.mark.parametrize("share, each", [(0.25, 2), (0.5, 4), (0.3, 2), (1.0, 8), (0.0, 0)])
def test_audit_tickets_are_the_share_asked_in_every_block_of_eight(share, each):
    salts = [0, 1, 7, 2**40 + 3, *np.random.default_rng(0).integers(0, 2**48, 30).tolist()]
    picked = {salt: [s for s in range(64) if ticket(s, share, salt)] for salt in salts}
    for salt, seeds in picked.items():  # exactly round(share * 8) in each block 0..7, 8..15, ...
        assert np.bincount(np.array(seeds, int) // 8, minlength=8).tolist() == [each] * 8, salt
    assert len({tuple(v) for v in picked.values()}) > len(salts) // 2 or each in (0, 8)  # the salt picks them
    resumed = SeedStop.parse({**STOP, "audit": share, "salt": salts[4]})  # a resumed sweep keeps its salt
    assert [s for s in range(64) if resumed.audited(s)] == picked[salts[4]]
    if share == 0.25:  # every seed of a block equally likely over salts
        counts = np.bincount([s % 8 for v in picked.values() for s in v], minlength=8)
        assert counts.min() >= 3, counts


def tiny(name: str) -> dict:
    """A family's test config (as tests/test_models.py)."""
    from trainables.models import MODELS

    return {"model": name, "env": "ball", "n_train": 32, "n_val": 16, **MODELS[name][1].test_sizes}


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
        assert b[term][1:] == near(a[term][1:], PACKED), term
    ra, rb = full.evaluate(), cut.evaluate()
    assert rb[0]["status"] == "stopped"
    for x, y in zip(ra[1:], rb[1:]):
        for key, value in x.items():
            if isinstance(value, float) and value == value:
                assert y[key] == near(value, PACKED), key


def test_spec_field_checked_and_passed_to_the_trials(tmp_path):
    from sweeps import spec as specs

    good = {
        "name": "t",
        "model": "sps",
        "env": "ball",
        "data": {"n_train": 32, "n_val": 16, "frames": 8, "image_size": 16},
        "params": {"rnn_width": 16, "channels": [8, 16]},
        "seeds": 3,
        "epochs": 4,
        "seed_stop": {"metric": "linear_proj_mse", "above": 0.6, "from_epoch": 2, "audit": 0.25},
    }
    spec = specs.from_dict(good)
    assert spec.base_config()["seed_stop"] == {**good["seed_stop"], "patience": 1, "decide_on": "recipe", "salt": 0}
    assert "seed_stop" not in specs.from_dict({k: v for k, v in good.items() if k != "seed_stop"}).base_config()
    adaptive = {**good, "seeds": {"start": 4, "step": 4, "max": 8}}
    recipe = specs.from_dict(adaptive).adaptive  # verdicts on the recipe: no share of alpha for the stops
    assert (recipe.decide_on, recipe.stop_share) == ("recipe", 0) and "with this stop rule" in recipe.describe(
        2, seed_stop=True
    )
    no_stop = specs.from_dict({**adaptive, "seed_stop": {**good["seed_stop"], "decide_on": "no_stop"}}).adaptive
    assert (no_stop.decide_on, no_stop.stop_share) == ("no_stop", STOP_SHARE)  # a share of alpha vouches for stops
    assert "had no seed been stopped" in no_stop.describe(2, seed_stop=True)
    assert specs.from_dict({k: v for k, v in adaptive.items() if k != "seed_stop"}).adaptive.stop_share == 0
    bad = [
        ({"seed_stop": {**good["seed_stop"], "from_epoch": 4}}, "seed_stop.from_epoch: must be below epochs"),
        ({"seed_stop": {**good["seed_stop"], "audit": -0.1}}, "seed_stop: seed_stop.audit must be a share"),
        ({"seed_stop": {"metric": "psnr", "above": 20, "from_epoch": 2, "audit": 0}}, "psnr is better higher"),
        ({"params": {"seed_stop": 1}}, "params.seed_stop: is not a hyperparameter"),
    ]
    for change, message in bad:
        with pytest.raises(specs.SpecError, match=message.replace(".", r"\.")):
            specs.from_dict({**good, **change})


SEEDS, EPOCHS = 8, 6
RAY_STOP = {"metric": "linear_proj_mse", "above": 0.5, "from_epoch": 3, "audit": 0.25, "salt": 30}


@pytest.fixture(scope="module")
def trials(tmp_path_factory):
    """Two trials of one configuration with seed_stop through Tune: one plain, one that crashes
    after epoch 5 (checkpoint at 4, after the stops at 3 and 4) and is restored by Tune."""
    import ray
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("seedstop")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    run = {"seeds": SEEDS, "epochs": EPOCHS, "checkpoint_every": 4, "sweep": "stopsweep", "tracking_uri": uri}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        results = fit_crashing_once(root, {**TINY, "seed_stop": RAY_STOP, "run": run}, crash_after=5, name="s")
    finally:
        ray.shutdown()
    return {"client": MlflowClient(uri), "results": results}


def test_records_of_stopped_and_audited_seeds(trials):
    client, plain = trials["client"], trials["results"][None]
    runs = seed_runs(client, "stopsweep", plain.metrics["trial_id"])
    assert len(runs) == SEEDS
    stopped = [r for r in runs if r.data.tags["status"] == "stopped"]
    assert len(stopped) >= 3 and plain.metrics["n_stopped"] == len(stopped)
    steps = len(range(0, TINY["n_train"] - TINY["batch_size"] + 1, TINY["batch_size"]))
    for r in stopped:
        epoch = int(r.data.tags["stopped_epoch"])
        assert r.info.status == "FINISHED" and r.data.tags["success"] == "false" and r.data.tags["audit"] == "false"
        assert int(r.data.tags["seed_steps_saved"]) == (EPOCHS - epoch) * steps
        for key in ("linear_proj_mse", "train/total"):  # its last metrics are those of the stop
            assert max(m.step for m in client.get_metric_history(r.info.run_id, key)) == epoch
        assert r.data.metrics["linear_proj_mse"] > RAY_STOP["above"]
    audited = [r for r in runs if r.data.tags.get("audit") == "true"]
    assert audited, "seed 0 (salt 30) should be an audited candidate"
    for r in audited:
        assert r.data.tags["status"] == "finished" and int(r.data.tags["would_stop_epoch"]) >= 3
        assert max(m.step for m in client.get_metric_history(r.info.run_id, "linear_proj_mse")) == EPOCHS


def test_restored_trial_keeps_its_stopped_seeds(trials):
    client, plain, crashed = trials["client"], trials["results"][None], trials["results"][5]
    # restored from the checkpoint at epoch 4: two iterations (epochs 5, 6) since the restore (not
    # progress.csv: on restore Ray may bring back an older synced copy of it)
    assert (crashed.metrics["training_iteration"], crashed.metrics["iterations_since_restore"]) == (EPOCHS, 2)
    for x, y in zip(
        seed_runs(client, "stopsweep", plain.metrics["trial_id"]),
        seed_runs(client, "stopsweep", crashed.metrics["trial_id"]),
    ):
        for tag in ("status", "success", "stopped_epoch", "audit", "would_stop_epoch"):
            assert x.data.tags.get(tag) == y.data.tags.get(tag), tag
        for key, value in x.data.metrics.items():
            assert value == pytest.approx(y.data.metrics[key], rel=1e-5, abs=1e-7, nan_ok=True), key
            steps = [m.step for m in client.get_metric_history(y.info.run_id, key)]
            assert len(steps) == len(set(steps)), key  # each epoch once across the restore


def test_sweep_with_seed_stop_runs_resumes_and_analyses(tmp_path):
    """``seedsweep run`` of a spec with seed_stop, its driver killed after the first stops, ``--resume``,
    then ``seedsweep analyze --suggest-seed-stop``: every seed once, stopped seeds stay stopped."""
    from collections import Counter

    import yaml
    from mlflow import MlflowClient

    data = {**{k: TINY[k] for k in ("n_val", "frames", "image_size")}, "n_train": 32}
    params = {k: v for k, v in TINY.items() if k not in (*data, "env", "success")}
    spec = str(tmp_path / "stop.yaml")
    (tmp_path / "stop.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "stop",
                "model": "sps",
                "env": "ball",
                "data": data,
                "params": {**params, "symmetry": {"grid": ["none", "T2R2"]}},
                "seeds": 4,
                "epochs": 5,
                "checkpoint_every": 1,
                "max_concurrent": 1,
                "resources": {"cpu": 1, "gpu": 0},
                "success": TINY["success"],
                "seed_stop": {"metric": "linear_proj_mse", "above": 0.3, "from_epoch": 2, "audit": 0.25},
            }
        )
    )
    dry = seedsweep(tmp_path, "run", spec, "--dry-run", timeout=600).stdout
    assert "seed_stop: stop a seed when linear_proj_mse above 0.3 from epoch 2" in dry
    driver = start_sweep(tmp_path, spec, env={"TUNE_GLOBAL_CHECKPOINT_S": "1"}, output=False)
    checkpoints = lambda: list((tmp_path / "ray_results" / "stop").glob("*/checkpoint_00000[2-9]"))  # noqa: E731
    wait_for("a checkpoint past epoch 1", checkpoints, driver)
    time.sleep(1.5)
    kill(driver)  # the driver and its local Ray die after the first stops
    assert "sweep 'stop' finished: 2 trials" in seedsweep(tmp_path, "run", spec, "--resume", timeout=600).stdout

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    exp = client.get_experiment_by_name("stop").experiment_id
    seeds = client.search_runs([exp], "tags.`seedsweep.kind` = 'seed'", max_results=1000)
    assert Counter((r.data.tags["config_id"], r.data.tags["seed"]) for r in seeds).most_common(1)[0][1] == 1
    assert len(seeds) == 8
    stopped = [r for r in seeds if r.data.tags["status"] == "stopped"]
    assert stopped and all(r.data.tags["status"] in ("stopped", "finished") for r in seeds)
    for r in seeds:
        steps = sorted(m.step for m in client.get_metric_history(r.info.run_id, "train/total"))
        end = int(r.data.tags["stopped_epoch"]) if r in stopped else 5
        assert steps == list(range(1, end + 1)), (r.data.tags, steps)  # none doubled, none after the stop
    salt = int(client.get_experiment(exp).tags["seedsweep.audit_salt"])  # drawn at the start, kept on resume
    for r in seeds:  # every candidate before and after the kill held the ticket of that salt, or none
        if r.data.tags["status"] == "stopped" or r.data.tags.get("audit") == "true":
            assert ticket(int(r.data.tags["seed"]), 0.25, salt) == (r.data.tags.get("audit") == "true"), r.data.tags

    out = seedsweep(tmp_path, "analyze", "stop", "--suggest-seed-stop", timeout=600).stdout
    assert "corrected 95%" in out and "stopped" in out and "seed-steps saved" in out
    assert "seed_stop: {metric: linear_proj_mse" in out or "no seed_stop rule" in out
    assert (tmp_path / "reports" / "stop" / "report.html").read_text().count("corrected 95%") >= 1


def test_per_seed_training_sets_leave_with_their_seed():
    config = {**tiny("sps"), "data_seed": "per_seed"}
    full, cut = Pack(config, [0, 1, 2], device="cpu"), Pack(config, [0, 1, 2], device="cpu")
    full.train_epoch()
    cut.train_epoch()
    cut.stopped[1] = {**cut.evaluate()[1], "status": "stopped", "success": False, "stopped_epoch": 1}
    cut._shrink(cut.active)
    assert cut.train_x.shape[0] == 2
    a, b = full.train_epoch(), cut.train_epoch()
    assert [b["total"][0], b["total"][2]] == pytest.approx([a["total"][0], a["total"][2]], rel=1e-4)
