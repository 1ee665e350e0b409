"""The engine's ``device: gpu`` path, run without a GPU against a strict stand-in for CuPy.

tests/nn/test_gpu.py runs the engine on CuPy itself, and skips where there is no GPU, which so
far is everywhere this project has run. Here ``get_xp("gpu")`` returns the stand-in of
tests/nn/cupy_standin.py (its docstring says what it can and cannot catch): arrays that refuse
to be turned into numpy arrays or mixed with them, a log of every host-device copy, CUDA graphs
that replay recorded kernels, and a fake cuBLAS on raw pointers. Every result is held against
the CPU's (float64: the same numbers up to summation order; float32 graph replays: bit for bit),
and every training epoch must run without one copy between host and device (``run_epoch`` is
watched by the ``cp`` fixture). A numpy call that reaches a device array, a host array mixed
into the step, or a host sync per mini-batch fails one of these tests.
"""

from __future__ import annotations

import importlib
import sys

import cupy_standin
import numpy
import pytest
from nnhelpers import blobs, central_difference, make_spec

import pipeline.nn
import pipeline.nn.backend
import pipeline.nn.build
import pipeline.nn.train
from pipeline.nn import Regularization, build_network, fit, load_model, one_hot, save_model, to_numpy
from pipeline.nn.conv import ConvPool

CONV_RELU = {"type": "conv", "kernel": 3, "pool": 2, "activation": "relu"}
SPECS = {
    "fc-sigmoid-quadratic": make_spec(
        [{"type": "fc", "units": 5, "activation": "sigmoid"}, {"type": "fc", "units": 3, "activation": "sigmoid"}]),
    "fc-tanh-cross-entropy": make_spec(
        [{"type": "fc", "units": 5, "activation": "tanh"}, {"type": "fc", "units": 3, "activation": "sigmoid"}],
        "cross_entropy"),
    "fc-relu-linear-softmax": make_spec(
        [{"type": "fc", "units": 5, "activation": "relu"}, {"type": "fc", "units": 4, "activation": "linear"},
         {"type": "softmax", "units": 3}], "log_likelihood"),
    # one channel in (the transposed patch matrix), then three (the other layout)
    "conv-conv-fc-softmax": make_spec(
        [dict(CONV_RELU, filters=3), dict(CONV_RELU, filters=4), {"type": "fc", "units": 5, "activation": "sigmoid"},
         {"type": "softmax", "units": 3}], "log_likelihood", input_shape=(1, 10, 10)),
    "conv-sigmoid": make_spec(
        [{"type": "conv", "filters": 3, "kernel": 3, "pool": 2, "activation": "sigmoid"},
         {"type": "softmax", "units": 3}], "log_likelihood", input_shape=(1, 10, 10)),
}


class Device:
    """What the ``cp`` fixture gives a test: the stand-in ``cupy``, the fake cuBLAS, the
    stand-in-bound ``pipeline.nn.gpu``, and one entry per training epoch run
    (whether it replayed a CUDA graph)."""

    def __init__(self, cupy, cublas, gpu):
        self.cupy, self.cublas, self.gpu = cupy, cublas, gpu
        self.epochs: list[bool] = []

    @property
    def transfers(self) -> list[str]:
        return cupy_standin.STATE.transfers


@pytest.fixture
def cp(monkeypatch):
    cupy = cupy_standin.install(monkeypatch)
    real_get_xp = pipeline.nn.backend.get_xp

    def get_xp(device="cpu"):
        return cupy if device == "gpu" else real_get_xp(device)

    for module in (pipeline.nn.backend, pipeline.nn.build, pipeline.nn):
        monkeypatch.setattr(module, "get_xp", get_xp)
    if "pipeline.experiment" in sys.modules:
        monkeypatch.setattr(sys.modules["pipeline.experiment"], "get_xp", get_xp)
    # pipeline.nn.gpu imports cupy at the top: import it afresh, bound to the stand-in, for this
    # test only (a real CuPy's, where there is one, is put back afterwards)
    saved = sys.modules.pop("pipeline.nn.gpu", None)
    gpu = importlib.import_module("pipeline.nn.gpu")
    cublas = cupy_standin.FakeCublas()
    monkeypatch.setattr(gpu, "_cublas", lambda: cublas)
    device = Device(cupy, cublas, gpu)
    real_run_epoch = pipeline.nn.train.run_epoch

    def watched_run_epoch(*args, **kwargs):
        before = len(cupy_standin.STATE.transfers)
        used = real_run_epoch(*args, **kwargs)
        inside = cupy_standin.STATE.transfers[before:]
        assert not inside, f"host-device copies inside the mini-batch loop: {inside[:5]}"
        if args[0].xp is cupy:  # the network's
            device.epochs.append(used)
        return used

    monkeypatch.setattr(pipeline.nn.train, "run_epoch", watched_run_epoch)
    try:
        yield device
    finally:
        sys.modules.pop("pipeline.nn.gpu", None)
        if saved is not None:
            sys.modules["pipeline.nn.gpu"] = saved
            pipeline.nn.gpu = saved
        elif hasattr(pipeline.nn, "gpu"):
            del pipeline.nn.gpu


