# seedsweep: `make sweep` runs the quickstart sweep, `make test` the test suite, `make bench` the benchmarks.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
BENCHES = envs_throughput train_throughput analysis_load adaptive_seeds tracking_load seed_stopping sweep_under_load

.PHONY: install sweep test bench gpu-wheels clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned to the local CPU wheel unless TORCH says otherwise, so that the
# project's plain `torch` requirement does not pull a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

sweep: $(STAMP)
	@test -f sweeps/quickstart.yaml || { echo "make sweep: the sweep runner is not built yet (sweeps/quickstart.yaml is missing)"; exit 1; }
	$(VENV)/bin/seedsweep run sweeps/quickstart.yaml

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Each benchmark prints a small markdown table; copy it into benchmarks/README.md with its date and machine.
bench: $(STAMP)
	@for b in $(BENCHES); do echo "== $$b"; $(PY) benchmarks/$$b.py || exit 1; done

# The wheels a GPU machine without this project's stack needs for benchmarks/gpu_check.sh (carried as .whl/).
GPU_WHEELS = gymnasium farama-notifications platformdirs
gpu-wheels: $(STAMP)
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
		$$($(PY) -c "import importlib.metadata as m; print(*(f'{p}=={m.version(p)}' for p in '$(GPU_WHEELS)'.split()))")

clean:
	rm -rf $(VENV) .pytest_cache ray_results mlruns.db mlruns.db.lock mlartifacts reports
