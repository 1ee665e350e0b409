"""What the PyTorch twin cannot do is refused before any training (no torch needed).

The twin implements each cost and activation by hand: one the engine gains later must be
refused by name, not trained as some other one and reported as agreeing."""

import pytest

from pipeline.crosscheck import TWIN_ACTIVATIONS, TWIN_COSTS, _check_supported
from pipeline.nn import activations, costs
from pipeline.nn.spec import validate_spec

FC_LAYERS = [{"type": "fc", "units": 12, "activation": "sigmoid"},
             {"type": "fc", "units": 10, "activation": "sigmoid"}]


def _fc_spec(cost, **training):
    t = {"epochs": 12, "batch_size": 7, "eta": 3.0, "seed": 5, "dtype": "float64",
         "regularization": {"kind": "l2", "lmbda": 0.1, "scaling": "network2"}}
    t.update(training)
    return validate_spec({"model": {"input_shape": [100], "layers": FC_LAYERS, "cost": cost,
                                    "init": "default"}, "training": t})


def test_the_twin_has_every_cost_and_activation_of_the_engine():
    """A new engine name fails here until the twin has it too (or the check stays a refusal)."""
    assert set(TWIN_COSTS) == set(costs.NAMES)
    assert set(TWIN_ACTIVATIONS) == set(activations.NAMES)


def test_a_cost_the_twin_lacks_is_refused_by_name():
    spec = _fc_spec("quadratic")
    spec["model"]["cost"] = "absolute"  # as if the engine had gained it
    with pytest.raises(SystemExit, match="cost absolute"):
        _check_supported(spec, "my-run")


def test_an_activation_the_twin_lacks_is_refused_by_name():
    spec = _fc_spec("quadratic")
    spec["model"]["layers"][0]["activation"] = "softplus"
    with pytest.raises(SystemExit, match="activation softplus"):
        _check_supported(spec, "my-run")


@pytest.mark.parametrize("training, named", [
    ({"momentum": 0.9}, "momentum"),
    ({"eta_schedule": {"kind": "halve_on_plateau", "patience": 5, "min_fraction": 0.0078125}},
     "eta schedule"),
    ({"early_stopping": {"patience": 3}}, "early stopping"),
    ({"regularization": {"kind": "l1", "lmbda": 0.1}}, "regularization l1"),
])
def test_what_the_twin_cannot_do_is_refused(training, named):
    spec = _fc_spec("quadratic", **training)
    with pytest.raises(SystemExit, match=named):
        _check_supported(spec, "my-run")


def test_dropout_is_refused():
    spec = _fc_spec("quadratic")
    spec["model"]["layers"][0]["dropout"] = 0.5
    with pytest.raises(SystemExit, match="dropout"):
        _check_supported(spec, "my-run")
