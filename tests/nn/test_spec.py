"""Spec validation: the brief's example passes with defaults filled; every kind of mistake is a
ValueError naming the key path and what is allowed."""

from __future__ import annotations

import copy

import numpy
import pytest

from pipeline.nn import SpecError, validate_spec

EXAMPLE = {
    "model": {
        "input_shape": [1, 28, 28],
        "layers": [
            {"type": "conv", "filters": 20, "kernel": 5, "pool": 2, "activation": "relu"},
            {"type": "conv", "filters": 40, "kernel": 5, "pool": 2, "activation": "relu"},
            {"type": "fc", "units": 100, "activation": "relu", "dropout": 0.0},
            {"type": "softmax", "units": 10, "dropout": 0.0},
        ],
        "cost": "log_likelihood",
        "init": "network3",
    },
    "training": {
        "epochs": 60,
        "batch_size": 10,
        "eta": 0.03,
        "momentum": 0.0,
        "regularization": {"kind": "l2", "lmbda": 0.1, "scaling": "network3"},
        "dropout_mode": "classic",
        "shuffle": False,
        "early_stopping": {"patience": 0},
        "eta_schedule": {"kind": "constant"},
        "monitor": {"training_cost": False, "training_accuracy": False, "validation_cost": True,
                    "test_cost": False, "gradient_norms": False},
        "seed": 1,
        "dtype": "float32",
        "device": "cpu",
    },
}


def edited(path, value=None, delete=False):
    """EXAMPLE with the value at ``path`` (a tuple of keys/indices) replaced or deleted."""
    spec = copy.deepcopy(EXAMPLE)
    node = spec
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return spec


def rejects(spec, path, *fragments):
    with pytest.raises(ValueError) as info:
        validate_spec(spec)
    assert isinstance(info.value, SpecError)
    message = str(info.value)
    assert message.startswith(path + ":"), message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_the_example_is_valid_and_comes_back_with_defaults_added():
    expected = copy.deepcopy(EXAMPLE)
    for layer in expected["model"]["layers"][:2]:
        layer["dropout"] = 0.0  # the only keys the example leaves out
    expected["training"]["eval_every"] = 1
    expected["training"]["threads"] = 1
    expected["training"]["cuda_graphs"] = True
    expected["training"]["rng"] = {"kind": "pcg64", "inits_before": 0, "shuffles_before": [], "order_carried": False}
    assert validate_spec(EXAMPLE) == expected


def test_defaults_are_filled_in():
    minimal = {
        "model": {"layers": [{"type": "fc", "units": 30}, {"type": "fc", "units": 10}], "cost": "quadratic"},
        "training": {"epochs": 30, "batch_size": 10, "eta": 3},
    }
    spec = validate_spec(minimal)
    assert spec["model"]["input_shape"] == [1, 28, 28] and spec["model"]["init"] == "default"
    assert spec["model"]["layers"][0] == {"type": "fc", "units": 30, "activation": "sigmoid", "dropout": 0.0}
    t = spec["training"]
    assert t["eta"] == 3.0 and isinstance(t["eta"], float)
    assert t["regularization"] == {"kind": "none", "lmbda": 0.0, "scaling": "network2"}
    assert t["eta_schedule"] == {"kind": "constant"} and t["early_stopping"] == {"patience": 0}
    assert t["monitor"] == {"training_cost": False, "training_accuracy": False, "validation_cost": True,
                            "test_cost": False, "gradient_norms": False}
    assert (t["shuffle"], t["seed"], t["dtype"], t["device"], t["dropout_mode"]) == (
        True, 1, "float32", "cpu", "classic")
    assert minimal["training"] == {"epochs": 30, "batch_size": 10, "eta": 3}  # input left alone
    # the schedule's numbers are the run's to give (the book's 10 and 1/128: conf/book/ch3-early-stop)
    rejects(edited(("training", "eta_schedule"), {"kind": "halve_on_plateau", "min_fraction": 1 / 128}),
            "training.eta_schedule.patience", "required key is missing")
    rejects(edited(("training", "eta_schedule"), {"kind": "halve_on_plateau", "patience": 10}),
            "training.eta_schedule.min_fraction", "required key is missing")
    rejects(edited(("training", "eta_schedule"), {"patience": 10, "min_fraction": 1 / 128}),
            "training.eta_schedule.kind", "min_fraction, patience belong to kind: halve_on_plateau")


