#!/usr/bin/env bash
# Issue 6's checks on a GPU machine, in parts that each fit one short call; logs and tables go to
# $OUT (the device tool's output folder), else ./gpu_out. The machine needs torch with CUDA, numpy,
# pyarrow, pyyaml, pytest; gymnasium, Farama-Notifications and platformdirs come as wheels in .whl/
# (`make gpu-wheels` here, then carry .whl).
#
#   bash benchmarks/gpu_check.sh tests     # pytest -m gpu: fast path vs fp32, CUDA graphs, no host sync, 16-seed success (~4 min)
#   bash benchmarks/gpu_check.sh eager     # throughput: baselines (1 and 16 processes), eager packs at S = 32, 128 (~2 min)
#   bash benchmarks/gpu_check.sh compiled  # throughput: baselines, torch.compile'd packs at S = 128 (~4 min)
#   bash benchmarks/gpu_check.sh all       # the three in turn
#
# SIZES, VARIANTS, SYMMETRY, SEPARATE and STEPS override a throughput part's pack sizes, speed variants,
# model, baselines and timed steps
# (benchmarks/train_throughput.py); each part stops itself at its own time limit (LIMIT seconds).
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

throughput() {  # NAME DEFAULT_SIZES DEFAULT_VARIANTS DEFAULT_LIMIT
    # epoch steps and timed steps: train_throughput.py's CUDA defaults
    timeout "${LIMIT:-$4}" $PY benchmarks/train_throughput.py --separate "${SEPARATE:-1,16}" ${STEPS:+--steps $STEPS} \
        --sizes "${SIZES:-$2}" --variants "${VARIANTS:-$3}" --symmetry "${SYMMETRY:-none}" \
        --out "$OUT/throughput_$1.md" 2>&1 | grep -v Warning | tee "$OUT/throughput_$1.log"
}

status=0
if [[ $part == tests || $part == all ]]; then
    timeout "${LIMIT:-360}" $PY -m pytest -q -p no:cacheprovider -m gpu -s tests/test_speed.py 2>&1 | tee "$OUT/gpu_tests.log" || status=1
fi
if [[ $part == eager || $part == all ]]; then
    throughput eager 32,128 fp32,auto,gemm 200 || status=1
fi
if [[ $part == compiled || $part == all ]]; then
    throughput compiled 128 compile,compile+gemm 330 || status=1
fi
exit $status
