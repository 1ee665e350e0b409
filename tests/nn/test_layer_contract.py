"""Every layer the engine builds keeps the contract written down in ``pipeline/nn/base.py``:
the members, a layer taking its predecessor's output (the same number of values a row; a
conv layer's in_shape is the spec's (C, H, W), its output channels-last), grads shaped like
params, weight decay on weights only, the network's dropout generator, evaluation that
returns fresh arrays. (That ``backward_sgd`` equals ``backward`` and the step:
``tests/nn/test_sgd.py``.)"""

from __future__ import annotations

import math

import numpy
import pytest
from nnhelpers import make_spec

from pipeline.nn import build_network
from pipeline.nn.base import Layer

CONV = {"type": "conv", "kernel": 3, "pool": 2, "filters": 2}
NETS = {
    # every layer type and hidden activation once; dropout on so that masks are drawn
    "conv-conv-fc-softmax": make_spec(
        [dict(CONV, activation="relu"), dict(CONV, activation="sigmoid", filters=3),
         {"type": "fc", "units": 5, "activation": "tanh", "dropout": 0.5},
         {"type": "softmax", "units": 3}],
        cost="log_likelihood", input_shape=(1, 14, 14), init="network3"),
    "fc-fc-fc": make_spec(
        [{"type": "fc", "units": 7, "activation": "linear"},
         {"type": "fc", "units": 5, "activation": "relu", "dropout": 0.25},
         {"type": "fc", "units": 3, "activation": "sigmoid"}],
        cost="cross_entropy", input_shape=(6,), dropout_mode="inverted"),
}


def built(name):
    spec = NETS[name]
    net = build_network(spec)
    x = numpy.random.default_rng(1).random((4, *spec["model"]["input_shape"]))
    return spec, net, x


@pytest.mark.parametrize("name", sorted(NETS))
def test_every_layer_has_the_members_and_its_shapes_chain(name):
    """The spec's layer types in order, each layer's input the size of the one below's output,
    and the members every layer has."""
    spec, net, _ = built(name)
    assert [layer.kind for layer in net.layers] == [layer["type"] for layer in spec["model"]["layers"]]
    assert net.layers[0].in_shape == tuple(spec["model"]["input_shape"])
    for layer, after in zip(net.layers, net.layers[1:]):
        assert math.prod(layer.out_shape) == math.prod(after.in_shape), (layer.kind, after.kind)
    for layer in net.layers:
        assert isinstance(layer, Layer), layer.kind
        assert set(layer.params) == set(layer.grads) == {"w", "b"}
        assert layer.decayed == ("w",)  # weights decay, biases never
        assert layer.rng is net.dropout_rng  # the network's generator, for the masks


@pytest.mark.parametrize("name", sorted(NETS))
def test_forward_and_backward_shapes(name):
    """forward: the predecessor's output -> (m, *out_shape); backward: grads shaped like params,
    and the input gradient shaped like the input it got (what BP2 multiplies by the predecessor's
    sigma'(z)), or None when it is not asked for."""
    _, net, x = built(name)
    inputs = [x]
    for layer in net.layers:
        out = layer.forward(inputs[-1], True)
        assert out.shape == (len(x), *layer.out_shape), layer.kind
        inputs.append(out)
    for i, layer in reversed(list(enumerate(net.layers))):
        delta = numpy.random.default_rng(i).standard_normal((len(x), *layer.out_shape))
        returned = layer.backward(delta, i > 0)
        for key, p in layer.params.items():
            assert layer.grads[key].shape == p.shape, (layer.kind, key)
        if i > 0:
            assert returned.shape == inputs[i].shape, layer.kind
            assert net.layers[i - 1].activation_prime().shape == inputs[i].shape
        else:
            assert returned is None, layer.kind
    assert net.layers[-1].z.shape == (len(x), *net.layers[-1].out_shape)  # the costs read it


@pytest.mark.parametrize("name", sorted(NETS))
def test_evaluation_returns_fresh_arrays(name):
    """forward(train=False) must not hand back a buffer the next call overwrites: the evaluation
    loop keeps one chunk's output while the next is computed."""
    _, net, x = built(name)
    for layer in net.layers:
        first = layer.forward(x, False)
        kept = first.copy()
        layer.forward(x * 0.5, False)
        layer.forward(x, True)
        numpy.testing.assert_array_equal(first, kept, err_msg=layer.kind)
        x = kept
