"""Fully connected layers: sigmoid/tanh/relu/linear units, and the softmax output layer.

Both compute the weighted input z = x w + b with w of shape (n_in, n_out) (so a mini-batch is
one matrix product, ``x @ w``; the book writes w x + b with w of shape (n_out, n_in)) and keep
the contract of :mod:`pipeline.nn.base`: ``backward`` gets delta = dC/dz and fills
dC/dw = x^T delta (BP4) and dC/db = sum_x delta (BP3), and returns delta w^T (the W^T delta
part of BP2).

Dropout acts on the layer's *input* with probability ``dropout`` of dropping each unit:

- classic (network3.py, Hinton et al. 2012): training multiplies the input by a Bernoulli mask
  with keep probability 1 - p; at test time the input is scaled by 1 - p instead;
- inverted: training multiplies by mask / (1 - p); test time leaves the input alone.

Either way the expected training-time input equals the test-time input. Masks are drawn from
``self.rng``, a generator the owning network sets (so a gradient check can re-seed it and hold
the masks fixed).

Initial parameters (``init_params``):

======== ============================== ===========================================
scheme   weights                        biases
======== ============================== ===========================================
large    N(0, 1)                        N(0, 1)          (network.py, ch. 1 and 3)
default  N(0, 1) / sqrt(n_in)           N(0, 1)          (network2.py, ch. 3, §weight init.)
network3 N(0, sqrt(1/n_out)) (fc)       N(0, 1) (fc)     (network3.py; n_out is the
         zero (softmax)                 zero (softmax)   original's slip, kept on purpose)
======== ============================== ===========================================
"""

from __future__ import annotations

import math

import numpy

from pipeline.nn.activations import get_activation
from pipeline.nn.blas import inplace_gemm

INIT_SCHEMES = ("large", "default", "network3")
DROPOUT_MODES = ("classic", "inverted")


def normal(rng, shape, std: float, xp=numpy, dtype=numpy.float32):
    """N(0, std^2) samples of ``shape`` as an ``xp`` array of ``dtype``.

    Drawn in float64 on the host from ``rng`` and then cast, so float32 and float64 runs with
    one seed start from the same numbers (rounded), on the CPU and on a GPU. A std of 0 gives
    zeros and draws nothing from ``rng``.
    """
    if std == 0.0:
        return xp.zeros(shape, dtype=dtype)
    return xp.asarray(rng.standard_normal(shape) * std, dtype=dtype)


def draw_params(layer, w_shape: tuple, scheme: str, rng, xp=None, dtype=None) -> None:
    """Give ``layer`` its initial ``w`` (``w_shape``), then ``b`` (one per output unit, the last
    axis of ``w``), drawn in that order from ``rng`` as N(0, std^2) with the stds of
    ``layer.init_stds(scheme)``, and zero gradients beside them. ``xp`` and ``dtype``, when
    given, move the layer to that array module and precision first."""
    if xp is not None and xp is not layer.xp:
        layer.xp = xp
        layer._bind_activation()
    if dtype is not None:
        layer.dtype = numpy.dtype(dtype)
    w_std, b_std = layer.init_stds(scheme)
    w = normal(rng, w_shape, w_std, layer.xp, layer.dtype)
    b = normal(rng, (w_shape[-1],), b_std, layer.xp, layer.dtype)
    layer.params = {"w": w, "b": b}
    layer.grads = {"w": layer.xp.zeros_like(w), "b": layer.xp.zeros_like(b)}


def check_dropout(dropout: float, dropout_mode: str) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if dropout_mode not in DROPOUT_MODES:
        raise ValueError(f"dropout_mode: unknown {dropout_mode!r}; allowed: {', '.join(DROPOUT_MODES)}")


