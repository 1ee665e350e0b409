"""Train one run of the book (all its seeds), track it in MLflow, write its results.

This is what the ``train@<id>`` DVC stage and the ``python -m pipeline.train`` Hydra app both
call. A run's config is the ``book.<id>`` subtree of params.yaml (see conf/book/): the book's
figure and how it was measured, which training set, the seeds, and the engine's ``model`` /
``training`` spec. The profile's ``limits`` cap epochs and set sizes (the smoke profile).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline import figures, interrupts, results, tracking
from pipeline.atomic import check_writable, write_json, write_text
from pipeline.data.mnist import Dataset, digest, load_dataset, split_file
from pipeline.errors import InputError, SettingError
from pipeline.nn import build_network, fit, get_xp, save_model, validate_spec
from pipeline.nn.io import FINAL_EPOCH_WEIGHTS
from pipeline.nn.spec import SpecError, parameter_count, validate_training
from pipeline.nn.train import check_trainable
from pipeline.params import seed_folder
from pipeline.settings import COUNT_OR_NULL, LIMIT_KEYS, SEED, check_compute, check_limits, check_rule

# the rows of BOOK.md (with chapter 3's runs that have no figure of their own): only these may
# carry a figure of the book's, which the report sets beside the run and counts in its verdicts
BOOK_RUN_IDS = frozenset({
    "ch1-30", "ch1-100", "ch3-ce-30", "ch3-ce-100", "ch3-overfit-1k", "ch3-l2-1k", "ch3-l2-30",
    "ch3-l2-100", "ch3-l2-100-tuned", "ch3-init-30-default", "ch3-init-30-large",
    "ch3-init-100-default", "ch3-init-100-large", "ch3-early-stop", "ch3-dropout", "ch3-rotated",
    *(f"ch3-more-data-{n}" for n in (100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)),
    *(f"ch5-depth-{k}" for k in (1, 2, 3, 4)), *(f"ch5-speed-{k}" for k in (2, 3, 4)),
    "ch6-fc", "ch6-conv1", "ch6-conv2", "ch6-relu", "ch6-expanded", "ch6-fc300", "ch6-fc1000",
    "ch6-2fc", "ch6-2fc300", "ch6-2fc1000", "ch6-dropout",
})
RUN_KEYS = {"chapter": int, "title": str, "what_changed": str, "book": dict, "data": dict,
            "seeds": list, "model": dict, "training": dict}
# epochs: those behind the book's figure (the book profile trains them; others may cut them)
BOOK_KEYS = {"value": (float, type(None)), "metric": str, "runs": int, "epochs": int, "note": str}
# optional: chapter 5's initial speed of learning ||dC/db^l|| per hidden layer, as the book gives it;
# metric_reading: where BOOK.md names the set but not the rule, which rule we read it by and why
BOOK_OPTIONAL = {"speeds": list, "metric_reading": str}
DATA_KEYS = {"train": str, "train_file": str, "train_limit": (int, type(None))}
# optional: the book's own run of this row, replayed with its script's seed and random streams;
# settings_digest pins what makes it the book's run (see ``settings_digest``)
REPLAY_KEYS = {"script": str, "seed": int, "rng": dict, "settings_digest": str}
# what a replay's settings_digest covers of its row (with the replay block and data.n_train)
REPLAYED_KEYS = ("data", "model", "training")
# how often the parent, waiting for its seed workers, wakes to act on a stop signal that the
# kernel handed to one of its other threads
STOP_CHECK_SECONDS = 1.0


def _check_keys(node, path: str, schema: dict, optional: dict | None = None) -> None:
    if not isinstance(node, dict):
        raise SettingError(path, f"expected a mapping, got {type(node).__name__}")
    schema = {**schema, **(optional or {})}
    unknown = sorted(set(node) - set(schema))
    if unknown:
        raise SettingError(f"{path}.{unknown[0]}", f"unknown key; allowed: {', '.join(schema)}")
    for key, kind in schema.items():
        if key not in node and key in (optional or {}):
            continue
        if key not in node:
            raise SettingError(f"{path}.{key}", "required key is missing")
        if isinstance(node[key], bool) or not isinstance(node[key], kind):
            takes_float = kind is float or (isinstance(kind, tuple) and float in kind)
            if takes_float and isinstance(node[key], int) and not isinstance(node[key], bool):
                continue  # YAML's 1 for 1.0
            raise SettingError(f"{path}.{key}", f"expected {_kind_name(kind)}, "
                            f"got {type(node[key]).__name__} {node[key]!r}")


def _kind_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


def validate_run(book_id: str, run_cfg: dict) -> None:
    """Check a ``book.<id>`` config before anything runs; errors name the key path."""
    path = f"book.{book_id}"
    _check_keys(run_cfg, path, RUN_KEYS, {"replay": dict})
    if not 1 <= run_cfg["chapter"] <= 6:
        raise SettingError(f"{path}.chapter", f"expected the book's chapter, 1..6, got {run_cfg['chapter']!r}")
    # keys of the engine's schema that a run does not set: each seed's spec takes them elsewhere
    for key, instead in (("seed", f"its seeds are {path}.seeds (the Hydra app's seed= trains one)"),
                         ("device", "every run trains on the machine's compute.device (cpu or gpu)")):
        if key in run_cfg["training"]:
            raise SettingError(f"{path}.training.{key}", f"not a setting of a run: {instead}; remove it")
    _check_keys(run_cfg["book"], f"{path}.book", BOOK_KEYS, BOOK_OPTIONAL)
    if run_cfg["book"]["metric"] not in results.METRICS:
        raise SettingError(f"{path}.book.metric", f"unknown {run_cfg['book']['metric']!r}; "
                        f"allowed: {', '.join(results.METRICS)}")
    if run_cfg["book"]["runs"] < 1:
        raise SettingError(f"{path}.book.runs", f"expected the number of runs the book's figure "
                        f"is the best of (>= 1), got {run_cfg['book']['runs']!r}")
    if run_cfg["book"]["epochs"] < 1:
        raise SettingError(f"{path}.book.epochs", f"expected the book's number of epochs (>= 1), "
                        f"got {run_cfg['book']['epochs']!r}")
    _check_keys(run_cfg["data"], f"{path}.data", DATA_KEYS)
    check_rule(run_cfg["data"]["train_limit"], f"{path}.data.train_limit", COUNT_OR_NULL)
    seeds = run_cfg["seeds"]
    if not seeds or not all(SEED[0](s) for s in seeds):
        raise SettingError(f"{path}.seeds", f"expected a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):  # two workers would write one models/<id>/seed<k>
        raise SettingError(f"{path}.seeds", f"a seed is listed twice: {seeds!r}")
    value = run_cfg["book"]["value"]
    if value is not None and not 0 < value <= 1:
        raise SettingError(f"{path}.book.value", f"expected the book's accuracy as a fraction in (0, 1] "
                        f"(0.9542 for 95.42%) or null, got {value!r}")
    for seed in seeds:  # each as its worker will build it: a seed can be out of the engine's range
        try:
            validate_spec(run_spec(run_cfg, seed, {}))
        except SpecError as error:
            where = "seeds" if error.path == "training.seed" else error.path
            raise SettingError(f"{path}.{where}", str(error).split(": ", 1)[1]) from None
    if "speeds" in run_cfg["book"]:
        _check_speeds(run_cfg, path)
    replay = run_cfg.get("replay")
    if replay is not None:
        digest_given = replay.get("settings_digest") if isinstance(replay, dict) else None
        if isinstance(digest_given, (int, float)) and not isinstance(digest_given, bool):
            raise SettingError(f"{path}.replay.settings_digest", f"expected 16 hex digits in quotes: "
                            f"unquoted, YAML read them as the number {digest_given!r}")
        _check_keys(replay, f"{path}.replay", REPLAY_KEYS)
        if not re.fullmatch(r"[0-9a-f]{16}", replay["settings_digest"]):
            raise SettingError(f"{path}.replay.settings_digest", f"expected 16 hex digits "
                            f"(pipeline.experiment.settings_digest of the row at the book's settings), "
                            f"got {replay['settings_digest']!r}")
        if replay["seed"] < 0 or replay["seed"] in seeds:
            raise SettingError(f"{path}.replay.seed", f"expected an integer >= 0 that is not one of "
                            f"the seeds {seeds}, got {replay['seed']!r}")
        try:
            validate_spec(run_spec(run_cfg, replay["seed"], {}, replay=True))
        except SpecError as error:
            where = error.path.replace("training.rng", "replay.rng")
            raise SettingError(f"{path}.{where}", str(error).split(": ", 1)[1]) from None


def settings_digest(run_cfg: dict, n_train: int) -> str:
    """The first 16 hex digits of the SHA-256 of what makes a replay the book's run: the row's
    ``data``, ``model`` and ``training`` (less ``training.device``, the machine's choice, which
    gives the same run: tests/nn/test_gpu_replay.py), its replay block (less this digest) and
    the size of the training split, ``data.n_train``. Keys are sorted and every number is a
    float, so ``lmbda: 5`` and ``5.0`` agree."""
    def plain(node):
        if isinstance(node, dict):
            return {str(k): plain(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [plain(v) for v in node]
        if isinstance(node, (int, float)) and not isinstance(node, bool):
            return float(node)
        return node
    settings = {key: run_cfg[key] for key in REPLAYED_KEYS}
    settings["training"] = {k: v for k, v in settings["training"].items() if k != "device"}
    settings["replay"] = {k: v for k, v in run_cfg["replay"].items() if k != "settings_digest"}
    settings["n_train"] = n_train
    return hashlib.sha256(json.dumps(plain(settings), sort_keys=True).encode("utf-8")).hexdigest()[:16]


def replay_problem(book_id: str, run_cfg: dict, n_train: int, limits: dict) -> dict | None:
    """Why the book's own run of this row, trained now, would not be the book's run (None: it
    would): ``cause`` (``settings`` or ``limits``) and ``why``, a line that says so.

    A row changed after its replay was written (``dvc exp run -S``, an edit of conf/book/, a
    copied file, another ``data.n_train``) or capped by the profile's limits trains something
    else; labelled "the book's run, replayed" and set beside the book's figure, it would mislead."""
    expected, actual = run_cfg["replay"]["settings_digest"], settings_digest(run_cfg, n_train)
    if actual != expected:
        return {"cause": "settings",
                "why": f"book.{book_id} is not at the book's settings, which its replay pins (they "
                       f"digest to {expected}, the row as it is to {actual}); only its seeds train. If "
                       f"conf/book/{book_id}.yaml was corrected to the book's, set its "
                       f"replay.settings_digest to '{actual}'"}
    caps = [f"{key}={value}" for key, value in limits.items() if value is not None]
    if caps:
        return {"cause": "limits", "why": f"profile.limits are set ({', '.join(caps)}); only its seeds train"}
    return None


