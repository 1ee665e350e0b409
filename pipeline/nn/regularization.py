"""Weight decay: the L2 and L1 terms added to the cost, in the book's two scalings.

The regularised mini-batch objective is ``C = C_0 + c * R(w)`` with C_0 the mean mini-batch
cost, R summed over the ``decayed`` parameters (weights, never biases) of every layer, and

- L2: R(w) = 0.5 * sum w^2,  dR/dw = w       (ch. 3 eq. 87; its gradient eq. 88)
- L1: R(w) = sum |w|,        dR/dw = sgn(w)  (ch. 3 eq. 95-97; sgn(0) = 0)

The training step (:class:`pipeline.nn.train.SGD`, ``Network.sgd_step``) applies dR/dw itself,
in its own order of operations; tests/nn/test_gradients.py checks that step against finite
differences of C. The coefficient ``c`` depends on the scaling:

- ``network2`` (chapter 3): c = lmbda / n, n = size of the training set. One SGD step is then
  w <- (1 - eta lmbda / n) w - eta grad  (L2, eq. 93)  or
  w <- w - (eta lmbda / n) sgn(w) - eta grad  (L1, eq. 97).
- ``network3`` (chapter 6): c = lmbda / (n // m), the number of training mini-batches of size m
  (network3.py adds 0.5 lmbda sum w^2 / num_training_batches to the cost). Per step the decay is
  eta lmbda m / n, so chapter 6's lmbda is worth m times chapter 3's.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("none", "l1", "l2")
SCALINGS = ("network2", "network3")


@dataclass(frozen=True)
class Regularization:
    kind: str = "none"
    lmbda: float = 0.0
    scaling: str = "network2"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"regularization.kind: unknown {self.kind!r}; allowed: {', '.join(KINDS)}")
        if self.scaling not in SCALINGS:
            raise ValueError(
                f"regularization.scaling: unknown {self.scaling!r}; allowed: {', '.join(SCALINGS)}"
            )
        if self.lmbda < 0:
            raise ValueError(f"regularization.lmbda must be >= 0, got {self.lmbda}")

    @property
    def active(self) -> bool:
        return self.kind != "none" and self.lmbda > 0

    def coefficient(self, n: int, batch_size: int) -> float:
        """c in C = C_0 + c R(w), for a training set of ``n`` examples in batches of ``batch_size``."""
        if not self.active:
            return 0.0
        if self.scaling == "network2":
            return self.lmbda / n
        return self.lmbda / max(1, n // batch_size)

    def penalty(self, weights, coef: float) -> float:
        """c R(w) summed over the arrays in ``weights``."""
        if not self.active or coef == 0.0:
            return 0.0
        if self.kind == "l2":
            return 0.5 * coef * sum(float((w * w).sum()) for w in weights)
        if self.kind == "l1":
            return coef * sum(float(abs(w).sum()) for w in weights)
        raise NotImplementedError(f"no penalty for regularization {self.kind!r}: add it here")
