"""Activations and costs: correct values, and finite where naive formulas overflow."""

from __future__ import annotations

import warnings

import numpy
import pytest

from pipeline.nn import FullyConnected, Softmax, activations, get_activation, get_cost, one_hot


def naive_sigmoid(z):
    return 1.0 / (1.0 + numpy.exp(-z))


# Each activation's textbook formula and derivative, to hold the engine's forms to
REFERENCES = [
    ("sigmoid", naive_sigmoid, lambda z: naive_sigmoid(z) * (1 - naive_sigmoid(z))),
    ("tanh", numpy.tanh, lambda z: 1 - numpy.tanh(z) ** 2),
    ("relu", lambda z: numpy.maximum(z, 0), lambda z: (z > 0).astype(float)),
    ("linear", lambda z: z, lambda z: numpy.ones_like(z)),
]


def test_every_activation_has_a_reference():
    """An activation added to the engine is held to its formula here once it has a row."""
    assert sorted(name for name, _, _ in REFERENCES) == sorted(activations.NAMES)


@pytest.mark.parametrize("name, reference, derivative", REFERENCES)
def test_activation_values_and_derivatives(name, reference, derivative):
    act = get_activation(name)
    z = numpy.append(numpy.linspace(-6, 6, 49) + 0.01, 0.0)  # and z = 0 itself: relu'(0) = 0
    numpy.testing.assert_allclose(act(z), reference(z), rtol=1e-12, atol=1e-15)
    numpy.testing.assert_allclose(act.derivative(z), derivative(z), rtol=1e-12, atol=1e-15)
    out, prime = numpy.empty_like(z), numpy.empty_like(z)  # the in-place forms used in training
    a = act.fn(z, out)
    numpy.testing.assert_allclose(a, reference(z), rtol=1e-12, atol=1e-15)
    numpy.testing.assert_allclose(act.prime(z, a, prime), derivative(z), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", activations.NAMES)
def test_activation_in_place_on_its_own_input(name):
    """fn(z, out=z), as a conv layer's evaluation calls it, gives sigma(z): an activation must
    read z no more once it has written out."""
    act = get_activation(name)
    z = numpy.linspace(-6, 6, 49) + 0.01
    numpy.testing.assert_array_equal(act.fn(z.copy(), None), act.fn(z, z))


def test_activation_registry_rejects_unknown_names():
    with pytest.raises(ValueError, match="relux.*allowed: sigmoid, tanh, relu, linear"):
        get_activation("relux")


def test_sigmoid_does_not_overflow():
    z = numpy.array([-1000.0, -50.0, 0.0, 50.0, 1000.0], dtype=numpy.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = get_activation("sigmoid")(z)
    assert numpy.isfinite(a).all()
    assert a[0] == 0.0 and a[-1] == 1.0 and a[2] == 0.5


def test_softmax_and_log_likelihood_are_finite_for_huge_logits():
    layer = Softmax(2, 3, dtype=numpy.float64)
    layer.init_params("network3", numpy.random.default_rng(0))  # zero weights: z = b
    layer.params["b"][:] = [1000.0, -1000.0, 0.0]
    x = numpy.zeros((2, 2))
    y = one_hot([0, 1], 3, dtype=numpy.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for train in (False, True):
            a = layer.forward(x, train)
            assert numpy.isfinite(a).all()
            numpy.testing.assert_allclose(a.sum(axis=1), 1.0)
            numpy.testing.assert_allclose(a[0], [1.0, 0.0, 0.0])
            cost = get_cost("log_likelihood")
            values = cost.value(layer.z, a, y)
            # example 0 picks the winning class (cost 0), example 1 the losing one (cost 2000)
            assert values == pytest.approx(2000.0)
            delta = cost.delta(layer.z, a, y, layer, 0.5)
            numpy.testing.assert_allclose(delta, 0.5 * (a - y))


def test_log_likelihood_matches_the_naive_formula_for_moderate_logits():
    rng = numpy.random.default_rng(1)
    z = rng.normal(0, 3, (6, 4))
    labels = rng.integers(0, 4, 6)
    a = numpy.exp(z) / numpy.exp(z).sum(axis=1, keepdims=True)
    naive = -numpy.log(a[numpy.arange(6), labels]).sum()
    assert get_cost("log_likelihood").value(z, a, one_hot(labels, 4, dtype=float)) == pytest.approx(naive, rel=1e-12)


def test_cross_entropy_matches_the_naive_formula_and_stays_finite_when_saturated():
    cost = get_cost("cross_entropy")
    rng = numpy.random.default_rng(2)
    z = rng.normal(0, 2, (5, 3))
    y = one_hot(rng.integers(0, 3, 5), 3, dtype=float)
    a = naive_sigmoid(z)
    naive = (-y * numpy.log(a) - (1 - y) * numpy.log(1 - a)).sum()
    assert cost.value(z, a, y) == pytest.approx(naive, rel=1e-12)

    z = numpy.array([[800.0, -800.0, 40.0]])  # sigma = 1, 0, 1 - 4e-18 = 1.0: naive gives inf/nan
    a = get_activation("sigmoid")(z)
    y = numpy.array([[0.0, 1.0, 0.0]])  # wrong on all three
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = cost.value(z, a, y)
    assert value == pytest.approx(800.0 + 800.0 + 40.0)


def test_quadratic_cost_value_and_delta():
    layer = FullyConnected(2, 3, "sigmoid", dtype=numpy.float64)
    layer.init_params("large", numpy.random.default_rng(0))
    x = numpy.array([[0.5, -1.0], [2.0, 0.1]])
    a = layer.forward(x, True).copy()
    y = one_hot([2, 0], 3, dtype=float)
    cost = get_cost("quadratic")
    assert cost.value(layer.z, a, y) == pytest.approx(0.5 * ((a - y) ** 2).sum())
    numpy.testing.assert_allclose(cost.delta(layer.z, a, y, layer, 0.5), 0.5 * (a - y) * a * (1 - a))


def test_cost_registry_rejects_unknown_names():
    with pytest.raises(ValueError, match="allowed: quadratic, cross_entropy, log_likelihood"):
        get_cost("hinge")


def test_saturated_sigmoid_and_tanh_keep_a_nonzero_derivative_in_float32():
    """sigma(z) is exactly 1.0f for z > 17: sigma (1 - sigma) would be 0 and the unit dead."""
    import numpy as np

    from pipeline.nn.activations import get_activation

    z = np.array([-30.0, -20.0, 20.0, 30.0], dtype=np.float32)
    for name, expected in (("sigmoid", np.exp(-np.abs(z.astype(np.float64)))),
                           ("tanh", 4 * np.exp(-2 * np.abs(z.astype(np.float64))))):
        act = get_activation(name)
        a = act.fn(z, None)
        prime = act.prime(z, a, np.empty_like(z))
        assert prime.dtype == np.float32 and (prime > 0).all(), name
        np.testing.assert_allclose(prime, expected, rtol=1e-3)