def test_a_regulariser_needs_its_lambda():
    rejects(edited(("training", "regularization"), {"kind": "l2", "scaling": "network3"}),
            "training.regularization.lmbda", "required key is missing: kind l2 needs its lambda")
    spec = edited(("training", "regularization"), {"kind": "l1", "lmbda": 0})  # a sweep's lambda = 0
    assert validate_spec(spec)["training"]["regularization"]["lmbda"] == 0.0


def test_early_stopping_that_would_keep_the_schedule_from_halving_is_refused():
    spec = edited(("training", "eta_schedule"), {"kind": "halve_on_plateau", "patience": 10, "min_fraction": 1 / 128})
    spec["training"]["early_stopping"] = {"patience": 10}
    rejects(spec, "training.early_stopping.patience", "not more than eta_schedule.patience (10)")
    from pipeline.nn.spec import validate_training

    with pytest.raises(SpecError, match="training.early_stopping.patience"):  # what fit checks
        validate_training(spec["training"])
    spec["training"]["early_stopping"] = {"patience": 11}  # the schedule halves first
    assert validate_spec(spec)["training"]["early_stopping"] == {"patience": 11}


@pytest.mark.parametrize(
    "path, value, where",
    [
        (("model", "layers", 2, "unitz"), 5, "model.layers[2].unitz"),
        (("training", "learning_rate"), 0.1, "training.learning_rate"),
        (("training", "regularization", "lambda"), 0.1, "training.regularization.lambda"),
        (("training", "monitor", "test_accuracy"), True, "training.monitor.test_accuracy"),
        (("extra",), {}, "extra"),
    ],
)
def test_unknown_keys(path, value, where):
    rejects(edited(path, value), where, "unknown key", "allowed keys")


@pytest.mark.parametrize(
    "path, value, where, fragment",
    [
        (("training", "epochs"), "60", "training.epochs", "expected an integer"),
        (("training", "epochs"), 2.5, "training.epochs", "expected an integer"),
        (("training", "batch_size"), True, "training.batch_size", "expected an integer"),
        (("training", "eta"), "1e-4", "training.eta", "expected a number"),
        (("training", "shuffle"), "no", "training.shuffle", "expected true or false"),
        (("training", "cuda_graphs"), "yes", "training.cuda_graphs", "expected true or false"),
        (("training", "monitor", "validation_cost"), 1, "training.monitor.validation_cost", "true or false"),
        (("training", "monitor", "gradient_norms"), True, "training.monitor.gradient_norms",
         "the number of first training examples"),
        (("training", "monitor", "gradient_norms"), "1000", "training.monitor.gradient_norms",
         "expected an integer"),
        (("model", "layers"), {"type": "fc"}, "model.layers", "expected a list"),
        (("model", "layers", 2), "fc", "model.layers[2]", "expected a mapping"),
        (("model", "input_shape"), [28, 28], "model.input_shape", "[channels, height, width]"),
        (("training", "regularization"), 0.1, "training.regularization", "expected a mapping"),
    ],
)
def test_wrong_types(path, value, where, fragment):
    rejects(edited(path, value), where, fragment)


