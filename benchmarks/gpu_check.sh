#!/usr/bin/env bash
# The GPU checks in one call of about 8 minutes, the essential rows first, every table and log
# saved to $OUT (the device tool's output folder; else ./gpu_out) as it goes, so a call cut short
# still returns what it measured. The machine needs torch with CUDA, numpy, pyarrow, pyyaml, pytest;
# gymnasium, Farama-Notifications and platformdirs come as wheels in .whl/ (`make gpu-wheels` here,
# then carry .whl).
#
#   bash benchmarks/gpu_check.sh            # all parts in turn (~8 min)
#   bash benchmarks/gpu_check.sh probe      # throughput of the probe model (symmetry none): baselines, packs (~4 min)
#   bash benchmarks/gpu_check.sh tests      # pytest -m gpu: fast path vs fp32 per model, CUDA graphs, no host sync, 16-seed success (~3 min)
#   bash benchmarks/gpu_check.sh sps        # throughput of SPS's shipped ball model (T2R2) (~1 min)
#
# SIZES, VARIANTS, SEPARATE and STEPS override a throughput part's pack sizes, speed variants, baselines
# and timed steps (benchmarks/train_throughput.py); LIMIT overrides each part's own time limit (s).
set -uo pipefail
part=${1:-all}
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 SEEDSWEEP_CACHE=${SEEDSWEEP_CACHE:-/tmp/seedsweep-cache}
if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/device.txt"

throughput() {  # NAME SYMMETRY DEFAULT_SEPARATE DEFAULT_SIZES DEFAULT_VARIANTS DEFAULT_LIMIT
    # rows are printed (and logged) as they are measured, essential variants first
    timeout "${LIMIT:-$6}" $PY benchmarks/train_throughput.py --symmetry "$2" --separate "${SEPARATE:-$3}" ${STEPS:+--steps $STEPS} \
        --sizes "${SIZES:-$4}" --variants "${VARIANTS:-$5}" --out "$OUT/throughput_$1.md" 2>&1 | grep -v Warning | tee "$OUT/throughput_$1.log"
}

status=0
if [[ $part == probe || $part == all ]]; then
    throughput probe none 1,16 64,128 auto,compile+gemm,compile,gemm 250 || status=1
fi
if [[ $part == tests || $part == all ]]; then
    timeout "${LIMIT:-170}" $PY -m pytest -q -p no:cacheprovider -m gpu -s --continue-on-collection-errors tests 2>&1 | tee "$OUT/gpu_tests.log" || status=1
fi
if [[ $part == sps || $part == all ]]; then
    throughput sps T2R2 1 128 auto,compile+gemm 60 || status=1
fi
exit $status
