"""A feedforward network: a list of layers and a cost, trained by backpropagation.

``backprop`` is the book's algorithm (ch. 2) for a whole mini-batch at once:

1. feedforward: a^l = sigma(z^l), z^l = a^{l-1} w^l + b^l, caching what steps 3 and 4 need;
2. output error (BP1): delta^L = dC/dz^L, from the cost, divided by m for the mean cost;
3. backpropagate (BP2): delta^{l-1} = (delta^l w^{l T}) * sigma'(z^{l-1});
4. gradients (BP3, BP4): dC/db^l = sum_x delta^l, dC/dw^l = a^{l-1 T} delta^l.

The first layer's input gradient is never computed (nothing consumes it).
"""

from __future__ import annotations

import math

import numpy

from pipeline.nn.backend import to_numpy
from pipeline.nn.costs import get_cost
from pipeline.nn.layers import sgd_update


def one_hot(labels, classes: int, xp=numpy, dtype=numpy.float32):
    """(n, classes) matrix with a 1 in column ``labels[i]`` of row i (the book's y vectors)."""
    labels = xp.asarray(labels)
    y = xp.zeros((labels.shape[0], classes), dtype=dtype)
    y[xp.arange(labels.shape[0]), labels] = 1
    return y


def device_rng(rng, xp):
    """A generator on ``xp``'s device seeded from the numpy generator ``rng`` (itself on the CPU)."""
    if xp is numpy:
        return rng
    seed = int(rng.integers(2**63))  # pragma: no cover - GPU only
    return xp.random.default_rng(seed)  # pragma: no cover


