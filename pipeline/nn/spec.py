"""A network and its training as plain data, validated before anything runs.

:func:`validate_spec` checks a mapping (a dict from YAML, or an OmegaConf ``DictConfig``) and
returns a new plain ``dict`` with every default filled in. Every error is a :class:`SpecError`
(a ``ValueError``) whose message starts with the key path, e.g.
``model.layers[1].activation: unknown 'relux'; allowed: sigmoid, tanh, relu, linear``.

Schema (defaults in brackets; ``<required>`` has none)::

    model:
      input_shape: [1, 28, 28]     # [C, H, W] or [n]; an fc first layer flattens it
      layers: <required>           # non-empty list; the last one is the output layer
        - {type: conv, filters: <required>, kernel: [5], pool: [2], activation: [sigmoid], dropout: [0.0]}
        - {type: fc, units: <required>, activation: [sigmoid], dropout: [0.0]}
                                   # a conv or fc activation: sigmoid | tanh | relu | linear
        - {type: softmax, units: <required>, dropout: [0.0]}
      cost: <required>             # quadratic | cross_entropy | log_likelihood
      init: [default]              # large | default | network3
    training:
      epochs: <required>           # >= 1
      batch_size: <required>       # >= 1
      eta: <required>              # > 0
      momentum: [0.0]              # [0, 1)
      regularization: {kind: [none], lmbda: [0.0], scaling: [network2]}
                                   # kind none | l2 | l1; scaling network2 (c = lmbda / n) or
                                   # network3 (c = lmbda / (n // m), and like network3.py an
                                   # epoch trains n // m whole mini-batches only)
      dropout_mode: [classic]      # classic | inverted
      shuffle: [true]              # reshuffle every epoch (network.py/network2.py) or fixed order (network3.py)
      early_stopping: {patience: [0]}   # 0 = off
      eta_schedule: {kind: [constant]}  # or {kind: halve_on_plateau, patience: <required>,
                                        #     min_fraction: <required>} (the book: 10, 1/128)
      monitor: {training_cost: [false], training_accuracy: [false], validation_cost: [true],
                test_cost: [false]}
                                   # the validation cost comes from the accuracy's own forward
                                   # pass; the training set's cost and accuracy take a pass of
                                   # their own. And gradient_norms: [false] or n >= 1, the number
                                   # of first training examples ||dC/db^l|| is measured on (ch. 5: 1000)
      eval_every: [1]              # evaluate (and record) every k-th epoch and the last one
      seed: [1]                    # >= 0 (at most 2**32 - 1 with rng.kind network2)
      dtype: [float32]             # float32 | float64
      device: [cpu]                # cpu | gpu
      threads: [1]                 # >= 1: CPU threads a conv layer shares a mini-batch's chunks
                                   # over (each with one BLAS thread; used when BLAS runs one)
      cuda_graphs: [true]          # on a GPU: replay each SGD step as a recorded CUDA graph
      rng:                         # where the initial weights and the epochs' orders come from
        kind: [pcg64]              # pcg64: our seeded streams (pipeline.nn.seeding) | network2:
                                   # the book's seeded chapter 3 scripts (pipeline.nn.network2_rng)
        inits_before: [0]          # network2: large initialisations the script drew before this run's
        shuffles_before: [[]]      # network2: the script's earlier runs, as [examples, epochs] pairs
        order_carried: [false]     # network2: those runs shuffled this run's very list

Shape rules: a conv layer needs a 3-d input (so it cannot follow an fc layer); its "valid"
convolution output (H - kernel + 1) must be at least ``pool``; a remainder that fills no whole
pooling window is dropped (network3.py's ``ignore_border``: kernel 4 on 28 gives 25, pooled to
12). A softmax
layer can only be last. The cost fixes the output layer: quadratic -> fc (any activation),
cross_entropy -> fc with sigmoid, log_likelihood -> softmax.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.errors import SettingError
from pipeline.nn.activations import NAMES as ACTIVATIONS
from pipeline.nn.costs import NAMES as COSTS
from pipeline.nn.costs import cost_class
from pipeline.nn.layers import DROPOUT_MODES, INIT_SCHEMES
from pipeline.nn.regularization import KINDS as REG_KINDS
from pipeline.nn.regularization import SCALINGS

REQUIRED = object()
LAYER_TYPES = ("conv", "fc", "softmax")
SCHEDULES = ("constant", "halve_on_plateau")
DTYPES = ("float32", "float64")
RNG_KINDS = ("pcg64", "network2")
DEVICES = ("cpu", "gpu")
NETWORK2_MAX_SEED = 2**32 - 1  # numpy.random.RandomState's largest seed
MONITOR_KEYS = ("training_cost", "training_accuracy", "validation_cost", "test_cost", "gradient_norms")
# after every epoch: validation accuracy and cost always (unless turned off), the rest when asked,
# like network2.py's monitors (the training set's cost and accuracy cost a pass over it)
MONITOR_DEFAULTS = {k: k == "validation_cost" for k in MONITOR_KEYS}


class SpecError(SettingError):
    """An invalid spec; ``path`` is the offending key path (e.g. ``model.layers[0].units``)."""


# -- scalar checks -------------------------------------------------------------------------------
def _type_name(value: Any) -> str:
    return type(value).__name__


def _int(value, path, lo=None, hi=None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(path, f"expected an integer, got {_type_name(value)} {value!r}")
    if lo is not None and value < lo:
        raise SpecError(path, f"must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise SpecError(path, f"must be <= {hi}, got {value}")
    return int(value)


def _reads_as_number(value) -> bool:
    """A string Python reads as a number: YAML 1.1 leaves 1e-4 (no dot) a string."""
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


def _number_hint(value) -> str:
    """Why a string that reads as a number is one: YAML 1.1's exponent without a dot (1e-4), or
    quotes."""
    if not _reads_as_number(value) or not math.isfinite(float(value)):
        return ""
    if exponent := re.fullmatch(r"\s*([+-]?\d+)[eE]([+-]?)(\d+)\s*", value):
        # YAML 1.1's float needs the dot and the exponent's sign: 1.0e+5, not 1.0e5
        return (f" (YAML reads {value.strip()} as a string: write "
                f"{exponent[1]}.0e{exponent[2] or '+'}{exponent[3]})")
    return " (a number in quotes is a string: write it without them)"


def _float(value, path, lo=None, hi=None, lo_open=False, hi_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(path, f"expected a number, got {_type_name(value)} {value!r}{_number_hint(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise SpecError(path, f"must be finite, got {value}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise SpecError(path, f"must be {'>' if lo_open else '>='} {lo}, got {value}")
    if hi is not None and (value >= hi if hi_open else value > hi):
        raise SpecError(path, f"must be {'<' if hi_open else '<='} {hi}, got {value}")
    return value


def _bool(value, path) -> bool:
    if not isinstance(value, bool):
        raise SpecError(path, f"expected true or false, got {_type_name(value)} {value!r}")
    return value


def _gradient_norm_examples(value, path) -> int | bool:
    """``monitor.gradient_norms``: false, or how many of the first training examples to measure on."""
    if value is False:
        return False
    if value is True:
        raise SpecError(path, "expected false or the number of first training examples to measure "
                        "the gradient on (the book's chapter 5 script: 1000), got true")
    return _int(value, path, 1)


def _choice(value, path, allowed) -> str:
    if not isinstance(value, str):
        raise SpecError(path, f"expected one of {', '.join(allowed)}; got {_type_name(value)} {value!r}")
    if value not in allowed:
        raise SpecError(path, f"unknown {value!r}; allowed: {', '.join(allowed)}")
    return value


def _mapping(value, path, fields: dict[str, Any]) -> dict:
    """Check ``value`` is a mapping with only ``fields``' keys; fill defaults; REQUIRED must be there."""
    if not isinstance(value, Mapping):
        raise SpecError(path, f"expected a mapping, got {_type_name(value)} {value!r}")
    unknown = [k for k in value if k not in fields]
    if unknown:
        raise SpecError(_join(path, unknown[0]), f"unknown key; allowed keys: {', '.join(fields)}")
    out = {}
    for key, default in fields.items():
        if key in value:
            out[key] = value[key]
        elif default is REQUIRED:
            raise SpecError(_join(path, key), "required key is missing")
        else:
            out[key] = copy.deepcopy(default)
    return out


