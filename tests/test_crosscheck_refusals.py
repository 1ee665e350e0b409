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


@pytest.fixture
def offline_crosscheck(monkeypatch):
    """``pipeline.crosscheck`` as its command runs it, without torch (a stand-in that takes
    ``set_num_threads``) or the prepared data (40 random images), on params.yaml's runs."""
    import sys
    import types
    from pathlib import Path

    import numpy

    from pipeline import crosscheck

    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(set_num_threads=lambda n: None))
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # params.yaml's ch1-30
    rng = numpy.random.default_rng(0)
    tiny = types.SimpleNamespace(x=rng.random((40, 784)), y=rng.integers(0, 10, 40))
    monkeypatch.setattr(crosscheck, "load_run_data", lambda *args: (tiny, tiny, tiny, ""))
    return crosscheck


def test_ctrl_c_during_our_training_stops_the_crosscheck_and_compares_nothing(offline_crosscheck, monkeypatch,
                                                                              capsys):
    """``fit`` keeps Ctrl-C's history and returns; the cross-check must not go on to train the
    twin and print a part-trained seed's comparison as if it were whole (no torch needed)."""
    from pipeline.nn.train import fit

    crosscheck = offline_crosscheck
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


def test_each_seed_trains_both_engines_from_one_start_for_the_epochs_asked(offline_crosscheck, monkeypatch,
                                                                           capsys):
    """The twin gets the seed's own spec, capped at --epochs, and the weights our network
    started from (not those it ended with); the summary gives each engine's own accuracies."""
    import numpy

    from pipeline.nn.train import History, fit

    crosscheck = offline_crosscheck
    starts, twins = [], []

    def fit_from(net, *args, **kwargs):
        starts.append(net.state_dict())
        return fit(net, *args, **kwargs)

    def twin(spec, state, *args):
        twins.append((spec["training"]["seed"], spec["training"]["epochs"], state))
        return History(peak_test_accuracy=0.5, test_at_best_validation=0.25)

    monkeypatch.setattr(crosscheck, "fit", fit_from)
    monkeypatch.setattr(crosscheck, "train_torch", twin)
    assert crosscheck.main(["ch1-30", "--epochs", "2"]) == 0  # seed 1 by default
    assert crosscheck.main(["ch1-30", "--epochs", "2", "--seeds", "2", "3"]) == 0
    assert [(seed, epochs) for seed, epochs, _ in twins] == [(1, 2), (2, 2), (3, 2)]
    for (_, _, state), start in zip(twins, starts):
        assert state.keys() == start.keys() and all(numpy.array_equal(state[k], start[k]) for k in start)
    out = capsys.readouterr().out
    assert "ch1-30 seed 3: 2 epochs, both engines from the same start" in out
    summary = [line for line in out.splitlines() if line.startswith("  seed ")]
    assert [line.split(":")[0] for line in summary] == ["  seed 1", "  seed 2", "  seed 3"]
    assert all(line.endswith("   torch 50.00%; 25.00%") for line in summary), summary


@pytest.mark.parametrize("book_id, data_error, said", [
    ("ch1-3", None, "crosscheck: no run 'ch1-3' in params.yaml's book"),
    ("ch1-30", FileNotFoundError("data/prepared/train.npz is missing: build it"),
     "crosscheck: data/prepared/train.npz is missing: build it"),
    ("ch6-dropout", None, "crosscheck: ch6-dropout is not supported: dropout"),
])
def test_a_run_it_cannot_find_read_or_compare_is_refused_in_a_line_before_training(
        offline_crosscheck, monkeypatch, book_id, data_error, said):
    crosscheck = offline_crosscheck
    if data_error is not None:
        def no_data(*args):
            raise data_error
        monkeypatch.setattr(crosscheck, "load_run_data", no_data)
    monkeypatch.setattr(crosscheck, "fit", lambda *args, **kwargs: pytest.fail("trained"))
    with pytest.raises(SystemExit) as stopped:
        crosscheck.main([book_id, "--epochs", "1"])
    assert str(stopped.value.code).startswith(said), stopped.value.code


@pytest.mark.parametrize("epochs", ["0", "-1"])
def test_epochs_below_one_are_refused_not_taken_for_the_runs_own(epochs, capsys):
    """``run_spec`` caps the run's epochs at a limit that is set: 0 was no limit, and the
    cross-check trained the run's whole 30 or 60 epochs; -1 reached the spec as a traceback."""
    from pipeline import crosscheck

    with pytest.raises(SystemExit) as stopped:
        crosscheck.main(["ch1-30", "--epochs", epochs])
    assert stopped.value.code == 2
    assert f"--epochs: expected a count >= 1, got {epochs}" in capsys.readouterr().err
