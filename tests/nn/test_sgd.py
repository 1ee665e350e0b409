"""The update rules, checked by hand: plain SGD, L2 and L1 decay in both scalings, momentum with each."""

from __future__ import annotations

import numpy
import pytest
from nnhelpers import blobs, make_spec

from pipeline.nn import Regularization, build_network, fit, one_hot
from pipeline.nn.train import SGD

LAYERS = [{"type": "fc", "units": 4, "activation": "sigmoid"}, {"type": "fc", "units": 3, "activation": "sigmoid"}]
N, M, ETA, LMBDA, MU = 8, 4, 0.7, 2.5, 0.6


def hand_trained(spec, x, labels, rule):
    """Replay fit's mini-batches (fixed order) on a twin network, updating with ``rule``; the
    velocity carries over from epoch to epoch."""
    net = build_network(spec)
    velocity = {name: 0.0 for name, _, _ in net.named_params()}
    for lo in [lo for _ in range(spec["training"]["epochs"]) for lo in range(0, len(x), M)]:
        net.backprop(x[lo : lo + M], one_hot(labels[lo : lo + M], 3, dtype=numpy.float64))
        for name, layer, key in net.named_params():
            w, g = layer.params[key], layer.grads[key].copy()
            layer.params[key][...] = rule(w.copy(), g, key in layer.decayed, name, velocity)
    return net


def fitted(spec, x, labels):
    net = build_network(spec)
    fit(net, spec, (x, labels), log=None, progress=False)
    return net


def assert_same_weights(a, b):
    for (name, la, k), (_, lb, _) in zip(a.named_params(), b.named_params()):
        numpy.testing.assert_allclose(la.params[k], lb.params[k], rtol=1e-12, atol=1e-14, err_msg=name)


def spec_with(**training):
    training = {"epochs": 1, "batch_size": M, "eta": ETA, "shuffle": False, **training}
    return make_spec(LAYERS, "quadratic", init="large", **training)


@pytest.fixture
def data():
    return blobs(N)


def test_plain_sgd_step(data):
    spec = spec_with()

    def rule(w, g, decayed, name, v):  # w <- w - eta dC/dw (mean over the batch)
        return w - ETA * g

    assert_same_weights(fitted(spec, *data), hand_trained(spec, *data, rule))


def test_l2_network2_scaling(data):
    """Chapter 3: w <- (1 - eta lmbda / n) w - eta grad, n = training-set size; biases plain."""
    spec = spec_with(regularization={"kind": "l2", "lmbda": LMBDA, "scaling": "network2"})

    def rule(w, g, decayed, name, v):
        return (1 - ETA * LMBDA / N) * w - ETA * g if decayed else w - ETA * g

    assert_same_weights(fitted(spec, *data), hand_trained(spec, *data, rule))