def check_book_figure(book_id: str, run_cfg: dict) -> None:
    """Only a row of the book carries a figure of the book's (``book.value``): in a file copied
    to make a run of one's own, the figure left in would be set beside the run in the report
    and counted in its verdicts. (Checked where conf/ is composed, ``pipeline.config``: a
    test's or a script's run of another name may carry a figure to compare with.)"""
    value = run_cfg["book"]["value"]
    if value is not None and book_id not in BOOK_RUN_IDS:
        raise SettingError(f"book.{book_id}.book.value", f"{book_id} is not a row of the book (BOOK.md), so "
                        f"it has no figure of the book's to be set beside: null (book.note may say what the "
                        f"run varies), got {value!r}")


def _check_speeds(run_cfg: dict, path: str) -> None:
    """``book.speeds``: one positive number per hidden layer, and gradient norms monitored."""
    speeds, hidden = run_cfg["book"]["speeds"], len(run_cfg["model"]["layers"]) - 1
    if len(speeds) != hidden or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                        and v > 0 for v in speeds):
        raise SettingError(f"{path}.book.speeds", f"expected {hidden} positive numbers (one per "
                        f"hidden layer), got {speeds!r}")
    if not (run_cfg["training"].get("monitor") or {}).get("gradient_norms"):
        raise SettingError(f"{path}.training.monitor.gradient_norms",
                        "must be the number of first training examples to measure on when "
                        "book.speeds is given (ours are measured from it; the book: 1000)")


