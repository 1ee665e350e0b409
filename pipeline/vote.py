"""The book's ensemble (chapter 6): the nets that vote, checked, and their plurality vote
scored on validation and test. The ``ensemble`` stage and ``scripts/vote_saved_nets.py`` vote
through it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import figures, results
from pipeline.data.mnist import Dataset, load_dataset, split_file
from pipeline.errors import InputError
from pipeline.nn import LoadedModel, Network, load_model, plurality_vote, score_vote
from pipeline.nn.io import FINAL_EPOCH_WEIGHTS

SPLITS = ("validation", "test")


def load_members(members: str, seeds: list[int], member_dirs: list[Path]) -> list[LoadedModel]:
    """The nets of run ``members`` that vote, one per seed, each checked to be that run's
    net of that seed, trained to its last epoch."""
    missing = [str(d) for d in member_dirs if not d.is_dir()]
    if len(member_dirs) < 2 or missing:
        raise InputError(f"needs the {members} nets of seeds {seeds} (at least 2); "
                         f"missing: {missing or 'none'}. Run `dvc repro train@{members}` first")
    loaded = [load_model(d) for d in member_dirs]
    redo = f"run `dvc repro train@{members}`"
    for d, seed, m in zip(member_dirs, seeds, loaded):
        found = (m.metadata.get("book_id"), m.metadata.get("seed"))
        if found != (members, seed):  # a net copied in from another run or seed
            raise InputError(f"{d} holds the net of run {found[0]!r}, seed {found[1]!r}, not "
                             f"{members!r} seed {seed}: {redo} to train it")
        if not isinstance((m.metadata.get("metrics") or {}).get("epochs_run"), int):
            raise InputError(f"{d}/model.json: metadata.metrics.epochs_run is missing: {redo} to train it again")
    unfinished = [str(d) for d, m in zip(member_dirs, loaded) if m.metadata.get("weights") != FINAL_EPOCH_WEIGHTS]
    if unfinished:
        raise InputError(f"{unfinished} hold the weights of an interrupted run; {redo} to train them to the end")
    return loaded


def predictions(nets: list[Network], prepared_dir: str | Path, cap: int | None = None) -> dict:
    """Each net's predicted digits on validation and test (the first ``cap`` images), with
    the images and true labels: ``{split: (votes, Dataset)}``."""
    found = {}
    for split in SPLITS:
        ds = load_dataset(split_file(prepared_dir, split), cap=cap)
        found[split] = ([net.predict(ds.x) for net in nets], ds)
    return found


def vote_scores(predicted: dict, classes: int) -> dict:
    """The plurality vote's accuracy, errors and ties on each split (``score_vote``), as
    ``<split>_<key>``."""
    return {f"{split}_{key}": value for split, (votes, ds) in predicted.items()
            for key, value in score_vote(votes, ds.y, n_classes=classes).items()}


def run_params(cfg: dict, seeds: list[int] | None, limits: dict | None) -> dict:
    """The ensemble run's MLflow params (and its ``config.json``): its config, the seeds of
    the nets that vote and the profile's limits, as a training seed's run has them."""
    return {**cfg, "member_seeds": seeds, "limits": limits or {}}


def run_metrics(result: dict) -> dict:
    """The ensemble run's MLflow metrics, from its ``metrics.json``: the vote's scores on each
    split, and the book's figure and the difference from it under a training run's names."""
    metrics = {k: v for k, v in result.items() if k.startswith(SPLITS)
               and isinstance(v, (int, float)) and not isinstance(v, bool)}
    book = (result.get("book") or {}).get("value")
    if book is not None:
        metrics["book_value"] = book
        metrics["difference_vs_book"] = results.difference(result["test_accuracy"], book)
    return metrics


def log_vote(run, config: dict, nets: list[Network], member_dirs: list[Path], test_votes: list,
             test: Dataset) -> None:
    """The ensemble run's artifacts, as a training run's: its config, the vote's confusion
    matrix and misclassified test digits, and the vote as one MLflow model (step 0)."""
    run.log_dict(config, "config.json")
    predicted = plurality_vote(test_votes, nets[0].classes)
    run.log_figure(figures.confusion_matrix(test.y, predicted, nets[0].classes), "confusion_matrix.png")
    wrong = np.flatnonzero(predicted != test.y)
    run.log_figure(figures.misclassified_digits(test.x[wrong], test.y[wrong], predicted[wrong]),
                   "misclassified.png")
    run.log_model(member_dirs, nets[0], step=0)
