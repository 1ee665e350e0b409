"""Plurality vote and the array-module switch."""

from __future__ import annotations

import importlib.util

import numpy
import pytest
from nnhelpers import make_spec

from pipeline.nn import BackendError, build_network, get_xp, plurality_vote, to_numpy
from pipeline.nn.ensemble import ensemble_predict


def test_plurality_vote_majority_and_ties_to_the_smallest_label():
    preds = [
        numpy.array([1, 2, 3, 7, 0]),
        numpy.array([1, 2, 4, 5, 9]),
        numpy.array([1, 3, 4, 5, 9]),
        numpy.array([2, 3, 3, 7, 8]),
    ]
    # column 0: 1 wins 3-1; column 1: 2 and 3 tie -> 2; column 2: 3 and 4 tie -> 3;
    # column 3: 5 and 7 tie -> 5; column 4: 9 wins 2-1-1
    numpy.testing.assert_array_equal(plurality_vote(preds), [1, 2, 3, 5, 9])
    numpy.testing.assert_array_equal(plurality_vote(preds[:1]), preds[0])


def test_plurality_vote_checks_its_input():
    with pytest.raises(ValueError):
        plurality_vote([])
    with pytest.raises(ValueError, match="non-negative integers"):
        plurality_vote([numpy.array([0.5, 1.0])])
    with pytest.raises(ValueError, match=r"label 10 is not one of the 10 classes 0\.\.9"):
        plurality_vote([numpy.array([3, 10])], n_classes=10)


def test_ensemble_of_identical_networks_predicts_like_one():
    spec = make_spec([{"type": "fc", "units": 4}, {"type": "softmax", "units": 3}], "log_likelihood")
    net = build_network(spec)
    x = numpy.random.default_rng(0).normal(size=(30, 6))
    numpy.testing.assert_array_equal(ensemble_predict([net, net, net], x), net.predict(x))


def test_cpu_backend():
    assert get_xp("cpu") is numpy
    a = numpy.arange(3)
    assert to_numpy(a) is a
    with pytest.raises(ValueError, match="allowed: cpu, gpu"):
        get_xp("tpu")


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_gpu_without_cupy_names_the_fix():
    with pytest.raises(BackendError, match=r"pip install -e '\.\[gpu\]'"):
        get_xp("gpu")