MNIST_PIXELS, MNIST_DIGITS = 28 * 28, 10  # every set the data stages write: what a config is checked against


def check_fits_data(book_id: str, run_cfg: dict, pixels: int = MNIST_PIXELS, classes: int = MNIST_DIGITS) -> None:
    """The network's input takes the data's pictures and its output has a unit per digit."""
    model = run_cfg["model"]
    shape = list(model.get("input_shape") or [])
    side = math.isqrt(pixels)
    # any other shape of as many values would cut the picture into strips stacked as channels
    if shape and shape not in ([pixels], [1, side, side]):
        raise SettingError(f"book.{book_id}.model.input_shape",
                        f"{shape} is not the shape of the data's {side} × {side} pictures: use [{pixels}] "
                        f"(fully connected) or [1, {side}, {side}] (conv)")
    units = model["layers"][-1]["units"]
    if units != classes:
        raise SettingError(f"book.{book_id}.model.layers[{len(model['layers']) - 1}].units",
                        f"the output layer has {units} units, MNIST has {classes} digits: use {classes}")


def check_trains_on(book_id: str, run_cfg: dict, n: int, limits: dict) -> None:
    """What training would refuse at its start on these ``n`` training examples (a mini-batch
    larger than network3's scaling can train, an L2 decay that flips the weights), refused
    before any MLflow run starts, under the run's key."""
    try:
        check_trainable(run_spec(run_cfg, run_cfg["seeds"][0], limits)["training"], n)
    except InputError as error:
        capped = (f" (profile.limits.train_examples keeps {n} of the training set)"
                  if limits.get("train_examples") == n else "")
        raise InputError(f"book.{book_id}.{error}{capped}") from None


