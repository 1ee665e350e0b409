"""The PyTorch twin of a network: same start, same gradients, same training.

These run where torch is installed (the benchmark extra, ``pip install -e '.[bench]'``); they
check both the twin's translation of our layouts and our backward pass against autograd."""

import numpy
import pytest

from pipeline.crosscheck import TorchTwin, train_torch
from pipeline.data.mnist import Dataset
from pipeline.nn.build import build_network
from pipeline.nn.network import one_hot
from pipeline.nn.spec import validate_spec
from pipeline.nn.train import fit

torch = pytest.importorskip("torch")

LAYERS = [{"type": "conv", "filters": 3, "kernel": 3, "pool": 2, "activation": "relu"},
          {"type": "fc", "units": 7, "activation": "sigmoid"},
          {"type": "softmax", "units": 10}]


def _spec(**training):
    t = {"epochs": 10, "batch_size": 5, "eta": 0.3, "seed": 4, "dtype": "float64",
         "shuffle": False, "regularization": {"kind": "l2", "lmbda": 0.3, "scaling": "network3"}}
    t.update(training)
    return validate_spec({"model": {"input_shape": [1, 10, 10], "layers": LAYERS,
                                    "cost": "log_likelihood", "init": "default"}, "training": t})


def _data(n, seed):
    rng = numpy.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    centres = numpy.random.default_rng(99).uniform(0, 1, (10, 100))
    x = numpy.clip(centres[labels] + 0.1 * rng.normal(size=(n, 100)), 0, 1)
    return Dataset(x=x, y=labels)


def test_twin_gradients_equal_our_backprop():
    spec = _spec()
    net = build_network(spec)
    twin = TorchTwin(spec, net.state_dict(), torch)
    data = _data(6, seed=1)
    net.backprop(data.x, one_hot(data.y, 10, numpy, numpy.float64))
    cost = torch.nn.functional.cross_entropy(twin.output_z(torch.from_numpy(data.x)),
                                             torch.from_numpy(data.y))
    cost.backward()
    for layer, (w, b) in zip(net.layers, twin.tensors):
        numpy.testing.assert_allclose(layer.grads["w"], w.grad.numpy(), rtol=1e-9, atol=1e-12)
        numpy.testing.assert_allclose(layer.grads["b"], b.grad.numpy(), rtol=1e-9, atol=1e-12)


def _train_both(spec, n_train):
    """Our network and its twin trained from the same start; their two histories."""
    net = build_network(spec)
    start = net.state_dict()
    train, val, test = _data(n_train, 2), _data(100, 3), _data(100, 4)
    ours = fit(net, spec["training"], (train.x, train.y), (val.x, val.y), (test.x, test.y),
               log=None, progress=False)
    return ours, train_torch(spec, start, train, val, test, torch, log=lambda s: None)


def test_both_engines_train_to_the_same_accuracies():
    ours, theirs = _train_both(_spec(), 200)
    assert theirs.column("validation_accuracy") == ours.column("validation_accuracy")
    assert theirs.column("test_accuracy") == ours.column("test_accuracy")
    assert theirs.test_at_best_validation == ours.test_at_best_validation
    assert ours.column("validation_accuracy")[-1] > 0.5  # it learned something to agree on


FC_LAYERS = [{"type": "fc", "units": 12, "activation": "sigmoid"},
             {"type": "fc", "units": 10, "activation": "sigmoid"}]


def _fc_spec(cost, **training):
    """A chapter 3 network: sigmoid output, reshuffled every epoch, network2's L2."""
    t = {"epochs": 12, "batch_size": 7, "eta": 3.0 if cost == "quadratic" else 0.5, "seed": 5,
         "dtype": "float64", "shuffle": True,
         "regularization": {"kind": "l2", "lmbda": 0.1, "scaling": "network2"}}
    t.update(training)
    return validate_spec({"model": {"input_shape": [100], "layers": FC_LAYERS, "cost": cost,
                                    "init": "default"}, "training": t})


@pytest.mark.parametrize("cost", ["quadratic", "cross_entropy"])
def test_twin_gradients_equal_our_backprop_with_a_sigmoid_output(cost):
    spec = _fc_spec(cost)
    net = build_network(spec)
    twin = TorchTwin(spec, net.state_dict(), torch)
    data = _data(6, seed=1)
    net.backprop(data.x, one_hot(data.y, 10, numpy, numpy.float64))
    twin.mean_cost(torch.from_numpy(data.x), torch.from_numpy(data.y)).backward()
    for layer, (w, b) in zip(net.layers, twin.tensors):
        numpy.testing.assert_allclose(layer.grads["w"], w.grad.numpy(), rtol=1e-9, atol=1e-12)
        numpy.testing.assert_allclose(layer.grads["b"], b.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("cost, scaling, eval_every", [("quadratic", "network2", 1),
                                                        ("cross_entropy", "network2", 1),
                                                        ("cross_entropy", "network3", 1),
                                                        ("quadratic", "network2", 5)])
def test_both_engines_follow_the_same_reshuffles(cost, scaling, eval_every):
    """The twin draws the run's shuffles from the same seed, so the two train alike: 103
    examples in mini-batches of 7 leave a smaller last one, which network2 trains and
    network3 leaves out; and the twin evaluates the epochs fit evaluates."""
    spec = _fc_spec(cost, eval_every=eval_every,
                    regularization={"kind": "l2", "lmbda": 0.1, "scaling": scaling})
    ours, theirs = _train_both(spec, 103)
    assert theirs.column("epoch") == ours.column("epoch")
    assert theirs.column("validation_accuracy") == ours.column("validation_accuracy")
    assert theirs.column("test_accuracy") == ours.column("test_accuracy")
    assert ours.column("validation_accuracy")[-1] > 0.5  # it learned something to agree on
    assert theirs.best_epoch == ours.best_epoch
    for name, w in ours.best_weights.items():  # the same steps in the same order, to rounding
        numpy.testing.assert_allclose(theirs.best_weights[name], w, rtol=1e-7, atol=1e-9, err_msg=name)


def test_the_twin_has_a_torch_function_for_every_activation_it_claims():
    from pipeline.crosscheck import TWIN_ACTIVATIONS

    spec = _spec()
    twin = TorchTwin(spec, build_network(spec).state_dict(), torch)
    assert set(twin.activations) == set(TWIN_ACTIVATIONS)