def sgd_update(layer, eta: float, shrink: float) -> None:
    """w <- shrink w - eta dC/dw for the decayed parameters, p <- p - eta dC/dp for the others.

    dC/dw is the mini-batch mean, so with shrink = 1 this is ch. 1 eq. 20-21, and with
    shrink = 1 - eta c an L2 step (``Regularization.coefficient``): c = lmbda / n is ch. 3's,
    eq. 93; c = lmbda / (n // m) network3.py's."""
    if layer.xp is not numpy:  # one fused kernel per parameter, no temporary
        from pipeline.nn.gpu import scaled_axpy  # imported here: GPU only

        for key, p in layer.params.items():
            scaled_axpy(p, layer.grads[key], shrink if key in layer.decayed else 1.0, eta)
        return
    for key, p in layer.params.items():
        if shrink != 1.0 and key in layer.decayed:
            p *= shrink
        p -= eta * layer.grads[key]


def matmul_into(xp, a, b, out):
    """out <- a @ b for 2-d arrays: numpy's matmul on the CPU; on a GPU, cuBLAS through
    :func:`pipeline.nn.gpu.gemm`, which a CUDA graph can record."""
    if xp is numpy:
        return numpy.matmul(a, b, out=out)
    from pipeline.nn.gpu import gemm  # imported here: GPU only

    return gemm(a, b, out)


def dropout_mask(rng, shape, p: float, mode: str, xp=numpy, dtype=numpy.float32):
    """A Bernoulli(keep = 1 - p) mask of ``shape``, divided by 1 - p for inverted dropout.

    The scale is a numpy scalar, which a GPU kernel takes as an argument: ``xp.asarray`` of it
    would be an allocation and a host-to-device copy every mini-batch."""
    keep = 1.0 - p
    mask = rng.random(shape, dtype=dtype) < keep
    if mode == "inverted":
        return xp.multiply(mask, numpy.dtype(dtype).type(1.0 / keep), dtype=dtype)
    return mask.astype(dtype)


def dropped_input(layer, x, train: bool):
    """A layer's input after its dropout (network3.py's: on the layer's input). Training: times
    a fresh Bernoulli mask, which the layer keeps for backward (``layer._mask``); test time, in
    the classic mode: times 1 - p, the expected mask; inverted dropout scaled while training."""
    if not layer.dropout:
        return x
    if train:
        layer._mask = dropout_mask(layer.rng, x.shape, layer.dropout, layer.dropout_mode, layer.xp, layer.dtype)
        return x * layer._mask
    if layer.dropout_mode == "classic":
        return x * layer.dtype.type(1.0 - layer.dropout)  # a scalar: no copy to the device
    return x


