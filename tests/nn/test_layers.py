"""Fully connected and softmax layers: the forward pass, initialisation schemes and dropout
statistics."""

from __future__ import annotations

import math

import numpy
import pytest
from nnhelpers import make_spec

from pipeline.nn import FullyConnected, Softmax, build_network

N_IN, N_OUT = 50, 400  # different sizes, so an n_in/n_out mix-up shows


def init_layer(cls, scheme, seed=0, **kw):
    layer = cls(N_IN, N_OUT, dtype=numpy.float64, **kw)
    layer.init_params(scheme, numpy.random.default_rng(seed))
    return layer


@pytest.mark.parametrize("train", [True, False])
def test_the_forward_pass_is_the_books_feedforward_equation(train):
    """a = sigma(w a_in + b) (ch. 1 eq. 22), written per example with the book's column vectors
    and w of shape (n_out, n_in), against the layers' row-major batch; the softmax's
    e^z_j / sum_k e^z_k (ch. 3 eq. 78) likewise, on moderate logits."""
    rng = numpy.random.default_rng(3)
    x = rng.normal(size=(7, N_IN))
    for cls, fn in ((FullyConnected, lambda z: 1 / (1 + numpy.exp(-z))),
                    (Softmax, lambda z: numpy.exp(z) / numpy.exp(z).sum())):
        layer = init_layer(cls, "default", **({"activation": "sigmoid"} if cls is FullyConnected else {}))
        w_book, b = layer.params["w"].T, layer.params["b"]  # the book's w^l is our w.T
        expected = numpy.stack([fn(w_book @ a_in + b) for a_in in x])
        assert numpy.allclose(layer.forward(x, train), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    "scheme, w_std",
    [("large", 1.0), ("default", 1 / math.sqrt(N_IN)), ("network3", math.sqrt(1 / N_OUT))],
)
def test_fully_connected_init(scheme, w_std):
    layer = init_layer(FullyConnected, scheme)
    w, b = layer.params["w"], layer.params["b"]
    assert w.shape == (N_IN, N_OUT) and b.shape == (N_OUT,)
    assert w.dtype == numpy.float64
    assert abs(w.mean()) < 0.05 * w_std
    assert w.std() == pytest.approx(w_std, rel=0.03)
    assert abs(b.mean()) < 0.2
    assert b.std() == pytest.approx(1.0, rel=0.12)
    assert layer.grads["w"].shape == w.shape and layer.grads["b"].shape == b.shape


@pytest.mark.parametrize("scheme, w_std", [("large", 1.0), ("default", 1 / math.sqrt(N_IN))])
def test_softmax_init_like_fc_except_network3(scheme, w_std):
    layer = init_layer(Softmax, scheme)
    assert layer.params["w"].shape == (N_IN, N_OUT)
    assert layer.params["w"].std() == pytest.approx(w_std, rel=0.03)
    assert layer.params["b"].std() == pytest.approx(1.0, rel=0.12)


def test_network3_softmax_starts_at_zero():
    layer = init_layer(Softmax, "network3")
    assert not layer.params["w"].any() and not layer.params["b"].any()
    spec = make_spec(
        [{"type": "fc", "units": 7, "activation": "relu"}, {"type": "softmax", "units": 3}],
        "log_likelihood",
        init="network3",
    )
    net = build_network(spec)
    assert not net.layers[1].params["w"].any() and not net.layers[1].params["b"].any()
    assert net.layers[0].params["w"].shape == (6, 7)
    a = net.forward(numpy.ones((2, 6)))
    numpy.testing.assert_allclose(a, 1 / 3)  # uniform prediction before training


def test_unknown_init_scheme_is_rejected():
    with pytest.raises(ValueError, match="allowed: large, default, network3"):
        init_layer(FullyConnected, "xavier")


def test_init_is_the_same_numbers_in_float32_and_float64():
    a = FullyConnected(5, 4, dtype=numpy.float32)
    b = FullyConnected(5, 4, dtype=numpy.float64)
    a.init_params("default", numpy.random.default_rng(9))
    b.init_params("default", numpy.random.default_rng(9))
    assert a.params["w"].dtype == numpy.float32
    numpy.testing.assert_allclose(a.params["w"], b.params["w"], rtol=1e-6)


def dropout_layer(p, mode, n_in=20):
    layer = FullyConnected(n_in, 4, "linear", dropout=p, dropout_mode=mode, dtype=numpy.float64)
    layer.init_params("large", numpy.random.default_rng(1))
    layer.rng = numpy.random.default_rng(2)
    return layer


@pytest.mark.parametrize("mode", ["classic", "inverted"])
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_expected_training_output_equals_test_output(p, mode):
    """E[z_train] = z_test: with a linear unit, the mean training output must match."""
    layer = dropout_layer(p, mode)
    x = numpy.random.default_rng(3).normal(1.0, 1.0, (1, 20))
    samples = layer.forward(numpy.repeat(x, 40000, axis=0), train=True).copy()
    test = layer.forward(x, train=False)[0]
    mean = samples.mean(axis=0)
    stderr = samples.std(axis=0) / math.sqrt(samples.shape[0])
    assert (numpy.abs(mean - test) < 5 * stderr).all(), (mean, test, stderr)
    # and the test-time output differs from the undropped one exactly as the mode says
    undropped = x @ layer.params["w"] + layer.params["b"]
    if mode == "classic":
        numpy.testing.assert_allclose(test, (1 - p) * (x @ layer.params["w"])[0] + layer.params["b"])
    else:
        numpy.testing.assert_allclose(test, undropped[0])


@pytest.mark.parametrize("mode, scale", [("classic", 1.0), ("inverted", 2.0)])
def test_dropout_mask_drops_inputs_with_probability_p(mode, scale):
    layer = dropout_layer(0.5, mode, n_in=1000)
    x = numpy.ones((4, 1000))
    layer.forward(x, train=True)
    dropped = layer._x  # the masked input the layer multiplied by w
    assert set(numpy.unique(dropped)) == {0.0, scale}
    assert (dropped == 0).mean() == pytest.approx(0.5, abs=0.03)
    # the input gradient flows only through the kept units
    dx = layer.backward(numpy.ones((4, 4)), need_input_grad=True)
    assert ((dx == 0) == (dropped == 0)).all()


def test_backward_skips_the_input_gradient_when_not_needed():
    layer = FullyConnected(3, 2, dtype=numpy.float64)
    layer.init_params("default", numpy.random.default_rng(0))
    x = numpy.arange(6.0).reshape(2, 3)
    layer.forward(x, True)
    delta = numpy.array([[1.0, 2.0], [3.0, 4.0]])
    assert layer.backward(delta, need_input_grad=False) is None
    numpy.testing.assert_allclose(layer.grads["w"], x.T @ delta)  # BP4
    numpy.testing.assert_allclose(layer.grads["b"], delta.sum(axis=0))  # BP3
    numpy.testing.assert_allclose(layer.backward(delta, True), delta @ layer.params["w"].T)  # BP2


def test_layer_argument_checks():
    with pytest.raises(ValueError, match="dropout"):
        FullyConnected(3, 2, dropout=1.0)
    with pytest.raises(ValueError, match="dropout_mode"):
        FullyConnected(3, 2, dropout=0.5, dropout_mode="spatial")
    with pytest.raises(TypeError, match="output layer"):
        Softmax(3, 2).activation_prime()