@pytest.mark.parametrize(
    "path, value, where, allowed",
    [
        (("model", "layers", 2, "activation"), "relux", "model.layers[2].activation", "sigmoid, tanh, relu, linear"),
        (("model", "layers", 0, "type"), "pool", "model.layers[0].type", "conv, fc, softmax"),
        (("model", "cost"), "hinge", "model.cost", "quadratic, cross_entropy, log_likelihood"),
        (("model", "init"), "xavier", "model.init", "large, default, network3"),
        (("training", "dtype"), "float16", "training.dtype", "float32, float64"),
        (("training", "device"), "tpu", "training.device", "cpu, gpu"),
        (("training", "dropout_mode"), "spatial", "training.dropout_mode", "classic, inverted"),
        (("training", "regularization", "kind"), "l3", "training.regularization.kind", "none, l1, l2"),
        (("training", "regularization", "scaling"), "keras", "training.regularization.scaling", "network2, network3"),
        (("training", "eta_schedule", "kind"), "cosine", "training.eta_schedule.kind", "constant, halve_on_plateau"),
    ],
)
def test_unknown_names(path, value, where, allowed):
    rejects(edited(path, value), where, "unknown", allowed)


def test_the_schema_in_the_docstring_names_every_activation_and_cost():
    """docs/extending.md sends a new activation or cost to this schema; it must stay complete."""
    from pipeline.nn import activations, costs, spec

    lines = [line.strip() for line in spec.__doc__.splitlines()]
    activation_line = next(line for line in lines if line.startswith("# a conv or fc activation:"))
    cost_line = next(line for line in lines if line.startswith("cost:"))

    def names(after):
        return {name.strip() for name in after.split("|")}

    assert names(activation_line.split(":", 1)[1]) == set(activations.NAMES)
    assert names(cost_line.split("#", 1)[1]) == set(costs.NAMES)


@pytest.mark.parametrize(
    "path, value, where",
    [
        (("training", "epochs"), 0, "training.epochs"),
        (("training", "eta"), 0.0, "training.eta"),
        (("training", "momentum"), 1.0, "training.momentum"),
        (("training", "seed"), -1, "training.seed"),
        (("training", "threads"), 0, "training.threads"),
        (("training", "monitor", "gradient_norms"), 0, "training.monitor.gradient_norms"),
        (("training", "regularization", "lmbda"), -0.1, "training.regularization.lmbda"),
        (("model", "layers", 2, "dropout"), 1.0, "model.layers[2].dropout"),
        (("model", "layers", 2, "units"), 0, "model.layers[2].units"),
        (("model", "layers", 0, "filters"), 0, "model.layers[0].filters"),
        (("training", "eta_schedule"), {"kind": "halve_on_plateau", "patience": 10, "min_fraction": 0.0},
         "training.eta_schedule.min_fraction"),
        (("training", "eta_schedule"), {"kind": "halve_on_plateau", "patience": 10, "min_fraction": 0.5},
         "training.eta_schedule.min_fraction"),
        (("training", "eta_schedule"), {"kind": "halve_on_plateau", "patience": 0, "min_fraction": 0.25},
         "training.eta_schedule.patience"),
        (("training", "batch_size"), 0, "training.batch_size"),
        (("model", "layers", 0, "kernel"), 0, "model.layers[0].kernel"),
        (("model", "layers", 0, "pool"), 0, "model.layers[0].pool"),
    ],
)
def test_out_of_range_values(path, value, where):
    rejects(edited(path, value), where, "must be")


def test_missing_required_keys():
    rejects(edited(("training", "eta"), delete=True), "training.eta", "required")
    rejects(edited(("model", "layers", 2, "units"), delete=True), "model.layers[2].units", "required")
    rejects(edited(("model",), delete=True), "model", "required")


@pytest.mark.parametrize(
    "cost, output, fragment",
    [
        ("cross_entropy", {"type": "softmax", "units": 10}, "sigmoid"),
        ("cross_entropy", {"type": "fc", "units": 10, "activation": "relu"}, "sigmoid"),
        ("log_likelihood", {"type": "fc", "units": 10, "activation": "sigmoid"}, "softmax"),
        ("quadratic", {"type": "softmax", "units": 10}, "fc output layer"),
    ],
)
def test_cost_must_match_the_output_layer(cost, output, fragment):
    spec = edited(("model", "cost"), cost)
    spec["model"]["layers"][-1] = output
    rejects(spec, "model.cost", fragment, "model.layers[3]")


