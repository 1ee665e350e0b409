#!/bin/bash
# usage: bash columns.sh  -- in a clone where `python -m pipeline.config profile=smoke && dvc repro`
# has run: how wide `dvc exp show` is (the README's "Comparing experiments with DVC")
set -eu
count() { python -c "import csv, sys; print(len(next(csv.reader(sys.stdin))))"; }
echo "commit $(git rev-parse --short HEAD), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "dvc exp show --csv columns: $(dvc exp show --csv 2>/dev/null | head -1 | count)"
echo "headline view columns: $(dvc exp show --csv --drop '.*' --keep 'Experiment|Created|.*ours_book_metric\.value' 2>/dev/null | head -1 | count)"
echo "results/ch1-30/metrics.json values dvc exp show lists: $(dvc exp show --csv 2>/dev/null | head -1 | python -c "import csv, sys; print(sum(c.startswith('results/ch1-30/metrics.json:') for c in next(csv.reader(sys.stdin))))")"