def _sequence(value, path) -> list:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise SpecError(path, f"expected a list, got {_type_name(value)} {value!r}")
    return list(value)


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


# -- model ---------------------------------------------------------------------------------------
_LAYER_FIELDS = {
    "conv": {"type": REQUIRED, "filters": REQUIRED, "kernel": 5, "pool": 2, "activation": "sigmoid", "dropout": 0.0},
    "fc": {"type": REQUIRED, "units": REQUIRED, "activation": "sigmoid", "dropout": 0.0},
    "softmax": {"type": REQUIRED, "units": REQUIRED, "dropout": 0.0},
}


def _layer(value, path: str, in_shape: tuple[int, ...]) -> tuple[dict, tuple[int, ...]]:
    """Validate one layer given its input shape; return it (defaults filled) and its output shape."""
    if not isinstance(value, Mapping):
        raise SpecError(path, f"expected a mapping with a 'type' key, got {_type_name(value)} {value!r}")
    if "type" not in value:
        raise SpecError(_join(path, "type"), f"required key is missing; allowed: {', '.join(LAYER_TYPES)}")
    kind = _choice(value["type"], _join(path, "type"), LAYER_TYPES)
    layer = _mapping(value, path, _LAYER_FIELDS[kind])
    layer["dropout"] = _float(layer["dropout"], _join(path, "dropout"), 0.0, 1.0, hi_open=True)
    if "activation" in layer:
        layer["activation"] = _choice(layer["activation"], _join(path, "activation"), ACTIVATIONS)
    if kind != "conv":
        layer["units"] = _int(layer["units"], _join(path, "units"), 1)
        return layer, (layer["units"],)
    layer["filters"] = _int(layer["filters"], _join(path, "filters"), 1)
    layer["kernel"] = _int(layer["kernel"], _join(path, "kernel"), 1)
    layer["pool"] = _int(layer["pool"], _join(path, "pool"), 1)
    if len(in_shape) != 3:
        raise SpecError(
            _join(path, "type"),
            f"a conv layer needs a 3-d (channels, height, width) input, but its input has shape "
            f"{list(in_shape)} (a conv layer cannot follow an fc layer; give model.input_shape as [C, H, W])",
        )
    channels, height, width = in_shape
    out_hw = []
    for size, name in ((height, "height"), (width, "width")):
        conv = size - layer["kernel"] + 1
        # a remainder that fills no whole pooling window is dropped, as Theano's pool_2d with
        # ignore_border=True (network3.py's) drops it: kernel 4 on 28 gives 25, pooled to 12
        if conv < layer["pool"]:
            raise SpecError(
                _join(path, "kernel"),
                f"input {name} {size} with kernel {layer['kernel']} gives a {max(conv, 0)}-wide convolution, "
                f"too small for one pool {layer['pool']} window (input shape {list(in_shape)}): "
                f"make kernel or pool smaller",
            )
        out_hw.append(conv // layer["pool"])
    return layer, (layer["filters"], *out_hw)


def _model(value, path="model") -> dict:
    model = _mapping(value, path, {"input_shape": [1, 28, 28], "layers": REQUIRED, "cost": REQUIRED, "init": "default"})
    shape_path = _join(path, "input_shape")
    shape = _sequence(model["input_shape"], shape_path)
    if len(shape) not in (1, 3):
        raise SpecError(shape_path, f"expected [n] or [channels, height, width], got {shape!r}")
    model["input_shape"] = [_int(s, f"{shape_path}[{i}]", 1) for i, s in enumerate(shape)]
    model["cost"] = _choice(model["cost"], _join(path, "cost"), COSTS)
    model["init"] = _choice(model["init"], _join(path, "init"), INIT_SCHEMES)
    layers_path = _join(path, "layers")
    raw_layers = _sequence(model["layers"], layers_path)
    if not raw_layers:
        raise SpecError(layers_path, "needs at least one layer (the output layer)")
    shape_now: tuple[int, ...] = tuple(model["input_shape"])
    layers = []
    for i, raw in enumerate(raw_layers):
        layer, shape_now = _layer(raw, f"{layers_path}[{i}]", shape_now)
        if layer["type"] == "softmax" and i != len(raw_layers) - 1:
            raise SpecError(f"{layers_path}[{i}].type", "a softmax layer can only be the last (output) layer")
        layers.append(layer)
    last = layers[-1]
    last_path = f"{layers_path}[{len(layers) - 1}]"
    if last["type"] == "conv":
        raise SpecError(f"{last_path}.type", "the last layer is the output layer: it must be fc or softmax")
    if last["units"] < 2:
        raise SpecError(f"{last_path}.units", f"the output layer needs >= 2 units (one per class), got {last['units']}")
    cost = cost_class(model["cost"])
    if not cost.accepts(last["type"], last.get("activation")):
        have = last["type"] + (f" with activation {last['activation']}" if "activation" in last else "")
        raise SpecError(
            _join(path, "cost"), f"{model['cost']!r} needs {cost.requirement()}, but {last_path} is {have}"
        )
    model["layers"] = layers
    return model


# -- training ------------------------------------------------------------------------------------
def _training(value, path="training") -> dict:
    t = _mapping(
        value,
        path,
        {
            "epochs": REQUIRED,
            "batch_size": REQUIRED,
            "eta": REQUIRED,
            "momentum": 0.0,
            "regularization": {},
            "dropout_mode": "classic",
            "shuffle": True,
            "early_stopping": {},
            "eta_schedule": {},
            "monitor": {},
            "eval_every": 1,
            "seed": 1,
            "dtype": "float32",
            "device": "cpu",
            "threads": 1,
            "cuda_graphs": True,
            "rng": {},
        },
    )
    p = lambda key: _join(path, key)  # noqa: E731
    t["epochs"] = _int(t["epochs"], p("epochs"), 1)
    t["batch_size"] = _int(t["batch_size"], p("batch_size"), 1)
    t["eta"] = _float(t["eta"], p("eta"), 0.0, lo_open=True)
    t["momentum"] = _float(t["momentum"], p("momentum"), 0.0, 1.0, hi_open=True)
    t["dropout_mode"] = _choice(t["dropout_mode"], p("dropout_mode"), DROPOUT_MODES)
    t["shuffle"] = _bool(t["shuffle"], p("shuffle"))
    t["eval_every"] = _int(t["eval_every"], p("eval_every"), 1)
    t["seed"] = _int(t["seed"], p("seed"), 0)
    t["dtype"] = _choice(t["dtype"], p("dtype"), DTYPES)
    t["device"] = _choice(t["device"], p("device"), DEVICES)
    t["threads"] = _int(t["threads"], p("threads"), 1)
    t["cuda_graphs"] = _bool(t["cuda_graphs"], p("cuda_graphs"))

    t["regularization"] = _regularization(t["regularization"], p("regularization"))
    early = _mapping(t["early_stopping"], p("early_stopping"), {"patience": 0})
    early["patience"] = _int(early["patience"], _join(p("early_stopping"), "patience"), 0)
    t["early_stopping"] = early
    t["eta_schedule"] = _eta_schedule(t["eta_schedule"], p("eta_schedule"))
    t["monitor"] = _monitor(t["monitor"], p("monitor"))
    t["rng"] = _rng(t["rng"], p("rng"))
    if t["rng"]["kind"] == "network2" and not t["shuffle"]:
        raise SpecError(p("shuffle"), "must be true with rng.kind network2 (the book's scripts reshuffle every epoch)")
    if t["rng"]["kind"] == "network2" and t["seed"] > NETWORK2_MAX_SEED:
        # numpy's RandomState (the script's weight stream) takes 32-bit seeds only
        raise SpecError(p("seed"), f"must be in 0..{NETWORK2_MAX_SEED} (2**32 - 1) with rng.kind network2, "
                                   f"whose numpy RandomState takes 32-bit seeds; got {t['seed']}")
    return t


def _regularization(value, path: str) -> dict:
    reg = _mapping(value, path, {"kind": "none", "lmbda": 0.0, "scaling": "network2"})
    reg["kind"] = _choice(reg["kind"], _join(path, "kind"), REG_KINDS)
    if reg["kind"] != "none" and "lmbda" not in value:  # else it would train unregularised, silently
        raise SpecError(_join(path, "lmbda"), f"required key is missing: kind {reg['kind']} needs its lambda "
                                              "(0 is allowed, and trains unregularised)")
    reg["lmbda"] = _float(reg["lmbda"], _join(path, "lmbda"), 0.0)
    reg["scaling"] = _choice(reg["scaling"], _join(path, "scaling"), SCALINGS)
    if reg["kind"] == "none" and reg["lmbda"] > 0:
        raise SpecError(_join(path, "lmbda"), f"is {reg['lmbda']} but kind is 'none'; set kind: l1 or l2, or lmbda: 0")
    return reg


def _eta_schedule(raw, path: str) -> dict:
    if not isinstance(raw, Mapping):
        raise SpecError(path, f"expected a mapping like {{kind: constant}}, got {_type_name(raw)} {raw!r}")
    kind = _choice(raw.get("kind", "constant"), _join(path, "kind"), SCHEDULES)
    halving_keys = set(raw) & {"patience", "min_fraction"}
    if "kind" not in raw and halving_keys:
        raise SpecError(_join(path, "kind"), f"is missing: {', '.join(sorted(halving_keys))} belong to "
                                             "kind: halve_on_plateau")
    if kind == "constant":
        return _mapping(raw, path, {"kind": "constant"})
    # no defaults: the book's 10 epochs and 1/128 are the run's choice (conf/book/ch3-early-stop)
    sched = _mapping(raw, path, {"kind": kind, "patience": REQUIRED, "min_fraction": REQUIRED})
    sched["patience"] = _int(sched["patience"], _join(path, "patience"), 1)
    sched["min_fraction"] = _float(sched["min_fraction"], _join(path, "min_fraction"), 0.0, 1.0, lo_open=True)
    if sched["min_fraction"] >= 0.5:  # the first halving would end the run: no epoch at eta / 2
        raise SpecError(_join(path, "min_fraction"),
                        f"must be < 0.5, got {sched['min_fraction']}: training ends once eta is at most "
                        f"min_fraction of its start, so the first halving would end it; to stop at the "
                        f"first plateau without halving, use training.early_stopping: {{patience: N}}")
    return sched


def _monitor(value, path: str) -> dict:
    monitor = _mapping(value, path, MONITOR_DEFAULTS)
    checked = {k: _bool(v, _join(path, k)) for k, v in monitor.items() if k != "gradient_norms"}
    checked["gradient_norms"] = _gradient_norm_examples(monitor["gradient_norms"], _join(path, "gradient_norms"))
    return checked


def _rng(value, path: str) -> dict:
    """The random streams: numpy's PCG64, or the book's network2 scripts' (with what they drew
    before this run)."""
    rng = _mapping(value, path, {"kind": "pcg64", "inits_before": 0, "shuffles_before": [], "order_carried": False})
    rng["kind"] = _choice(rng["kind"], _join(path, "kind"), RNG_KINDS)
    rng["inits_before"] = _int(rng["inits_before"], _join(path, "inits_before"), 0)
    before = []
    for i, pair in enumerate(_sequence(rng["shuffles_before"], _join(path, "shuffles_before"))):
        pair_path = f"{_join(path, 'shuffles_before')}[{i}]"
        pair = _sequence(pair, pair_path)
        if len(pair) != 2:
            raise SpecError(pair_path, f"expected [examples, epochs], got {pair!r}")
        before.append([_int(pair[0], f"{pair_path}[0]", 1), _int(pair[1], f"{pair_path}[1]", 0)])
    rng["shuffles_before"] = before
    rng["order_carried"] = _bool(rng["order_carried"], _join(path, "order_carried"))
    if rng["kind"] == "pcg64" and (rng["inits_before"] or before or rng["order_carried"]):
        raise SpecError(path, "inits_before, shuffles_before and order_carried describe the network2 streams; "
                              "set kind: network2")
    return rng


def _check_network2_streams(model: dict, training: dict) -> None:
    """A network2 stream fits only the networks network2.py builds."""
    rng = training["rng"]
    if rng["kind"] != "network2":
        return
    for i, layer in enumerate(model["layers"]):
        if layer["type"] != "fc" or layer["dropout"]:
            raise SpecError(f"model.layers[{i}]",
                            "rng.kind network2 replays network2.py, whose layers are all fc without dropout")
    if model["init"] not in ("default", "large"):
        raise SpecError("model.init", f"rng.kind network2 draws 'default' or 'large' parameters, not {model['init']!r}")
    if model["init"] == "default" and rng["inits_before"]:
        raise SpecError("training.rng.inits_before",
                        "must be 0 with init 'default' (the constructor's draw comes first)")


def _check_plateau_rules(t: dict) -> None:
    """Early stopping and the eta schedule both count evaluations since the last improvement,
    and early stopping is checked first: with a patience not above the schedule's, eta would
    never be halved."""
    early, schedule = t["early_stopping"]["patience"], t["eta_schedule"]
    if early and schedule["kind"] == "halve_on_plateau" and early <= schedule["patience"]:
        raise SpecError("training.early_stopping.patience",
                        f"is {early}, not more than eta_schedule.patience ({schedule['patience']}): "
                        "training would stop before eta is ever halved; raise it, or set it to 0 and let "
                        "the schedule's min_fraction end training")


def validate_spec(spec, *, training_rules: bool = True) -> dict:
    """Check a whole spec ({model, training}); return a plain dict with defaults filled in.
    ``training_rules=False`` leaves out the rules that only decide how a run would train
    (``_check_plateau_rules``): for a model file's spec, whose run has trained, and for building
    a network (``fit`` applies them, through ``validate_training``)."""
    if not isinstance(spec, Mapping):
        raise SpecError("spec", f"expected a mapping with keys model, training; got {_type_name(spec)}")
    top = _mapping(spec, "", {"model": REQUIRED, "training": REQUIRED})
    model, training = _model(top["model"]), _training(top["training"])
    _check_network2_streams(model, training)
    if training_rules:
        _check_plateau_rules(training)
    return {"model": model, "training": training}


def validate_training(training) -> dict:
    """Check the ``training`` part alone."""
    t = _training(training)
    _check_plateau_rules(t)
    return t


def layer_shapes(model: dict) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(input shape, output shape) of every layer of a validated ``model``."""
    shape = tuple(model["input_shape"])
    shapes = []
    for i, raw in enumerate(model["layers"]):
        _, out = _layer(raw, f"model.layers[{i}]", shape)
        shapes.append((shape, out))
        shape = out
    return shapes


def parameter_count(model: dict) -> int:
    """How many numbers the weights and biases of a validated ``model`` hold: n_in * n_out + n_out
    for an fc or softmax layer, k * k * C * F + F for a conv layer (computed, nothing allocated)."""
    count = 0
    for layer, (in_shape, out_shape) in zip(model["layers"], layer_shapes(model)):
        if layer["type"] == "conv":
            count += layer["kernel"] ** 2 * in_shape[0] * layer["filters"] + layer["filters"]
        else:
            count += math.prod(in_shape) * out_shape[0] + out_shape[0]
    return count
