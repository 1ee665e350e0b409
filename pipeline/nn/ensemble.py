"""Ensembles by plurality vote (chapter 6: five dropout nets vote on each test image)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy


def plurality_vote(predictions: Sequence, n_classes: int | None = None) -> numpy.ndarray:
    """The label most networks predicted, for every example.

    ``predictions`` holds one (n,) integer label array per network. A tie between labels with
    equally many votes goes to the *smallest* label (numpy's argmax takes the first maximum).
    """
    preds = numpy.stack([numpy.asarray(p) for p in predictions])
    if preds.ndim != 2 or preds.shape[0] == 0:
        raise ValueError("predictions: expected a non-empty list of equally long 1-d label arrays")
    if not numpy.issubdtype(preds.dtype, numpy.integer) or (preds.size and preds.min() < 0):
        raise ValueError("predictions: labels must be non-negative integers")
    k = int(preds.max()) + 1 if n_classes is None else int(n_classes)
    if preds.size and preds.max() >= k:
        raise ValueError(f"predictions: label {int(preds.max())} is not one of the {k} classes 0..{k - 1}")
    votes = numpy.zeros((preds.shape[1], k), dtype=numpy.int64)
    rows = numpy.arange(preds.shape[1])
    for p in preds:
        numpy.add.at(votes, (rows, p), 1)
    return votes.argmax(axis=1)


def ensemble_predict(networks: Sequence, x, batch: int = 1000) -> numpy.ndarray:
    """Plurality vote of ``networks``' predicted labels on ``x``."""
    preds = [net.predict(x, batch) for net in networks]
    return plurality_vote(preds, networks[0].classes)


def score_vote(votes: Sequence, labels, n_classes: int) -> dict:
    """The vote's accuracy and number of errors on ``labels``, and each voter's own accuracy.

    ``votes`` holds one (n,) predicted-label array per network, as ``net.predict`` returns."""
    labels = numpy.asarray(labels)
    predicted = plurality_vote(votes, n_classes)
    return {"accuracy": float(numpy.mean(predicted == labels)),
            "errors": int(numpy.sum(predicted != labels)),
            "member_accuracies": [float(numpy.mean(numpy.asarray(v) == labels)) for v in votes]}
