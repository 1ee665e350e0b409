"""Plurality vote and the array-module switch."""

from __future__ import annotations

import importlib.util

import numpy
import pytest
from nnhelpers import make_spec

from pipeline.nn import BackendError, build_network, get_xp, plurality_vote, score_vote, to_numpy
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


def test_score_vote_counts_the_ties_and_the_errors_they_make():
    """Four voters (the quick profile's ensemble): columns 1-3 split 2-2, and the two ties that
    went to the smaller, wrong label are errors on ties; column 4's 2-1-1 is no tie."""
    preds = [numpy.array([1, 2, 3, 7, 0]), numpy.array([1, 2, 4, 5, 9]),
             numpy.array([1, 3, 4, 5, 9]), numpy.array([2, 3, 3, 7, 8])]
    score = score_vote(preds, numpy.array([1, 3, 3, 7, 9]), 10)
    assert (score["errors"], score["ties"], score["errors_on_ties"]) == (2, 3, 2)
    score = score_vote(preds, numpy.array([1, 2, 4, 5, 9]), 10)
    assert (score["errors"], score["ties"], score["errors_on_ties"]) == (1, 3, 1)


def test_plurality_vote_checks_its_input():
    with pytest.raises(ValueError, match="non-empty list of equally long 1-d label arrays, got none"):
        plurality_vote([])
    with pytest.raises(ValueError, match=r"equally long 1-d label arrays, got shapes \[\(2,\), \(3,\)\]"):
        plurality_vote([numpy.array([1, 2]), numpy.array([1, 2, 3])])
    with pytest.raises(ValueError, match=r"got shapes \[\(3, 1\)\]"):
        plurality_vote([numpy.array([[1], [2], [3]])])
    assert plurality_vote([numpy.array([], dtype=numpy.int64)]).shape == (0,)  # no examples, no max
    with pytest.raises(ValueError, match="non-negative integers"):
        plurality_vote([numpy.array([0.5, 1.0])])
    with pytest.raises(ValueError, match=r"label 10 is not one of the 10 classes 0\.\.9"):
        plurality_vote([numpy.array([3, 10])], n_classes=10)


def test_ensemble_of_identical_networks_predicts_like_one():
    spec = make_spec([{"type": "fc", "units": 4}, {"type": "softmax", "units": 3}], "log_likelihood")
    net = build_network(spec)
    x = numpy.random.default_rng(0).normal(size=(30, 6))
    numpy.testing.assert_array_equal(ensemble_predict([net, net, net], x), net.predict(x))


def test_score_vote_needs_one_label_per_example():
    """(n, 1) labels would broadcast against the (n,) vote: 3 examples, 6 "errors"."""
    votes = [numpy.array([1, 2, 3]), numpy.array([1, 2, 0]), numpy.array([1, 0, 0])]
    score = score_vote(votes, numpy.array([1, 2, 3]), 10)
    assert score == {"accuracy": pytest.approx(2 / 3), "errors": 1, "ties": 0, "errors_on_ties": 0,
                     "member_accuracies": [1.0, pytest.approx(2 / 3), pytest.approx(1 / 3)]}
    with pytest.raises(ValueError, match=r"labels: expected shape \(3,\), one label per voted example, got \(3, 1\)"):
        score_vote(votes, numpy.array([[1], [2], [3]]), 10)
    with pytest.raises(ValueError, match=r"labels: expected shape \(3,\).*got \(2,\)"):
        score_vote(votes, numpy.array([1, 2]), 10)


def test_ensemble_of_disagreeing_networks_takes_the_plurality():
    """Three differently seeded nets: every example gets the label most of them predict (ties to
    the smallest), which is not always the first net's."""
    spec = make_spec([{"type": "fc", "units": 4}, {"type": "softmax", "units": 3}], "log_likelihood")
    nets = [build_network(spec, seed=seed) for seed in (1, 2, 3)]
    x = numpy.random.default_rng(0).normal(size=(200, 6))
    members = numpy.stack([net.predict(x) for net in nets])
    expected = [min(set(col), key=lambda label: (-list(col).count(label), label)) for col in members.T]
    voted = ensemble_predict(nets, x, batch=64)
    numpy.testing.assert_array_equal(voted, expected)
    assert (members[0] != members[1]).any() and (members[1] != members[2]).any()
    assert all((voted != m).any() for m in members)  # no single member decides
    with pytest.raises(ValueError, match="at least one network"):
        ensemble_predict([], x)


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
