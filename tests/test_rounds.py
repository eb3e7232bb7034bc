"""Adaptive seeds end to end: ``seedsweep run`` in rounds against a real local Ray and MLflow store,
killed between rounds and resumed, then ``seedsweep analyze``."""

import dataclasses
import json
import re
from collections import Counter

import pytest
from mlflow import MlflowClient
from support import ADAPTIVE, SPEC_TINY, frame, kill, runs, seedsweep, start_sweep, wait_for, write_spec, write_sweep

from sweeps import rounds, runner
from sweeps import spec as specs


def test_adaptive_seeds_in_the_spec_and_the_plan():
    spec = specs.from_dict({**SPEC_TINY, **ADAPTIVE})
    assert spec.seeds == 8 and spec.adaptive.max == 64 and spec.adaptive.until == "decided"
    dry = runner.plan(spec)  # what --dry-run prints
    assert "until decided" in dry and "Holm step-down over 2 configurations" in dry
    assert "seed blocks 0..7, 8..15, 16..23" in dry and "seed runs: 16 to 128" in dry
    assert "failed seeds are retried" in dry
    from analysis.planning import power

    assert "latent correlation 0.5" in dry and "tell 0.2 from 0.45; 0.5 from 0.75" in dry  # paired planning
    assert power(0.2, 0.45, 64, test="mcnemar", rho=0.5) >= 0.8 > power(0.2, 0.4, 64, test="mcnemar", rho=0.5)
    old = specs.from_dict({**SPEC_TINY, "seeds": {"start": 4, "step": 4, "max": 16, "until": "separated"}})
    assert "until separated" in runner.plan(old) and "0.025 each over 2 configurations" in runner.plan(old)
    tie = specs.from_dict({**SPEC_TINY, "seeds": {"start": 8, "step": 8, "max": 64, "margin": 0.1}})
    assert tie.adaptive.until == "decided" and tie.adaptive.margin == 0.1 and "tied within +-0.1" in runner.plan(tie)
    wide = specs.from_dict({**SPEC_TINY, "seeds": {"start": 8, "step": 8, "max": 64, "until": {"halfwidth": 0.1}}})
    assert wide.adaptive.until == "halfwidth" and wide.adaptive.halfwidth == 0.1
    assert specs.from_dict(SPEC_TINY).adaptive is None  # a count is the fixed design
    for seeds, field, words in [
        ({"start": 4, "step": 4}, "seeds.max", "integer >= 1"),
        ({"start": 8, "step": 4, "max": 4}, "seeds.max", "at least seeds.start"),
        (
            {"start": 4, "step": 4, "max": 8, "until": "converged"},
            "seeds.until",
            "decided, separated or {halfwidth: H}",
        ),
        ({"start": 4, "step": 4, "max": 8, "until": "separated", "margin": 0.1}, "seeds.margin", "until: decided"),
        ({"start": 4, "step": 4, "max": 8, "margin": 1.5}, "seeds.margin", "(0, 1)"),
        ({"start": 4, "step": 4, "max": 8, "until": {"halfwidth": 0.7}}, "seeds.until.halfwidth", "(0, 0.5)"),
        ({"start": 4, "step": 4, "max": 8, "patience": 2}, "seeds.patience", "unknown"),
    ]:
        with pytest.raises(specs.SpecError, match=field) as err:
            specs.from_dict({**SPEC_TINY, "seeds": seeds})
        assert words in str(err.value) and "\n" not in str(err.value)


