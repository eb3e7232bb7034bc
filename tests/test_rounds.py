"""Adaptive seeds end to end: ``seedsweep run`` in rounds against a real local Ray and MLflow store,
killed between rounds and resumed, then ``seedsweep analyze``."""

import os
import signal
import subprocess
import time
from collections import Counter

import pytest

from sweeps import spec as specs
from test_sweep import BIN, TINY, runs, seedsweep, write_spec

# lr 1e-9 cannot learn and lr 3e-2 learns in 2 epochs (recon_mse ~0.25 against ~0.004): every seed of the one fails the rule and every
# seed of the other meets it, so at alpha 0.05 / 2 the intervals separate at 12 seeds (round 3 of 4).
ADAPTIVE = dict(
    name="rounds", epochs=2, max_concurrent=2, seeds={"start": 4, "step": 4, "max": 16, "until": "separated"},
    data={**TINY["data"], "n_train": 64}, params={**TINY["params"], "symmetry": "none", "lr": {"grid": [3e-2, 1e-9]}},
    success={"metric": "recon_mse", "below": 0.1},
)  # fmt: skip


def test_adaptive_seeds_in_the_spec(tmp_path):
    spec = specs.from_dict({**TINY, **ADAPTIVE})
    assert spec.seeds == 4 and spec.adaptive.max == 16 and spec.adaptive.until == "separated"
    wide = specs.from_dict({**TINY, "seeds": {"start": 8, "step": 8, "max": 64, "until": {"halfwidth": 0.1}}})
    assert wide.adaptive.until == "halfwidth" and wide.adaptive.halfwidth == 0.1
    assert specs.from_dict(TINY).adaptive is None  # a count is the fixed design
    for seeds, field, words in [
        ({"start": 4, "step": 4}, "seeds.max", "integer >= 1"),
        ({"start": 8, "step": 4, "max": 4}, "seeds.max", "at least seeds.start"),
        ({"start": 4, "step": 4, "max": 8, "until": "converged"}, "seeds.until", "separated or {halfwidth: H}"),
        ({"start": 4, "step": 4, "max": 8, "until": {"halfwidth": 0.7}}, "seeds.until.halfwidth", "(0, 0.5)"),
        ({"start": 4, "step": 4, "max": 8, "patience": 2}, "seeds.patience", "unknown"),
    ]:  # fmt: skip
        with pytest.raises(specs.SpecError, match=field) as err:
            specs.from_dict({**TINY, "seeds": seeds})
        assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_rounds_end_to_end_killed_between_rounds(tmp_path):
    spec = write_spec(tmp_path, **ADAPTIVE)
    dry = seedsweep(tmp_path, "run", spec, "--dry-run").stdout
    assert "until separated" in dry and "seed blocks 0..3, 4..7, 8..11, 12..15" in dry and "seed runs: 8 to 32" in dry

    env = {**os.environ, "SEEDSWEEP_CACHE": str(tmp_path / "cache")}
    driver = subprocess.Popen([str(BIN / "seedsweep"), "run", spec], cwd=tmp_path, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    marker = tmp_path / "ray_results" / "rounds" / "round_01" / "seedsweep_done.json"
    deadline = time.time() + 240
    while time.time() < deadline and not marker.exists():
        assert driver.poll() is None, "the sweep ended before it could be killed"
        time.sleep(0.1)
    os.killpg(driver.pid, signal.SIGKILL)  # between round 1 and round 2
    driver.wait()
    assert {r.data.tags["seed"] for r in runs(tmp_path, "rounds", "seed")} <= {"0", "1", "2", "3"}

    plain = seedsweep(tmp_path, "run", spec, check=False)
    assert plain.returncode == 2 and "--resume" in plain.stderr
    out = seedsweep(tmp_path, "run", spec, "--resume").stdout
    assert "round 2 done" in out and "round 3 done" in out and "none open" in out and "round 4" not in out
    assert "below best" in out and "best, separated from all" in out
    seeds = runs(tmp_path, "rounds", "seed")
    keys = Counter((r.data.tags["config_id"], int(r.data.tags["seed"])) for r in seeds)
    assert set(keys.values()) == {1} and len(keys) == 24  # every (configuration, seed) once: 12 seeds each
    assert {seed for _, seed in keys} == set(range(12))
    assert "already finished" in seedsweep(tmp_path, "run", spec).stdout
    assert len(runs(tmp_path, "rounds", "seed")) == 24  # not redone

    analyzed = seedsweep(tmp_path, "analyze", "rounds").stdout
    assert "anytime 95%" in analyzed and "not valid under adaptive stopping" in analyzed
    page = (tmp_path / "reports" / "rounds" / "report.html").read_text()
    assert "after round 3" in page and "below best" in page and "anytime_intervals.png" in page
