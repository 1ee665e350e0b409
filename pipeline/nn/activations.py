"""Activation functions sigma(z) and their derivatives sigma'(z), by name.

Each :class:`Activation` is bound to an array module ``xp`` and works in place when given an
``out`` buffer (the training loop reuses its buffers; evaluation passes ``out=None``).
``fn(z, out)`` may be given ``out`` that *is* ``z`` (a conv layer's evaluation works in place):
read ``z`` no more once ``out`` is written. To add an activation, write its factory below and
add it to ``_FACTORIES`` (docs/extending.md says what else follows it).
``prime(z, a, out)`` receives both the weighted input ``z`` and the activation ``a = sigma(z)``
so that each derivative uses the cheapest exact form:

- sigmoid: sigma(z) = 1 / (1 + e^-z),  sigma'(z) = sigma(z) sigma(-z)  (= sigma (1 - sigma))
- tanh:    sigma(z) = tanh(z),         sigma'(z) = 1 / cosh(z)^2     (= 1 - tanh^2)
- relu:    sigma(z) = max(0, z),       sigma'(z) = 1 if z > 0 else 0
- linear:  sigma(z) = z,               sigma'(z) = 1

Why not the textbook forms sigma (1 - sigma) and 1 - tanh^2: in float32, sigma(z) rounds to
exactly 1 for z > 17 (tanh for z > 9), so 1 - sigma is 0 and a saturated unit stops learning
for good. The book's programs run in float64, where that happens only past z = 37, and the
chapter 1 and 3 networks with N(0, 1) weights do start with weighted inputs of that size
(784-100-10 with eta 3 lost whole digits for ever in float32 until this was fixed).

The sigmoid never overflows: it is ``scipy.special.expit`` on the CPU (``cupyx``'s on a GPU),
or 0.5 * (1 + tanh(z / 2)) for another array module where CuPy is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy


@dataclass(frozen=True)
class Activation:
    """A named activation bound to an array module: ``fn(z, out)`` and ``prime(z, a, out)``."""

    name: str
    fn: Callable
    prime: Callable

    def __call__(self, z):
        return self.fn(z, None)

    def derivative(self, z):
        """sigma'(z), computed from scratch (for tests and one-off use)."""
        return self.prime(z, self.fn(z, None), None)


def _expit_for(xp) -> Callable:
    if xp is numpy:
        from scipy.special import expit

        return expit
    try:  # pragma: no cover - GPU only
        from cupyx.scipy.special import expit

        return expit
    except ImportError:  # pragma: no cover - a numpy-like module without expit

        def expit(z, out=None):
            out = xp.multiply(z, 0.5, out=out)
            xp.tanh(out, out=out)
            out *= 0.5
            out += 0.5
            return out

        return expit


def _sigmoid(xp) -> Activation:
    expit = _expit_for(xp)

    def fn(z, out):
        return expit(z) if out is None else expit(z, out=out)

    def prime(z, a, out):  # sigma' = sigma(z) sigma(-z): no cancellation, unlike sigma (1 - sigma)
        out = xp.negative(z, out=out)
        out = expit(out, out=out)
        out *= a
        return out

    return Activation("sigmoid", fn, prime)


def _tanh(xp) -> Activation:
    def fn(z, out):
        return xp.tanh(z, out=out)

    def prime(z, a, out):  # 1 / cosh^2: no cancellation, unlike 1 - tanh^2
        # cosh^2 = inf past |z| ~ 44 (float32; ~355 in float64): 0, the true value below the smallest normal
        with numpy.errstate(over="ignore"):
            out = xp.cosh(z, out=out)
            xp.multiply(out, out, out=out)
            xp.reciprocal(out, out=out)
        return out

    return Activation("tanh", fn, prime)


def _relu(xp) -> Activation:
    def fn(z, out):
        return xp.maximum(z, 0, out=out)

    def prime(z, a, out):  # Heaviside step, 0 at z = 0
        if out is None:
            return (z > 0).astype(z.dtype)
        return xp.greater(z, 0, out=out)

    return Activation("relu", fn, prime)


def _linear(xp) -> Activation:
    def fn(z, out):
        if out is None:
            return z.copy()
        out[...] = z
        return out

    def prime(z, a, out):
        if out is None:
            return xp.ones_like(z)
        out.fill(1)
        return out

    return Activation("linear", fn, prime)


_FACTORIES = {"sigmoid": _sigmoid, "tanh": _tanh, "relu": _relu, "linear": _linear}
NAMES = tuple(_FACTORIES)  # what a config may name (pipeline.nn.spec checks against it)


@lru_cache(maxsize=None)
def get_activation(name: str, xp=numpy) -> Activation:
    """The activation called ``name`` (one of :data:`NAMES`) working on ``xp`` arrays, with its
    derivative: sigmoid sigma(z) = 1/(1 + e^-z) (ch. 1 eq. 3), sigma' = sigma(z) sigma(-z);
    tanh (ch. 3), tanh' = 1/cosh^2 z; ReLU max(0, z) (ch. 3, ch. 6), derivative 0 at z = 0;
    linear z."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(NAMES)}") from None
    return factory(xp)