def test_a_later_round_trains_each_configuration_on_its_own_seeds(monkeypatch):
    """Rounds 2+ give each configuration its seeds (the next block and its failed ones again) beside
    its swept values; the seeds are a run option, so they go under config["run"]."""
    import trainables.train

    seen = []
    monkeypatch.setattr(trainables.train, "train", seen.append)
    config = {"model": "sps", "lr": 0.1, "run": {"seeds": [4, 5], "epochs": 1}}
    rounds.train_configuration({**config, "configuration": {"symmetry": "none", "seeds": [2, 4, 5]}})
    assert seen == [{"model": "sps", "lr": 0.1, "symmetry": "none", "run": {"seeds": [2, 4, 5], "epochs": 1}}]


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_rounds_end_to_end_killed_between_rounds(tmp_path):
    """Five CLI calls, four Ray sessions, three rounds: 8-10 min on the shared, busy 2-core machine."""
    spec = write_spec(tmp_path, **ADAPTIVE)
    driver = start_sweep(tmp_path, spec, output=False)
    marker = tmp_path / "ray_results" / "rounds" / "round_01" / "seedsweep_done.json"
    wait_for("round 1's done marker", marker.exists, driver, timeout=240, every=0.1)
    kill(driver)  # between round 1 and round 2
    assert {r.data.tags["seed"] for r in runs(tmp_path, "rounds", "seed")} <= {str(s) for s in range(8)}

    plain = seedsweep(tmp_path, "run", spec, check=False)
    assert plain.returncode == 2 and "--resume" in plain.stderr
    out = seedsweep(tmp_path, "run", spec, "--resume", timeout=900).stdout  # round 2
    assert "round 2 done" in out and "none open" in out and "round 3" not in out
    assert "worse than" in out and "better than all" in out
    seeds = runs(tmp_path, "rounds", "seed")
    keys = Counter((r.data.tags["config_id"], int(r.data.tags["seed"])) for r in seeds)
    assert set(keys.values()) == {1} and len(keys) == 32  # every (configuration, seed) once: 16 seeds each
    assert {seed for _, seed in keys} == set(range(16))
    assert {r.data.tags["device"] for r in seeds} == {"cpu"} and {r.data.tags["precision"] for r in seeds} == {"fp32"}
    assert "already finished" in seedsweep(tmp_path, "run", spec).stdout
    assert len(runs(tmp_path, "rounds", "seed")) == 32  # not redone

    analyzed = seedsweep(tmp_path, "analyze", "rounds").stdout
    assert "anytime 95%" in analyzed and "not valid under adaptive stopping" in analyzed
    assert "Wilson" not in analyzed.splitlines()[0] and "verdict" in analyzed.splitlines()[0]
    page = (tmp_path / "reports" / "rounds" / "report.html").read_text()
    assert "after round 2" in page and "worse than" in page and "anytime_intervals.png" in page


@pytest.mark.slow  # ~2-3 min on 2 cores: three CLI calls
def test_a_driver_killed_as_round_2_begins_with_a_retried_seed_in_flight(tmp_path):
    """Round 1's width-2 trial fails at its first step (tests/tiny_model.py's TINY_FAIL_WHILE), so round 2
    retries its seeds 0-3 beside the block 4-7. The driver is killed once a retried seed's run of
    round 2 exists, and Tune's state of the round is taken away (as if the driver died before Tune
    saved it): the resume deletes that lost attempt and runs the plan again. Every (configuration,
    seed) ends counted exactly once; the failed round-1 runs stay as failed attempts."""
    from tiny_model import FAIL_WHILE

    from trainables.records import COUNTED, ROUND_TAG

    flag = tmp_path / "fail"
    flag.touch()
    spec = write_spec(
        tmp_path,
        name="retry",
        model="tiny",
        data={"n_train": 32, "n_val": 16, "frames": 4, "image_size": 8, "data_seed": 0},
        params={"width": {"grid": [2, 4]}},
        seeds={"start": 4, "step": 4, "max": 8, "until": "decided"},
        epochs=2,
        max_failures=0,
        max_concurrent=2,
        success={"metric": "pooled_mse", "below": 0.05},
    )
    env = {FAIL_WHILE: str(flag)}
    driver = start_sweep(tmp_path, spec, env=env, output=False)
    folder = tmp_path / "ray_results" / "retry"
    wait_for("round 1's done marker", (folder / "round_01" / "seedsweep_done.json").exists, driver, 240, 0.05)
    flag.unlink()  # round 2's packs train

    def retried_in_flight():
        return [
            r
            for r in runs(tmp_path, "retry", "seed")
            if r.data.tags.get(ROUND_TAG) == "2" and r.data.params.get("width") == "2" and r.data.tags["seed"] == "0"
        ]

    wait_for("a retried seed's run of round 2", retried_in_flight, driver, 240, 0.05)
    kill(driver)
    for state in (folder / "round_02").glob("experiment_state-*"):
        state.unlink()  # Tune had not saved the round
    plan = json.loads((folder / "round_02" / "plan.json").read_text())
    assert sorted(len(c["seeds"]) for c in plan) == [4, 8] and {0, 1, 2, 3} < set(max(plan, key=len)["seeds"])

    out = seedsweep(tmp_path, "run", spec, "--resume", timeout=400, env=env).stdout
    assert "round 2 done" in out and "seed runs of round 2 that Tune did not record" in out
    assert re.search(r"\[retry\] trials done 2/2; seeds succeeded so far \d+/12\n", out)  # 8 + 4: retried seeds count
    seeds = runs(tmp_path, "retry", "seed")
    counted = Counter(
        (r.data.params["width"], int(r.data.tags["seed"])) for r in seeds if r.data.tags["status"] in COUNTED
    )
    assert counted == {(w, s): 1 for w in ("2", "4") for s in range(8)}  # every (configuration, seed) once
    failed = sorted(
        (r.data.tags[ROUND_TAG], int(r.data.tags["seed"])) for r in seeds if r.data.tags["status"] == "failed"
    )
    assert failed == [("1", s) for s in range(4)]  # round 1's attempts of the retried seeds, kept
    assert not [r for r in seeds if r.data.tags["status"] == "running"]
    table = seedsweep(tmp_path, "analyze", "retry").stdout
    assert table.count("/8 ") == 2, table  # both configurations counted at 8 seeds


