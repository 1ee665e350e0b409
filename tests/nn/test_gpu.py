"""The engine on a GPU (CuPy): the same numbers as on the CPU, and right on its own.

Skipped unless CuPy is installed and sees a CUDA device. The CPU engine is proven elsewhere
against finite differences; here every GPU result is held against the CPU's in float64 (same
seed, same initial weights, same mini-batches), so the GPU inherits those checks, and the one
thing the CPU cannot vouch for, the GPU's own dropout masks, gets a finite-difference check of
its own.
"""

from __future__ import annotations

import numpy
import pytest
from nnhelpers import blobs, central_difference, chapter6_relu_spec, make_spec

from pipeline.nn import BackendError, Regularization, build_network, fit, get_xp, load_model, one_hot, save_model
from pipeline.nn.backend import to_numpy
from pipeline.nn.conv import ConvPool

try:
    cupy = get_xp("gpu")
except BackendError as exc:
    pytest.skip(f"no usable GPU: {exc}", allow_module_level=True)

RTOL = 1e-9  # float64 on both sides: only the order of summation differs
FD_TOLERANCE = 1e-6
FD_STEP = 1e-4

CONV_RELU = {"type": "conv", "kernel": 3, "pool": 2, "activation": "relu"}
SPECS = {
    "fc-sigmoid-quadratic": make_spec(
        [{"type": "fc", "units": 5, "activation": "sigmoid"}, {"type": "fc", "units": 3, "activation": "sigmoid"}]),
    "fc-tanh-cross-entropy": make_spec(
        [{"type": "fc", "units": 5, "activation": "tanh"}, {"type": "fc", "units": 3, "activation": "sigmoid"}],
        "cross_entropy"),
    "fc-relu-softmax": make_spec(
        [{"type": "fc", "units": 5, "activation": "relu"}, {"type": "softmax", "units": 3}], "log_likelihood"),
    # 1x10x10 -> conv3 (one channel in: the transposed patch matrix) -> 3x4x4 -> conv3 (three
    # channels in: the other layout) -> 4x1x1 -> fc -> softmax
    "conv-conv-fc-softmax": make_spec(
        [dict(CONV_RELU, filters=3), dict(CONV_RELU, filters=4), {"type": "fc", "units": 5, "activation": "sigmoid"},
         {"type": "softmax", "units": 3}], "log_likelihood", input_shape=(1, 10, 10)),
    "conv-sigmoid": make_spec(
        [{"type": "conv", "filters": 3, "kernel": 3, "pool": 2, "activation": "sigmoid"},
         {"type": "softmax", "units": 3}], "log_likelihood", input_shape=(1, 10, 10)),
}