def physical_memory() -> int | None:
    """This machine's memory in bytes, where the system says (None elsewhere)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits_memory(book_id: str, run_cfg: dict, seeds_at_once: int, memory: int | None = None) -> None:
    """Refuse a network whose weights alone outgrow this machine's memory, before numpy fails
    half-way through building it: each seed holds its parameters four times (the weights,
    their gradients, the SGD step's scratch and the best epoch's copy)."""
    memory = physical_memory() if memory is None else memory
    itemsize = np.dtype(validate_training(run_cfg["training"])["dtype"]).itemsize
    count = parameter_count(run_cfg["model"])
    need = 4 * count * itemsize * seeds_at_once
    if memory is not None and need > memory:
        at_once = f", {seeds_at_once} seeds at once" if seeds_at_once > 1 else ""
        raise SettingError(f"book.{book_id}.model.layers",
                           f"{count:,} parameters take at least {need / 2**30:,.1f} GiB to train{at_once}, "
                           f"more than this machine's {memory / 2**30:,.1f} GiB: use fewer units or filters")


def load_run_data(run_cfg: dict, data_cfg: dict, limits: dict) -> tuple[Dataset, Dataset, Dataset, str]:
    """Training, validation and test sets for a run, and the training file's digest.

    The pixels come in the run's ``training.dtype``: loaded once here, the forked seed workers
    share them instead of each casting its own copy (half a second and 300 MB a seed for the
    50,000 images in float64).
    """
    dtype = validate_training(run_cfg["training"])["dtype"]
    train_path = Path(run_cfg["data"]["train_file"])
    # the run's train_limit is part of the experiment (the first 1,000 images): a file with fewer
    # is an error; a profile's limits only cap what is there
    folders = [Path(data_cfg[key]).resolve() for key in ("prepared_dir", "expanded_dir")]
    made_here = any(train_path.resolve().is_relative_to(folder) for folder in folders)
    # a file of one's own that is not a data set is no reason to delete it or to run a data stage
    fix = None if made_here else (
        f"point data.train_file at a data set of the pipeline's ({data_cfg['prepared_dir']}/train.npz, or "
        f"a file of {data_cfg['expanded_dir']}/), or at one saved as they are (pipeline.data.mnist.save_images)")
    train = load_dataset(train_path, limit=run_cfg["data"].get("train_limit"), dtype=dtype,
                         cap=limits.get("train_examples"), fix=fix)
    validation, test = (load_dataset(split_file(data_cfg["prepared_dir"], split), dtype=dtype,
                                     cap=limits.get("eval_examples"))
                        for split in ("validation", "test"))
    return train, validation, test, digest(train_path)


def run_spec(run_cfg: dict, seed: int, limits: dict, replay: bool = False) -> dict:
    """The engine spec of one seed: the run's model and training, seeded and capped.

    ``replay``: the book's own run, with the random streams of its script (``replay.rng``).
    """
    training = dict(run_cfg["training"], seed=int(seed))
    if replay:
        training["rng"] = run_cfg["replay"]["rng"]
    if limits.get("epochs"):
        training["epochs"] = min(training["epochs"], limits["epochs"])
    return {"model": run_cfg["model"], "training": training}


def flat_record(record: dict) -> dict:
    """An epoch record with the per-layer gradient norms spread into scalar columns."""
    flat = {k: v for k, v in record.items() if k != "gradient_norms"}
    for i, norm in enumerate(record.get("gradient_norms") or [], start=1):
        flat[f"grad_norm_layer{i}"] = norm
    return flat


def history_csv(rows: list[dict]) -> str:
    """Per-epoch rows of every seed as CSV (columns: the union of the rows' keys)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _summary_metrics(summary: dict, book: dict, seed_value: float | None) -> dict:
    metrics = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if seed_value is not None:
        metrics[f"book_metric_{book['metric']}"] = seed_value
    if book.get("value") is not None:
        metrics["book_value"] = book["value"]
        if seed_value is not None:
            metrics["difference_vs_book"] = results.difference(seed_value, book["value"])
    return metrics


def train_seed(book_id: str, run_cfg: dict, seed: int, data: tuple, profile: str, limits: dict,
               model_dir: Path, log: Callable[[str], None], replay: bool = False) -> dict:
    """Train one seed inside one MLflow run; return its summary, records and run id.

    ``replay``: train the book's own run instead (``seed`` is then the script's seed).
    """
    train, validation, test, data_digest = data
    spec = run_spec(run_cfg, seed, limits, replay)
    net = build_network(spec)
    trained_with = tracking.environment_tags()
    tags = seed_tags(book_id, run_cfg, profile, seed, data_digest, replay, trained_with)
    what = f"the book's run ({run_cfg['replay']['script']}, seed {seed}) replayed" if replay else f"seed {seed}"
    epochs, asked = spec["training"]["epochs"], run_cfg["training"]["epochs"]
    cut = f" (of {asked}: the profile's limits.epochs)" if epochs < asked else ""
    log(f"train {book_id} {what}: {len(train):,} training images, "
        f"{epochs} epoch{'s' if epochs != 1 else ''}{cut}")
    params = seed_params(book_id, run_cfg, profile, seed, spec, limits)
    # what the profile's limits cut, for `predict` to say: the epochs the run asked for, and
    # the training set's cap, where it was reached
    profile_cut = {}
    if epochs < asked:
        profile_cut.update(epochs=epochs, epochs_asked=asked)
    if limits.get("train_examples") == len(train):
        profile_cut["train_examples"] = len(train)
    with tracking.start_run(book_id, params=params, tags=tags) as run:
        if interrupts.stop_requested():  # a SIGTERM came while this seed was being set up
            raise KeyboardInterrupt(f"seed {seed} stopped before training")
        rows: list[dict] = []

        def on_epoch(record: dict) -> None:
            row = flat_record(record)
            rows.append(row)
            run.log_epoch(row)

        start = time.perf_counter()
        history = fit(net, spec["training"], (train.x, train.y), (validation.x, validation.y),
                      (test.x, test.y), on_epoch=on_epoch, log=log)
        wall = time.perf_counter() - start
        summary = dict(history.summary(), wall_seconds=round(wall, 1))
        seed_dir = seed_folder(model_dir, seed)
        try:
            save_model(seed_dir, net, spec, metadata={
                "book_id": book_id, "seed": seed, "profile": profile, "data_digest": data_digest,
                "train_examples": len(train.y),  # what it learned from (a profile may cut the set)
                "profile_cut": profile_cut,
                "test_examples": len(test.y),  # what its test accuracies were measured on
                "weights": (f"interrupted during epoch {summary['epochs_run']}" if history.interrupted
                            else FINAL_EPOCH_WEIGHTS),
                "mlflow_run_id": run.run_id, "trained_with": trained_with, "metrics": summary})
        except Exception as error:
            if not history.interrupted:
                raise
            # stopped, and then the save failed too (`dvc queue stop --kill` removes a queued
            # experiment's copy while its stage stops): the stop ended the run, so it ends KILLED
            log(f"train {book_id} seed {seed}: interrupted; its weights could not be saved: {error}")
            raise (history.stopped_by or KeyboardInterrupt()) from error
        if history.interrupted:
            log(f"train {book_id} seed {seed}: interrupted; weights so far saved in {seed_dir}")
            raise history.stopped_by or KeyboardInterrupt()
        log_seed_outcome(run, book_id, run_cfg, params, summary, rows, net, test, seed_dir)
        return {"seed": seed, "replay": replay, "mlflow_run_id": run.run_id, "summary": summary,
                "records": rows}


def with_device(run_cfg: dict, device: str) -> dict:
    """``run_cfg`` training on ``device``: the machine's choice (``compute.device``), recorded
    with the run in its params and model."""
    if run_cfg["training"].get("device", "cpu") == device:
        return run_cfg
    return dict(run_cfg, training=dict(run_cfg["training"], device=device))


def seed_tags(book_id: str, run_cfg: dict, profile: str, seed: int, data_digest: str, replay: bool,
              trained_with: dict) -> dict:
    """The tags of one seed's MLflow run: what it reproduces, the ``environment_tags`` of the
    machine that trains it (``trained_with``), and the book's script for a replay."""
    tags = tracking.standard_tags(book_id, run_cfg["chapter"], profile, seed, data_digest, trained_with)
    if replay:
        tags["replay"] = run_cfg["replay"]["script"]
    return tags


def seed_params(book_id: str, run_cfg: dict, profile: str, seed: int, spec: dict, limits: dict) -> dict:
    """The params of one seed's MLflow run: the run's data, the profile's ``limits`` (what it
    caps, so that runs of two profiles side by side in MLflow say why their figures differ)
    and the seed's engine spec."""
    return {"book_id": book_id, "profile": profile, "seed": seed, "data": run_cfg["data"],
            "limits": {key: limits.get(key) for key in LIMIT_KEYS},
            "model": spec["model"], "training": spec["training"]}


def log_seed_outcome(run, book_id: str, run_cfg: dict, config: dict, summary: dict, rows: list[dict],
                     net, test: Dataset, seed_dir: Path) -> None:
    """What a seed's MLflow run holds beside its epochs: the summary metrics (with the seed's
    value by the book's metric and its difference from the book) and the artifacts, among
    them ``config``, its params (``seed_params``) unflattened, as ``config.json``."""
    value = results.seed_value(summary, rows, run_cfg["book"]["metric"])
    run.log_metrics(_summary_metrics(summary, run_cfg["book"], value))
    _log_artifacts(run, book_id, run_cfg, config, rows, net, test, seed_dir)


def _log_artifacts(run, book_id, run_cfg, config, rows, net, test: Dataset, seed_dir: Path) -> None:
    run.log_dict(config, "config.json")
    run.log_text(history_csv(rows), "history.csv")
    run.log_figure(figures.learning_curves(rows, f"{book_id}: {run_cfg['title']}",
                                           run_cfg["book"].get("value")), "learning_curves.png")
    predicted = net.predict(test.x)
    run.log_figure(figures.confusion_matrix(test.y, predicted), "confusion_matrix.png")
    wrong = np.flatnonzero(predicted != test.y)
    run.log_figure(figures.misclassified_digits(test.x[wrong], test.y[wrong], predicted[wrong]),
                   "misclassified.png")
    # the weights of the last epoch, whose metrics the model is listed with
    run.log_model([seed_dir], net, step=int(rows[-1]["epoch"]) if rows else 0)


_SHARED: dict[str, Any] = {}  # the data, inherited by forked seed workers instead of pickled


def _seed_worker(job: tuple[int, bool]) -> dict:
    """One seed (or the replay) in a forked worker (see ``interrupts.init_worker`` for how it is stopped)."""
    seed, replay = job
    book_id, run_cfg, profile, limits, model_dir, log = _SHARED["args"]
    with interrupts.worker_job():
        return _seed_job(seed, replay, book_id, run_cfg, profile, limits, model_dir, log)


def _seed_job(seed, replay, book_id, run_cfg, profile, limits, model_dir, log) -> dict:
    try:
        if interrupts.stop_requested():
            raise KeyboardInterrupt(f"seed {seed} not started: the run was stopped")
        with _blas_threads(_SHARED["threads"]):
            return train_seed(book_id, run_cfg, seed, _SHARED["data"], profile, limits,
                              model_dir, lambda line: log(f"[seed {seed}] {line}"), replay)
    except KeyboardInterrupt:
        interrupts.request_stop()
        if interrupts.parent_gone(_SHARED["parent"]):
            # nobody left to report to: end here rather than wait for work that never comes
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        raise
    except Exception:
        interrupts.request_stop()  # the run has failed: this worker takes no queued seed
        raise


def _blas_threads(threads: int | None):
    """A context that pins BLAS to ``threads`` threads (None: leave the library's default)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(threads) if threads else contextlib.nullcontext()


def forked_workers_safe() -> bool:
    """Whether seed workers may be forked processes: on Linux only. Windows has no fork, and on
    macOS a child forked after the parent's first matrix product can crash inside Apple's
    Accelerate (numpy's BLAS there), whose thread pool does not survive a fork."""
    import multiprocessing

    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def train_seeds(seeds: list[int], data: tuple, args: tuple, workers: int,
                threads: int | None = None, replay_seed: int | None = None) -> list[dict]:
    """Train each seed (and, with ``replay_seed``, the book's own run last), one after the
    other or ``workers`` at a time in forked processes, each with ``threads`` BLAS threads."""
    book_id, run_cfg, profile, limits, model_dir, log = args
    jobs = [(seed, False) for seed in seeds] + ([(replay_seed, True)] if replay_seed is not None else [])
    workers = min(workers, len(jobs), os.cpu_count() or 1)
    # the first Ctrl-C or SIGTERM stops the run; a second one (an impatient user, a signal sent
    # to the whole process group) must not cut short the saving of weights and closing of runs
    # it started, nor break the pool while it shuts down
    with interrupts.stops_raise_once():
        forking = workers > 1 and forked_workers_safe()
        if workers > 1 and not forking:
            log(f"train {book_id}: seeds one after another (seed workers are forked processes: "
                f"Linux only)")
        if not forking:
            with _blas_threads(threads):
                return [train_seed(book_id, run_cfg, seed, data, profile, limits, model_dir, log, replay)
                        for seed, replay in jobs]
        return _train_in_workers(jobs, data, args, workers, threads)


def _train_in_workers(jobs: list[tuple[int, bool]], data: tuple, args: tuple, workers: int,
                      threads: int | None) -> list[dict]:
    """``train_seeds``' jobs, ``workers`` at a time in forked processes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    _SHARED.update(data=data, args=args, threads=threads, parent=os.getpid())
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                 initializer=interrupts.init_worker,
                                 initargs=(os.getpid(),)) as pool:
            futures = [pool.submit(_seed_worker, job) for job in jobs]
            try:
                done = _wait_for_all_or_a_failure(futures)
                for future in futures:
                    if future in done and future.exception() is not None:
                        future.result()  # raises it
                return [future.result() for future in futures]
            except BaseException:
                # Ctrl-C, SIGTERM here, or a seed that crashed or was interrupted on its own:
                # every other seed stops, saving its weights and ending its run KILLED, and
                # no queued seed starts, before this process exits
                interrupts.stop_workers([p.pid for p in multiprocessing.active_children()])
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    except BrokenProcessPool as error:
        # a worker killed by a signal no code can catch (the out-of-memory killer, kill -9):
        # it could not end its run, so it is ended here, KILLED, and said in plain words
        with contextlib.suppress(InputError):  # a store that fails now must not hide what happened
            tracking.end_runs_of_dead_processes()
        raise WorkerDied("a seed's worker process died without a word (killed by a signal: the "
                         "out-of-memory killer, or `kill -9`); its run and those of the seeds still "
                         "training ended KILLED, and those seeds saved their weights (a seed that had "
                         "finished stays FINISHED). Run it again; if memory is short, train one seed "
                         "at a time: compute.seed_workers=1") from error
    finally:
        _SHARED.clear()


def _wait_for_all_or_a_failure(futures: list) -> set:
    """Wait until every future is done or one has failed; return those done.

    The first seed to fail (or be interrupted) is seen at once, not after the seeds before it
    in the list have finished training. The wait is a second at a time because the kernel may
    hand a Ctrl-C or SIGTERM to any thread of this process (an OpenBLAS worker, the pool's
    manager), and Python runs the handler only in the main thread, once that thread wakes: in
    one unbounded wait the stop would come only when a seed finished, hours later.
    """
    from concurrent.futures import FIRST_EXCEPTION, wait

    while True:
        done, pending = wait(futures, timeout=STOP_CHECK_SECONDS, return_when=FIRST_EXCEPTION)
        if not pending or any(future.exception() is not None for future in done):
            return done


class WorkerDied(InputError):
    """A seed's worker process was killed from outside; the message says what to do."""


def clear_earlier_outputs(model_dir: Path, results_dir: Path, log: Callable[[str], None]) -> None:
    """Remove what an earlier run of this id left (``metrics.json``, ``history.csv``, the
    ``seed<k>/`` model folders), as ``dvc repro`` does before a stage runs: a run stopped or
    failed part-way must not leave an earlier run's results standing as if they were its own."""
    earlier = [p for p in (results_dir / "metrics.json", results_dir / "history.csv") if p.is_file()]
    earlier += sorted(p for p in model_dir.glob("seed*") if p.is_dir() and re.fullmatch(r"seed\d+", p.name))
    for path in earlier:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    if earlier:
        log(f"removed an earlier run's outputs: {', '.join(str(p) for p in earlier)}")


def train_entry(book_id: str, run_cfg: dict, data_cfg: dict, profile_cfg: dict,
                model_dir: str | Path, results_dir: str | Path,
                log: Callable[[str], None] = print, compute: dict | None = None) -> dict:
    """Train every seed of ``book.<id>``; write ``metrics.json`` and ``history.csv``.

    ``compute.device`` (cpu | gpu) is where every seed trains (a run sets no
    ``training.device``); ``compute.seed_workers`` > 1 trains that many seeds at once, in
    forked processes (CPU only);
    ``compute.blas_threads`` pins each training process's BLAS threads (on two cores, two
    mini-batch-10 nets side by side on one thread each beat one net on two threads, and one
    thread alone beats two: see conf/compute/default.yaml).
    """
    model_dir, results_dir = Path(model_dir), Path(results_dir)
    validate_run(book_id, run_cfg)
    limits = profile_cfg.get("limits") or {}
    check_limits(limits)
    compute = compute or {}
    check_compute(compute)
    device, workers = compute.get("device", "cpu"), compute.get("seed_workers", 1)
    if device != "cpu":
        get_xp(device)  # no GPU or no CuPy: the message says what to install, before any data loads
    if device == "cpu":
        check_fits_memory(book_id, run_cfg, min(workers, len(run_cfg["seeds"])))
    data = load_run_data(run_cfg, data_cfg, limits)
    check_fits_data(book_id, run_cfg, pixels=data[0].x.shape[1])
    check_trains_on(book_id, run_cfg, len(data[0]), limits)
    # the store and experiment made now: a store that cannot be used is named before anything
    # is removed, and forked seed workers find them ready instead of creating them at once
    tracking.init_store()
    for folder in (model_dir, results_dir):  # a folder it cannot write is named now, not after training
        check_writable(folder)
    clear_earlier_outputs(model_dir, results_dir, log)  # every check passed: this run replaces them
    start = time.perf_counter()
    run_cfg = with_device(run_cfg, device)
    if device != "cpu":  # one seed at a time: forked workers cannot share a CUDA context
        workers = 1
    args = (book_id, run_cfg, profile_cfg["name"], limits, model_dir, log)
    replay_seed, not_replayed = None, None
    if run_cfg.get("replay") and profile_cfg.get("replay"):
        if not_replayed := replay_problem(book_id, run_cfg, data_cfg["n_train"], limits):
            log(f"train {book_id}: the book's own run ({run_cfg['replay']['script']}) is not replayed: "
                f"{not_replayed['why']}")
        else:
            replay_seed = run_cfg["replay"]["seed"]
    trained = train_seeds(run_cfg["seeds"], data, args, workers, compute.get("blas_threads"), replay_seed)
    metrics = run_metrics(book_id, run_cfg, profile_cfg["name"], trained, len(data[0]),
                          round(time.perf_counter() - start, 1), limits)
    if not_replayed:  # the report says why the row's replay column is empty
        metrics["replay_not_run"] = dict(not_replayed, script=run_cfg["replay"]["script"])
    # the replay's epochs follow the seeds' in history.csv, under its own seed
    rows = [dict(seed=s["seed"], **row) for s in trained for row in s["records"]]
    write_text(results_dir / "history.csv", history_csv(rows))
    write_json(results_dir / "metrics.json", _json_safe(metrics))
    _log_outcome(book_id, metrics, log)
    return metrics


def ours_by_the_book(seeds: list[dict], book: dict) -> dict[str, Any]:
    """``metrics.json``'s ``ours_book_metric`` (the book's rule over our seeds, see
    ``results.book_rule``) and its ``difference`` from the book's figure."""
    ours = results.book_rule(seeds, book["metric"], book["runs"])
    return {"ours_book_metric": dict(ours, metric=book["metric"], n_seeds=len(seeds)),
            "difference": results.difference(ours["value"], book.get("value"))}


def run_metrics(book_id: str, run_cfg: dict, profile: str, trained: list[dict], train_examples: int,
                wall_seconds: float, limits: dict | None = None) -> dict[str, Any]:
    """``metrics.json`` of a run: the book's figure, ours by the book's rule and by the honest
    one, each seed's summary, and the replay of the book's own run where there is one."""
    seeds = [s for s in trained if not s.get("replay")]
    book = run_cfg["book"]
    metrics: dict[str, Any] = {
        "id": book_id, "chapter": run_cfg["chapter"], "title": run_cfg["title"],
        "what_changed": run_cfg["what_changed"], "profile": profile,
        "train_set": run_cfg["data"]["train"], "train_examples": train_examples,
        # what else its MLflow params hold beside the models' spec (pipeline.restore_runs checks it)
        "settings": {"data": run_cfg["data"], "limits": limits or {}},
        "book": book,
        **ours_by_the_book(seeds, book),
        "honest_test_at_best_validation": results.honest(seeds),
        "epochs": max(s["summary"]["epochs_run"] for s in seeds),
        "wall_seconds": wall_seconds,
        "seeds": [dict(s["summary"], seed=s["seed"], mlflow_run_id=s["mlflow_run_id"]) for s in seeds],
        "mlflow_run_ids": [s["mlflow_run_id"] for s in seeds],
    }
    replayed = [s for s in trained if s.get("replay")]
    if replayed:
        metrics["replay"] = replay_metrics(run_cfg, replayed[0])
    return metrics


def _log_outcome(book_id: str, metrics: dict, log: Callable[[str], None]) -> None:
    """The run's figure beside the book's, in one line (two with a replay)."""
    book, ours, replay = metrics["book"], metrics["ours_book_metric"], metrics.get("replay")
    shown = f"{ours['value']:.2%}" if ours["value"] is not None else "n/a"
    versus = f" (book {book['value']:.2%})" if book.get("value") is not None else ""
    log(f"train {book_id}: {book['metric']} {shown}{versus}, "
        f"{metrics['wall_seconds']:.0f} s for {ours['n_seeds']} seed(s)"
        + (" and the book's run replayed" if replay else ""))
    if replay and replay["value"] is not None:
        log(f"train {book_id}: the book's run ({replay['script']}, seed {replay['seed']}) replayed: "
            f"{book['metric']} {replay['value']:.2%}{versus}")


def replay_metrics(run_cfg: dict, replayed: dict) -> dict:
    """What the book's own run, replayed, gives by the book's metric, and how far that is from
    the book's figure (0 when the replay retraces the book's run)."""
    book = run_cfg["book"]
    value = results.seed_value(replayed["summary"], replayed["records"], book["metric"])
    return {"script": run_cfg["replay"]["script"], "seed": replayed["seed"], "value": value,
            "difference": results.difference(value, book.get("value")),
            "summary": replayed["summary"], "mlflow_run_id": replayed["mlflow_run_id"]}


def _json_safe(value):
    """NaN/inf become null so metrics.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
