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

