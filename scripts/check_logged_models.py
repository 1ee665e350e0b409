"""Every MLflow model in the store, loaded through MLflow's own interface and scored on the test
set, against the test accuracy its run logged for those weights: a training run's at its last
epoch, the ensemble's run's for its vote. Run from the repo root after ``dvc repro``:

    python scripts/check_logged_models.py            # exit status 1 if any model differs

The test set is the prepared one, as many images as the profile evaluates (``smoke``: the
first 500), in each model's input dtype (its signature).
"""

from __future__ import annotations

import argparse
import sys
import time

import mlflow
import numpy as np

from pipeline import tracking
from pipeline.data.mnist import load_dataset, split_file
from pipeline.params import load_params


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    params = load_params()
    cap = (params["profile"].get("limits") or {}).get("eval_examples")
    client = mlflow.MlflowClient(tracking.tracking_uri())
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    models = client.search_logged_models([experiment.experiment_id], max_results=1000) if experiment else []
    started, differ, tests = time.time(), 0, {}
    for logged in sorted(models, key=lambda m: m.creation_timestamp):
        if str(logged.status) != "READY":
            print(f"model {logged.model_id} of run {logged.source_run_id}: {logged.status}")
            differ += 1
            continue
        run = client.get_run(logged.source_run_id)
        model = mlflow.pyfunc.load_model(f"models:/{logged.model_id}")
        dtype = np.dtype(model.metadata.get_input_schema().inputs[0].type).name
        if dtype not in tests:
            tests[dtype] = load_dataset(split_file(params["data"]["prepared_dir"], "test"), dtype=dtype, cap=cap)
        test = tests[dtype]
        accuracy = float((model.predict(test.x) == test.y).mean())
        recorded = max(client.get_metric_history(run.info.run_id, "test_accuracy"), key=lambda m: m.step).value
        same = accuracy == recorded
        differ += not same
        print(f"{run.info.run_name:22s} seed {run.data.tags.get('seed', '-'):>8s}  through MLflow {accuracy:.2%}"
              f"  logged {recorded:.2%}  {'same' if same else 'DIFFERENT'}")
    print(f"{len(models) - differ} of {len(models)} models give the test accuracy their run logged "
          f"({time.time() - started:.0f} s)")
    return 1 if differ or not models else 0


if __name__ == "__main__":
    sys.exit(main())