class Network:
    """Layers + cost. ``params``/``grads`` live in the layers; this class runs them."""

    def __init__(self, layers, cost, xp=numpy, dtype=numpy.float32, dropout_rng=None):
        if not layers:
            raise ValueError("a network needs at least one layer")
        self.layers = list(layers)
        self.xp, self.dtype = xp, numpy.dtype(dtype)
        self.cost = get_cost(cost, xp) if isinstance(cost, str) else cost
        self._delta = None
        self.set_dropout_rng(dropout_rng if dropout_rng is not None else numpy.random.default_rng(0))

    # -- set-up -----------------------------------------------------------------------------
    def set_dropout_rng(self, rng) -> None:
        """Make every layer draw its dropout masks from ``rng`` (a numpy Generator; on a GPU, from a
        CuPy generator seeded from one draw of it)."""
        self.dropout_rng = rng
        device = device_rng(rng, self.xp)
        for layer in self.layers:
            layer.rng = device

    def seed_dropout(self, seed: int) -> None:
        """Restart the dropout masks from ``seed`` (a gradient check does this to fix them)."""
        self.set_dropout_rng(numpy.random.default_rng(seed))

    @property
    def output_layer(self):
        return self.layers[-1]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input example, as the first layer takes it (``model.input_shape``)."""
        return tuple(self.layers[0].in_shape)

    @property
    def classes(self) -> int:
        return int(math.prod(self.layers[-1].out_shape))

    def named_params(self):
        """(name, layer, key) for every parameter, names like ``layers.0.w``."""
        for i, layer in enumerate(self.layers):
            for key in layer.params:
                yield f"layers.{i}.{key}", layer, key

    def weights(self) -> list:
        """The arrays weight decay acts on: every layer's ``decayed`` parameters."""
        return [layer.params[k] for layer in self.layers for k in layer.decayed]

    # -- forward / backward -----------------------------------------------------------------
    def forward(self, x, train: bool = False):
        """Output activations a^L for the mini-batch ``x``."""
        for layer in self.layers:
            x = layer.forward(x, train)
        return x

    def _feedforward_to_output_error(self, x, y):
        """Feedforward (training mode), then delta^L of the mean cost (BP1, divided by m)."""
        layers = self.layers
        a = x
        for layer in layers:
            a = layer.forward(a, True)
        out = layers[-1]
        buf = self._delta
        if buf is None or buf.shape != a.shape:
            buf = self._delta = self.xp.empty(a.shape, self.dtype)
        return self.cost.delta(out.z, a, y, out, 1.0 / a.shape[0], buf)

    def backprop(self, x, y) -> None:
        """Fill every layer's ``grads`` with the gradient of the mean cost over (x, y one-hot):
        the book's backpropagation algorithm (ch. 2) for the whole mini-batch at once, BP1 at
        the output (``_feedforward_to_output_error``), then, layer by layer downwards, BP3 and
        BP4 into the layer's ``grads`` and BP2, delta^l = ((w^{l+1})^T delta^{l+1}) * sigma'(z^l)."""
        layers = self.layers
        delta = self._feedforward_to_output_error(x, y)
        for i in range(len(layers) - 1, 0, -1):
            g = layers[i].backward(delta, True)  # BP3, BP4; returns delta w^T
            g *= layers[i - 1].activation_prime()  # BP2
            delta = g
        layers[0].backward(delta, False)

    def sgd_step(self, x, y, eta: float, shrink: float = 1.0) -> None:
        """``backprop`` on (x, y one-hot) with the plain SGD step taken inside it, layer by layer.

        Each layer's step w <- shrink w - eta dC/dw (ch. 1 eq. 20-21; shrink = 1 - eta c for
        L2 weight decay, ch. 3 eq. 93, 1 without) follows its own backward pass, which has
        already used its old weights for BP2, so the result is backprop-then-step; layers with
        a ``backward_sgd`` fuse the two. The loop repeats ``backprop``'s on purpose: one loop for
        both would test, for every layer of every mini-batch, whether to step.
        """
        layers = self.layers
        delta = self._feedforward_to_output_error(x, y)
        for i in range(len(layers) - 1, -1, -1):
            layer = layers[i]
            if hasattr(layer, "backward_sgd"):
                g = layer.backward_sgd(delta, i > 0, eta, shrink)
            else:
                g = layer.backward(delta, i > 0)
                sgd_update(layer, eta, shrink)
            if i > 0:
                g *= layers[i - 1].activation_prime()  # BP2
                delta = g

    def batch_cost(self, x, y, train: bool = True) -> float:
        """Mean cost over the mini-batch (x, y one-hot); ``train`` applies dropout masks."""
        a = self.forward(x, train)
        return float(self.cost.value(self.output_layer.z, a, y)) / x.shape[0]

    # -- evaluation -------------------------------------------------------------------------
    def _chunks(self, x, batch: int):
        x = self.xp.asarray(x, dtype=self.dtype)
        for lo in range(0, x.shape[0], batch):
            yield lo, self.forward(x[lo : lo + batch], False)

    def predict(self, x, batch: int = 1000) -> numpy.ndarray:
        """Predicted labels argmax_j a^L_j, evaluated ``batch`` examples at a time."""
        labels = numpy.empty(x.shape[0], dtype=numpy.int64)
        for lo, a in self._chunks(x, batch):
            labels[lo : lo + a.shape[0]] = to_numpy(a.argmax(axis=1))
        return labels

    def accuracy(self, x, labels, batch: int = 1000) -> float:
        """Fraction of examples whose predicted label equals ``labels``."""
        if x.shape[0] == 0:
            return float("nan")
        return float((self.predict(x, batch) == to_numpy(labels)).mean())

    def total_cost(self, x, labels, regularization=None, coef: float | None = None, batch: int = 1000) -> float:
        """Mean cost over (x, labels) plus, if given, the regularisation term c R(w).

        ``coef`` defaults to lmbda / len(x), network2.py's ``total_cost`` convention.
        """
        return self.accuracy_and_cost(x, labels, regularization, coef, batch)[1]

    def accuracy_and_cost(self, x, labels, regularization=None, coef: float | None = None,
                          batch: int = 1000) -> tuple[float, float]:
        """``accuracy`` and ``total_cost`` from one forward pass over (x, labels): a monitor
        that wants both (network2.py's) needs only half the arithmetic."""
        total, correct = 0.0, 0
        classes, host_labels = self.classes, to_numpy(labels)
        for lo, a in self._chunks(x, batch):
            rows = slice(lo, lo + a.shape[0])
            y = one_hot(labels[rows], classes, self.xp, self.dtype)
            total += float(self.cost.value(self.output_layer.z, a, y))
            correct += int((to_numpy(a.argmax(axis=1)) == host_labels[rows]).sum())
        if x.shape[0] == 0:
            return float("nan"), float("nan")
        cost = total / x.shape[0]
        if regularization is not None and regularization.active:
            if coef is None:
                coef = regularization.lmbda / x.shape[0]
            cost += regularization.penalty(self.weights(), coef)
        return correct / x.shape[0], cost

    def gradient_norms(self, x, labels) -> list:
        """||dC/db^l|| per layer for the mean cost over (x, labels) (ch. 5's speed of learning).

        Runs one training pass over the whole set; dropout masks come from a generator of its
        own, and the layers get their own generators back afterwards (on a GPU, re-seeding
        them from ``dropout_rng`` would draw from it and change the masks training draws next).
        """
        saved = self.dropout_rng, [layer.rng for layer in self.layers]
        self.seed_dropout(0)
        try:
            x = self.xp.asarray(x, dtype=self.dtype)
            self.backprop(x, one_hot(to_numpy(labels), self.classes, self.xp, self.dtype))
        finally:
            self.dropout_rng = saved[0]
            for layer, rng in zip(self.layers, saved[1]):
                layer.rng = rng
        return [float(self.xp.linalg.norm(layer.grads["b"].ravel())) for layer in self.layers]

    # -- state ------------------------------------------------------------------------------
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(layer.params[k].shape) for name, layer, k in self.named_params()}

    def state_dict(self) -> dict[str, numpy.ndarray]:
        """A host copy of every parameter, by name (``layers.<i>.<key>``)."""
        return {name: to_numpy(layer.params[k]).copy() for name, layer, k in self.named_params()}

    def load_state_dict(self, state) -> None:
        """Copy ``state`` into the parameters; every name and shape must match exactly."""
        expected = self.param_shapes()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(f"state does not match the network: missing {missing}, unexpected {unexpected}")
        for name, layer, k in self.named_params():
            value = state[name]
            if tuple(value.shape) != expected[name]:
                raise ValueError(f"{name}: shape {tuple(value.shape)} does not match the network's {expected[name]}")
            if not numpy.issubdtype(value.dtype, numpy.floating):
                raise ValueError(f"{name}: dtype {value.dtype} is not a floating-point type")
            layer.params[k][...] = self.xp.asarray(value, dtype=self.dtype)

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Network([{inner}], cost={self.cost.name}, dtype={self.dtype})"