def images(n, shape, seed=0):
    """Random images whose left half is exactly zero, as MNIST's background is: many pooling
    windows then tie, so the tie rule is exercised."""
    x = numpy.random.default_rng(seed).normal(0.0, 1.0, (n, *shape))
    if len(shape) == 3:
        x[..., : shape[-1] // 2] = 0.0
    return x


def pair(spec, seed=None):
    """The same network on the CPU and on the GPU (identical initial weights)."""
    return build_network(spec, seed=seed, device="cpu"), build_network(spec, seed=seed, device="gpu")


def assert_same(gpu, cpu, rtol=RTOL, what=""):
    gpu, cpu = to_numpy(gpu), numpy.asarray(cpu)
    assert gpu.shape == cpu.shape, what
    scale = max(float(numpy.abs(cpu).max()), 1e-30)
    err = float(numpy.abs(gpu - cpu).max()) / scale
    assert err < rtol, f"{what}: GPU differs from CPU by {err:.3g} (relative to max |CPU| = {scale:.3g})"


def test_get_xp_returns_cupy_and_arrays_live_on_the_gpu():
    net = build_network(SPECS["fc-relu-softmax"], device="gpu")
    assert net.xp is cupy
    assert all(isinstance(layer.params["w"], cupy.ndarray) for layer in net.layers)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_forward_and_backprop_match_the_cpu(name):
    spec = SPECS[name]
    cpu, gpu = pair(spec)
    shape = tuple(spec["model"]["input_shape"])
    x = images(9, shape)
    labels = numpy.random.default_rng(1).integers(0, 3, 9)
    assert_same(gpu.forward(cupy.asarray(x)), cpu.forward(x), what="forward")
    cpu.backprop(x, one_hot(labels, 3, numpy, numpy.float64))
    gpu.backprop(cupy.asarray(x), one_hot(labels, 3, cupy, numpy.float64))
    for (pname, lc, key), (_, lg, _) in zip(cpu.named_params(), gpu.named_params()):
        assert float(numpy.abs(lc.grads[key]).max()) > 0 or key == "b", f"{pname}: zero gradient"
        assert_same(lg.grads[key], lc.grads[key], what=f"d{pname}")


@pytest.mark.parametrize("ties", ["all", "one"])
def test_pooling_ties_follow_the_same_rule_as_on_the_cpu(ties):
    """A zero image ties in every window: "all" sends the error to all four positions."""
    layers = []
    for xp in (numpy, cupy):
        layer = ConvPool((1, 6, 6), filters=2, kernel=3, pool=2, activation="linear", xp=xp,
                         dtype=numpy.float64, ties=ties)
        layer.init_params("default", numpy.random.default_rng(0))
        layers.append(layer)
    x = numpy.zeros((2, 36))
    x[1] = numpy.random.default_rng(3).normal(size=36)
    delta = numpy.random.default_rng(4).normal(size=(2, 2, 2, 2))
    grads = []
    for layer in layers:
        xp = layer.xp
        layer.forward(xp.asarray(x), train=True)
        dx = layer.backward(xp.asarray(delta), need_input_grad=True)
        grads.append((to_numpy(dx), to_numpy(layer.grads["w"]), to_numpy(layer.grads["b"])))
    for g_cpu, g_gpu in zip(grads[0], grads[1]):
        assert_same(g_gpu, g_cpu, what=f"ties={ties}")
    # zero image: dC/dw is zero whatever the rule, but the bias sees every window's error
    assert numpy.allclose(grads[1][2], delta.sum(axis=(0, 1, 2)))


@pytest.mark.parametrize(
    "regularization, momentum",
    [({"kind": "none"}, 0.0), ({"kind": "l2", "lmbda": 2.0, "scaling": "network2"}, 0.0),
     ({"kind": "l2", "lmbda": 0.1, "scaling": "network3"}, 0.0),
     ({"kind": "l1", "lmbda": 1.0, "scaling": "network2"}, 0.0),
     ({"kind": "l2", "lmbda": 2.0, "scaling": "network2"}, 0.5)])
def test_training_matches_the_cpu_epoch_by_epoch(regularization, momentum):
    """Three reshuffled epochs with every monitor on: the same records and final weights."""
    layers = [{"type": "fc", "units": 8, "activation": "sigmoid"}, {"type": "fc", "units": 3, "activation": "sigmoid"}]
    spec = make_spec(layers, "cross_entropy", epochs=3, batch_size=7, eta=0.5, momentum=momentum,
                     regularization=regularization,
                     monitor={"training_cost": True, "training_accuracy": True, "validation_cost": True,
                              "gradient_norms": 100})
    train, val, test = blobs(120, seed=1), blobs(40, seed=2), blobs(40, seed=3)
    cpu, gpu = pair(spec)
    h_cpu = fit(cpu, spec, train, val, test, log=None)
    h_gpu = fit(gpu, spec, train, val, test, log=None)
    assert h_gpu.summary() == h_cpu.summary()
    for r_cpu, r_gpu in zip(h_cpu.records, h_gpu.records):
        for key in ("training_cost", "validation_cost"):
            assert r_gpu[key] == pytest.approx(r_cpu[key], rel=1e-9), key
        for key in ("training_accuracy", "validation_accuracy", "test_accuracy"):
            assert r_gpu[key] == r_cpu[key], key
        assert r_gpu["gradient_norms"] == pytest.approx(r_cpu["gradient_norms"], rel=1e-8)
    for name, w in cpu.state_dict().items():
        assert_same(gpu.state_dict()[name], w, rtol=1e-8, what=name)


def test_conv_training_matches_the_cpu():
    spec = dict(SPECS["conv-conv-fc-softmax"])
    spec["training"] = dict(spec["training"], epochs=2, batch_size=10, eta=0.1, shuffle=False,
                            regularization={"kind": "l2", "lmbda": 0.1, "scaling": "network3"})
    x = images(60, (1, 10, 10), seed=5)
    y = numpy.random.default_rng(6).integers(0, 3, 60)
    cpu, gpu = pair(spec)
    fit(cpu, spec, (x, y), log=None)
    fit(gpu, spec, (x, y), log=None)
    for name, w in cpu.state_dict().items():
        assert_same(gpu.state_dict()[name], w, rtol=1e-8, what=name)


def _fd_check_on_gpu(spec, x, y, seed=11):
    """Largest relative error between backprop and central differences, all on the GPU, with
    the GPU's dropout masks held fixed by re-seeding."""
    net = build_network(spec, device="gpu")

    def objective():
        net.seed_dropout(seed)
        return net.batch_cost(x, y)

    net.seed_dropout(seed)
    net.backprop(x, y)
    worst, biggest = 0.0, 0.0
    for _, layer, key in net.named_params():
        analytic = to_numpy(layer.grads[key])
        p = layer.params[key]
        numeric = numpy.empty(p.shape)
        for idx in numpy.ndindex(p.shape):
            numeric[idx] = central_difference(objective, p, idx, FD_STEP)
        denom = numpy.maximum(numpy.abs(analytic) + numpy.abs(numeric), 1e-5)
        worst = max(worst, float((numpy.abs(analytic - numeric) / denom).max()))
        biggest = max(biggest, float(numpy.abs(analytic).max()))
    assert biggest > 1e-3, "degenerate check: all gradients ~0"
    return worst


@pytest.mark.parametrize("mode", ["classic", "inverted"])
def test_gpu_dropout_gradients_against_finite_differences(mode):
    layers = [{"type": "conv", "filters": 2, "kernel": 3, "pool": 2, "activation": "tanh", "dropout": 0.2},
              {"type": "fc", "units": 4, "activation": "sigmoid", "dropout": 0.3},
              {"type": "softmax", "units": 3, "dropout": 0.25}]
    spec = make_spec(layers, "log_likelihood", input_shape=(1, 8, 8), dropout_mode=mode)
    x = cupy.asarray(numpy.random.default_rng(0).normal(size=(5, 1, 8, 8)))
    y = one_hot(numpy.random.default_rng(1).integers(0, 3, 5), 3, cupy, numpy.float64)
    assert _fd_check_on_gpu(spec, x, y) < FD_TOLERANCE


def test_gpu_dropout_masks_keep_the_right_fraction():
    spec = make_spec([{"type": "fc", "units": 3, "activation": "sigmoid", "dropout": 0.3}])
    net = build_network(spec, device="gpu")
    layer = net.layers[0]
    layer.forward(cupy.ones((100_000, 6)), train=True)
    kept = float(layer._mask.mean())
    assert abs(kept - 0.7) < 0.003, kept  # 600,000 draws: std 0.0006
    net.seed_dropout(5)
    layer.forward(cupy.ones((10, 6)), train=True)
    first = to_numpy(layer._mask)
    net.seed_dropout(5)
    layer.forward(cupy.ones((10, 6)), train=True)
    assert numpy.array_equal(to_numpy(layer._mask), first)  # re-seeding repeats the masks


def test_float32_training_on_the_gpu_is_deterministic():
    spec = dict(SPECS["conv-conv-fc-softmax"])
    spec["training"] = dict(spec["training"], dtype="float32", epochs=2, batch_size=10, eta=0.1)
    spec["model"] = dict(spec["model"], layers=[dict(layer) for layer in spec["model"]["layers"]])
    spec["model"]["layers"][2]["dropout"] = 0.5
    x = images(60, (1, 10, 10), seed=7).astype(numpy.float32)
    y = numpy.random.default_rng(8).integers(0, 3, 60)
    weights = []
    for _ in range(2):
        net = build_network(spec, device="gpu")
        fit(net, spec, (x, y), log=None)
        weights.append(net.state_dict())
    for name in weights[0]:
        assert numpy.array_equal(weights[0][name], weights[1][name]), name


def test_a_gpu_model_file_loads_on_the_cpu(tmp_path):
    spec = SPECS["conv-conv-fc-softmax"]
    net = build_network(spec, device="gpu")
    x = images(20, (1, 10, 10), seed=9)
    fit(net, spec, (x, numpy.random.default_rng(10).integers(0, 3, 20)), log=None)
    save_model(tmp_path / "model", net, spec)
    loaded = load_model(tmp_path / "model", device="cpu")
    assert loaded.network.xp is numpy
    assert_same(net.forward(cupy.asarray(x)), loaded.network.forward(x), what="loaded model")


@pytest.mark.realdata
@pytest.mark.slow
def test_chapter6_relu_convnet_on_the_gpu(mnist_prepared_dir):
    """The real-data floor of test_real_mnist.py, trained on the GPU (float32)."""
    from pipeline.data.mnist import load_dataset

    sets = {name: load_dataset(mnist_prepared_dir / f"{name}.npz") for name in ("train", "validation", "test")}
    spec = chapter6_relu_spec(device="gpu")
    net = build_network(spec)
    history = fit(net, spec, (sets["train"].x, sets["train"].y), (sets["validation"].x, sets["validation"].y),
                  (sets["test"].x, sets["test"].y), log=print)
    assert history.test_at_best_validation >= 0.975


@pytest.mark.parametrize("m, shuffle, n", [(10, False, 95), (10, True, 100), (30, True, 100)])
def test_cuda_graph_steps_equal_plain_steps(m, shuffle, n):
    """Replaying the recorded step gives bit for bit the weights of plain steps: fixed order or
    reshuffled, a last smaller mini-batch (95 = 9 x 10 + 5), and a conv layer that splits a
    mini-batch of 30 into chunks of 25 and 5."""
    from pipeline.nn import SGD
    from pipeline.nn.train import run_epoch

    spec = dict(SPECS["conv-conv-fc-softmax"])
    spec["training"] = dict(spec["training"], dtype="float32", batch_size=m,
                            regularization={"kind": "l2", "lmbda": 0.1, "scaling": "network3"})
    x = cupy.asarray(images(n, (1, 10, 10), seed=11).reshape(n, -1), dtype=numpy.float32)
    y = one_hot(numpy.random.default_rng(12).integers(0, 3, n), 3, cupy, numpy.float32)
    weights, used, said = [], [], []
    for graphs in (True, False):
        net = build_network(spec, device="gpu")
        reg = Regularization(**spec["training"]["regularization"])
        opt = SGD(net, 0.0, reg, reg.coefficient(n, m))
        rng = numpy.random.default_rng(13)
        for eta in (0.1, 0.05):  # a new eta: a new recording
            order = cupy.asarray(rng.permutation(n)) if shuffle else None
            used.append(run_epoch(net, opt, x, y, m, eta, order, graphs=graphs, log=said.append))
        weights.append(net.state_dict())
    assert used == [True, True, False, False] and said == []
    for name in weights[0]:
        assert numpy.array_equal(weights[0][name], weights[1][name]), name


def test_a_step_that_allocates_is_not_recorded_and_says_why():
    """L1's update takes a temporary (eta c sgn(w)): the epoch falls back to plain steps."""
    from pipeline.nn import SGD
    from pipeline.nn.train import run_epoch

    spec = SPECS["fc-relu-softmax"]
    x, labels = blobs(40)
    net = build_network(spec, dtype="float32", device="gpu")
    opt = SGD(net, 0.0, Regularization("l1", 1.0), 0.01)
    y = one_hot(labels, 3, cupy, numpy.float32)
    said = []
    assert not run_epoch(net, opt, cupy.asarray(x, dtype=numpy.float32), y, 5, 0.1, graphs=True, log=said.append)
    assert len(said) == 1 and "CUDA graph not used" in said[0] and "allocated" in said[0], said
