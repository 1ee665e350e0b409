#!/usr/bin/env bash
# Restore the MLflow runs of a finished quick run's outputs into an empty store, then compare.
# Usage (from the repo root, venv active): bash docs/measurements/2026-12-05-cpu-restore-runs/measure.sh <folder>
# <folder>: a clone where `dvc repro` ran (results/, models/, data/, params.yaml, mlflow.db).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); repo=$(pwd); src=$(cd "$1" && pwd)
work=$(mktemp -d)
for f in results models data params.yaml; do ln -s "$src/$f" "$work/$f"; done
cd "$work"
echo "code: $(git -C "$repo" rev-parse --short HEAD); outputs: $(basename "$src"); $(date -u '+%F %T UTC'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
{ time PYTHONPATH="$repo" MLFLOW_TRACKING_URI="sqlite:///$work/restored.db" python -m pipeline.restore_runs; } 2>&1 \
  | sed "s#$work#<a temporary folder>#"  # no path of this machine in the log
echo "again:"
PYTHONPATH="$repo" MLFLOW_TRACKING_URI="sqlite:///$work/restored.db" python -m pipeline.restore_runs | tail -2 \
  | sed "s#$work#<a temporary folder>#"
python "$here/compare.py" "$src/mlflow.db" "$work/restored.db" 2>/dev/null
rm -rf "$work"
