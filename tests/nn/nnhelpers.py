"""Shared helpers for the engine's tests: tiny specs and synthetic data (no real MNIST).

Imported as ``nnhelpers`` (pytest puts this directory on sys.path: tests/nn has no __init__.py)."""

from __future__ import annotations

import copy

import numpy


def make_spec(layers, cost="quadratic", input_shape=(6,), init="default", **training):
    """A whole spec with a small input; ``training`` overrides the defaults below."""
    t = {"epochs": 1, "batch_size": 5, "eta": 0.5, "seed": 3, "dtype": "float64"}
    t.update(training)
    return {
        "model": {"input_shape": list(input_shape), "layers": copy.deepcopy(layers), "cost": cost, "init": init},
        "training": t,
    }


def blobs(n, dim=6, classes=3, seed=0, dtype=numpy.float64, spread=0.3):
    """A separable synthetic problem: ``classes`` Gaussian blobs in ``dim`` dimensions."""
    rng = numpy.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, (classes, dim))
    labels = rng.integers(0, classes, n)
    x = centres[labels] + spread * rng.normal(0.0, 1.0, (n, dim))
    return x.astype(dtype), labels


def central_difference(objective, p, idx, step=1e-4):
    """d objective / d p[idx] by fourth-order central differences (truncation ~step^4, rounding
    ~1e-16/step); p[idx] is moved in place and put back. Works on numpy and CuPy arrays."""
    old = float(p[idx])  # a number, not a 0-d view of p
    values = []
    for k in (2, 1, -1, -2):
        p[idx] = old + k * step
        values.append(objective())
    p[idx] = old
    f2, f1, fm1, fm2 = values
    return (-f2 + 8 * f1 - 8 * fm1 + fm2) / (12 * step)


GRADIENT_FLOOR = 1e-5  # FD rounding noise is ~1e-16 |C| / step: entries this small are compared absolutely


def max_relative_error(pairs, floor=GRADIENT_FLOOR) -> float:
    """The largest |a - n| / max(|a|, |n|, floor) over every entry of every (analytic, numeric)
    pair: each entry relative to its own size, so an error in a small entry is not hidden by a
    large one elsewhere."""
    worst = 0.0
    for analytic, numeric in pairs:
        denom = numpy.maximum(numpy.maximum(numpy.abs(analytic), numpy.abs(numeric)), floor)
        worst = max(worst, float((numpy.abs(analytic - numeric) / denom).max()))
    return worst


def chapter6_relu_spec(**training):
    """conv20-conv40-fc100-softmax, eta 0.03, lambda 0.1 (network3 scaling), fixed order, 3
    epochs at mini-batch 10: the book's ReLU net, cut short; ``training`` overrides."""
    relu = {"type": "conv", "kernel": 5, "pool": 2, "activation": "relu"}
    t = {"epochs": 3, "batch_size": 10, "eta": 0.03, "shuffle": False, "seed": 1,
         "regularization": {"kind": "l2", "lmbda": 0.1, "scaling": "network3"}}
    t.update(training)
    return {"model": {"input_shape": [1, 28, 28], "cost": "log_likelihood", "init": "network3",
                      "layers": [dict(relu, filters=20), dict(relu, filters=40),
                                 {"type": "fc", "units": 100, "activation": "relu"},
                                 {"type": "softmax", "units": 10}]},
            "training": t}