class FullyConnected:
    """z = x w + b, a = sigma(z): every input unit feeds every output unit."""

    kind = "fc"
    decayed = ("w",)

    def __init__(
        self,
        n_in: int,
        n_out: int,
        activation: str = "sigmoid",
        dropout: float = 0.0,
        dropout_mode: str = "classic",
        xp=numpy,
        dtype=numpy.float32,
    ):
        if n_in < 1 or n_out < 1:
            raise ValueError(f"{self.kind} layer needs n_in, n_out >= 1, got {n_in}, {n_out}")
        check_dropout(dropout, dropout_mode)
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.in_shape, self.out_shape = (self.n_in,), (self.n_out,)
        self.activation_name = activation
        self.dropout, self.dropout_mode = float(dropout), dropout_mode
        self.xp, self.dtype = xp, numpy.dtype(dtype)
        self._bind_activation()
        self.params: dict = {}
        self.grads: dict = {}
        self.rng = None  # dropout-mask generator, set by the network
        self.z = None  # weighted input of the last forward pass (the cost reads the output layer's)
        self._m = -1  # mini-batch size the training buffers are allocated for

    def _bind_activation(self) -> None:
        self.activation = get_activation(self.activation_name, self.xp)

    # -- parameters -------------------------------------------------------------------------
    def init_stds(self, scheme: str) -> tuple[float, float]:
        """Standard deviations (weights, biases) of the initial parameters under ``scheme``,
        both drawn from zero-mean Gaussians, given here as N(mean, standard deviation) like the
        module's table: "large" N(0, 1) weights (ch. 1); "default" N(0, 1/sqrt(n_in)) weights
        (ch. 3's weight initialisation); "network3" N(0, sqrt(1/n_out)) weights (network3.py).
        Biases N(0, 1) under every scheme."""
        if scheme == "large":
            return 1.0, 1.0
        if scheme == "default":
            return 1.0 / math.sqrt(self.n_in), 1.0
        if scheme == "network3":
            return math.sqrt(1.0 / self.n_out), 1.0
        raise ValueError(f"init: unknown {scheme!r}; allowed: {', '.join(INIT_SCHEMES)}")

    def init_params(self, scheme: str, rng, xp=None, dtype=None) -> None:
        """Draw w (n_in, n_out), then b (n_out,), from ``rng`` (see the module's table)."""
        draw_params(self, (self.n_in, self.n_out), scheme, rng, xp, dtype)
        self._m = -1

    # -- forward ----------------------------------------------------------------------------
    def _allocate(self, m: int) -> None:
        xp, dt = self.xp, self.dtype
        self._z = xp.empty((m, self.n_out), dt)
        self._a = xp.empty((m, self.n_out), dt)
        self._prime = xp.empty((m, self.n_out), dt)
        if xp is numpy:
            self._dx_t = xp.empty((self.n_in, m), dt)
        else:  # on a GPU: dx contiguous, and the bias gradient as a GEMV (see backward)
            self._dx = xp.empty((m, self.n_in), dt)
            self._ones = xp.ones((1, m), dt)
        self._m = m

    def _activate(self, z, out):
        return self.activation.fn(z, out)

    def forward(self, x, train: bool = False):
        """a = sigma(x w + b); with ``train``, the result lives in a reused buffer."""
        self._in_batch_shape = x.shape
        if x.ndim != 2:
            x = x.reshape(x.shape[0], -1)
        x = dropped_input(self, x, train)
        w, b = self.params["w"], self.params["b"]
        if not train:
            z = x @ w
            z += b
            self.z = z
            return self._activate(z, None)
        if x.shape[0] != self._m:
            self._allocate(x.shape[0])
        self._x = x
        z = matmul_into(self.xp, x, w, self._z)
        z += b
        self.z = z
        return self._activate(z, self._a)

    # -- backward ---------------------------------------------------------------------------
    def backward(self, delta, need_input_grad: bool = True):
        """BP3 (dC/db = sum of delta over the mini-batch) and BP4 (dC/dw = x^T delta) into
        ``grads``; return delta w^T (times the dropout mask), the (w^{l+1})^T delta^{l+1} half
        of BP2 (the network multiplies it by the layer below's sigma'(z)), or None."""
        xp, grads = self.xp, self.grads
        matmul_into(xp, self._x.T, delta, grads["w"])
        if xp is numpy:
            delta.sum(axis=0, out=grads["b"])
        else:  # CuPy's sum may take scratch memory from its pool, which a CUDA graph forbids
            matmul_into(xp, self._ones, delta, grads["b"].reshape(1, -1))
        if not need_input_grad:
            return None
        return self._input_grad(delta)

    def backward_sgd(self, delta, need_input_grad: bool, eta: float, shrink: float):
        """``backward`` and the SGD step w <- shrink w - eta x^T delta, b <- b - eta sum delta
        (ch. 1 eq. 20-21 through BP3-BP4, with ``delta`` already scaled by 1/m; the L2 shrink as
        in eq. 93).

        dx = delta w^T is taken first, from the weights the forward pass used (BP2). On the
        CPU with one BLAS thread (see :func:`pipeline.nn.blas.blas_single_threaded`) the weight
        step is the L2 shrink (shrink = 1 - eta c, else 1) and then one BLAS GEMM that adds -eta x^T delta
        into w itself, where gradient-then-update writes the gradient and makes three more
        passes over w (at mini-batch 10 a 1000x1000 layer is memory-bound). ``grads["w"]`` and
        ``grads["b"]`` are left stale.
        """
        w = self.params["w"]
        gemm = inplace_gemm(w)
        if gemm is None:  # GPU, several BLAS threads, or a BLAS that would copy: two steps
            dx = self.backward(delta, need_input_grad)
            sgd_update(self, eta, shrink)
            return dx
        dx = self._input_grad(delta) if need_input_grad else None
        b = self.params["b"]
        b -= eta * delta.sum(axis=0)
        if shrink != 1.0:  # a separate pass: OpenBLAS's GEMM with beta != 1 is slower still
            w *= shrink
        # w^T (the Fortran-ordered view of the C-ordered w) += -eta delta^T x
        gemm(-eta, delta.T, self._x.T, beta=1.0, c=w.T, trans_b=1, overwrite_c=1)
        return dx

    def _input_grad(self, delta):
        """delta w^T (times the dropout mask), shaped like the layer's input.

        Computed as (w delta^T)^T: for a few rows, OpenBLAS multiplies by a transposed
        right-hand matrix about half as fast as by a plain left-hand one. On a GPU it is
        delta w^T into a contiguous buffer, so that reshaping it for a conv layer below copies
        nothing.
        """
        if self.xp is numpy:
            dx = numpy.matmul(self.params["w"], delta.T, out=self._dx_t).T
        else:
            dx = matmul_into(self.xp, delta, self.params["w"].T, self._dx)
        if self.dropout:
            dx *= self._mask
        if len(self._in_batch_shape) != 2:
            dx = dx.reshape(self._in_batch_shape)
        return dx

    def activation_prime(self):
        """sigma'(z) of the last training forward pass."""
        return self.activation.prime(self._z, self._a, self._prime)

    def __repr__(self) -> str:
        drop = f", dropout={self.dropout} ({self.dropout_mode})" if self.dropout else ""
        return f"{type(self).__name__}({self.n_in} -> {self.n_out}, {self.activation_name}{drop})"


