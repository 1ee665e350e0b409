"""The CUDA-graph epoch's bookkeeping, checked without a GPU.

``pipeline.nn.gpu.run_epoch_graphed`` decides which mini-batch runs plainly, which one is
recorded and which are replays, copies every mini-batch into the fixed input buffer a replay
reads, and falls back to plain steps when recording fails. That logic is plain Python, so it is
checked here on numpy against a stand-in for CuPy whose "graph" replays the step on whatever
the input buffers hold at launch, as a real graph does; recording runs nothing, as in CUDA.
(tests/nn/test_gpu.py checks the real thing on a GPU.)
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types

import numpy
import pytest


class _Graph:
    def __init__(self, step, xb, yb):
        self.step, self.xb, self.yb = step, xb, yb

    def launch(self, stream=None):
        self.step(self.xb, self.yb)


class _Stream:
    recording = None  # the (step, xb, yb) being recorded

    def __init__(self, non_blocking=False):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def begin_capture(self):
        _Stream.recording = []

    def end_capture(self):
        calls, _Stream.recording = _Stream.recording, None
        return _Graph(*calls[0]) if calls else None

    def synchronize(self):
        pass


def _fake_cupy():
    cupy = types.ModuleType("cupy")
    cuda = types.ModuleType("cupy.cuda")
    device = types.ModuleType("cupy.cuda.device")
    device.get_cublas_handle = lambda: 0
    cuda.device = device
    cuda.Device = lambda *a: types.SimpleNamespace(synchronize=lambda: None)
    cuda.Stream = _Stream
    cuda.using_allocator = lambda allocator=None: contextlib.nullcontext()
    cupy.cuda = cuda
    cupy.ndarray = numpy.ndarray
    cupy.empty, cupy.copyto, cupy.take = numpy.empty, numpy.copyto, numpy.take
    return {"cupy": cupy, "cupy.cuda": cuda, "cupy.cuda.device": device}


@pytest.fixture
def gpu(monkeypatch):
    for name, module in _fake_cupy().items():
        monkeypatch.setitem(sys.modules, name, module)
    # a module imported before against the real CuPy is put back afterwards (monkeypatch's undo)
    monkeypatch.delitem(sys.modules, "pipeline.nn.gpu", raising=False)
    yield importlib.import_module("pipeline.nn.gpu")
    sys.modules.pop("pipeline.nn.gpu", None)  # the next import sees the real CuPy (or none)


class _Step:
    """Stands in for the SGD step: notes the labels of every mini-batch it really trains on;
    while a graph records, it only registers itself (or fails, if told to)."""

    def __init__(self, fail_recording=None):
        self.seen: list[list[int]] = []
        self.fail_recording = fail_recording

    def __call__(self, xb, yb):
        if _Stream.recording is not None:
            if self.fail_recording:
                raise self.fail_recording
            _Stream.recording.append((self, xb, yb))
            return
        assert numpy.array_equal(xb[:, 0], yb)  # the inputs and labels of one mini-batch
        self.seen.append(yb.tolist())


def _data(n):
    labels = numpy.arange(n)
    return numpy.stack([labels, -labels], axis=1).astype(numpy.float64), labels


@pytest.mark.parametrize("n, m, shuffled", [(95, 10, False), (100, 10, True), (23, 5, True), (10, 10, False),
                                            (7, 10, False)])
def test_every_mini_batch_is_trained_once_in_order(gpu, n, m, shuffled):
    x, y = _data(n)
    order = numpy.random.default_rng(0).permutation(n) if shuffled else None
    step, ticks = _Step(), []
    used = gpu.run_epoch_graphed(step, x, y, m, order, ticks.append, keep_alive=None, tick_every=3)
    visit = order if shuffled else numpy.arange(n)
    assert step.seen == [visit[lo : lo + m].tolist() for lo in range(0, n, m)]
    batches = -(-n // m)
    assert used == (n >= m) and ticks == [3] * (batches // 3) + ([batches % 3] if batches % 3 else [])


def test_a_step_that_cannot_be_recorded_runs_plainly_and_says_why(gpu):
    x, y = _data(45)
    step, said = _Step(fail_recording=RuntimeError("the step allocated 40 bytes")), []
    assert not gpu.run_epoch_graphed(step, x, y, 10, None, None, keep_alive=None, log=said.append)
    assert step.seen == [list(range(lo, min(lo + 10, 45))) for lo in range(0, 45, 10)]
    assert said == ["CUDA graph not used (RuntimeError: the step allocated 40 bytes): plain steps from here on"]


def test_the_graph_keeps_every_buffer_of_the_network_alive(gpu):
    """device_arrays finds the parameters, gradients, the optimiser's scratch and every
    layer's training buffers, down to a conv layer's shared patch matrix."""
    from nnhelpers import make_spec

    from pipeline.nn import SGD, build_network, one_hot
    from pipeline.nn.train import run_epoch

    layers = [{"type": "conv", "filters": 2, "kernel": 3, "pool": 2, "activation": "relu"},
              {"type": "fc", "units": 4, "activation": "sigmoid"}, {"type": "softmax", "units": 3}]
    net = build_network(make_spec(layers, "log_likelihood", input_shape=(1, 8, 8)))
    opt = SGD(net)
    x = numpy.random.default_rng(0).random((30, 64))
    run_epoch(net, opt, x, one_hot(numpy.arange(30) % 3, 3, numpy, numpy.float64), 30, 0.1)
    found = {id(a) for a in gpu.device_arrays((net, opt))}
    conv = net.layers[0]
    expected = [conv.params["w"], conv.grads["b"], net.layers[2]._rows, net._delta, conv._dx_all]
    for chunk in conv._train_bufs:  # chunks of 25 and 5 images
        expected += [a for a in (*vars(chunk).values(), *vars(chunk.work).values()) if isinstance(a, numpy.ndarray)]
    expected += [scratch for _, _, scratch, _, _ in opt.slots]
    assert len(conv._train_bufs) == 2 and all(id(a) in found for a in expected)