def test_incompatible_shapes():
    # the second conv sees 12x12 maps; an 11x11 kernel leaves 2, too few for a pool 3 window
    spec = edited(("model", "layers", 1, "kernel"), 11)
    spec["model"]["layers"][1]["pool"] = 3
    rejects(spec, "model.layers[1].kernel", "2-wide convolution, too small for one pool 3 window",
            "[20, 12, 12]): make kernel or pool smaller")
    # a kernel larger than the image
    rejects(edited(("model", "layers", 0, "kernel"), 29), "model.layers[0].kernel", "kernel 29")
    # conv after fc: the fc output is flat
    spec = copy.deepcopy(EXAMPLE)
    spec["model"]["layers"].insert(3, {"type": "conv", "filters": 4})
    rejects(spec, "model.layers[3].type", "cannot follow an fc layer")
    # conv on a flat input
    rejects(edited(("model", "input_shape"), [784]), "model.layers[0].type", "3-d")
    # softmax in the middle, conv as the output layer
    spec = copy.deepcopy(EXAMPLE)
    spec["model"]["layers"][2] = {"type": "softmax", "units": 100}
    rejects(spec, "model.layers[2].type", "last")
    spec = copy.deepcopy(EXAMPLE)
    spec["model"]["layers"] = spec["model"]["layers"][:2]
    rejects(spec, "model.layers[1].type", "output layer")


def test_any_kernel_size_pools_whole_windows_and_drops_the_rest():
    """Kernel 4 on 28 x 28 gives a 25-wide convolution: pool 2 keeps 12 windows and drops the
    last row and column, as network3.py's pooling (ignore_border=True) does."""
    from pipeline.nn import build_network

    spec = edited(("model", "layers", 0, "kernel"), 4)
    spec["model"]["layers"][1]["kernel"] = 3  # 12 -> 10 -> pool 2 -> 5
    net = build_network(validate_spec(spec))
    assert net.layers[0].out_shape == (12, 12, 20) and net.layers[1].out_shape == (5, 5, 40)
    assert net.forward(numpy.zeros((2, 784), numpy.float32)).shape == (2, 10)


def test_inconsistent_settings():
    rejects(edited(("training", "regularization"), {"kind": "none", "lmbda": 0.5}),
            "training.regularization.lmbda", "none")
    rejects(edited(("training", "eta_schedule"), {"kind": "constant", "patience": 3}),
            "training.eta_schedule.patience", "unknown key")
    rejects(edited(("model", "layers"), []), "model.layers", "at least one")
    spec = copy.deepcopy(EXAMPLE)
    spec["model"]["layers"][-1]["units"] = 1
    rejects(spec, "model.layers[3].units", ">= 2")


NETWORK2_NET = {
    "model": {"input_shape": [784], "layers": [{"type": "fc", "units": 30}, {"type": "fc", "units": 10}],
              "cost": "cross_entropy", "init": "large"},
    "training": {"epochs": 2, "batch_size": 10, "eta": 0.5, "dtype": "float64",
                 "rng": {"kind": "network2", "inits_before": 2, "shuffles_before": [[100, 15000], [200, 7500]]}},
}


def test_network2_streams_are_validated():
    rng = validate_spec(NETWORK2_NET)["training"]["rng"]
    assert rng == {"kind": "network2", "inits_before": 2, "shuffles_before": [[100, 15000], [200, 7500]],
                   "order_carried": False}

    def network2(path, value, where, *fragments):
        spec = copy.deepcopy(NETWORK2_NET)
        node = spec
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        rejects(spec, where, *fragments)

    network2(("training", "rng", "kind"), "mt19937", "training.rng.kind", "allowed: pcg64, network2")
    network2(("training", "rng", "shuffles_before"), [[100]], "training.rng.shuffles_before[0]", "[examples, epochs]")
    network2(("training", "rng", "shuffles_before"), [[0, 3]], "training.rng.shuffles_before[0][0]", ">= 1")
    network2(("training", "rng", "inits_before"), -1, "training.rng.inits_before", ">= 0")
    network2(("training", "shuffle"), False, "training.shuffle", "network2")
    network2(("model", "init"), "network3", "model.init", "'default' or 'large'")
    network2(("model", "init"), "default", "training.rng.inits_before", "constructor")
    network2(("model", "layers"), [{"type": "fc", "units": 30, "dropout": 0.5}, {"type": "fc", "units": 10}],
             "model.layers[0]", "network2.py")
    # the network2 keys mean nothing to our own streams
    rejects(edited(("training", "rng"), {"kind": "pcg64", "inits_before": 1}), "training.rng", "kind: network2")
    # a conv net is not a network2 net
    spec = edited(("training", "rng"), {"kind": "network2"})
    spec["training"]["shuffle"] = True
    rejects(spec, "model.layers[0]", "network2.py")