def images(n, shape, seed=0):
    """Random images whose left half is exactly zero (MNIST's background): many pooling windows tie."""
    x = numpy.random.default_rng(seed).normal(0.0, 1.0, (n, *shape))
    if len(shape) == 3:
        x[..., : shape[-1] // 2] = 0.0
    return x


def pair(spec, seed=None):
    """The same network on the CPU and on the stand-in "GPU" (identical initial weights)."""
    return build_network(spec, seed=seed, device="cpu"), build_network(spec, seed=seed, device="gpu")


def assert_same(gpu, cpu, rtol=1e-9, what=""):
    gpu, cpu = to_numpy(gpu), numpy.asarray(cpu)
    assert gpu.shape == cpu.shape, what
    scale = max(float(numpy.abs(cpu).max()), 1e-30)
    err = float(numpy.abs(gpu - cpu).max()) / scale
    assert err < rtol, f"{what}: GPU differs from CPU by {err:.3g} (relative to max |CPU| = {scale:.3g})"


# -- the stand-in itself ------------------------------------------------------------------------
@pytest.mark.parametrize("misuse, error, message", [
    (lambda cp, a: numpy.asarray(a), TypeError, "Implicit conversion"),
    (lambda cp, a: numpy.array([a, a]), TypeError, "Implicit conversion"),
    (lambda cp, a: a + numpy.ones(3), TypeError, "Unsupported type"),
    (lambda cp, a: numpy.ones(3) * a, TypeError, "Unsupported type"),
    (lambda cp, a: a * numpy.array(2.0), TypeError, "Unsupported type"),  # a 0-d numpy array too
    (lambda cp, a: cp.exp(numpy.ones(3)), TypeError, "Unsupported type"),
    (lambda cp, a: cp.multiply(a, 2.0, out=numpy.empty((2, 3))), TypeError, "Unsupported type"),
    (lambda cp, a: a.__setitem__(Ellipsis, numpy.ones(3)), ValueError, "non-scalar numpy.ndarray"),
    (lambda cp, a: cp.copyto(a, numpy.ones(3)), ValueError, "non-scalar numpy.ndarray"),
    (lambda cp, a: numpy.add.at(a, (0, 0), 1.0), TypeError, "NotImplemented"),
    (lambda cp, a: numpy.lib.stride_tricks.sliding_window_view(a, 2), TypeError, "no implementation found"),
    (lambda cp, a: cp.einsum, AttributeError, "einsum"),  # not in the stand-in until checked in CuPy
    (lambda cp, a: a.astype(numpy.float32) * numpy.float64(0.5), TypeError, "promotes float32"),
])
def test_the_standin_refuses_what_cupy_refuses(cp, misuse, error, message):
    a = cp.cupy.ones((2, 3))
    with pytest.raises(error, match=message):
        misuse(cp.cupy, a)


def test_the_standin_logs_every_copy_and_keeps_reductions_on_the_device(cp):
    cupy = cp.cupy
    a = cupy.asarray(numpy.arange(6.0).reshape(2, 3))
    assert cp.transfers and cp.transfers[-1].startswith("h2d asarray at test_gpu_standin.py:")
    total = a.sum()
    assert isinstance(total, cupy.ndarray) and total.shape == ()  # not a number: CuPy's is 0-d too
    assert isinstance(numpy.exp(a), cupy.ndarray)  # numpy's ufuncs dispatch to the device's
    cp.transfers.clear()
    assert float(total) == 15.0 and a.get().sum() == 15.0 and to_numpy(a[1, 2]) == 5.0
    assert [t.split(" at ")[0] for t in cp.transfers] == ["d2h float()", "d2h get()", "d2h get()"]


@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_the_cublas_gemm_computes_a_times_b_for_every_layout(cp, ta, tb, dtype):
    """pipeline.nn.gpu.gemm's operand swap, ops and leading dimensions, on raw pointers."""
    rng = numpy.random.default_rng(0)
    a_host = rng.normal(size=(4, 3) if ta else (3, 4)).astype(dtype)
    b_host = rng.normal(size=(5, 4) if tb else (4, 5)).astype(dtype)
    a, b = cp.cupy.asarray(a_host), cp.cupy.asarray(b_host)
    a, b, a_host, b_host = (a.T if ta else a), (b.T if tb else b), (a_host.T if ta else a_host), \
        (b_host.T if tb else b_host)
    out = cp.cupy.empty((3, 5), dtype)
    cp.gpu.gemm(a, b, out)
    assert cp.cublas.calls == 1
    numpy.testing.assert_allclose(out.get(), a_host @ b_host, rtol=1e-5 if dtype == numpy.float32 else 1e-12)


# -- the engine on the stand-in -----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SPECS))
def test_forward_and_backprop_match_the_cpu(cp, name):
    spec = SPECS[name]
    cpu, gpu = pair(spec)
    shape = tuple(spec["model"]["input_shape"])
    x = images(9, shape)
    labels = numpy.random.default_rng(1).integers(0, 3, 9)
    xd, yd = cp.cupy.asarray(x), one_hot(labels, 3, cp.cupy, numpy.float64)
    assert_same(gpu.forward(xd), cpu.forward(x), what="forward")
    cpu.backprop(x, one_hot(labels, 3, numpy, numpy.float64))
    cp.transfers.clear()
    gpu.backprop(xd, yd)
    assert cp.transfers == []
    for (pname, lc, key), (_, lg, _) in zip(cpu.named_params(), gpu.named_params()):
        assert float(numpy.abs(lc.grads[key]).max()) > 0 or key == "b", f"{pname}: zero gradient"
        assert_same(lg.grads[key], lc.grads[key], what=f"d{pname}")


@pytest.mark.parametrize("ties", ["all", "one"])
def test_pooling_ties_follow_the_same_rule_as_on_the_cpu(cp, ties):
    grads = []
    for xp in (numpy, cp.cupy):
        layer = ConvPool((1, 6, 6), filters=2, kernel=3, pool=2, activation="linear", xp=xp,
                         dtype=numpy.float64, ties=ties)
        layer.init_params("default", numpy.random.default_rng(0))
        x = numpy.zeros((2, 36))
        x[1] = numpy.random.default_rng(3).normal(size=36)
        delta = numpy.random.default_rng(4).normal(size=(2, 2, 2, 2))
        layer.forward(xp.asarray(x), train=True)
        dx = layer.backward(xp.asarray(delta), need_input_grad=True)
        grads.append((to_numpy(dx), to_numpy(layer.grads["w"]), to_numpy(layer.grads["b"])))
    for g_cpu, g_gpu in zip(grads[0], grads[1]):
        assert_same(g_gpu, g_cpu, what=f"ties={ties}")


@pytest.mark.parametrize("graphs", [True, False])
@pytest.mark.parametrize("regularization, momentum, recorded", [
    ({"kind": "none"}, 0.0, True),
    ({"kind": "l2", "lmbda": 2.0, "scaling": "network2"}, 0.0, True),
    ({"kind": "l2", "lmbda": 0.1, "scaling": "network3"}, 0.0, True),
    ({"kind": "l1", "lmbda": 1.0, "scaling": "network2"}, 0.0, False),  # L1 and momentum allocate
    ({"kind": "l2", "lmbda": 2.0, "scaling": "network2"}, 0.5, False),
])
def test_training_matches_the_cpu_epoch_by_epoch(cp, regularization, momentum, recorded, graphs):
    """Three reshuffled epochs with every monitor on, the eta schedule halving: the same
    records and weights, with or without CUDA graphs, and no copy inside an epoch."""
    layers = [{"type": "fc", "units": 8, "activation": "sigmoid"}, {"type": "fc", "units": 3, "activation": "sigmoid"}]
    spec = make_spec(layers, "cross_entropy", epochs=3, batch_size=7, eta=0.5, momentum=momentum,
                     regularization=regularization, cuda_graphs=graphs,
                     eta_schedule={"kind": "halve_on_plateau", "patience": 1, "min_fraction": 0.01},
                     monitor={"training_cost": True, "training_accuracy": True, "validation_cost": True,
                              "gradient_norms": 100})
    train, val, test = blobs(120, seed=1), blobs(40, seed=2), blobs(40, seed=3)
    cpu, gpu = pair(spec)
    h_cpu = fit(cpu, spec, train, val, test, log=None)
    said = []
    h_gpu = fit(gpu, spec, train, val, test, log=said.append)
    assert h_gpu.summary() == h_cpu.summary()
    for r_cpu, r_gpu in zip(h_cpu.records, h_gpu.records):
        assert r_gpu.keys() == r_cpu.keys()
        for key in ("training_cost", "validation_cost"):
            assert r_gpu[key] == pytest.approx(r_cpu[key], rel=1e-9), key
        for key in ("training_accuracy", "validation_accuracy", "test_accuracy"):
            assert r_gpu.get(key) == r_cpu.get(key), key
        assert r_gpu["gradient_norms"] == pytest.approx(r_cpu["gradient_norms"], rel=1e-8)
        assert all(isinstance(v, (int, float, list, type(None))) for v in r_gpu.values())  # no device arrays
    for name, w in cpu.state_dict().items():
        assert_same(gpu.state_dict()[name], w, rtol=1e-8, what=name)
    assert cp.epochs == [graphs and recorded] * 3
    fell_back = [line for line in said if "CUDA graph not used" in line]
    assert len(fell_back) == (1 if graphs and not recorded else 0), said  # then no more tries


def test_an_epochs_seconds_are_read_after_the_device_has_finished_it(cp, monkeypatch):
    """CuPy returns once kernels are queued: the clock that ends an epoch of plain steps must
    wait for them (a graphed epoch waits for its stream in ``run_epoch_graphed``)."""
    events = []

    class Device(cp.cupy.cuda.Device):
        def synchronize(self):
            events.append("sync")

    monkeypatch.setattr(cp.cupy.cuda, "Device", Device)
    monkeypatch.setattr(pipeline.nn.train, "time", type("clock", (), {
        "perf_counter": staticmethod(lambda: events.append("clock") or float(len(events)))}))
    run_epoch = pipeline.nn.train.run_epoch
    monkeypatch.setattr(pipeline.nn.train, "run_epoch", lambda *a, **k: events.append("epoch") or run_epoch(*a, **k))
    spec = make_spec([{"type": "fc", "units": 5, "activation": "sigmoid"}, {"type": "fc", "units": 3,
                                                                           "activation": "sigmoid"}],
                     epochs=2, batch_size=7, cuda_graphs=False)
    gpu = build_network(spec, seed=1, device="gpu")
    fit(gpu, spec, blobs(30, seed=1), blobs(10, seed=2), blobs(10, seed=3), log=None)
    assert events.count("epoch") == 2
    for at in (i for i, event in enumerate(events) if event == "epoch"):
        assert "sync" in events[at:events.index("clock", at)], events


@pytest.mark.parametrize("graphs", [True, False])
def test_conv_training_matches_the_cpu(cp, graphs):
    """Mini-batches of 30 that the conv layers split into chunks of 25 and 5, a last one of 20."""
    spec = dict(SPECS["conv-conv-fc-softmax"])
    spec["training"] = dict(spec["training"], epochs=2, batch_size=30, eta=0.1, cuda_graphs=graphs,
                            regularization={"kind": "l2", "lmbda": 0.1, "scaling": "network2"})
    x = images(80, (1, 10, 10), seed=5)
    y = numpy.random.default_rng(6).integers(0, 3, 80)
    cpu, gpu = pair(spec)
    fit(cpu, spec, (x, y), log=None)
    fit(gpu, spec, (x, y), log=None)
    for name, w in cpu.state_dict().items():
        assert_same(gpu.state_dict()[name], w, rtol=1e-8, what=name)
    assert cp.epochs == [graphs] * 2


@pytest.mark.parametrize("m, shuffle, n", [(10, False, 95), (10, True, 100), (30, True, 100)])
def test_cuda_graph_steps_equal_plain_steps(cp, m, shuffle, n):
    """Replaying the recorded kernels gives bit for bit the weights of plain steps (float32)."""
    from pipeline.nn import SGD
    from pipeline.nn.train import run_epoch

    cupy = cp.cupy
    spec = dict(SPECS["conv-conv-fc-softmax"])
    spec["training"] = dict(spec["training"], dtype="float32", batch_size=m,
                            regularization={"kind": "l2", "lmbda": 0.1, "scaling": "network3"})
    x = cupy.asarray(images(n, (1, 10, 10), seed=11).reshape(n, -1), dtype=numpy.float32)
    y = one_hot(numpy.random.default_rng(12).integers(0, 3, n), 3, cupy, numpy.float32)
    weights, said = [], []
    for graphs in (True, False):
        net = build_network(spec, device="gpu")
        reg = Regularization(**spec["training"]["regularization"])
        opt = SGD(net, 0.0, reg, reg.coefficient(n, m))
        rng = numpy.random.default_rng(13)
        for eta in (0.1, 0.05):  # a new eta: a new recording
            order = cupy.asarray(rng.permutation(n)) if shuffle else None
            run_epoch(net, opt, x, y, m, eta, order, graphs=graphs, log=said.append)
        weights.append(net.state_dict())
    assert cp.epochs == [True, True, False, False] and said == []
    for name in weights[0]:
        assert numpy.array_equal(weights[0][name], weights[1][name]), name


def test_a_step_that_allocates_is_not_recorded_and_says_why(cp):
    from pipeline.nn import SGD
    from pipeline.nn.train import run_epoch

    x, labels = blobs(40)
    net = build_network(SPECS["fc-relu-linear-softmax"], dtype="float32", device="gpu")
    opt = SGD(net, 0.0, Regularization("l1", 1.0), 0.01)
    said = []
    assert not run_epoch(net, opt, cp.cupy.asarray(x, dtype=numpy.float32), one_hot(labels, 3, cp.cupy, numpy.float32),
                         5, 0.1, graphs=True, log=said.append)
    assert len(said) == 1 and "CUDA graph not used" in said[0] and "allocated" in said[0], said


@pytest.mark.parametrize("mode", ["classic", "inverted"])
def test_dropout_gradients_on_the_device_against_finite_differences(cp, mode):
    """The device draws its own masks (cupy.random): backprop through them, masks held fixed
    by re-seeding, against central differences."""
    layers = [{"type": "conv", "filters": 2, "kernel": 3, "pool": 2, "activation": "tanh", "dropout": 0.2},
              {"type": "fc", "units": 4, "activation": "sigmoid", "dropout": 0.3},
              {"type": "softmax", "units": 3, "dropout": 0.25}]
    net = build_network(make_spec(layers, "log_likelihood", input_shape=(1, 8, 8), dropout_mode=mode), device="gpu")
    x = cp.cupy.asarray(numpy.random.default_rng(0).normal(size=(5, 1, 8, 8)))
    y = one_hot(numpy.random.default_rng(1).integers(0, 3, 5), 3, cp.cupy, numpy.float64)

    def objective():
        net.seed_dropout(11)
        return net.batch_cost(x, y)

    net.seed_dropout(11)
    net.backprop(x, y)
    worst = 0.0
    for _, layer, key in net.named_params():
        analytic, p = to_numpy(layer.grads[key]), layer.params[key]
        numeric = numpy.array([central_difference(objective, p, idx) for idx in numpy.ndindex(p.shape)])
        numeric = numeric.reshape(p.shape)
        denom = numpy.maximum(numpy.abs(analytic) + numpy.abs(numeric), 1e-5)
        worst = max(worst, float((numpy.abs(analytic - numeric) / denom).max()))
    assert worst < 1e-6


@pytest.mark.parametrize("mode", ["classic", "inverted"])
def test_dropout_trains_and_evaluates_without_copies_and_without_a_graph(cp, mode, tmp_path):
    """Masks drawn on the device every step (so no graph), the mode's test-time scaling in the
    evaluations (the trained net's outputs those of its weights on the CPU), and not one copy
    between host and device inside an epoch."""
    layers = [{"type": "conv", "filters": 2, "kernel": 3, "pool": 2, "activation": "relu", "dropout": 0.1},
              {"type": "fc", "units": 8, "activation": "relu", "dropout": 0.2}, {"type": "softmax", "units": 3}]
    spec = make_spec(layers, "log_likelihood", input_shape=(1, 8, 8), epochs=2, batch_size=10, dtype="float32",
                     dropout_mode=mode)
    x, y = images(60, (1, 8, 8), seed=2), numpy.random.default_rng(3).integers(0, 3, 60)
    net = build_network(spec, device="gpu")
    history = fit(net, spec, (x, y), (x[:20], y[:20]), log=None)
    assert history.epochs_completed == 2 and cp.epochs == [False, False]
    save_model(tmp_path / "model", net, spec)
    on_cpu = load_model(tmp_path / "model").network
    assert on_cpu.xp is numpy
    assert_same(net.forward(cp.cupy.asarray(x), False), on_cpu.forward(x, False), rtol=1e-5, what="evaluation")


def test_the_books_replayed_streams_train_the_same_on_the_device(cp):
    """``rng.kind: network2``: the book's script's initial weights and Python 2.7 shuffles."""
    spec = make_spec([{"type": "fc", "units": 5}, {"type": "fc", "units": 3}], "cross_entropy", epochs=2,
                     batch_size=5, rng={"kind": "network2"}, seed=12345678)
    cpu, gpu = pair(spec)
    fit(cpu, spec, blobs(30, seed=1), log=None)
    fit(gpu, spec, blobs(30, seed=1), log=None)
    for name, w in cpu.state_dict().items():
        assert_same(gpu.state_dict()[name], w, rtol=1e-9, what=name)


def test_a_gpu_model_saves_loads_predicts_and_votes(cp, tmp_path):
    from pipeline.nn import ensemble_predict
    from pipeline.predict import Voter, outputs

    spec = dict(SPECS["conv-conv-fc-softmax"])
    spec["training"] = dict(spec["training"], epochs=2, batch_size=10, device="gpu")
    x = images(40, (1, 10, 10), seed=9)
    net = build_network(spec)
    assert net.xp is cp.cupy
    fit(net, spec, (x, numpy.random.default_rng(10).integers(0, 3, 40)), log=None)
    save_model(tmp_path / "model", net, spec)
    on_cpu = load_model(tmp_path / "model").network  # the spec says gpu; loading defaults to the CPU
    on_gpu = load_model(tmp_path / "model", device="gpu").network
    assert on_cpu.xp is numpy and on_gpu.xp is cp.cupy
    expected = net.predict(x)
    assert isinstance(expected, numpy.ndarray)
    for other in (on_cpu, on_gpu):
        numpy.testing.assert_array_equal(other.predict(x), expected)
        numpy.testing.assert_array_equal(ensemble_predict([on_cpu, other, net], x), expected)
    assert_same(outputs(Voter("gpu", net, {}, {}), x.reshape(40, -1)), on_cpu.forward(x), what="outputs")
    assert net.accuracy(x, expected) == 1.0 and on_gpu.accuracy(cp.cupy.asarray(x), cp.cupy.asarray(expected)) == 1.0


def test_votes_take_label_arrays_from_the_device(cp):
    from pipeline.nn import plurality_vote, score_vote

    preds = [numpy.array([1, 2, 3, 7, 0]), numpy.array([1, 2, 4, 5, 9]), numpy.array([1, 3, 4, 5, 9])]
    on_device = [cp.cupy.asarray(p) for p in preds]
    numpy.testing.assert_array_equal(plurality_vote(on_device, 10), plurality_vote(preds, 10))
    labels = numpy.array([1, 3, 3, 7, 9])
    assert score_vote(on_device, cp.cupy.asarray(labels), 10) == score_vote(preds, labels, 10)


def test_a_run_of_the_book_trains_on_the_gpu_end_to_end(cp, workdir, monkeypatch):
    """``compute.device: gpu``: every seed trains on the device, its model and MLflow run are
    written, and the model loads on the CPU with the same answers."""
    from pipeline import experiment

    monkeypatch.setattr(experiment, "get_xp", pipeline.nn.backend.get_xp)  # the stand-in's
    run = {"chapter": 3, "title": "tiny", "what_changed": "test",
           "book": {"value": 0.5, "metric": "peak_validation", "runs": 1, "epochs": 2, "note": ""},
           "data": {"train": "train", "train_file": "data/prepared/train.npz", "train_limit": None},
           "seeds": [1], "model": {"input_shape": [784], "cost": "cross_entropy", "init": "default",
                                   "layers": [{"type": "fc", "units": 8}, {"type": "fc", "units": 10}]},
           "training": {"epochs": 2, "batch_size": 10, "eta": 0.5,
                        "monitor": {"training_cost": True, "validation_cost": True}}}
    data = {"prepared_dir": "data/prepared", "expanded_dir": "data/expanded", "n_train": 60}
    metrics = experiment.train_entry("tiny", run, data, {"name": "test", "limits": {}}, "models/tiny", "results/tiny",
                                     log=lambda _: None, compute={"device": "gpu"})
    assert len(metrics["seeds"]) == 1 and cp.epochs == [True, True]
    loaded = load_model(workdir / "models/tiny/seed1")
    assert loaded.spec["training"]["device"] == "gpu" and loaded.network.xp is numpy
