#!/usr/bin/env bash
# The figures of the README's "Using a trained model", measured again: run from the repo root
# after `dvc repro train@ch1-30 train@ch6-relu` on the quick profile.
#   bash docs/measurements/2026-12-04-cpu-predict/measure.sh > docs/measurements/2026-12-04-cpu-predict/predict.log 2>&1
set -u
here=docs/measurements/2026-12-04-cpu-predict
timed() {  # run a command, then print its exit status and wall seconds
  local start=$(date +%s.%N)
  "$@"
  local rc=$?
  echo "== rc $rc, $(python -c "print(f'{$(date +%s.%N) - $start:.2f}')") s: $*" >&2
}
date -u
python scripts/typed_digits.py typed/
relu=(models/ch6-relu/seed1 models/ch6-relu/seed2)
ch1=(models/ch1-30/seed1 models/ch1-30/seed2 models/ch1-30/seed3)
for net in "${relu[@]}" "${ch1[@]}"; do
  timed python -m pipeline.predict "$net" --image typed/*.png > /tmp/typed-one.txt
  python $here/count_misses.py "$net" < /tmp/typed-one.txt
done
timed python -m pipeline.predict "${ch1[@]}" --image typed/*.png > /tmp/typed-vote.txt
python $here/count_misses.py "vote of ch1-30 seeds 1-3" < /tmp/typed-vote.txt
timed python -m pipeline.predict "${relu[@]}" --test
timed python -m pipeline.predict "${ch1[@]}" --test
run=$(python -c "import json; print(json.load(open('results/ch6-relu/metrics.json'))['seeds'][1]['mlflow_run_id'])")
timed python -m pipeline.predict --run "$run" --test
python $here/centring.py
