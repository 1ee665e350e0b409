"""The random streams of the book's seeded chapter 3 scripts, so that their runs can be replayed.

The scripts behind chapter 3's figures (overfitting, training-set size, weight initialisation)
seed both of Python's generators with the same integer (the book's: 12345678) before building a
``network2`` network, and then draw from them in a fixed way:

- **Initial parameters** come from numpy's global legacy generator (``RandomState``). The
  network's constructor always draws the "default" initialisation: every layer's biases
  b^l ~ N(0, 1) of shape (n_l, 1), layer by layer, then every layer's weights of shape
  (n_l, n_{l-1}), N(0, 1) scaled by 1/sqrt(n_{l-1}). Each later switch to the "large"
  initialisation draws the same arrays again, unscaled. A script that re-initialises one
  network for several runs (the training-set-size sweep) moves along that one stream.
- **Each epoch's order** is Python's ``random.shuffle`` of the training list, in place, with
  Python 2.7's algorithm (Fisher-Yates from the end: for i = n-1 down to 1, j = int(random() *
  (i + 1)), swap items i and j; Python 3 draws j differently). ``random.random()`` itself gives
  the same sequence for an integer seed in Python 2.7 and 3. Every earlier training run of the
  script used up n-1 draws per epoch; when it trained on the same list object, its shuffles
  also left that list in the order this run starts from.

With those streams, our network2-style training (float64, chapter 3's update) retraces the
book's runs epoch by epoch: see docs/findings.md, "The book's own runs, replayed".
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy


def network2_parameters(
    sizes: Sequence[int], seed: int, init: str, inits_before: int = 0
) -> list[tuple[numpy.ndarray, numpy.ndarray]]:
    """(w of shape (n_in, n_out), b of shape (n_out,)) per layer, float64, as the book's script drew them.

    ``sizes`` = [n_0, n_1, ..., n_L] (input first); ``init`` is "default" (the constructor's
    draw) or "large"; ``inits_before`` counts the large initialisations the script drew before
    this run's (after the constructor's).
    """
    if init not in ("default", "large"):
        raise ValueError(f"init: network2 draws 'default' or 'large' parameters, not {init!r}")
    if init == "default" and inits_before:
        raise ValueError("inits_before: the default parameters are the constructor's draw; nothing comes before it")
    state = numpy.random.RandomState(seed)
    pairs = list(zip(sizes[:-1], sizes[1:]))

    def draw() -> tuple[list, list]:
        biases = [state.standard_normal((n_out, 1)) for _, n_out in pairs]
        weights = [state.standard_normal((n_out, n_in)) for n_in, n_out in pairs]
        return biases, weights

    biases, weights = draw()  # the constructor's default initialisation
    if init == "default":
        weights = [w / math.sqrt(w.shape[1]) for w in weights]
    else:
        for _ in range(inits_before + 1):
            biases, weights = draw()
    return [(numpy.ascontiguousarray(w.T), b[:, 0].copy()) for w, b in zip(weights, biases)]


class Python27Shuffle:
    """Each epoch's order of n training examples, as Python 2.7's ``random.shuffle`` made it.

    ``shuffles_before`` lists the script's earlier training runs as (examples, epochs); with
    ``order_carried`` they trained on this run's very list (so all had n examples) and their
    shuffles are replayed on it, otherwise only their draws are skipped.
    """

    def __init__(self, seed: int, n: int, shuffles_before: Sequence[Sequence[int]] = (), order_carried: bool = False):
        if n < 1:
            raise ValueError(f"n: need at least one example, got {n}")
        self.random = random.Random(seed).random
        self.order = list(range(n))
        for i, (examples, epochs) in enumerate(shuffles_before):
            if order_carried:
                if examples != n:
                    raise ValueError(
                        f"training.rng.shuffles_before[{i}]: {examples} examples, but with order_carried every earlier "
                        f"run trained on this run's list of {n}")
                for _ in range(epochs):
                    self._shuffle()
            else:
                draw = self.random
                for _ in range(epochs * (examples - 1)):
                    draw()

    def _shuffle(self) -> None:
        order, draw = self.order, self.random
        for i in range(len(order) - 1, 0, -1):  # Python 2.7's Fisher-Yates
            j = int(draw() * (i + 1))
            order[i], order[j] = order[j], order[i]

    def permutation(self) -> numpy.ndarray:
        """Shuffle once more; the order of the next epoch."""
        self._shuffle()
        return numpy.array(self.order, dtype=numpy.int64)
