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


def test_ctrl_c_during_our_training_stops_the_crosscheck_and_compares_nothing(monkeypatch, capsys):
    """``fit`` keeps Ctrl-C's history and returns; the cross-check must not go on to train the
    twin and print a part-trained seed's comparison as if it were whole (no torch needed)."""
    import sys
    import types
    from pathlib import Path

    import numpy

    from pipeline import crosscheck
    from pipeline.nn.train import fit

    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(set_num_threads=lambda n: None))
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # params.yaml's ch1-30
    rng = numpy.random.default_rng(0)
    tiny = types.SimpleNamespace(x=rng.random((40, 784)), y=rng.integers(0, 10, 40))
    monkeypatch.setattr(crosscheck, "load_run_data", lambda *args: (tiny, tiny, tiny, ""))

    lines = []

    def ctrl_c_at_the_first_epoch_line(line):
        lines.append(line)
        if len(lines) == 1:  # fit's own "interrupted after ..." line goes through too
            raise KeyboardInterrupt

    monkeypatch.setattr(crosscheck, "fit", lambda *args, **kwargs: fit(
        *args, **dict(kwargs, log=ctrl_c_at_the_first_epoch_line)))
    monkeypatch.setattr(crosscheck, "train_torch", lambda *args: pytest.fail("trained the twin"))
    with pytest.raises(SystemExit, match="stopped during ch1-30 seed 1; nothing compared"):
        crosscheck.main(["ch1-30", "--epochs", "2", "--seeds", "1", "2"])
    assert "peak test accuracy" not in capsys.readouterr().out


@pytest.mark.parametrize("epochs", ["0", "-1"])
def test_epochs_below_one_are_refused_not_taken_for_the_runs_own(epochs, capsys):
    """``run_spec`` caps the run's epochs at a limit that is set: 0 was no limit, and the
    cross-check trained the run's whole 30 or 60 epochs; -1 reached the spec as a traceback."""
    from pipeline import crosscheck

    with pytest.raises(SystemExit) as stopped:
        crosscheck.main(["ch1-30", "--epochs", epochs])
    assert stopped.value.code == 2
    assert f"--epochs: expected a count >= 1, got {epochs}" in capsys.readouterr().err
