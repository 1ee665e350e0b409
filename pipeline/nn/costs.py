"""Cost functions: their value and their output error delta^L = dC/dz^L (book eq. BP1).

``y`` is the one-hot target matrix (m, classes), ``z`` and ``a`` the output layer's weighted
input and activation. ``value`` returns the cost *summed* over the examples (callers divide by
the number of examples: network2.py's ``total_cost`` is a mean); ``delta`` writes
``scale * dC_x/dz`` into ``out``, with ``scale = 1/m`` for the mean mini-batch cost.

- quadratic (ch. 1; eq. 6 is its mean over the inputs):  C_x = 0.5 ||a - y||^2,
  delta = (a - y) * sigma'(z)  (BP1 with grad_a C_x = a - y; any fc output)
- cross_entropy (ch. 3, eq. 63):  C_x = sum_j -y_j ln a_j - (1 - y_j) ln(1 - a_j),
  delta = a - y  (BP1, sigma'(z) cancelling; eqs. 66-67 are the gradients it gives; sigmoid
  fc output only). Evaluated from z as
  sum_j softplus(z_j) - y_j z_j, which is exact and finite for saturated sigmoids.
- log_likelihood (ch. 3, eq. 80):  C_x = -ln a_y,  delta = a - y  (BP1 through the softmax's
  Jacobian, which cancels as sigma' does for cross-entropy; eqs. 81-82 are the gradients it
  gives; softmax output only).
  Evaluated from z as logsumexp(z) - z_y, finite for logits of any size.

To add a cost, subclass :class:`Cost` and add it to ``_CLASSES`` (docs/extending.md).
"""

from __future__ import annotations

from functools import lru_cache

import numpy


class Cost:
    """A cost bound to an array module ``xp``; subclasses define ``value`` and ``delta``."""

    name: str = ""
    output_type: str = "fc"  # the type the output layer must have: "fc" or "softmax"
    output_activations: tuple[str, ...] | None = None  # allowed fc activations (None: any)

    def __init__(self, xp=numpy):
        self.xp = xp

    @classmethod
    def requirement(cls) -> str:
        """Human-readable statement of the output layer this cost needs."""
        if cls.output_type == "softmax":
            return "a softmax output layer"
        if cls.output_activations is None:
            return "an fc output layer"
        return f"an fc output layer with activation {' or '.join(cls.output_activations)}"

    @classmethod
    def accepts(cls, layer_type: str, activation: str | None) -> bool:
        """Whether an output layer of ``layer_type`` with ``activation`` suits this cost."""
        if layer_type != cls.output_type:
            return False
        return cls.output_activations is None or activation in cls.output_activations

    def value(self, z, a, y):
        """Sum over the examples of C_x."""
        raise NotImplementedError

    def delta(self, z, a, y, layer, scale, out=None):
        """``scale`` * dC_x/dz for every example, written into ``out`` when given (BP1,
        delta = grad_a C_x * sigma'(z)). On an fc output, ``layer.activation_prime()`` gives
        sigma'(z); a softmax output has no elementwise sigma': with g = grad_a C_x its delta is
        the Jacobian's a * (g - sum_j g_j a_j), row by row."""
        raise NotImplementedError

    def _a_minus_y(self, a, y, scale, out):
        out = self.xp.subtract(a, y, out=out)
        out *= scale
        return out


class QuadraticCost(Cost):
    """C = (1/2n) sum_x ||y(x) - a^L(x)||^2 (ch. 1 eq. 6; ``value`` is the sum, callers divide
    by n); delta^L = (a - y) sigma'(z) (BP1)."""

    name = "quadratic"

    def value(self, z, a, y):
        d = a - y
        return 0.5 * (d * d).sum()

    def delta(self, z, a, y, layer, scale, out=None):
        """BP1 for the quadratic cost: (a - y) * sigma'(z), times ``scale``."""
        out = self._a_minus_y(a, y, scale, out)
        out *= layer.activation_prime()
        return out


class CrossEntropyCost(Cost):
    """C = -(1/n) sum_x sum_j [y_j ln a_j + (1 - y_j) ln(1 - a_j)] on sigmoid outputs (ch. 3
    eq. 63; ``value`` is the sum, callers divide by n), evaluated from z as softplus(z) - y z,
    finite for saturated units; delta^L = a - y (eqs. 66-67: sigma' cancels)."""

    name = "cross_entropy"
    output_activations = ("sigmoid",)

    def value(self, z, a, y):
        return (self.xp.logaddexp(0, z) - y * z).sum()

    def delta(self, z, a, y, layer, scale, out=None):
        """BP1 with the sigmoid's sigma'(z) cancelled (eq. 66): a - y, times ``scale``."""
        return self._a_minus_y(a, y, scale, out)


class LogLikelihoodCost(Cost):
    """C = -ln a^L_y on a softmax output (ch. 3 eq. 80; ``value`` is the sum over the examples,
    callers divide by n), evaluated from z as log-sum-exp(z) - z_y, finite for logits of any
    size; delta^L = a - y (eqs. 81-82)."""

    name = "log_likelihood"
    output_type = "softmax"

    def value(self, z, a, y):
        xp = self.xp
        zmax = z.max(axis=1, keepdims=True)
        lse = xp.log(xp.exp(z - zmax).sum(axis=1)) + zmax[:, 0]
        # row by row, then summed: the difference of the two large sums loses float32's digits
        return (lse - (y * z).sum(axis=1)).sum()

    def delta(self, z, a, y, layer, scale, out=None):
        """BP1 for softmax + log-likelihood: a - y (eq. 81's dC/db^L), times ``scale``."""
        return self._a_minus_y(a, y, scale, out)


_CLASSES = {c.name: c for c in (QuadraticCost, CrossEntropyCost, LogLikelihoodCost)}
NAMES = tuple(_CLASSES)  # what a config may name (pipeline.nn.spec checks against it)


@lru_cache(maxsize=None)
def get_cost(name: str, xp=numpy) -> Cost:
    """The cost called ``name`` (one of :data:`NAMES`) working on ``xp`` arrays."""
    try:
        return _CLASSES[name](xp)
    except KeyError:
        raise ValueError(f"unknown cost {name!r}; allowed: {', '.join(NAMES)}") from None


def cost_class(name: str) -> type[Cost]:
    """The class of the cost called ``name`` (its output-layer requirement, for validation)."""
    try:
        return _CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown cost {name!r}; allowed: {', '.join(NAMES)}") from None