def test_analysis_of_an_adaptive_sweep_leads_with_anytime_quantities(tmp_path):
    """A store written in the trainable's layout with the design tagged: c0 fails all 16 seeds, c1
    meets the rule with all 16 (ADAPTIVE's design decides at round 2, as in the sweep above)."""
    from mlflow import MlflowClient

    from analysis.confidence import confidence_sequence
    from analysis.report import format_table, write_report
    from analysis.success import success_table
    from trainables.records import DESIGN_TAG

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    write_sweep(
        uri,
        "adaptive",
        {"c0": ({"lr": 1e-9}, [("finished", 0.9)] * 16), "c1": ({"lr": 0.05}, [("finished", 0.05)] * 16)},
    )
    client = MlflowClient(uri)
    design = specs.from_dict({**SPEC_TINY, **ADAPTIVE}).adaptive
    client.set_experiment_tag(
        client.get_experiment_by_name("adaptive").experiment_id, DESIGN_TAG, json.dumps(design.to_dict())
    )

    table = write_report(uri, "adaptive", tmp_path / "report")
    assert list(table.columns[table.columns.get_loc("rate") + 1 :][:2]) == ["anytime_low", "anytime_high"]
    # the running intersection over rounds 1 (0 of 8) and 2 (0 of 16), at alpha 0.05 over 2
    assert table["anytime_high"].iloc[0] == pytest.approx(confidence_sequence(0, 16, 0.025)[1])
    assert list(table["verdict"]) == ["worse", "best"] and table["p_anytime"].iloc[0] < 0.05
    text = format_table(table)
    header = text.splitlines()[0]
    assert "anytime 95%" in header and "verdict" in header and "p vs best (anytime)" in header
    assert "Wilson" not in header and "CP 95%" not in header and "P(best), Bayes" in header
    assert "not valid under adaptive stopping" in text
    page = (tmp_path / "report" / "report.html").read_text()
    assert "after round 2" in page and "worse than c1" in page and "better than all" in page
    assert (tmp_path / "report" / "anytime_intervals.png").stat().st_size > 0
    assert "anytime_low" not in success_table(frame({"a": [("finished", True)] * 3}))  # fixed seeds: as before


