"""Mini-batch stochastic gradient descent with the book's update rules and bookkeeping.

One step on a mini-batch of m examples (``backprop`` gives dC/dw for the *mean* cost C_0):

- plain SGD (ch. 1 eq. 20-21):    w <- w - eta dC_0/dw,   b <- b - eta dC_0/db
- L2, L1 weight decay:            see :mod:`pipeline.nn.regularization` (biases never decay)
- momentum (ch. 3, eq. 107-108):  v <- mu v - eta dC/dw,  w <- w + v   (C includes the decay term)

Epochs visit the training set in mini-batches of ``batch_size`` (the last one may be smaller;
under ``regularization.scaling: network3`` it is left out, as network3.py trains n // m whole
mini-batches, whatever ``regularization.kind``), either reshuffled every epoch (network.py,
network2.py) or in a fixed order (network3.py).
After every epoch (or every ``eval_every``-th epoch and the last; for runs of thousands of
tiny epochs, like chapter 3's 100-image training sets) the net is evaluated and a record is
made (accuracies are fractions in [0, 1]): ``epoch`` (0-based), ``eta``, ``seconds`` (training
loop since the last record), ``eval_seconds``, ``validation_accuracy``, ``test_accuracy``
(when those sets are given), and when monitored ``training_cost``, ``training_accuracy``,
``validation_cost``, ``test_cost``, ``gradient_norms`` (||dC/db^l|| per layer over the first
``monitor.gradient_norms`` training examples, measured at the *start* of the epoch as the
book's chapter 5 script does, so epoch 0's are the initial network's). Gradient norms are
measured and recorded every epoch, also between evaluations (those records have no
accuracies or costs).

Costs include the regularisation term as network2.py's ``total_cost`` does: c = lmbda / n with
n the size of the set being evaluated (``network2`` scaling), or the training coefficient
lmbda / (n_train // m) (``network3`` scaling).

The best-validation epoch is the last one whose validation accuracy is >= every earlier one
(chapter 6's rule: ties go to the later epoch); its test accuracy and a copy of its weights are
kept. Early stopping and the eta schedule count evaluations (epochs, unless ``eval_every`` > 1)
without *strict* improvement of the best validation accuracy.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy

from pipeline.console import say
from pipeline.errors import InputError
from pipeline.nn.backend import synchronize, to_numpy
from pipeline.nn.blas import blas_threads_settled, one_blas_thread
from pipeline.nn.network import Network, one_hot
from pipeline.nn.network2_rng import Python27Shuffle
from pipeline.nn.regularization import Regularization
from pipeline.nn.seeding import streams
from pipeline.nn.spec import validate_training

_TICK_BATCHES = 250  # progress-bar granularity, in mini-batches
# The most multiply-adds one layer's GEMM of a training step may have for an epoch to train
# on one BLAS thread whatever the thread limit: below it a second OpenBLAS thread costs more
# than it gives, and one thread also lets the step update w in place (see
# pipeline.nn.blas.blas_single_threaded). Measured by ``python -m pipeline.bench`` (2-core
# Intel Xeon, 2026-12-01): 784-30-10 (235k) and 784-100-10 (784k) at mini-batch 10 took 0.21
# and 0.35 s an epoch on one thread, 0.24 and 0.45 s on two.
SMALL_STEP_MACS = 1_000_000


@dataclass
class History:
    """What a training run produced. ``best_weights`` is a state dict (see ``Network.state_dict``)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_validation_accuracy: float | None = None
    test_at_best_validation: float | None = None
    peak_test_accuracy: float | None = None
    peak_test_epoch: int | None = None  # first epoch reaching the peak
    best_weights: dict[str, numpy.ndarray] | None = None
    interrupted: bool = False
    # what stopped it (Ctrl-C's KeyboardInterrupt or SIGTERM's Terminated), raised again by a
    # caller that saves the weights first, so the process still exits 130 or 143 as it should
    stopped_by: KeyboardInterrupt | None = None
    # epochs trained to the end: more than the records when only every k-th is evaluated
    epochs_completed: int = 0
    stopped_early: str | None = None  # why training stopped before the last epoch, if it did
    # eta where the schedule ended: when the schedule stopped the run, the first halved eta at
    # or below eta0 * min_fraction, which stopped it and which no epoch trained with (each
    # record's "eta" is the one it used)
    final_eta: float | None = None

    def column(self, key: str) -> list:
        """One metric over the epochs (``None`` where a record lacks it)."""
        return [r.get(key) for r in self.records]

    def summary(self) -> dict[str, Any]:
        """The scalar results (no weights, no per-epoch records), JSON-ready."""
        return {
            "epochs_run": self.epochs_completed,
            "best_epoch": self.best_epoch,
            "best_validation_accuracy": self.best_validation_accuracy,
            "test_at_best_validation": self.test_at_best_validation,
            "peak_test_accuracy": self.peak_test_accuracy,
            "peak_test_epoch": self.peak_test_epoch,
            "interrupted": self.interrupted,
            "stopped_early": self.stopped_early,
            "final_eta": self.final_eta,
        }


