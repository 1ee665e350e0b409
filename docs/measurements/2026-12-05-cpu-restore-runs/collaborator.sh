#!/usr/bin/env bash
# A collaborator's clone at full scale: push SRC's run-cache to the default remote, make a fresh
# clone of this repository in DST, `dvc repro --pull` there, log the restored runs into DST's own
# MLflow store with `pipeline.restore_runs` (twice), and compare them with SRC's first runs.
# Usage, from the repo root with no venv active:
#   bash docs/measurements/2026-12-05-cpu-restore-runs/collaborator.sh SRC DST
# SRC: a clone where command 1 ran (its .venv, results/, models/, mlflow.db).
set -u
SRC=$(cd "$1" && pwd); DST=$2; REPO=$(pwd)
cd "$SRC" && . .venv/bin/activate || exit 1
echo "push $(date -u +%T)"; { time dvc push --run-cache -q; } 2>&1 | tail -4
deactivate
rm -rf "$DST"; git clone -q "$REPO" "$DST" && cd "$DST" || exit 1
echo "clone $(git rev-parse --short HEAD); install $(date -u +%T)"
python3 -m venv .venv && . .venv/bin/activate && pip install -q -e . 2>&1 | grep -v "Looking in" | tail -2
echo "repro --pull $(date -u +%T)"; { time dvc repro --pull; } > pull.log 2>&1; echo "rc=$?"; tail -4 pull.log
echo "stages run: $(grep -c "^Running stage" pull.log); cached: $(grep -c "is cached - skipping" pull.log)"
echo "restore_runs $(date -u +%T)"; { time python -m pipeline.restore_runs; } > restore.log 2>&1; echo "rc=$?"; grep -v "^log " restore.log | sed "s#$PWD#<the new clone>#"
python -m pipeline.restore_runs | tail -2 | sed "s#$PWD#<the new clone>#"  # no path of this machine in the output
python "$REPO/docs/measurements/2026-12-05-cpu-restore-runs/compare.py" "$SRC/mlflow.db" "$DST/mlflow.db" 2>/dev/null
for f in results/summary.json results/report.md; do cmp "$f" "$SRC/$f" && echo "$f identical"; done
echo "end $(date -u +%T)"