def test_adaptive_analysis_corrects_for_stopped_seeds(tmp_path):
    """seed_stop in an adaptive sweep, through a real MLflow store: c1 meets the rule on all 16
    seeds; c0 fails all 16, 12 of them stopped. With none of c0's candidates audited, its stopped
    seeds may all have succeeded: not worse, its anytime upper end counts them; with half of the
    candidates audited (and failed) the audit vouches for the stops: worse."""

    from analysis.adaptive import sweep_table
    from analysis.confidence import confidence_sequence
    from analysis.report import format_table
    from analysis.runs import load_runs
    from trainables.records import DESIGN_TAG

    design = specs.from_dict(
        {
            **SPEC_TINY,
            **ADAPTIVE,
            "epochs": 2,
            "seed_stop": {"metric": "recon_mse", "above": 0.2, "from_epoch": 1, "audit": 0.5, "decide_on": "no_stop"},
        }
    ).adaptive
    for audited in (False, True):
        uri, name = f"sqlite:///{tmp_path / f'{audited}.db'}", f"stops_{audited}"
        c0 = [("finished", 0.9)] * 4
        for seed in range(4, 16):
            audit = audited and seed % 2 == 0
            tags = {"audit": "true", "would_stop_epoch": "1"} if audit else {"stopped_epoch": "1", "audit": "false"}
            c0.append(("finished" if audit else "stopped", 0.9, tags))
        write_sweep(uri, name, {"c0": ({"lr": 1e-9}, c0), "c1": ({"lr": 0.05}, [("finished", 0.05)] * 16)})
        client = MlflowClient(uri)
        client.set_experiment_tag(
            client.get_experiment_by_name(name).experiment_id, DESIGN_TAG, json.dumps(design.to_dict())
        )
        table = sweep_table(load_runs(uri, name)).set_index("config_id")
        steps = table.attrs["history"].groupby("config_id").tail(1).set_index("config_id")
        if audited:
            # 6 of 12 candidates seen failing still allow all 6 stops at this level (1/924 vs alpha 0.01 / 16)
            assert steps.at["c0", "stopped"] == 6 and steps.at["c0", "possible"] <= 6
            assert table.at["c0", "verdict"] == "worse" and table.at["c0", "p_anytime"] < 0.05
        else:
            assert steps.at["c0", "stopped"] == steps.at["c0", "possible"] == 12
            assert table.at["c0", "verdict"] != "worse" and table.at["c0", "p_anytime"] > 0.05  # p agrees
            # rounds 1 and 2: 0 seen + 4, then + 12 that may have succeeded; the tighter upper end holds
            upper = min(confidence_sequence(w, n, design.test_alpha / 2)[1] for w, n in ((4, 8), (12, 16)))
            assert table.at["c0", "anytime_high"] == pytest.approx(upper)
            text = format_table(table.reset_index())
            assert "stopped" in text.splitlines()[0] and "corrected 95%" not in text  # no fixed-n interval
            assert "the anytime interval's upper end counts" in text and "alpha 0.04 / 2 each" in text
    recipe = dataclasses.replace(design, decide_on="recipe", stop_share=0.0)  # the default: on the recipe
    client.set_experiment_tag(
        client.get_experiment_by_name(name).experiment_id, DESIGN_TAG, json.dumps(recipe.to_dict())
    )
    table = sweep_table(load_runs(uri, name)).set_index("config_id")  # the audited sweep, as the recipe sees it
    assert table.at["c0", "verdict"] == "worse" and table.attrs["history"]["possible"].eq(0).all()
    text = format_table(table.reset_index())
    assert "on the success rate of training with this stop rule" in text and "too few audited candidates" in text
    assert "the rate had no seed been stopped, corrected 95%" in text and "alpha 0.05 / 2 each" in text


def test_guards_of_adaptive_seeds():
    """ASHA is refused with adaptive seeds; rounds on other devices or precisions are refused unless
    allowed; a failed seed without a counted run is given again in the next round."""
    import pandas as pd

    from sweeps.rounds import check_settings, retried

    with pytest.raises(specs.SpecError, match="scheduler") as err:
        specs.from_dict({**SPEC_TINY, **ADAPTIVE, "scheduler": {"grace_period": 1}})
    assert "pruned configuration" in str(err.value)
    spec = specs.from_dict({**SPEC_TINY, **ADAPTIVE})
    rows = pd.DataFrame(
        {
            "config_id": ["c0"] * 4,
            "seed": [0, 1, 2, 9],
            "status": ["finished", "failed", "failed", "finished"],
            "device": ["cpu", "cpu", None, "cuda NVIDIA H100"],
            "precision": ["fp32", "fp32", None, "bf16"],
        }
    )
    with pytest.raises(RuntimeError, match="--allow-mixed") as err:
        check_settings(rows, spec)
    assert "cpu fp32" in str(err.value) and "cuda NVIDIA H100 bf16" in str(err.value)
    check_settings(rows.iloc[:3], spec)  # one setting among the counted seeds: fine
    rows.loc[4] = ["c0", 2, "finished", "cpu", "fp32"]  # seed 2 was retried and counted
    assert retried(rows, spec.adaptive, "c0", 1) == [1]
