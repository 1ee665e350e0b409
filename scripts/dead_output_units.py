"""Why `ch1-100` stalls: output units that go dead early under the quadratic cost.

    python scripts/dead_output_units.py ch1-100 --seeds 1 2 3 4 5 6 7 8 9 10 \\
        --costs quadratic cross_entropy --out docs/measurements/<date>-cpu-ch1-100-crosscheck

Trains a run (our engine, its config in params.yaml, the run's own epochs) once per seed and
cost, from the same initial weights and on the same shuffles for every cost, and after every
evaluated epoch counts the output units that are *dead*: a unit that fires (output > 0.5) on
fewer than 1% of the validation images of its own digit. With sigmoid outputs and the
quadratic cost, the output error is (a - y) sigma'(z) (BP1), which nearly vanishes for a unit
driven deep into saturation: it gets almost no gradient even from its own digit, and recovers
slowly if at all. The cross-entropy cost's error is a - y (chapter 3), which does not vanish.
Prints one line per run and writes ``dead_units.json`` to ``--out``: per seed and cost, the
units dead at the start and after each epoch where that changed, the peak test accuracy, and
at the end each digit's recall on the test set (how often a dead unit's digit is still
predicted).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy
from threadpoolctl import threadpool_limits

from pipeline.atomic import check_writable, write_json
from pipeline.console import run_command
from pipeline.errors import InputError
from pipeline.experiment import load_run_data, run_spec
from pipeline.nn.build import build_network
from pipeline.nn.spec import validate_spec
from pipeline.nn.train import fit
from pipeline.params import book_run, load_params

FIRES = 0.5  # an output above this counts as the unit firing
ALIVE_FRACTION = 0.01  # a unit firing on fewer of its own digit's images than this is dead


def dead_units(net, x, labels) -> list[int]:
    """The output units that fire on fewer than ALIVE_FRACTION of their own digit's images."""
    out = numpy.asarray(net.forward(x))
    return [int(d) for d in range(out.shape[1])
            if (out[labels == d, d] > FIRES).mean() < ALIVE_FRACTION]


def recall_by_digit(net, x, labels) -> list[float]:
    """For each digit, the fraction of its images that the network classifies as that digit."""
    predicted = numpy.asarray(net.predict(x))
    return [round(float((predicted[labels == d] == d).mean()), 4) for d in range(int(labels.max()) + 1)]


def trace_run(net, training: dict, train, validation, test) -> dict:
    """Train ``net`` in place; the dead units at the start and after each evaluated epoch
    where they changed, the peak test accuracy and the final recall of each digit."""
    dead = {-1: dead_units(net, validation.x, validation.y)}

    def after_epoch(record):
        if "validation_accuracy" in record:  # an evaluated epoch
            dead[record["epoch"]] = dead_units(net, validation.x, validation.y)

    with threadpool_limits(1):
        history = fit(net, training, (train.x, train.y), (validation.x, validation.y),
                      (test.x, test.y), on_epoch=after_epoch, log=None, progress=False)
    if history.interrupted:  # fit keeps Ctrl-C's history; a part-trained seed is no finding
        raise history.stopped_by
    epochs = sorted(dead)
    changes = {str(e): dead[e] for before, e in zip(epochs, epochs[1:]) if dead[e] != dead[before]}
    return {"peak_test_accuracy": history.peak_test_accuracy, "dead_at_start": dead[-1],
            "dead_after_epoch": changes, "dead_at_end": dead[epochs[-1]],
            "test_recall_at_end": recall_by_digit(net, test.x, test.y)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("book_id", nargs="?", default="ch1-100")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--costs", nargs="+", default=["quadratic", "cross_entropy"],
                        help="the run's cost and the ones to swap in for it")
    parser.add_argument("--out", type=Path, help="folder for dead_units.json")
    args = parser.parse_args(argv)
    if args.out is not None:  # before the training, not after it
        if args.out.exists() and not args.out.is_dir():
            parser.error(f"--out {args.out} is a file; give a folder for dead_units.json")
        check_writable(args.out)
    params = load_params()
    run_cfg = book_run(params, args.book_id)
    # the run's own spec, its defaults filled, checked before any data are read
    if validate_spec(run_spec(run_cfg, args.seeds[0], {}))["model"]["layers"][-1].get("activation") != "sigmoid":
        raise InputError(f"{args.book_id}: its output layer is not sigmoid; this counts sigmoid units")
    train, validation, test, _ = load_run_data(run_cfg, params["data"], {})
    rows = []
    try:
        for cost in args.costs:
            for seed in args.seeds:
                spec = run_spec(run_cfg, seed, {})
                spec["model"]["cost"] = cost  # all else the run's: the same start, the same shuffles
                spec = validate_spec(spec)
                net = build_network(spec, device="cpu")
                row = {"book_id": args.book_id, "cost": cost, "seed": seed,
                       "epochs": spec["training"]["epochs"], "eta": spec["training"]["eta"],
                       **trace_run(net, spec["training"], train, validation, test)}
                rows.append(row)
                print(f"{cost:<14} seed {seed:>2}: peak test {row['peak_test_accuracy']:.2%}  "
                      f"dead at start {row['dead_at_start']}  after epoch 0 "
                      f"{row['dead_after_epoch'].get('0', row['dead_at_start'])}  at the end {row['dead_at_end']}",
                      flush=True)
    except KeyboardInterrupt:  # the runs finished before the stop are kept; the stopped one is no finding
        if args.out is not None:
            write_json(args.out / "dead_units.json", rows)
            print(f"stopped: the {len(rows)} run(s) finished before it are in {args.out / 'dead_units.json'}",
                  flush=True)
        raise
    if args.out is not None:
        write_json(args.out / "dead_units.json", rows)
    return 0


if __name__ == "__main__":
    sys.exit(run_command("dead_output_units", main))