class SGD:
    """In-place parameter updates from the gradients ``backprop`` left in the layers: plain
    SGD w -> w - eta dC/dw (ch. 1 eqs. 20-21, dC/dw the mini-batch mean); with L2 the decay
    (1 - eta c) w first (ch. 3 eq. 93, ``Regularization.coefficient`` gives c); with L1
    w -> w - eta c sgn(w) - eta dC/dw (eq. 97); with momentum v -> mu v - eta dC/dw,
    w -> w + v (eqs. 107-108), the decay's gradient inside dC/dw."""

    KINDS_WITH_A_STEP = ("none", "l1", "l2")  # the regularisations step and _momentum_step apply

    def __init__(self, net: Network, momentum: float = 0.0, regularization: Regularization | None = None,
                 coef: float = 0.0):
        xp = net.xp
        reg = regularization or Regularization()
        self.xp = xp
        self.momentum = float(momentum)
        self.kind = reg.kind if reg.active and coef > 0 else "none"
        if self.kind not in self.KINDS_WITH_A_STEP:  # a kind added to regularization.KINDS only
            raise NotImplementedError(f"SGD has no step for regularization {self.kind!r}: add it to "
                                      "SGD.step, SGD._momentum_step and SGD.KINDS_WITH_A_STEP "
                                      "(docs/extending.md)")
        self.coef = float(coef)
        self.decayed = [layer.params[k] for layer in net.layers for k in layer.decayed]
        decayed_ids = {id(p) for p in self.decayed}
        # (param, grad, scratch, velocity, decays) for every parameter
        self.slots = [
            (
                layer.params[k],
                layer.grads[k],
                xp.empty_like(layer.params[k]),
                xp.zeros_like(layer.params[k]) if self.momentum else None,
                id(layer.params[k]) in decayed_ids,
            )
            for layer in net.layers
            for k in layer.params
        ]
        self._pairs = [(p, g, s) for p, g, s, _, _ in self.slots]
        # Plain SGD (no momentum, L2 or no decay) is taken inside backprop: Network.sgd_step
        self.fused = not self.momentum and self.kind in ("none", "l2")

    def shrink(self, eta: float) -> float:
        """The weight-decay factor of one step: 1 - eta c for L2, 1 otherwise."""
        return 1.0 - eta * self.coef if self.kind == "l2" else 1.0

    def step(self, eta: float) -> None:
        """One update with learning rate ``eta`` from the gradients ``backprop`` left.

        Training calls it for momentum and L1 only: a plain or L2 step is taken inside
        backprop (``Network.sgd_step``, where ``fused``), and this two-phase form of the same
        rule is what tests/nn/test_sgd.py checks that faster path against."""
        if self.momentum:
            self._momentum_step(eta)
            return
        xp = self.xp
        if self.kind == "l2":  # w <- (1 - eta c) w
            shrink = 1.0 - eta * self.coef
            for w in self.decayed:
                w *= shrink
        elif self.kind == "l1":  # w <- w - eta c sgn(w)
            k = eta * self.coef
            for w in self.decayed:
                w -= k * xp.sign(w)
        multiply, subtract = xp.multiply, xp.subtract
        for p, g, s in self._pairs:  # w <- w - eta dC_0/dw
            multiply(g, eta, out=s)
            subtract(p, s, out=p)

    def _momentum_step(self, eta: float) -> None:
        xp, mu, k = self.xp, self.momentum, eta * self.coef
        for p, g, s, v, decays in self.slots:
            xp.multiply(g, eta, out=s)  # s = eta dC/dw
            if decays and self.kind == "l2":
                s += k * p
            elif decays and self.kind == "l1":
                s += k * xp.sign(p)
            v *= mu  # v <- mu v - eta dC/dw
            v -= s
            p += v  # w <- w + v


