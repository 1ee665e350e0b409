"""How long one per-epoch metrics write (one ``log_batch``, one sqlite transaction) takes in
the project's tracking store: 200 writes of one epoch's record each, median."""

import os
import statistics
import sys
import time

os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{sys.argv[1]}"

from mlflow.entities import Metric

from pipeline import tracking

with tracking.start_run("write-timing") as run:
    times = []
    for step in range(200):
        record = {"validation_accuracy": 0.9, "test_accuracy": 0.9, "training_cost": 0.1, "eta": 0.5,
                  "epoch_seconds": 0.01}
        metrics = [Metric(k, v, int(time.time() * 1000), step) for k, v in record.items()]
        start = time.perf_counter()
        run.client.log_batch(run.run_id, metrics=metrics)
        times.append(time.perf_counter() - start)
print(f"one epoch's metrics write (log_batch, sqlite): median {1000 * statistics.median(times):.1f} ms, "
      f"range {1000 * min(times):.1f}-{1000 * max(times):.1f} ms over {len(times)} writes")
