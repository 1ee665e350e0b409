"""Independent random streams derived from one integer seed.

One seed fixes a whole run. :func:`streams` splits it with ``numpy.random.SeedSequence`` into
three ``Generator(PCG64)`` streams, so that e.g. turning on dropout does not change the initial
weights or the shuffling order.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy


class Streams(NamedTuple):
    init: numpy.random.Generator  # initial weights and biases
    shuffle: numpy.random.Generator  # per-epoch order of the training examples
    dropout: numpy.random.Generator  # dropout masks


def streams(seed: int) -> Streams:
    """The init, shuffle and dropout generators for ``seed``."""
    children = numpy.random.SeedSequence(int(seed)).spawn(3)
    return Streams(*(numpy.random.Generator(numpy.random.PCG64(s)) for s in children))