class Softmax(FullyConnected):
    """Softmax output layer: a_j = e^{z_j} / sum_k e^{z_k} (ch. 3 eq. 78), z = x w + b.

    Only an output layer (it has no elementwise sigma'); pair it with the log-likelihood cost.
    Computed as exp(z - max z) / sum, which is exact and finite for logits of any size.
    """

    kind = "softmax"

    def __init__(self, n_in, n_out, dropout=0.0, dropout_mode="classic", xp=numpy, dtype=numpy.float32):
        super().__init__(n_in, n_out, "linear", dropout, dropout_mode, xp, dtype)
        self.activation_name = "softmax"

    def _bind_activation(self) -> None:
        self.activation = None

    def init_stds(self, scheme: str) -> tuple[float, float]:
        """As a fully connected layer's, but network3.py's softmax starts at zero weights and
        biases."""
        if scheme == "network3":
            return 0.0, 0.0
        return super().init_stds(scheme)

    def _allocate(self, m: int) -> None:
        super()._allocate(m)
        self._rows = self.xp.empty((m, 1), self.dtype)  # row maxima, then row sums

    def _activate(self, z, out):
        xp = self.xp
        if out is None:
            out = xp.subtract(z, z.max(axis=1, keepdims=True))
            xp.exp(out, out=out)
            out /= out.sum(axis=1, keepdims=True)
            return out
        if xp is not numpy:  # training on a GPU: one kernel, no temporaries
            from pipeline.nn.gpu import softmax_rows  # imported here: GPU only

            softmax_rows(z, out, self._rows.reshape(-1))
            return out
        rows = self._rows
        z.max(axis=1, keepdims=True, out=rows)
        xp.subtract(z, rows, out=out)
        xp.exp(out, out=out)
        out.sum(axis=1, keepdims=True, out=rows)
        out /= rows
        return out

    def activation_prime(self):
        raise TypeError("a softmax layer is an output layer only: it has no elementwise sigma'(z)")
