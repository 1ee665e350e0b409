"""Finite-difference checks of backpropagation and the training step (float64): every
activation, cost, regulariser and dropout mode, with the dropout masks held fixed by re-seeding
the network's generator. Activations and costs are read from the engine's registries, so one
added there is checked here without a new test."""

from __future__ import annotations

import numpy
import pytest
from nnhelpers import blobs, central_difference, make_spec, max_relative_error

from pipeline.nn import Regularization, activations, build_network, costs, one_hot
from pipeline.nn.regularization import KINDS
from pipeline.nn.train import SGD, run_epoch

TOLERANCE = 1e-6
STEP = 1e-4  # fourth-order central differences: truncation ~STEP^4, rounding ~1e-16/STEP


def trained_gradient(net, x, y, reg, coef, seed) -> dict:
    """w - w' for one step w' of the training code (``run_epoch``: ``Network.sgd_step`` for plain
    SGD and L2, backprop + ``SGD.step`` for L1) on the whole batch at eta = 1: the gradient of
    C_0 + c R(w) that training follows, decay term included. ``net`` is left as it was."""
    before = net.state_dict()
    net.seed_dropout(seed)
    run_epoch(net, SGD(net, 0.0, reg, coef), x, y, x.shape[0], 1.0)
    after = net.state_dict()
    net.load_state_dict(before)
    return {name: before[name] - after[name] for name in before}


def numeric_and_analytic(net, x, y, reg=None, coef=0.0, seed=11):
    """(analytic, numeric) gradient pairs of mean cost + c R(w), one per parameter; the analytic
    one is the step training takes (see ``trained_gradient``)."""

    def objective():
        net.seed_dropout(seed)  # same masks for every evaluation
        value = net.batch_cost(x, y)
        if reg is not None:
            value += reg.penalty(net.weights(), coef)
        return value

    stepped = trained_gradient(net, x, y, reg, coef, seed)
    pairs = []
    for name, layer, key in net.named_params():
        analytic = stepped[name]
        p = layer.params[key]
        numeric = numpy.empty_like(p)
        for idx in numpy.ndindex(p.shape):
            numeric[idx] = central_difference(objective, p, idx, STEP)
        pairs.append((analytic, numeric))
    return pairs


def check(spec, reg=None, n=7, seed=0):
    net = build_network(spec)
    shape = tuple(spec["model"]["input_shape"])
    classes = spec["model"]["layers"][-1]["units"]
    rng = numpy.random.default_rng(seed)
    for _, layer, key in net.named_params():
        # network3's init zeroes the softmax weights, and with them every gradient below
        # the softmax: give them values, or the layers below would be checked at zero
        if not layer.params[key].any():
            layer.params[key][...] = rng.normal(0.0, 0.5, layer.params[key].shape)
    x = rng.normal(0.0, 1.0, (n, *shape))
    y = one_hot(rng.integers(0, classes, n), classes, dtype=numpy.float64)
    coef = reg.coefficient(n=40, batch_size=n) if reg is not None else 0.0
    pairs = numeric_and_analytic(net, x, y, reg, coef)
    for (name, _, _), (analytic, _) in zip(net.named_params(), pairs):
        assert numpy.abs(analytic).max() > 1e-4, f"degenerate check: every gradient of {name} ~0"
    return max_relative_error(pairs)


@pytest.mark.parametrize("activation", activations.NAMES)
def test_quadratic_cost_every_hidden_and_output_activation(activation):
    layers = [
        {"type": "fc", "units": 5, "activation": activation},
        {"type": "fc", "units": 4, "activation": activation},
        {"type": "fc", "units": 3, "activation": activation},
    ]
    assert check(make_spec(layers, "quadratic")) < TOLERANCE


@pytest.mark.parametrize("hidden", activations.NAMES)
def test_cross_entropy_sigmoid_output(hidden):
    layers = [{"type": "fc", "units": 5, "activation": hidden}, {"type": "fc", "units": 3, "activation": "sigmoid"}]
    assert check(make_spec(layers, "cross_entropy", init="large")) < TOLERANCE


@pytest.mark.parametrize("hidden", activations.NAMES)
def test_log_likelihood_softmax_output(hidden):
    layers = [
        {"type": "fc", "units": 5, "activation": hidden},
        {"type": "fc", "units": 4, "activation": hidden},
        {"type": "softmax", "units": 3},
    ]
    assert check(make_spec(layers, "log_likelihood")) < TOLERANCE


