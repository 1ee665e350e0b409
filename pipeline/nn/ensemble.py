"""Ensembles by plurality vote (chapter 6: five dropout nets vote on each test image)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy

from pipeline.nn.backend import to_numpy


def _label_arrays(predictions: Sequence) -> numpy.ndarray:
    """The (voters, n) array of ``predictions``, checked before stacking: numpy.stack's own
    errors ("need at least one array", "same shape") would not say what was expected."""
    arrays = [to_numpy(p) for p in predictions]  # label arrays on a GPU are copied over
    if not arrays:
        raise ValueError("predictions: expected a non-empty list of equally long 1-d label arrays, got none")
    shapes = sorted({a.shape for a in arrays})
    if len(shapes) > 1 or len(shapes[0]) != 1:
        raise ValueError(f"predictions: expected equally long 1-d label arrays, got shapes {shapes}")
    return numpy.stack(arrays)


def vote_counts(predictions: Sequence, n_classes: int | None = None) -> numpy.ndarray:
    """The (n, classes) array of how many networks predicted each label for each example.

    ``predictions`` holds one (n,) integer label array per network."""
    preds = _label_arrays(predictions)
    if not numpy.issubdtype(preds.dtype, numpy.integer) or (preds.size and preds.min() < 0):
        raise ValueError("predictions: labels must be non-negative integers")
    if n_classes is None:  # no examples: one class, so that argmax has a column to take
        k = int(preds.max()) + 1 if preds.size else 1
    else:
        k = int(n_classes)
    if k < 1:
        raise ValueError(f"n_classes: expected >= 1, got {k}")
    if preds.size and preds.max() >= k:
        raise ValueError(f"predictions: label {int(preds.max())} is not one of the {k} classes 0..{k - 1}")
    votes = numpy.zeros((preds.shape[1], k), dtype=numpy.int64)
    rows = numpy.arange(preds.shape[1])
    for p in preds:
        numpy.add.at(votes, (rows, p), 1)
    return votes


def plurality_vote(predictions: Sequence, n_classes: int | None = None) -> numpy.ndarray:
    """The label most networks predicted, for every example.

    ``predictions`` holds one (n,) integer label array per network. A tie between labels with
    equally many votes goes to the *smallest* label (numpy's argmax takes the first maximum).
    """
    return vote_counts(predictions, n_classes).argmax(axis=1)


def tied(votes: numpy.ndarray) -> numpy.ndarray:
    """Which examples' most votes are shared by two labels or more (``votes`` from
    :func:`vote_counts`): with an even number of voters a 2-2 split is common."""
    return (votes == votes.max(axis=1, keepdims=True)).sum(axis=1) > 1


def ensemble_predict(networks: Sequence, x, batch: int = 1000) -> numpy.ndarray:
    """Plurality vote of ``networks``' predicted labels on ``x``."""
    if not networks:
        raise ValueError("networks: an ensemble needs at least one network")
    preds = [net.predict(x, batch) for net in networks]
    return plurality_vote(preds, networks[0].classes)


def score_vote(votes: Sequence, labels, n_classes: int) -> dict:
    """The vote's accuracy and number of errors on ``labels``, how many examples the vote tied
    on and how many of the errors those ties made, and each voter's own accuracy.

    ``votes`` holds one (n,) predicted-label array per network, as ``net.predict`` returns;
    ``labels`` must be (n,) too: an (n, 1) column would broadcast into n * n comparisons."""
    labels = to_numpy(labels)
    counts = vote_counts(votes, n_classes)
    predicted, ties = counts.argmax(axis=1), tied(counts)
    if labels.shape != predicted.shape:
        raise ValueError(f"labels: expected shape {predicted.shape}, one label per voted example, "
                         f"got {labels.shape}")

    def accuracy(p) -> float:  # nan for no examples, as Network.accuracy
        return float(numpy.mean(p == labels)) if labels.size else float("nan")

    return {"accuracy": accuracy(predicted),
            "errors": int(numpy.sum(predicted != labels)),
            "ties": int(numpy.sum(ties)),
            "errors_on_ties": int(numpy.sum(ties & (predicted != labels))),
            "member_accuracies": [accuracy(to_numpy(v)) for v in votes]}
