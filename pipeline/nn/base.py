"""The contract every layer of the engine keeps.

A network is a list of layers. Each layer maps a mini-batch of inputs ``x``, the previous
layer's output, to activations ``a`` of shape ``(m, *out_shape)``. ``in_shape`` is in the spec's
words: ``(n,)`` for fc and softmax, ``(C, H, W)`` for conv, whose activations are channels-last,
``(Hp, Wp, F)``; a layer takes any of the layouts its docstring lists, so a row holds
``prod(in_shape)`` values, ``prod(out_shape)`` of the layer below. Backpropagation runs
the list in reverse: a layer receives ``delta``, the gradient of the mini-batch cost with
respect to its weighted input ``z`` (the book's delta^l, equations BP1/BP2), fills
``grads`` (BP3/BP4) and returns the gradient with respect to its *input activations*
(the W^T delta part of BP2, with the previous layer's sigma'(z) still to apply), shaped like
the input it was given. ``tests/nn/test_layer_contract.py`` holds every layer to this contract.

Conventions shared by every layer:

- The mini-batch cost C is the *mean* over the m examples, so ``grads`` hold dC/dparam of
  that mean: the book's update ``w -> w - (eta/m) sum_x grad C_x`` is ``w -= eta * grads["w"]``.
  ``delta`` already carries the 1/m, so a layer's grads are plain sums over the batch.
- ``params`` and ``grads`` are dicts with the same keys (``"w"``, ``"b"``); ``decayed``
  names the parameters that L1/L2 regularisation acts on (weights, never biases).
- ``dropout`` is the probability of dropping a unit of this layer's *input*
  (network3.py's convention). ``dropout_mode`` is ``"classic"`` (mask while training,
  scale the input by 1-p at test time) or ``"inverted"`` (scale by 1/(1-p) while training).
- Arrays come from the array module ``xp`` (numpy, or cupy on a GPU); a layer never imports
  numpy for array work it could do with ``xp``.
- ``rng`` is the generator dropout masks are drawn from. The network owns it and assigns it to
  every layer (``Network.set_dropout_rng``; on a GPU, a CuPy generator seeded from one draw of
  it); re-seeding it reproduces the same masks.
- An output layer (fc or softmax) also keeps ``z``, the weighted input of its last forward
  pass: the costs evaluate themselves from z (stable for saturated units).
- A layer may also have ``backward_sgd(delta, need_input_grad, eta, shrink)``: ``backward``
  with the plain SGD step taken inside it. ``Network.sgd_step``, the path training takes for
  plain and L2 SGD, calls it where a layer has one (the fc layers, ``pipeline/nn/layers.py``)
  and ``backward`` followed by ``sgd_update`` elsewhere; the two give the same weights.
- ``forward(x, train=True)`` may return a buffer the layer reuses on its next training pass
  (the mini-batch loop allocates nothing); evaluation (``train=False``) returns fresh arrays.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

Array = Any  # numpy.ndarray or cupy.ndarray


@runtime_checkable  # isinstance checks the members are there; tests/nn/test_layer_contract.py the rest
class Layer(Protocol):
    kind: str  # "fc", "softmax" or "conv": the spec's layer type
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: dict[str, Array]
    grads: dict[str, Array]
    decayed: tuple[str, ...]
    dropout: float
    rng: Any  # dropout-mask generator, assigned by the network

    def init_params(self, scheme: str, rng, xp=None, dtype=None) -> None:
        """Draw the initial parameters for ``scheme`` ("large", "default", "network3")."""

    def forward(self, x: Array, train: bool) -> Array:
        """Return the activations for input ``x``; when ``train``, cache what backward needs."""

    def backward(self, delta: Array, need_input_grad: bool = True) -> Array | None:
        """Given delta = dC/dz for this layer, fill ``grads`` (BP3, BP4); return dC/d(input),
        the W^T delta half of BP2, or None."""

    def activation_prime(self) -> Array:
        """sigma'(z) of the last training forward pass, to turn dC/da into dC/dz (BP2)."""