def _output_layers(cost: str) -> list[dict]:
    """Every output layer ``cost`` accepts (``Cost.accepts``): a softmax, or an fc layer of each
    activation it allows."""
    if costs.cost_class(cost).accepts("softmax", None):
        return [{"type": "softmax", "units": 3}]
    return [{"type": "fc", "units": 3, "activation": a} for a in activations.NAMES
            if costs.cost_class(cost).accepts("fc", a)]


@pytest.mark.parametrize("cost, output", [(c, o) for c in costs.NAMES for o in _output_layers(c)],
                         ids=lambda v: v if isinstance(v, str) else v.get("activation", v["type"]))
def test_every_cost_on_every_output_layer_it_accepts(cost, output):
    layers = [{"type": "fc", "units": 5, "activation": "tanh"}, output]
    assert check(make_spec(layers, cost)) < TOLERANCE


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "none"])
@pytest.mark.parametrize("scaling", ["network2", "network3"])
def test_regularised_cost(kind, scaling):
    layers = [{"type": "fc", "units": 5, "activation": "tanh"}, {"type": "softmax", "units": 3}]
    reg = Regularization(kind, 3.0, scaling)
    assert check(make_spec(layers, "log_likelihood"), reg) < TOLERANCE


@pytest.mark.parametrize("mode", ["classic", "inverted"])
def test_dropout_with_fixed_masks(mode):
    layers = [
        {"type": "fc", "units": 6, "activation": "relu", "dropout": 0.3},
        {"type": "fc", "units": 5, "activation": "sigmoid", "dropout": 0.5},
        {"type": "softmax", "units": 3, "dropout": 0.4},
    ]
    spec = make_spec(layers, "log_likelihood", dropout_mode=mode)
    assert check(spec, Regularization("l2", 1.0, "network3")) < TOLERANCE


def test_dropout_masks_really_drop_and_change_with_the_seed():
    layers = [{"type": "fc", "units": 6, "activation": "tanh", "dropout": 0.5}, {"type": "softmax", "units": 3}]
    net = build_network(make_spec(layers, "log_likelihood"))
    x, labels = blobs(8)
    y = one_hot(labels, 3, dtype=numpy.float64)
    net.seed_dropout(1)
    c1 = net.batch_cost(x, y)
    net.seed_dropout(1)
    assert net.batch_cost(x, y) == c1
    net.seed_dropout(2)
    assert net.batch_cost(x, y) != c1


def test_input_of_any_shape_is_flattened_by_an_fc_layer():
    layers = [{"type": "fc", "units": 4, "activation": "sigmoid"}, {"type": "fc", "units": 3, "activation": "sigmoid"}]
    assert check(make_spec(layers, "cross_entropy", input_shape=(1, 2, 3))) < TOLERANCE


def test_checker_catches_a_wrong_gradient():
    """The check is not vacuous: a 1% error in one entry is far above the tolerance."""
    layers = [{"type": "fc", "units": 4, "activation": "sigmoid"}, {"type": "softmax", "units": 3}]
    net = build_network(make_spec(layers, "log_likelihood"))
    rng = numpy.random.default_rng(0)
    x = rng.normal(size=(5, 6))
    y = one_hot(rng.integers(0, 3, 5), 3, dtype=numpy.float64)
    pairs = numeric_and_analytic(net, x, y)
    analytic, numeric = pairs[0]
    i = numpy.unravel_index(numpy.abs(analytic).argmax(), analytic.shape)
    analytic[i] *= 1.01
    assert max_relative_error(pairs) > 1e-3


def test_mixed_network_with_convpool():
    layers = [
        {"type": "conv", "filters": 2, "kernel": 3, "pool": 2, "activation": "relu"},
        {"type": "fc", "units": 4, "activation": "sigmoid", "dropout": 0.2},
        {"type": "softmax", "units": 3, "dropout": 0.3},
    ]
    spec = make_spec(layers, "log_likelihood", input_shape=(1, 6, 6), init="network3")
    assert check(spec, Regularization("l2", 1.0, "network3"), n=4) < TOLERANCE


@pytest.mark.parametrize("activation", activations.NAMES)
def test_conv_after_conv(activation):
    """A conv layer that is not first: its input gradient (the full cross-correlation with the
    rotated kernel) is the error backprop hands to the layer below, as in the chapter 6 nets."""
    layers = [
        {"type": "conv", "filters": 2, "kernel": 3, "pool": 2, "activation": activation},
        {"type": "conv", "filters": 3, "kernel": 3, "pool": 1, "activation": activation},
        {"type": "fc", "units": 4, "activation": activation},
        {"type": "softmax", "units": 3},
    ]
    spec = make_spec(layers, "log_likelihood", input_shape=(1, 10, 10), init="network3")
    assert check(spec, Regularization("l2", 1.0, "network3"), n=3) < TOLERANCE