def test_network2_seed_must_fit_randomstate():
    """numpy's RandomState takes seeds 0..2**32 - 1: a larger one is refused at training.seed,
    not later by numpy without a key; our own PCG64 streams take any seed >= 0."""
    spec = copy.deepcopy(NETWORK2_NET)
    spec["training"]["seed"] = 2**32 - 1
    assert validate_spec(spec)["training"]["seed"] == 2**32 - 1
    spec["training"]["seed"] = 2**32
    rejects(spec, "training.seed", "0..4294967295", "rng.kind network2")
    assert validate_spec(edited(("training", "seed"), 2**32))["training"]["seed"] == 2**32


def test_a_non_mapping_spec():
    rejects([1, 2], "spec", "mapping")


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
@pytest.mark.parametrize(
    "path, where",
    [
        (("training", "eta"), "training.eta"),
        (("training", "regularization", "lmbda"), "training.regularization.lmbda"),
    ],
)
def test_numbers_must_be_finite(path, value, where):
    """NaN passes every range comparison, and an infinite eta or lambda only shows up as a
    diverged run: both are refused when the spec is read."""
    rejects(edited(path, value), where, "must be finite")


def test_a_number_yaml_left_a_string_is_explained_and_a_word_is_not():
    """YAML 1.1 reads 1e-4 (no dot) as a string; 'fast' is no number that YAML misread."""
    with pytest.raises(SpecError) as info:
        validate_spec(edited(("training", "eta"), "1e-4"))
    assert str(info.value) == ("training.eta: expected a number, got str '1e-4' "
                               "(YAML reads 1e-4 as a string: write 1.0e-4)")
    with pytest.raises(SpecError) as info:
        validate_spec(edited(("training", "eta"), "fast"))
    assert str(info.value) == "training.eta: expected a number, got str 'fast'"


@pytest.mark.parametrize("value, hint", [
    ("3.0", " (a number in quotes is a string: write it without them)"),
    ("5e-3", " (YAML reads 5e-3 as a string: write 5.0e-3)"),
    ("5e3", " (YAML reads 5e3 as a string: write 5.0e+3)"),  # 5.0e3 is a string to YAML 1.1 too
    ("inf", ""),  # not YAML's .inf: no hint that would lead to a value refused anyway
    ("nan", ""),
])
def test_each_string_that_reads_as_a_number_gets_its_own_hint(value, hint):
    with pytest.raises(SpecError) as info:
        validate_spec(edited(("training", "eta"), value))
    assert str(info.value) == f"training.eta: expected a number, got str {value!r}{hint}"


def test_parameter_count_is_the_built_networks():
    from nnhelpers import chapter6_relu_spec, make_spec

    from pipeline.nn import build_network
    from pipeline.nn.spec import parameter_count

    specs = [chapter6_relu_spec(), make_spec([{"type": "fc", "units": 30, "activation": "sigmoid"},
                                              {"type": "fc", "units": 10, "activation": "sigmoid"}],
                                             input_shape=(784,))]
    specs.append(copy.deepcopy(specs[0]))
    specs[-1]["model"]["input_shape"] = [3, 29, 27]  # channels and a pooling remainder
    specs[-1]["model"]["layers"][0].update(kernel=4)
    for spec in specs:
        spec = validate_spec(spec)
        net = build_network(spec)
        assert parameter_count(spec["model"]) == sum(p.size for p in net.state_dict().values())
