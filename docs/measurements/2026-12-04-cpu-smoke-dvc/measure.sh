#!/usr/bin/env bash
# The README's measured DVC and MLflow figures on the smoke profile, measured again:
#   bash docs/measurements/2026-12-04-cpu-smoke-dvc/measure.sh WORKDIR > docs/measurements/2026-12-04-cpu-smoke-dvc/measure.log 2>&1
# WORKDIR (empty or absent) receives a clone of this repository's HEAD (run), a DVC remote
# (storage) and a second clone (restore). Needs a venv with the project installed, active.
set -euo pipefail
repo=$(git rev-parse --show-toplevel)
here=$repo/docs/measurements/2026-12-04-cpu-smoke-dvc
work=$1
mkdir -p "$work" && cd "$work"
secs() { python -c "import time; print(f'{time.time() - $1:.1f}')"; }
git clone -q "$repo" run && ln -s "$repo/../shared" shared 2>/dev/null || true
cd run
git rev-parse --short HEAD
python -m pipeline.config profile=smoke
git -c user.name=m -c user.email=m@m commit -qam "smoke profile"
start=$(date +%s.%N); dvc repro -q; echo "dvc repro (smoke): $(secs $start) s"
echo "summary rows: $(python -c "import json; print(len(json.load(open('results/summary.json'))['rows']))")"
git -c user.name=m -c user.email=m@m commit -qam "run" 2>/dev/null || true
echo "dvc exp show --csv columns: $(dvc exp show --csv 2>/dev/null | head -1 | python -c "import csv, sys; print(len(next(csv.reader(sys.stdin))))")"
echo "headline view columns: $(dvc exp show --csv --drop '.*' --keep 'Experiment|Created|.*ours_book_metric\.value' 2>/dev/null | head -1 | python -c "import csv, sys; print(len(next(csv.reader(sys.stdin))))")"
echo "values DVC shows of ch1-30's metrics.json: $(dvc exp show --csv --drop '.*' --keep '.*results/ch1-30/metrics.json.*' 2>/dev/null | head -1 | python -c "import csv, sys; print(sum(':' in c for c in next(csv.reader(sys.stdin))))")"
dvc remote add -q -f -d measure "$work/storage"
start=$(date +%s.%N); dvc push -q --run-cache; echo "dvc push --run-cache: $(secs $start) s, $(du -sm "$work/storage" | cut -f1) MB in the remote"
cd "$work"
git clone -q "$repo" restore && cd restore
python -m pipeline.config profile=smoke
dvc remote add -q -f -d measure "$work/storage"
start=$(date +%s.%N); dvc repro --pull > ../restore.log 2>&1; echo "dvc repro --pull in a fresh clone: $(secs $start) s"
echo "stages restored (cached, outputs checked out): $(grep -c "is cached - skipping run" ../restore.log || true); data pulled for: $(grep -c "^Pulling data for stage" ../restore.log || true); stages run: $(grep -c "^Running stage" ../restore.log || true)"
cp ../restore.log "$here/restore.log"
diff -r "$work/run/results" "$work/restore/results" > /dev/null && echo "results/ identical"
diff -r "$work/run/models" "$work/restore/models" > /dev/null && echo "models/ identical"
python "$here/mlflow_write.py" "$work/mlflow-write.db"
