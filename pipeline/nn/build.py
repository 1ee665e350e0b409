"""Build a :class:`~pipeline.nn.network.Network` from a spec (see :mod:`pipeline.nn.spec`)."""

from __future__ import annotations

import math

import numpy

from pipeline.nn.backend import get_xp
from pipeline.nn.layers import FullyConnected, Softmax
from pipeline.nn.network import Network
from pipeline.nn.network2_rng import network2_parameters
from pipeline.nn.seeding import streams
from pipeline.nn.spec import layer_shapes, validate_spec


def make_layer(layer: dict, in_shape: tuple[int, ...], dropout_mode: str, xp, dtype, threads: int = 1):
    """One layer object for a validated layer spec with input shape ``in_shape``."""
    kind = layer["type"]
    if kind == "conv":
        from pipeline.nn.conv import ConvPool  # imported here: only conv nets need it

        return ConvPool(
            in_shape=tuple(in_shape),
            filters=layer["filters"],
            kernel=layer["kernel"],
            pool=layer["pool"],
            activation=layer["activation"],
            dropout=layer["dropout"],
            dropout_mode=dropout_mode,
            xp=xp,
            dtype=dtype,
            threads=threads,
        )
    n_in = int(numpy.prod(in_shape))
    if kind == "fc":
        return FullyConnected(n_in, layer["units"], layer["activation"], layer["dropout"], dropout_mode, xp, dtype)
    return Softmax(n_in, layer["units"], layer["dropout"], dropout_mode, xp, dtype)


def build_network(spec, *, seed: int | None = None, xp=None, dtype=None, device: str | None = None) -> Network:
    """Validate ``spec`` and build its network with freshly initialised parameters.

    ``seed``, ``dtype`` and ``device`` default to the spec's ``training`` values; ``xp`` (an
    array module) overrides ``device``. Initial parameters come from the seed's ``init`` stream
    and dropout masks from its ``dropout`` stream (:func:`pipeline.nn.seeding.streams`), or,
    with ``training.rng.kind: network2``, from the book's script's numpy stream
    (:func:`pipeline.nn.network2_rng.network2_parameters`).
    """
    spec = validate_spec(spec, training_rules=False)  # fit applies them
    model, training = spec["model"], spec["training"]
    if xp is None:
        xp = get_xp(device or training["device"])
    dtype = numpy.dtype(dtype or training["dtype"])
    rngs = streams(training["seed"] if seed is None else seed)
    layers = []
    for i, (layer, (in_shape, out_shape)) in enumerate(zip(model["layers"], layer_shapes(model))):
        obj = make_layer(layer, in_shape, training["dropout_mode"], xp, dtype, training["threads"])
        if math.prod(obj.out_shape) != math.prod(out_shape):
            raise ValueError(
                f"model.layers[{i}]: the {layer['type']} layer produces {obj.out_shape}, "
                f"but the spec expects {math.prod(out_shape)} outputs {out_shape}"
            )
        obj.init_params(model["init"], rngs.init, xp, dtype)
        layers.append(obj)
    rng = training["rng"]
    if rng["kind"] == "network2":  # the book's script's draw replaces the values drawn above
        sizes = [math.prod(model["input_shape"])] + [layer["units"] for layer in model["layers"]]
        drawn = network2_parameters(sizes, training["seed"] if seed is None else seed, model["init"],
                                    rng["inits_before"])
        for obj, (w, b) in zip(layers, drawn):
            obj.params["w"][...] = xp.asarray(w, dtype=dtype)
            obj.params["b"][...] = xp.asarray(b, dtype=dtype)
    return Network(layers, model["cost"], xp=xp, dtype=dtype, dropout_rng=rngs.dropout)
