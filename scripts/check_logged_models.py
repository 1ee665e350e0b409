"""Every MLflow model in the store, loaded through MLflow's own interface and scored on the test
set, against the test accuracy its run logged for those weights: a training run's at its last
epoch, the ensemble's run's for its vote. Run from the repo root after ``dvc repro``:

    python scripts/check_logged_models.py   # exit status 1 if a model differs, is not READY or
                                            # cannot be loaded, or if none could be compared;
                                            # 2 if params.yaml or the test set is missing

The test set is the prepared one, as many images as the model's own run evaluated (its
``test_examples``; ``smoke``: the first 500), in each model's input dtype (its signature), so a
store that holds runs of several profiles checks each by its own.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline import tracking
from pipeline.console import run_command
from pipeline.data.mnist import load_dataset, split_file
from pipeline.errors import InputError
from pipeline.nn.io import META_FILE
from pipeline.params import load_params
from pipeline.predict import evaluated_examples


def evaluated_on(model_folder: Path) -> int | None | bool:
    """How many test images the run of a downloaded model evaluated its nets on (None: all;
    False: not known here: a profile this checkout does not have, or nets that disagree), read
    from its nets' ``model.json``."""
    counts = set()
    for path in sorted(model_folder.glob(f"artifacts/*/{META_FILE}")):
        try:
            counts.add(evaluated_examples(json.loads(path.read_text(encoding="utf-8"))["metadata"]))
        except (ValueError, KeyError, TypeError) as error:
            raise InputError(f"its {path.parent.name}/{META_FILE} is not one this project writes "
                             f"({type(error).__name__}: {error})") from None
    return counts.pop() if len(counts) == 1 else False


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    prepared = load_params()["data"]["prepared_dir"]
    models = tracking.stored_models()
    started, differ, unknown, tests = time.time(), 0, 0, {}
    for logged in models:
        if logged.status != "READY":
            print(f"model {logged.model_id} of run {logged.run_id} ({logged.run_name}): {logged.status}")
            differ += 1
            continue
        with tempfile.TemporaryDirectory() as tmp:  # one download: the nets are in memory once loaded
            folder = tracking.download_stored_model(logged.model_id, tmp)
            try:
                cap = evaluated_on(folder)
                model = None if cap is False else tracking.load_as_pyfunc(folder)
            except InputError as error:  # a model.json that is not one, or code other than this
                # checkout's (not run)
                print(f"model {logged.model_id} of run {logged.run_id} ({logged.run_name}): {error}")
                differ += 1
                continue
        seed = logged.tags.get("seed", "-")
        if model is None:
            print(f"{logged.run_name:22s} seed {seed:>8s}  not compared: how many test "
                  f"images its run evaluated is not known here (profile {logged.tags.get('profile')})")
            unknown += 1
            continue
        dtype = np.dtype(model.metadata.get_input_schema().inputs[0].type).name
        if (dtype, cap) not in tests:
            tests[dtype, cap] = load_dataset(split_file(prepared, "test"), dtype=dtype, cap=cap)
        test = tests[dtype, cap]
        accuracy = float((model.predict(test.x) == test.y).mean())
        recorded = logged.test_accuracy
        same = accuracy == recorded
        differ += not same
        logged_text = "none" if recorded is None else f"{recorded:.2%}"
        print(f"{logged.run_name:22s} seed {seed:>8s}  through MLflow {accuracy:.2%}"
              f"  logged {logged_text}  {'same' if same else 'DIFFERENT'}")
    print(f"{len(models) - differ - unknown} of {len(models)} models give the test accuracy their run logged"
          + (f" ({unknown} not compared)" if unknown else "") + f" ({time.time() - started:.0f} s)")
    return 1 if differ or len(models) == unknown else 0  # none compared: nothing was checked


if __name__ == "__main__":
    sys.exit(run_command("check_logged_models", main))