class TrainingDiverged(InputError):
    """The weights became NaN or infinite: the step size is too large for this network."""


def check_finite(net: Network, epoch: int, eta: float) -> None:
    """Raise :class:`TrainingDiverged` if any parameter is NaN or infinite after ``epoch``.

    Without it a diverged run would go on to "finish", report chance accuracy and save a model
    that the loader rejects; a few milliseconds an epoch (one pass over the weights)."""
    xp = net.xp
    for layer in net.layers:
        for name, p in layer.params.items():
            if not bool(xp.isfinite(p).all()):
                raise TrainingDiverged(
                    f"training diverged in epoch {epoch}: {layer.kind} layer {net.layers.index(layer)}'s "
                    f"{name} holds NaN or infinite values at eta {eta:g}; lower training.eta")


def _prepare(data, net: Network, name: str):
    """(x on the device in the network's dtype, labels as a host int64 array)."""
    try:
        x, y = data
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected an (x, y) pair") from None
    x = net.xp.ascontiguousarray(net.xp.asarray(x, dtype=net.dtype))
    _check_example_size(x, net, name)
    y = numpy.asarray(to_numpy(y))
    if y.ndim != 1 or not numpy.issubdtype(y.dtype, numpy.integer):
        raise ValueError(f"{name}: labels must be a 1-d integer array, got shape {y.shape} dtype {y.dtype}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{name}: {x.shape[0]} inputs but {y.shape[0]} labels")
    if y.size and (y.min() < 0 or y.max() >= net.classes):
        raise ValueError(f"{name}: labels must lie in [0, {net.classes}), got [{y.min()}, {y.max()}]: the "
                         f"output layer (the spec's model.layers[-1].units) needs one unit per class")
    return x, y.astype(numpy.int64)


def _check_example_size(x, net: Network, name: str) -> None:
    """Each example of ``x`` must hold as many values as the model's input shape (an fc first
    layer flattens any shape of that size); otherwise numpy's matmul error would name no data."""
    size, wanted = math.prod(x.shape[1:]), math.prod(net.input_shape)
    if size != wanted:
        raise InputError(
            f"{name}: each example has {size} values (shape {list(x.shape[1:])}), but the model's "
            f"input_shape {list(net.input_shape)} takes {wanted}; give data of that size or change "
            f"model.input_shape")


def _training_config(training) -> dict:
    if isinstance(training, Mapping) and "training" in training and "model" in training:
        training = training["training"]
    return validate_training(training)


def epoch_orders(training: dict, n: int) -> Callable[[], numpy.ndarray] | None:
    """The source of each epoch's order of n examples (``None``: the stored order).

    Our seed's ``shuffle`` stream, or with ``rng.kind: network2`` the book's script's
    Python-2.7 shuffles (:class:`pipeline.nn.network2_rng.Python27Shuffle`).
    """
    if not training["shuffle"]:
        return None
    rng = training["rng"]
    if rng["kind"] == "network2":
        return Python27Shuffle(training["seed"], n, rng["shuffles_before"], rng["order_carried"]).permutation
    shuffle_rng = streams(training["seed"]).shuffle
    return lambda: shuffle_rng.permutation(n)


def run_epoch(net: Network, opt: SGD, x, y, batch_size: int, eta: float, order=None, tick=None,
              graphs: bool = False, log: Callable[[str], None] | None = None,
              whole_batches: bool = False) -> bool:
    """One pass of mini-batch SGD over (x, y one-hot), in ``order`` (an index array) or as stored.

    A last mini-batch smaller than ``batch_size`` is trained on, as network.py and network2.py
    do; ``whole_batches``: left out, as network3.py does (it trains n // m mini-batches).
    ``graphs`` (a network on a GPU only): record the step once as a CUDA graph and replay it
    for every full mini-batch (see :mod:`pipeline.nn.gpu`); ``log`` hears why when recording
    fails (a net with dropout is never recorded, and takes plain steps without a word).
    Returns whether a graph was used.
    """
    train, m = _minibatch_step(net, opt, eta), batch_size
    if whole_batches:
        x, y, order = _whole_minibatches(x, y, m, order)
    if graphs and _replayable(net):
        from pipeline.nn.gpu import run_epoch_graphed  # imported here: GPU only

        return run_epoch_graphed(train, x, y, m, order, tick, (net, opt), log, tick_every=_TICK_BATCHES)
    with _epoch_blas_threads(net, m):
        _run_minibatches(train, x, y, m, order, tick)
    return False