def test_l2_network3_scaling(data):
    """Chapter 6: cost + 0.5 lmbda sum w^2 / (n // m)  =>  w <- w - eta (grad + lmbda w / (n // m))."""
    spec = spec_with(regularization={"kind": "l2", "lmbda": LMBDA, "scaling": "network3"})

    def rule(w, g, decayed, name, v):
        return w - ETA * (g + LMBDA * w / (N // M)) if decayed else w - ETA * g

    assert_same_weights(fitted(spec, *data), hand_trained(spec, *data, rule))


def test_l1_network2_scaling(data):
    """w <- w - (eta lmbda / n) sgn(w) - eta grad."""
    spec = spec_with(regularization={"kind": "l1", "lmbda": LMBDA, "scaling": "network2"})

    def rule(w, g, decayed, name, v):
        return w - ETA * LMBDA / N * numpy.sign(w) - ETA * g if decayed else w - ETA * g

    assert_same_weights(fitted(spec, *data), hand_trained(spec, *data, rule))


def test_l1_network3_scaling(data):
    """Chapter 6's scaling for L1: w <- w - eta (grad + lmbda sgn(w) / (n // m))."""
    spec = spec_with(regularization={"kind": "l1", "lmbda": LMBDA, "scaling": "network3"})

    def rule(w, g, decayed, name, v):
        return w - ETA * (g + LMBDA / (N // M) * numpy.sign(w)) if decayed else w - ETA * g

    assert_same_weights(fitted(spec, *data), hand_trained(spec, *data, rule))


def test_momentum_with_l2(data):
    """v <- mu v - eta (grad + c w); w <- w + v, over three epochs: v is not reset between them."""
    spec = spec_with(momentum=MU, epochs=3, regularization={"kind": "l2", "lmbda": LMBDA, "scaling": "network2"})

    def rule(w, g, decayed, name, v):
        grad = g + LMBDA / N * w if decayed else g
        v[name] = MU * v[name] - ETA * grad
        return w + v[name]

    assert_same_weights(fitted(spec, *data), hand_trained(spec, *data, rule))


@pytest.mark.parametrize("scaling", ["network2", "network3"])
def test_momentum_with_l1(data, scaling):
    """v <- mu v - eta (grad + c sgn(w)); w <- w + v, c = lmbda / n or lmbda / (n // m)."""
    spec = spec_with(momentum=MU, epochs=2, regularization={"kind": "l1", "lmbda": LMBDA, "scaling": scaling})
    c = LMBDA / N if scaling == "network2" else LMBDA / (N // M)

    def rule(w, g, decayed, name, v):
        grad = g + c * numpy.sign(w) if decayed else g
        v[name] = MU * v[name] - ETA * grad
        return w + v[name]

    assert_same_weights(fitted(spec, *data), hand_trained(spec, *data, rule))


@pytest.mark.parametrize("momentum", [0.0, MU])
def test_l1_leaves_a_zero_weight_at_zero(momentum):
    """Eq. 97 with the book's convention sgn(0) = 0: a weight at exactly zero with no gradient
    (network3's softmax starts at zero) is not pushed off it by the L1 term."""
    net = build_network(spec_with())
    for layer in net.layers:
        for key in layer.params:
            layer.params[key][...] = 0.0
            layer.grads[key][...] = 0.0
    sgd = SGD(net, momentum, Regularization("l1", LMBDA), coef=0.1)
    for _ in range(3):  # odd: a wrong sgn(0) = 1 would swing the weight off and back on even steps
        sgd.step(eta=ETA)
    for name, layer, key in net.named_params():
        assert not layer.params[key].any(), name


@pytest.mark.parametrize("momentum", [0.0, MU])
@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_regularization_changes_the_result(data, kind, momentum):
    """Guard against the decay tests above passing because decay was silently ignored."""
    plain = fitted(spec_with(momentum=momentum), *data)
    decayed = fitted(spec_with(momentum=momentum, regularization={"kind": kind, "lmbda": LMBDA}), *data)
    assert not numpy.allclose(plain.layers[0].params["w"], decayed.layers[0].params["w"])


@pytest.mark.parametrize("scaling, lmbda", [("network2", 9 / ETA), ("network3", 20.0)])
def test_an_l2_step_that_flips_the_weights_is_refused(data, scaling, lmbda):
    """w <- (1 - eta c) w with eta c > 1 flips the weights' sign every step: refused before
    training, naming the key; just under the limit trains."""
    from pipeline.errors import InputError

    spec = spec_with(regularization={"kind": "l2", "lmbda": lmbda, "scaling": scaling})
    with pytest.raises(InputError, match=r"training\.regularization\.lmbda: .* eta c < 1"):
        fitted(spec, *data)
    coef = lmbda / (N if scaling == "network2" else N // M)
    spec["training"]["regularization"]["lmbda"] = lmbda * 0.99 / (ETA * coef)  # eta c = 0.99
    fitted(spec, *data)


@pytest.mark.parametrize("scaling, lmbda", [("network2", 16.0), ("network3", 4.0)])
def test_an_l2_step_that_zeroes_the_weights_is_refused(data, scaling, lmbda):
    """eta c = 1 exactly (0.5 * 16 / 8, and 0.5 * 4 / (8 // 4)): every step would zero the weights."""
    from pipeline.errors import InputError

    spec = spec_with(eta=0.5, regularization={"kind": "l2", "lmbda": lmbda, "scaling": scaling})
    with pytest.raises(InputError, match=r"gives 1 - eta c = 0, .* eta c < 1"):
        fitted(spec, *data)


def test_regularization_coefficients():
    assert Regularization("l2", 5.0, "network2").coefficient(50000, 10) == pytest.approx(5.0 / 50000)
    assert Regularization("l2", 0.1, "network3").coefficient(50000, 10) == pytest.approx(0.1 / 5000)
    assert Regularization("l1", 0.1, "network3").coefficient(50005, 10) == pytest.approx(0.1 / 5000)
    assert Regularization("none", 0.0).coefficient(100, 10) == 0.0
    w = numpy.array([[1.0, -2.0], [0.0, 3.0]])
    assert Regularization("l2", 1.0).penalty([w], 0.5) == pytest.approx(0.5 * 0.5 * 14.0)
    assert Regularization("l1", 1.0).penalty([w], 0.5) == pytest.approx(0.5 * 6.0)
    with pytest.raises(ValueError, match="kind"):
        Regularization("l3", 1.0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("lmbda", [0.0, 0.4])
@pytest.mark.parametrize("threads", [1, 2])
def test_step_inside_backprop_equals_backprop_then_step(dtype, lmbda, threads):
    """``Network.sgd_step`` (the step taken layer by layer inside backprop: one in-place GEMM for
    fc weights with one BLAS thread, two steps with more) gives the weights of ``backprop`` +
    ``SGD.step``: conv, fc, softmax, dropout."""
    from threadpoolctl import threadpool_limits

    from pipeline.nn.blas import blas_single_threaded, inplace_gemm

    with threadpool_limits(threads, user_api="blas"):
        assert blas_single_threaded() == (threads == 1)
        in_place = inplace_gemm(numpy.zeros((4, 3), dtype=dtype)) is not None
        assert in_place == (threads == 1)  # which path the fc layers take
        _check_step_inside_backprop(dtype, lmbda)


def _check_step_inside_backprop(dtype, lmbda):
    from pipeline.nn.train import SGD

    layers = [
        {"type": "conv", "filters": 3, "kernel": 3, "pool": 2, "activation": "relu"},
        {"type": "fc", "units": 7, "activation": "relu", "dropout": 0.5},
        {"type": "softmax", "units": 3, "dropout": 0.5},
    ]
    spec = make_spec(layers, "log_likelihood", input_shape=(1, 8, 8), init="network3", dtype=dtype)
    reg = Regularization("l2", lmbda, "network3")
    two_step, fused = build_network(spec), build_network(spec)
    opt = SGD(two_step, 0.0, reg, reg.coefficient(20, 5))
    assert opt.fused and not SGD(two_step, MU, reg, 0.1).fused
    initial = build_network(spec).state_dict()
    rng = numpy.random.default_rng(1)
    x = rng.random((20, 1, 8, 8)).astype(dtype)
    y = one_hot(rng.integers(0, 3, 20), 3, dtype=numpy.dtype(dtype))
    for lo in range(0, 20, 5):
        two_step.backprop(x[lo : lo + 5], y[lo : lo + 5])
        opt.step(ETA)
        fused.sgd_step(x[lo : lo + 5], y[lo : lo + 5], ETA, opt.shrink(ETA))
    tol = 1e-12 if dtype == "float64" else 1e-5
    for (name, la, k), (_, lb, _) in zip(two_step.named_params(), fused.named_params()):
        assert not numpy.allclose(lb.params[k], initial[name]), f"{name} never moved"
        numpy.testing.assert_allclose(lb.params[k], la.params[k], rtol=tol, atol=tol, err_msg=name)


def test_a_regularization_kind_without_a_step_is_refused_not_trained_as_plain_sgd(monkeypatch):
    """A kind added to regularization.KINDS but not to the step would otherwise train as plain
    SGD and report L1's penalty: both say where its rule is missing."""
    from pipeline.nn import regularization

    monkeypatch.setattr(regularization, "KINDS", (*regularization.KINDS, "maxnorm"))
    reg = Regularization("maxnorm", 1.0)
    net = build_network(make_spec(LAYERS))
    with pytest.raises(NotImplementedError, match="maxnorm.*SGD.step"):
        SGD(net, 0.0, reg, reg.coefficient(N, M))
    with pytest.raises(NotImplementedError, match="maxnorm"):
        reg.penalty(net.weights(), 0.1)