def _minibatch_step(net: Network, opt: SGD, eta: float) -> Callable[[Any, Any], None]:
    """``train(xb, yb)``: one SGD step with learning rate ``eta`` on a mini-batch (xb, yb one-hot).

    Plain SGD and L2 (``opt.fused``) take the step inside backprop, layer by layer
    (``Network.sgd_step``: w <- shrink w - eta dC/dw); momentum and L1 run ``backprop`` and then
    ``SGD.step``. Made once an epoch, so that each mini-batch costs one call and no lookups."""
    if opt.fused:
        sgd_step, shrink = net.sgd_step, opt.shrink(eta)

        def train(xb, yb):
            sgd_step(xb, yb, eta, shrink)
    else:
        backprop, step = net.backprop, opt.step

        def train(xb, yb):
            backprop(xb, yb)
            step(eta)
    return train


def _whole_minibatches(x, y, m: int, order):
    """(x, y, order) with the last n % m examples of the epoch left out: network3.py's n // m
    whole mini-batches. With an ``order``, its tail is cut (x and y stay whole)."""
    n = x.shape[0]
    if n % m == 0:
        return x, y, order
    used = n - n % m
    if order is None:
        return x[:used], y[:used], None
    return x, y, order[:used]


def _replayable(net: Network) -> bool:
    """Whether a CUDA graph of the step can stand in for it: on a GPU, and without dropout,
    which draws new masks every step where a replayed graph would not."""
    return net.xp is not numpy and not any(getattr(layer, "dropout", 0) for layer in net.layers)


@contextlib.contextmanager
def _epoch_blas_threads(net: Network, batch_size: int):
    """The BLAS threads of one CPU epoch: one for a net too small for two
    (``too_small_for_two_threads``), and the thread count asked once for the whole epoch
    (:func:`pipeline.nn.blas.blas_threads_settled`), not before every step."""
    one = one_blas_thread() if too_small_for_two_threads(net, batch_size) else contextlib.nullcontext()
    with one, blas_threads_settled():
        yield


def too_small_for_two_threads(net: Network, batch_size: int) -> bool:
    """Whether every layer of a CPU network is fully connected with at most ``SMALL_STEP_MACS``
    multiply-adds per GEMM at this mini-batch size (see ``SMALL_STEP_MACS``)."""
    return net.xp is numpy and all(
        layer.kind in ("fc", "softmax") and batch_size * layer.n_in * layer.n_out <= SMALL_STEP_MACS
        for layer in net.layers)


def _run_minibatches(train, x, y, m: int, order, tick) -> None:
    """``train`` on each mini-batch of (x, y) in ``order`` (or as stored), ``tick`` every few."""
    n = x.shape[0] if order is None else len(order)  # an order may leave examples out
    chunk = m * _TICK_BATCHES
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        if order is None:
            for lo in range(start, stop, m):
                train(x[lo : lo + m], y[lo : lo + m])
        else:
            for lo in range(start, stop, m):
                idx = order[lo : lo + m]
                train(x.take(idx, axis=0), y.take(idx, axis=0))
        if tick is not None:
            tick((stop - start + m - 1) // m)


class Plateau:
    """Early stopping and the halve-on-plateau eta schedule (chapter 3). Both count evaluations
    since the validation accuracy last *strictly* improved: early stopping ends training after
    ``patience`` of them; the schedule halves eta after ``schedule["patience"]`` and ends
    training once eta is at most ``schedule["min_fraction"]`` of its start (the book: 1/128)."""

    def __init__(self, eta: float, patience: int, schedule: Mapping, unit: str):
        self.eta0 = self.eta = eta
        self.patience, self.schedule, self.unit = patience, schedule, unit
        self.best = -math.inf
        self.since_best = self.since_halving = 0

    def update(self, validation_accuracy: float) -> tuple[str | None, str | None]:
        """Count one evaluation; return (why training stops or None, a line to log or None)."""
        if validation_accuracy > self.best:
            self.best = validation_accuracy
            self.since_best = self.since_halving = 0
        else:
            self.since_best += 1
            self.since_halving += 1
        if self.patience and self.since_best >= self.patience:
            return f"early stopping: no validation improvement in {self.patience} {self.unit}", None
        sched = self.schedule
        if sched["kind"] != "halve_on_plateau" or self.since_halving < sched["patience"]:
            return None, None
        self.eta /= 2
        self.since_halving = 0
        if self.eta <= self.eta0 * sched["min_fraction"] * (1 + 1e-12):
            return (f"eta schedule: eta reached {self.eta:g} = eta0 * {self.eta / self.eta0:g} "
                    f"(<= min_fraction {sched['min_fraction']:g})"), None
        return None, f"eta halved to {self.eta:g} after {sched['patience']} {self.unit} without improvement"


def evaluate(net: Network, train, val, test, monitor: Mapping, reg: Regularization, coef: float) -> dict:
    """The end-of-epoch measurements (network2.py's monitors): training cost and accuracy when
    monitored, validation accuracy (and cost), test accuracy (and cost: the book's overfitting
    figures monitor the test set), and ``eval_seconds``. Costs include the L2/L1 term: on a
    held-out set of n' examples c = lmbda / n' under the network2 scaling (network2.py's
    ``total_cost(data, lmbda)``), the training coefficient under network3's."""
    t0 = time.perf_counter()
    record: dict[str, Any] = {}
    if monitor["training_cost"] or monitor["training_accuracy"]:
        accuracy, cost = net.accuracy_and_cost(*train, reg, coef)  # one pass for both
        if monitor["training_cost"]:
            record["training_cost"] = cost
        if monitor["training_accuracy"]:
            record["training_accuracy"] = accuracy
    for name, held_out in (("validation", val), ("test", test)):
        if held_out is None:
            continue
        if monitor[f"{name}_cost"]:
            # None: accuracy_and_cost's lmbda / n' of the held-out set (network2)
            held_out_coef = None if reg.scaling == "network2" else coef
            record[f"{name}_accuracy"], record[f"{name}_cost"] = net.accuracy_and_cost(*held_out, reg, held_out_coef)
        else:
            record[f"{name}_accuracy"] = net.accuracy(*held_out)
    record["eval_seconds"] = time.perf_counter() - t0
    return record


def start_of_epoch_norms(net: Network, x, labels, examples: int) -> tuple[list, float]:
    """||dC/db^l|| over the first ``examples`` training images before the epoch trains
    (chapter 5's speed of learning), and the seconds that took."""
    t0 = time.perf_counter()
    k = min(examples, x.shape[0])
    return net.gradient_norms(x[:k], labels[:k]), time.perf_counter() - t0


def _progress_bar(progress: bool, batches: int, epoch: int):
    if not progress:
        return None
    from tqdm.auto import tqdm  # imported here: only for a terminal

    return tqdm(total=batches, desc=f"epoch {epoch}", unit="batch", leave=False, mininterval=0.5)


def _fit_data(t: dict, net: Network, train_data, validation_data, test_data) -> tuple:
    """The training, validation and test pairs on the network's device, checked: training data
    there, and a validation set wherever early stopping or an eta schedule needs one."""
    x, labels = _prepare(train_data, net, "train_data")
    val = _prepare(validation_data, net, "validation_data") if validation_data is not None else None
    test = _prepare(test_data, net, "test_data") if test_data is not None else None
    if (val is None or val[0].shape[0] == 0) and (t["early_stopping"]["patience"]
                                                 or t["eta_schedule"]["kind"] != "constant"):
        # an empty set's accuracy is NaN, never an improvement: the rules would fire on nothing
        raise ValueError("training.early_stopping / training.eta_schedule need validation_data "
                         "with at least one example")
    if x.shape[0] == 0:
        raise ValueError("train_data is empty")
    return (x, labels), val, test


def _mini_batches(reg: Regularization, n: int, m: int, log: Callable[[str], None] | None) -> tuple[bool, int]:
    """(whether an epoch trains whole mini-batches only, how many mini-batches it trains).

    network3.py's accounting, which its L2 coefficient lambda / (n // m) assumes: an epoch is
    n // m whole mini-batches, and the last n % m examples of each epoch's order are left out
    (always the same ones when the order is fixed, as network3.py's is). network2.py's trains
    the last, smaller, mini-batch too."""
    whole_batches = reg.scaling == "network3"
    if whole_batches and n < m:
        raise InputError(f"training.batch_size: {m} is more than the {n} training examples, and "
                         f"regularization.scaling network3 trains whole mini-batches only: use a "
                         f"batch_size of at most {n}, or more examples")
    if whole_batches and n % m and log is not None:
        log(f"network3 scaling: {n % m} of the {n} training examples are left out of every epoch "
            f"(as network3.py, which trains n // m = {n // m} mini-batches of {m})")
    return whole_batches, n // m if whole_batches else (n + m - 1) // m


def _check_decay(reg: Regularization, eta: float, coef: float, n: int, m: int) -> None:
    """Refuse an L2 decay that would not shrink the weights: w <- (1 - eta c) w needs eta c < 1.

    At eta c = 1 every step zeroes the weights, above it flips their sign, and the run would
    end "normally" with nonsense. eta only falls during a run, so its first value is the test."""
    if reg.kind == "l2" and eta * coef >= 1:
        per = f"lmbda / n = {reg.lmbda} / {n}" if reg.scaling == "network2" else \
            f"lmbda / (n // batch_size) = {reg.lmbda} / {max(1, n // m)}"
        raise InputError(f"training.regularization.lmbda: the L2 decay w <- (1 - eta c) w with eta = {eta} and "
                         f"c = {per} gives 1 - eta c = {1 - eta * coef:.4g}, which zeroes the weights or "
                         f"flips their sign every step; lower training.regularization.lmbda or training.eta "
                         f"(or train on more examples) so that eta c < 1")


def _step_plan(t: dict, n: int, log: Callable[[str], None] | None
               ) -> tuple[Regularization, float, bool, int]:
    """(the regularisation, its coefficient c (``Regularization.coefficient``), whether an epoch
    trains whole mini-batches only, how many it trains) for ``n`` training examples, refusing
    what cannot train: mini-batches that make none (``_mini_batches``), an L2 decay that does
    not shrink (``_check_decay``)."""
    reg, m = Regularization(**t["regularization"]), t["batch_size"]
    whole_batches, batches = _mini_batches(reg, n, m, log)
    coef = reg.coefficient(n, m)
    _check_decay(reg, t["eta"], coef, n, m)
    return reg, coef, whole_batches, batches


def check_trainable(training, n: int) -> None:
    """Refuse, before anything trains, what :func:`fit` would refuse at its start on ``n``
    training examples (``_step_plan``; an ``InputError`` naming the ``training.`` key)."""
    _step_plan(_training_config(training), n, None)


@dataclass
class _Setup:
    """What every epoch of one :func:`fit` uses, fixed before the first (see ``_set_up``)."""

    x: Any  # training inputs on the device
    labels: numpy.ndarray  # their labels, on the host
    y: Any  # the labels one-hot, on the device: the targets of the step
    val: tuple | None  # (x, labels) of the validation set
    test: tuple | None  # (x, labels) of the test set
    reg: Regularization
    coef: float  # the training coefficient c of the decay term, lmbda / n or lmbda / (n // m)
    opt: SGD
    batch_size: int
    whole_batches: bool  # network3's epochs of n // m whole mini-batches
    batches: int  # mini-batches an epoch (the progress bar's length)
    next_order: Callable[[], numpy.ndarray] | None  # each epoch's order (None: as stored)
    monitor: Mapping


def _set_up(t: dict, net: Network, train_data, validation_data, test_data,
            log: Callable[[str], None] | None) -> _Setup:
    """The data on the network's device, checked (``_fit_data``); the regularisation, its
    coefficient and the epoch's mini-batches (``_step_plan``); the optimiser :class:`SGD` and
    the source of each epoch's order (``epoch_orders``)."""
    (x, labels), val, test = _fit_data(t, net, train_data, validation_data, test_data)
    n, m = x.shape[0], t["batch_size"]
    y = one_hot(labels, net.classes, net.xp, net.dtype)
    reg, coef, whole_batches, batches = _step_plan(t, n, log)
    opt = SGD(net, t["momentum"], reg, coef)
    return _Setup(x=x, labels=labels, y=y, val=val, test=test, reg=reg, coef=coef, opt=opt, batch_size=m,
                  whole_batches=whole_batches, batches=batches, next_order=epoch_orders(t, n), monitor=t["monitor"])


def _plateau(t: dict) -> Plateau:
    """The run's early stopping and eta schedule, counting evaluations (epochs, unless
    ``eval_every`` > 1)."""
    eval_every = t["eval_every"]
    unit = "epochs" if eval_every == 1 else f"evaluations (one every {eval_every} epochs)"
    return Plateau(t["eta"], t["early_stopping"]["patience"], t["eta_schedule"], unit)


def fit(
    net: Network,
    training,
    train_data,
    validation_data=None,
    test_data=None,
    *,
    on_epoch: Callable[[dict], None] | None = None,
    log: Callable[[str], None] | None = say,
    progress: bool | None = None,
) -> History:
    """Train ``net`` in place by mini-batch SGD; return the :class:`History`.

    ``training`` is the spec's ``training`` mapping (or a whole spec). Data are ``(x, y)``
    pairs: x float (n, 784) or (n, C, H, W), y integer labels (n,). ``on_epoch(record)`` is
    called after every recorded epoch (every ``eval_every``-th, and the last; every epoch when
    gradient norms are on); ``log`` gets one progress line per recorded epoch (``None``: silent);
    ``progress`` shows a tqdm bar over the mini-batches (default: when stderr is a terminal).
    Ctrl-C stops cleanly: the history so far comes back with ``interrupted=True`` and ``net``
    keeps the weights it had reached. Weights that turn NaN or infinite raise
    :class:`TrainingDiverged` at the end of that epoch.
    """
    t = _training_config(training)
    run = _set_up(t, net, train_data, validation_data, test_data, log)
    epochs, eval_every, norm_examples = t["epochs"], t["eval_every"], run.monitor["gradient_norms"]
    plateau = _plateau(t)
    history = History(final_eta=plateau.eta)
    graphs = t["cuda_graphs"] and net.xp is not numpy  # dropped for the run if a step cannot be recorded
    train_seconds = 0.0  # since the last record: epochs between evaluations add up
    if progress is None:
        progress = sys.stderr.isatty()
    bar = None
    try:
        for epoch in range(epochs):
            bar = _progress_bar(progress, run.batches, epoch)
            evaluated = (epoch + 1) % eval_every == 0 or epoch == epochs - 1
            # the speed of learning is measured (and recorded) at the start of every epoch,
            # evaluated or not: chapter 5's figure has a point per epoch
            norms = start_of_epoch_norms(net, run.x, run.labels, norm_examples) if norm_examples else None
            graphs, seconds = _train_epoch(net, run, plateau.eta, bar, graphs, log)
            train_seconds += seconds
            if bar is not None:
                bar.close()
                bar = None
            check_finite(net, epoch, plateau.eta)
            history.epochs_completed = epoch + 1
            if not evaluated and norms is None:
                continue  # nothing to record: early stopping counts evaluations
            record = _epoch_record(net, run, epoch, plateau.eta, train_seconds, evaluated, norms)
            train_seconds = 0.0
            _keep_record(history, record, net, epochs, on_epoch, log)
            if run.val is None or not evaluated or epoch == epochs - 1:
                continue  # after the last epoch neither rule has anything left to stop or halve
            if _stops(history, plateau, record["validation_accuracy"], log):
                break
    except KeyboardInterrupt as stopped:
        history.interrupted, history.stopped_by = True, stopped
        if log is not None:
            log(f"interrupted after {history.epochs_completed} complete epoch(s)")
    finally:
        if bar is not None:
            bar.close()
    return history


def _train_epoch(net: Network, run: _Setup, eta: float, bar, graphs: bool,
                 log: Callable[[str], None] | None) -> tuple[bool, float]:
    """One epoch of SGD in this epoch's order (``run_epoch``); (whether a CUDA graph may still be
    used, the seconds it took, drawing the order included)."""
    t0 = time.perf_counter()
    order = net.xp.asarray(run.next_order()) if run.next_order is not None else None
    # a step too large overflows on its way to NaN: check_finite says so after the
    # epoch, in words, so numpy's warnings (one per operation) would only come first
    with numpy.errstate(over="ignore", invalid="ignore"):
        graphs = run_epoch(net, run.opt, run.x, run.y, run.batch_size, eta, order,
                           bar.update if bar is not None else None, graphs, log, run.whole_batches)
    synchronize(net.xp)  # on a GPU, the epoch's last steps may still be queued
    return graphs, time.perf_counter() - t0


def _epoch_record(net: Network, run: _Setup, epoch: int, eta: float, seconds: float, evaluated: bool,
                  norms: tuple[list, float] | None) -> dict:
    """An epoch's record: its eta and training ``seconds``, then, when ``evaluated``, the
    measurements of :func:`evaluate`, and the start-of-epoch gradient ``norms`` when measured
    (their seconds counted as evaluation's)."""
    record = {"epoch": epoch, "eta": eta, "seconds": seconds}
    if evaluated:
        record.update(evaluate(net, (run.x, run.labels), run.val, run.test, run.monitor, run.reg, run.coef))
    if norms is not None:
        record["gradient_norms"] = norms[0]
        record["eval_seconds"] = record.get("eval_seconds", 0.0) + norms[1]
    return record


def _keep_record(history: History, record: dict, net: Network, epochs: int,
                 on_epoch: Callable[[dict], None] | None, log: Callable[[str], None] | None) -> None:
    """Add ``record`` to the history and its best epochs (``track_best``), then tell
    ``on_epoch`` and ``log``."""
    history.records.append(record)
    track_best(history, record, net)
    if on_epoch is not None:
        on_epoch(record)
    if log is not None:
        log(format_record(record, epochs))


def _stops(history: History, plateau: Plateau, validation_accuracy: float,
           log: Callable[[str], None] | None) -> bool:
    """Count one evaluation against early stopping and the eta schedule (:class:`Plateau`);
    whether training stops here (the history says why). A halved eta is logged."""
    history.stopped_early, message = plateau.update(validation_accuracy)
    history.final_eta = plateau.eta
    if history.stopped_early:
        return True
    if message and log is not None:
        log(message)
    return False


def track_best(history: History, record: dict, net) -> None:
    """Update the peak test and best-validation epoch (ties: the later one) with ``record``;
    ``net`` (anything with a ``state_dict()``) gives the best weights."""
    test_acc = record.get("test_accuracy")
    if test_acc is not None and (history.peak_test_accuracy is None or test_acc > history.peak_test_accuracy):
        history.peak_test_accuracy, history.peak_test_epoch = test_acc, record["epoch"]
    val_acc = record.get("validation_accuracy")
    if val_acc is None or math.isnan(val_acc):
        return
    if history.best_validation_accuracy is None or val_acc >= history.best_validation_accuracy:
        weights = net.state_dict()  # first: a Ctrl-C during the copy leaves the old best whole
        history.best_epoch = record["epoch"]
        history.best_validation_accuracy = val_acc
        history.test_at_best_validation = test_acc
        history.best_weights = weights


def format_record(record: dict, epochs: int | None = None) -> str:
    """One progress line for an epoch record."""
    parts = [f"epoch {record['epoch']}" + (f"/{epochs - 1}" if epochs else "")]
    parts.append(f"eta {record['eta']:g}")
    for key, label in (
        ("training_cost", "train cost"),
        ("training_accuracy", "train acc"),
        ("validation_cost", "val cost"),
        ("validation_accuracy", "val acc"),
        ("test_cost", "test cost"),
        ("test_accuracy", "test acc"),
    ):
        if key in record:
            value = record[key]
            parts.append(f"{label} {value:.2%}" if key.endswith("accuracy") else f"{label} {value:.4f}")
    if "gradient_norms" in record:
        norms = ", ".join(f"{g:.3g}" for g in record["gradient_norms"])
        parts.append(f"|dC/db| [{norms}]")
    parts.append(f"{record['seconds']:.2f} s (+{record.get('eval_seconds', 0.0):.2f} s eval)")
    return "  ".join(parts)
