"""The training loop: learning, determinism, bookkeeping, stopping rules, Ctrl-C."""

from __future__ import annotations

import numpy
import pytest
from nnhelpers import blobs, make_spec

from pipeline.errors import InputError
from pipeline.nn import build_network, fit, one_hot
from pipeline.nn import network as network_module
from pipeline.nn.regularization import Regularization

SOFTMAX_NET = [{"type": "fc", "units": 10, "activation": "sigmoid"}, {"type": "softmax", "units": 3}]


def spec(**training):
    training = {"epochs": 3, "batch_size": 10, "eta": 0.5, **training}
    return make_spec(SOFTMAX_NET, "log_likelihood", **training)


@pytest.fixture(scope="module")
def data():
    x, y = blobs(900, seed=4)
    return (x[:600], y[:600]), (x[600:750], y[600:750]), (x[750:], y[750:])


def scripted_accuracy(net, validation, test, val_seq, test_seq):
    """Make ``net.accuracy`` (and the accuracy of ``net.accuracy_and_cost``, which measures the
    validation set's cost too) return scripted values on the validation and test inputs."""
    real, real_with_cost, vals, tests = net.accuracy, net.accuracy_and_cost, iter(val_seq), iter(test_seq)

    def scripted(x):
        return next(vals) if x is validation[0] else next(tests) if x is test[0] else None

    def fake(x, labels, batch=1000):
        accuracy = scripted(x)
        return real(x, labels, batch) if accuracy is None else accuracy

    def fake_with_cost(x, labels, *args, **kwargs):
        accuracy, cost = real_with_cost(x, labels, *args, **kwargs)
        scripted_value = scripted(x)
        return (accuracy if scripted_value is None else scripted_value), cost

    net.accuracy, net.accuracy_and_cost = fake, fake_with_cost


def test_it_learns_and_records_every_epoch(data):
    train, val, test = data
    s = spec(epochs=4, monitor={"training_cost": True, "training_accuracy": True, "validation_cost": True,
                                "gradient_norms": 50})
    net = build_network(s)
    before = net.accuracy(*val)
    first_50 = (train[0][:50], train[1][:50])  # the norms are measured on the first 50 only
    initial_norms = net.gradient_norms(*first_50)
    assert initial_norms != pytest.approx(net.gradient_norms(*train))
    lines, records = [], []
    history = fit(net, s, train, val, test, on_epoch=records.append, log=lines.append, progress=False)
    assert before < 0.6 and history.records[-1]["validation_accuracy"] > 0.95
    assert records == history.records and len(records) == 4 and len(lines) == 4
    assert [r["epoch"] for r in records] == [0, 1, 2, 3]
    for r in records:
        assert {"epoch", "eta", "seconds", "training_cost", "training_accuracy", "validation_accuracy",
                "validation_cost", "test_accuracy", "gradient_norms"} <= set(r)
        assert len(r["gradient_norms"]) == 2 and all(g > 0 for g in r["gradient_norms"])
    assert records[-1]["training_cost"] < records[0]["training_cost"]
    assert "val acc" in lines[0] and "test acc" in lines[0]
    # measured at the start of each epoch (the book's chapter 5 script): epoch 0 has the
    # initial network's, and they fall as it learns
    assert records[0]["gradient_norms"] == pytest.approx(initial_norms)
    assert records[-1]["gradient_norms"] != pytest.approx(net.gradient_norms(*first_50))
    assert records[-1]["gradient_norms"][0] < records[0]["gradient_norms"][0]
    assert records[-1]["training_cost"] == pytest.approx(net.total_cost(*train))
    assert history.peak_test_accuracy == max(r["test_accuracy"] for r in records)
    assert not history.interrupted and history.stopped_early is None


@pytest.mark.parametrize("dropout, gpu_like_rng", [(0.0, False), (0.5, False), (0.5, True)])
def test_measuring_gradient_norms_leaves_the_training_untouched(data, dropout, gpu_like_rng,
                                                               monkeypatch):
    """The norms are one extra backprop before each epoch; weights and records come out the same.
    ``gpu_like_rng``: the layers draw their masks from generators seeded from the network's, as
    on a GPU (``device_rng``), so handing them a new one would change the masks."""
    if gpu_like_rng:
        monkeypatch.setattr(network_module, "device_rng",
                            lambda rng, xp: numpy.random.default_rng(int(rng.integers(2**63))))
    train, val, _ = data
    layers = [dict(SOFTMAX_NET[0], dropout=dropout), SOFTMAX_NET[1]]
    runs = []
    for monitored in (1000, False):
        s = make_spec(layers, "log_likelihood", epochs=3, batch_size=10, eta=0.5,
                      monitor={"gradient_norms": monitored})
        net = build_network(s)
        history = fit(net, s, train, val, log=None, progress=False)
        measured = [len(r.get("gradient_norms") or []) for r in history.records]
        assert measured == ([2] * 3 if monitored else [0] * 3)  # one norm per layer, every epoch
        runs.append((net.state_dict(), [r["validation_accuracy"] for r in history.records]))
    (monitored_weights, monitored_acc), (plain_weights, plain_acc) = runs
    assert monitored_acc == plain_acc
    for name, w in plain_weights.items():
        numpy.testing.assert_array_equal(monitored_weights[name], w)


def test_the_validation_cost_is_recorded_unless_turned_off_and_changes_nothing_else(data):
    """After every epoch the validation accuracy and its cost (network2's monitor): the cost
    comes from the accuracy's forward pass, so weights and accuracies are the same with it on
    (the default) or off."""
    train, val, test = data
    runs = []
    for monitor in ({}, {"validation_cost": False}):
        s = spec(epochs=3, monitor=monitor)
        net = build_network(s)
        history = fit(net, s, train, val, test, log=None, progress=False)
        runs.append((net, net.state_dict(), history.records))
    (net_on, weights_on, records_on), (_, weights_off, records_off) = runs
    assert all("validation_cost" in r for r in records_on) and not any("validation_cost" in r for r in records_off)
    assert records_on[-1]["validation_cost"] == pytest.approx(net_on.total_cost(*val))  # the last epoch's weights
    for key in ("validation_accuracy", "test_accuracy"):
        assert [r[key] for r in records_on] == [r[key] for r in records_off]
    for name, w in weights_off.items():
        numpy.testing.assert_array_equal(weights_on[name], w)


def test_monitored_costs_include_the_network2_penalty(data):
    train, val, test = data
    test = (test[0][:100], test[1][:100])  # a size of its own: each set's penalty is lmbda / its n
    s = spec(epochs=1, regularization={"kind": "l2", "lmbda": 4.0},
             monitor={"training_cost": True, "validation_cost": True, "test_cost": True})
    net = build_network(s)
    r = fit(net, s, train, val, test, log=None, progress=False).records[0]
    squares = sum(float((w**2).sum()) for w in net.weights())
    assert r["training_cost"] == pytest.approx(net.total_cost(*train) + 0.5 * 4.0 / len(train[0]) * squares)
    assert r["validation_cost"] == pytest.approx(net.total_cost(*val) + 0.5 * 4.0 / len(val[0]) * squares)
    assert r["test_cost"] == pytest.approx(net.total_cost(*test) + 0.5 * 4.0 / 100 * squares)
    assert r["test_accuracy"] == net.accuracy(*test)


@pytest.mark.parametrize("batch", [1000, 64])  # one chunk; chunks with a short last one
def test_accuracy_and_cost_in_one_pass_equal_the_two_measured_apart(data, batch):
    """The monitors of network2.py take a set's accuracy and cost from one forward pass;
    the numbers are those of ``accuracy`` and ``total_cost``, to the last bit."""
    train, val, _ = data
    s = spec(epochs=1, regularization={"kind": "l2", "lmbda": 4.0})
    net = build_network(s)
    reg = Regularization(kind="l2", lmbda=4.0)
    measured = []
    for trained in (False, True):
        if trained:
            fit(net, s, train, log=None, progress=False)
        for x, labels in (train, val):
            both = net.accuracy_and_cost(x, labels, reg, batch=batch)
            assert both == (net.accuracy(x, labels, batch), net.total_cost(x, labels, reg, batch=batch))
            measured.append(both)
    assert measured[1][0] < 0.6 < 0.95 < measured[3][0]  # validation: before and after training
    assert measured[2][1] < measured[0][1]  # training cost fell


def _cost_by_hand(cost: str, a: numpy.ndarray, labels: numpy.ndarray) -> float:
    """The mean over examples of each cost, written out per example (ch. 1 eq. 6, ch. 3 eq. 63
    and 80) from the output activations."""
    y = numpy.eye(a.shape[1])[labels]
    if cost == "quadratic":
        per_example = 0.5 * ((a - y) ** 2).sum(axis=1)
    elif cost == "cross_entropy":
        per_example = -(y * numpy.log(a) + (1 - y) * numpy.log(1 - a)).sum(axis=1)
    else:
        per_example = -numpy.log(a[numpy.arange(len(labels)), labels])
    return float(per_example.mean())


@pytest.mark.parametrize("cost, output", [("quadratic", "fc"), ("cross_entropy", "fc"), ("log_likelihood", "softmax")])
def test_total_cost_is_the_mean_per_example_cost_plus_the_l2_term(cost, output):
    """``total_cost`` against the costs' formulas on one unchunked forward pass: 150 examples in
    chunks of 64 (the last one partial), with network2.py's L2 term 0.5 (lmbda / n) sum w^2."""
    layers = [{"type": "fc", "units": 7, "activation": "sigmoid"},
              {"type": output, "units": 3, **({"activation": "sigmoid"} if output == "fc" else {})}]
    net = build_network(make_spec(layers, cost, init="large"))
    x, labels = blobs(150, seed=9)
    a = numpy.asarray(net.forward(x, False))
    expected = _cost_by_hand(cost, a, labels)
    assert net.total_cost(x, labels, batch=64) == pytest.approx(expected, rel=1e-12)
    reg = Regularization(kind="l2", lmbda=2.0)
    l2 = 0.5 * (2.0 / 150) * sum(float((layer.params["w"] ** 2).sum()) for layer in net.layers)
    assert net.total_cost(x, labels, reg, batch=64) == pytest.approx(expected + l2, rel=1e-12)


def test_without_monitoring_only_the_required_metrics_are_recorded(data):
    train, val, _ = data
    s = spec(epochs=1)
    record = fit(build_network(s), s, train, val, log=None, progress=False).records[0]
    assert "training_cost" not in record and "gradient_norms" not in record and "test_accuracy" not in record


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_same_weights_different_seed_different_weights(data, dtype):
    train, val, _ = data
    layers = [{"type": "fc", "units": 8, "activation": "relu", "dropout": 0.3},
              {"type": "softmax", "units": 3, "dropout": 0.2}]

    def run(seed):
        s = make_spec(layers, "log_likelihood", batch_size=10, eta=0.1, epochs=2, shuffle=True, seed=seed, dtype=dtype)
        net = build_network(s)
        fit(net, s, train, val, log=None, progress=False)
        return net.state_dict()

    a, b, c = run(5), run(5), run(6)
    assert all(numpy.array_equal(a[k], b[k]) for k in a)
    assert a["layers.0.w"].dtype == numpy.dtype(dtype)
    assert not numpy.array_equal(a["layers.0.w"], c["layers.0.w"])


def test_shuffling_changes_the_trajectory(data):
    train, _, _ = data
    states = []
    for shuffle in (False, True):
        s = spec(epochs=1, shuffle=shuffle)
        net = build_network(s)
        fit(net, s, train, log=None, progress=False)
        states.append(net.state_dict()["layers.0.w"])
    assert not numpy.array_equal(*states)


def test_best_validation_ties_go_to_the_later_epoch(data):
    train, val, test = data
    s = spec(epochs=4)
    net = build_network(s)
    # the test accuracy peaks before the best validation: the two must not be confused
    scripted_accuracy(net, val, test, [0.5, 0.7, 0.7, 0.6], [0.1, 0.4, 0.3, 0.2])
    states = []
    history = fit(net, s, train, val, test, on_epoch=lambda r: states.append(net.state_dict()), log=None,
                  progress=False)
    assert history.best_epoch == 2
    assert history.best_validation_accuracy == 0.7
    assert history.test_at_best_validation == 0.3
    assert (history.peak_test_accuracy, history.peak_test_epoch) == (0.4, 1)
    assert all(numpy.array_equal(history.best_weights[k], states[2][k]) for k in states[2])
    # the peak test accuracy is where it was first reached
    net = build_network(s)
    scripted_accuracy(net, val, test, [0.5, 0.6, 0.7, 0.8], [0.1, 0.4, 0.4, 0.3])
    states = []
    history = fit(net, s, train, val, test, on_epoch=lambda r: states.append(net.state_dict()), log=None,
                  progress=False)
    assert (history.peak_test_accuracy, history.peak_test_epoch) == (0.4, 1)
    assert history.best_epoch == 3
    assert all(numpy.array_equal(history.best_weights[k], states[3][k]) for k in states[3])
    assert not numpy.array_equal(history.best_weights["layers.0.w"], states[1]["layers.0.w"])


def test_early_stopping_counts_epochs_without_strict_improvement(data):
    train, val, test = data
    s = spec(epochs=20, early_stopping={"patience": 3})
    net = build_network(s)
    #             best  -    -    new  -    tie  -   -> stop after epoch 6
    val_seq = [0.5, 0.4, 0.4, 0.6, 0.5, 0.6, 0.5, 0.9, 0.9]
    scripted_accuracy(net, val, test, val_seq, [0.0] * 20)
    history = fit(net, s, train, val, test, log=None, progress=False)
    assert len(history.records) == 7
    assert "early stopping" in history.stopped_early
    assert history.best_epoch == 5  # the tie at epoch 5 is the best-validation epoch, not an improvement


def test_eta_is_halved_on_plateaus_and_training_stops_at_the_floor(data):
    train, val, test = data
    s = spec(epochs=20, eta=0.8, eta_schedule={"kind": "halve_on_plateau", "patience": 2, "min_fraction": 0.25})
    net = build_network(s)
    # e0 best; e1, e2 flat -> halve; e3 better; e4, e5 flat -> halve to eta/4 = floor -> stop
    scripted_accuracy(net, val, test, [0.5, 0.5, 0.5, 0.6, 0.6, 0.6, 0.7, 0.8], [0.0] * 20)
    history = fit(net, s, train, val, test, log=None, progress=False)
    assert [r["eta"] for r in history.records] == [0.8, 0.8, 0.8, 0.4, 0.4, 0.4]
    assert history.final_eta == pytest.approx(0.2)
    assert "eta" in history.stopped_early


def test_neither_rule_fires_after_the_last_epoch(data):
    """A plateau reached on the last epoch stops nothing and halves nothing: every epoch ran."""
    train, val, test = data
    s = spec(epochs=3, early_stopping={"patience": 2},
             eta_schedule={"kind": "halve_on_plateau", "patience": 1, "min_fraction": 0.01})
    net = build_network(s)
    scripted_accuracy(net, val, test, [0.5, 0.6, 0.4], [0.0] * 3)  # epoch 2 would halve
    history = fit(net, s, train, val, test, log=None, progress=False)
    assert [r["eta"] for r in history.records] == [0.5, 0.5, 0.5]
    assert history.stopped_early is None and history.final_eta == 0.5
    net = build_network(s)
    scripted_accuracy(net, val, test, [0.5, 0.4, 0.4], [0.0] * 3)  # stop after epoch 2 = the last
    history = fit(net, s, train, val, test, log=None, progress=False)
    assert len(history.records) == 3 and history.stopped_early is None


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("scaling", ["network2", "network3"])
def test_network3_scaling_leaves_out_the_last_partial_mini_batch(data, scaling, shuffle):
    """network3.py trains n // m whole mini-batches an epoch; network.py and network2.py also
    train the last, smaller one. 25 examples in batches of 10: 2 or 3 steps an epoch, in the
    stored order or shuffled."""
    x, y = data[0][0][:25], data[0][1][:25]
    s = spec(epochs=1, shuffle=shuffle, regularization={"kind": "l2", "lmbda": 1.0, "scaling": scaling})
    net = build_network(s)
    layer, sizes = net.layers[0], []
    forward = layer.forward

    def counting_forward(xb, train=False):
        if train:
            sizes.append(len(xb))
        return forward(xb, train)

    layer.forward = counting_forward
    said = []
    fit(net, s, (x, y), log=said.append, progress=False)
    assert sizes == ([10, 10] if scaling == "network3" else [10, 10, 5])
    assert any("5 of the 25 training examples are left out" in line for line in said) == (scaling == "network3")
    if scaling == "network3" and not shuffle:  # the same weights as training on the first 20 only
        trimmed = build_network(s)
        fit(trimmed, s, (x[:20], y[:20]), log=None, progress=False)
        for k, w in trimmed.state_dict().items():
            numpy.testing.assert_array_equal(w, net.state_dict()[k])


def test_network3_scaling_needs_one_whole_mini_batch(data):
    x, y = data[0]
    s = spec(regularization={"kind": "none", "lmbda": 0.0, "scaling": "network3"})
    with pytest.raises(ValueError, match="batch_size: 10 is more than the 7 training examples"):
        fit(build_network(s), s, (x[:7], y[:7]), log=None, progress=False)


def test_a_diverging_run_stops_with_a_message_naming_eta(data):
    """A step far too large makes the weights NaN within an epoch: training stops there and
    says so, instead of finishing at chance accuracy with a model nobody can load; numpy's
    overflow warnings on the way there are not shown before the message."""
    import warnings

    from pipeline.nn.train import TrainingDiverged

    train, val, _ = data
    s = make_spec([{"type": "fc", "units": 10, "activation": "relu"}, {"type": "softmax", "units": 3}],
                  "log_likelihood", epochs=3, batch_size=10, eta=1e6)
    records = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TrainingDiverged, match=r"diverged in epoch 0: fc layer 0's w holds NaN or infinite "
                                                   r"values at eta 1e\+06; lower training.eta"):
            fit(build_network(s), s, train, val, on_epoch=records.append, log=None, progress=False)
    assert records == [] and [str(w.message) for w in caught] == []
    fit(build_network(spec(epochs=1)), spec(epochs=1), train, val, log=None, progress=False)  # finite: no error


def test_halved_eta_is_the_one_used_for_updates(data):
    """After a halving, an epoch's update equals a fresh run at eta/2 from the same weights."""
    train, val, test = data
    s = spec(epochs=3, shuffle=False, eta=0.8,
             eta_schedule={"kind": "halve_on_plateau", "patience": 1, "min_fraction": 0.1})
    net = build_network(s)
    scripted_accuracy(net, val, test, [0.5, 0.5, 0.5], [0.0] * 3)
    states = []
    history = fit(net, s, train, val, test, on_epoch=lambda r: states.append(net.state_dict()), log=None,
                  progress=False)
    assert [r["eta"] for r in history.records] == [0.8, 0.8, 0.4]  # halved after epoch 1
    twin = build_network(s)
    twin.load_state_dict(states[1])
    fit(twin, spec(epochs=1, shuffle=False, eta=0.4), train, log=None, progress=False)
    numpy.testing.assert_allclose(twin.state_dict()["layers.0.w"], net.state_dict()["layers.0.w"], rtol=1e-12)


def interrupt_at(net, training_step: int) -> None:
    """Make ``net`` raise KeyboardInterrupt (as Ctrl-C would) at its ``training_step``-th
    training forward pass, counting from 1."""
    layer = net.layers[0]
    forward, calls = layer.forward, []

    def interrupting_forward(x, train=False):
        if train:
            calls.append(1)
            if len(calls) == training_step:
                raise KeyboardInterrupt
        return forward(x, train)

    layer.forward = interrupting_forward


def test_keyboard_interrupt_returns_the_history_so_far(data):
    train, val, test = data
    s = spec(epochs=5, shuffle=False)
    net = build_network(s)
    batches_per_epoch = len(train[0]) // 10
    interrupt_at(net, batches_per_epoch + 3)  # mid-way through the second epoch
    states = []
    history = fit(net, s, train, val, test, on_epoch=lambda r: states.append(net.state_dict()), log=None,
                  progress=False)
    assert history.interrupted
    assert len(history.records) == 1 and history.best_epoch == 0
    assert all(numpy.array_equal(history.best_weights[k], states[0][k]) for k in states[0])
    # the network keeps the two updates of the interrupted epoch
    assert not numpy.array_equal(net.state_dict()["layers.0.w"], states[0]["layers.0.w"])


def test_an_interrupt_counts_the_epochs_trained_not_the_epochs_recorded(data):
    # with eval_every 3 only epochs 2 and 5 are recorded before epoch 6: the six epochs
    # trained to the end are six, not the two records (the model says "during epoch 6")
    train, val, test = data
    s = spec(epochs=9, shuffle=False, eval_every=3)
    net = build_network(s)
    interrupt_at(net, 6 * (len(train[0]) // 10) + 2)  # two mini-batches into epoch 6
    lines = []
    history = fit(net, s, train, val, test, log=lines.append, progress=False)
    assert history.interrupted and [r["epoch"] for r in history.records] == [2, 5]
    assert history.summary()["epochs_run"] == 6
    assert lines[-1] == "interrupted after 6 complete epoch(s)"


def test_fit_checks_its_inputs(data):
    train, val, _ = data
    with pytest.raises(ValueError, match="validation_data"):
        fit(build_network(spec(early_stopping={"patience": 2})), spec(early_stopping={"patience": 2}), train, log=None)
    x, y = train
    halving = {"kind": "halve_on_plateau", "patience": 2, "min_fraction": 0.25}
    for rule in ({"early_stopping": {"patience": 2}}, {"eta_schedule": halving}):
        # an empty set's accuracy is NaN every epoch: the rule would fire after `patience` epochs
        with pytest.raises(ValueError, match="validation_data with at least one example"):
            fit(build_network(spec(**rule)), spec(**rule), train, (x[:0], y[:0]), log=None)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got \[3, 5\]: .*model.layers\[-1\].units"):
        fit(build_network(spec()), spec(), (x, y + 3), log=None)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got \[-1, 1\]"):
        fit(build_network(spec()), spec(), (x, y - 1), log=None)
    with pytest.raises(ValueError, match="train_data is empty"):
        fit(build_network(spec()), spec(), (x[:0], y[:0]), log=None)
    with pytest.raises(ValueError, match="inputs but"):
        fit(build_network(spec()), spec(), (x, y[:-1]), log=None)
    with pytest.raises(ValueError, match="training.eta"):
        fit(build_network(spec()), spec(eta=-1.0), train, log=None)


def test_data_of_the_wrong_example_size_names_the_set_and_both_shapes(data):
    """Examples must hold prod(model.input_shape) values (an fc layer flattens (n, 1, 2, 3) too);
    a wrong width is an InputError naming the data set, not numpy's matmul error."""
    train, val, _ = data
    net = build_network(spec())
    x, y = train
    wide = (numpy.hstack([x, x[:, :1]]), y)
    with pytest.raises(InputError, match=r"train_data: each example has 7 values \(shape \[7\]\), "
                                         r"but the model's input_shape \[6\] takes 6"):
        fit(net, spec(), wide, log=None)
    with pytest.raises(InputError, match=r"validation_data: each example has 7 values"):
        fit(net, spec(), train, (numpy.hstack([val[0], val[0][:, :1]]), val[1]), log=None)
    fit(net, spec(epochs=1), (x.reshape(-1, 1, 2, 3), y), log=None)  # same size, another shape


def test_eval_every_records_only_evaluation_epochs_and_the_last():
    """Chapter 3's 100-image runs train 15,000 tiny epochs; evaluating all would dominate."""
    import numpy as np

    from pipeline.nn import build_network, fit

    rng = np.random.default_rng(0)
    x = rng.random((40, 784), dtype=np.float32)
    y = rng.integers(0, 10, 40)
    spec = {"model": {"input_shape": [784], "layers": [{"type": "fc", "units": 5},
                                                       {"type": "fc", "units": 10}],
                      "cost": "cross_entropy"},
            "training": {"epochs": 7, "batch_size": 10, "eta": 0.5, "eval_every": 3}}
    history = fit(build_network(spec), spec, (x, y), (x, y), (x, y), log=None)
    assert [r["epoch"] for r in history.records] == [2, 5, 6]
    assert all(r["seconds"] > 0 for r in history.records)


def test_gradient_norms_are_recorded_every_epoch_and_accuracies_every_eval_every(data):
    """Chapter 5's figure runs 500 epochs of 1,000 images: evaluating 20,000 images after each
    took most of the time. With ``eval_every`` the speed of learning still has a point per
    epoch; the accuracies come every k-th epoch and the last, and training is unchanged."""
    train, val, test = data
    runs = {}
    for every in (1, 4):
        s = spec(epochs=10, eval_every=every, monitor={"gradient_norms": 100})
        net = build_network(s)
        runs[every] = fit(net, s, train, val, test, log=None, progress=False), net.state_dict()
    (full, full_weights), (sparse, sparse_weights) = runs[1], runs[4]
    assert [r["epoch"] for r in sparse.records] == list(range(10))
    assert [r["gradient_norms"] for r in sparse.records] == [r["gradient_norms"] for r in full.records]
    evaluated = [r["epoch"] for r in sparse.records if "validation_accuracy" in r]
    assert evaluated == [3, 7, 9]
    assert [r["validation_accuracy"] for r in sparse.records if "validation_accuracy" in r] == [
        full.records[e]["validation_accuracy"] for e in evaluated]
    assert all("test_accuracy" not in r for r in sparse.records if r["epoch"] not in evaluated)
    assert all(r["seconds"] > 0 and r["eval_seconds"] > 0 for r in sparse.records)
    assert sparse.best_epoch in evaluated
    for name, w in full_weights.items():
        numpy.testing.assert_array_equal(sparse_weights[name], w)


def test_small_fully_connected_steps_train_on_one_blas_thread(data):
    """Under a two-thread BLAS limit, a net of small GEMMs trains on one thread (the step then
    updates w in place), giving the very weights of a run limited to one thread; a conv net or
    a large layer keeps the limit it was given."""
    from threadpoolctl import threadpool_limits

    from pipeline.nn.blas import blas_single_threaded_now
    from pipeline.nn.train import SGD, SMALL_STEP_MACS, run_epoch, too_small_for_two_threads

    spec = make_spec([{"type": "fc", "units": 30}, {"type": "fc", "units": 3}], dtype="float32",
                     batch_size=10)
    x, labels = data[0]
    y = numpy.eye(3, dtype=numpy.float32)[labels]
    weights, threads_seen = [], []
    for limit in (1, 2):
        net = build_network(spec)
        assert too_small_for_two_threads(net, 10)
        step = net.sgd_step

        def spy(*args, _step=step):
            threads_seen.append(blas_single_threaded_now())  # the libraries themselves
            return _step(*args)

        net.sgd_step = spy
        with threadpool_limits(limits=limit, user_api="blas"):
            run_epoch(net, SGD(net), x.astype(numpy.float32), y, 10, 0.5)
            assert blas_single_threaded_now() == (limit == 1)  # the limit is restored afterwards
        weights.append([layer.params["w"].copy() for layer in net.layers])
    assert len(threads_seen) == 2 * -(-len(x) // 10) and all(threads_seen)  # every step of both epochs
    assert all(numpy.array_equal(a, b) for a, b in zip(*weights))

    wide = build_network(make_spec([{"type": "fc", "units": SMALL_STEP_MACS // (6 * 10) + 1},
                                    {"type": "fc", "units": 3}], batch_size=10))
    assert not too_small_for_two_threads(wide, 10) and too_small_for_two_threads(wide, 1)
    conv = build_network(make_spec([{"type": "conv", "filters": 2, "kernel": 3, "pool": 2},
                                    {"type": "softmax", "units": 3}], cost="log_likelihood",
                                   input_shape=(1, 8, 8)))
    assert not too_small_for_two_threads(conv, 1)


def test_blas_threads_settled_answers_what_it_found_on_entry():
    """Inside ``blas_threads_settled`` (one training epoch) the thread check is the one made on
    entry; outside, and in a nested block, the live one."""
    from threadpoolctl import threadpool_limits

    from pipeline.nn.blas import blas_single_threaded, blas_threads_settled

    with threadpool_limits(limits=1, user_api="blas"):
        with blas_threads_settled():
            with threadpool_limits(limits=2, user_api="blas"):
                assert blas_single_threaded()  # the answer found on entry
                with blas_threads_settled():
                    assert not blas_single_threaded()  # a nested block checks again
                assert blas_single_threaded()
        with threadpool_limits(limits=2, user_api="blas"):
            assert not blas_single_threaded()  # outside: live


def test_a_halving_restarts_the_schedules_count_but_not_early_stoppings(data):
    """Flat validation accuracy: the schedule (patience 2) halves eta after every second flat
    epoch, counting afresh from each halving; early stopping (patience 5) counts every flat
    epoch since the best, halvings or not."""
    train, val, test = data
    s = spec(epochs=20, eta=0.8, early_stopping={"patience": 5},
             eta_schedule={"kind": "halve_on_plateau", "patience": 2, "min_fraction": 0.01})
    net = build_network(s)
    scripted_accuracy(net, val, test, [0.5] * 20, [0.0] * 20)
    history = fit(net, s, train, val, test, log=None, progress=False)
    assert [r["eta"] for r in history.records] == [0.8, 0.8, 0.8, 0.4, 0.4, 0.2]
    assert "early stopping" in history.stopped_early


def test_a_shuffled_run_draws_a_new_order_every_epoch():
    from pipeline.nn.spec import validate_spec
    from pipeline.nn.train import epoch_orders

    orders = epoch_orders(validate_spec(spec(shuffle=True))["training"], 50)
    first, second = orders(), orders()
    assert sorted(first) == sorted(second) == list(range(50))
    assert not numpy.array_equal(first, second)


def test_monitored_costs_under_the_network3_scaling_carry_the_training_coefficient(data):
    """network3.py's cost is 0.5 lmbda sum w^2 / (n // m) on every set it is measured on."""
    train, val, test = data
    s = spec(epochs=1, regularization={"kind": "l2", "lmbda": 4.0, "scaling": "network3"},
             monitor={"training_cost": True, "validation_cost": True, "test_cost": True})
    net = build_network(s)
    r = fit(net, s, train, val, test, log=None, progress=False).records[0]
    penalty = 0.5 * 4.0 / (len(train[0]) // 10) * sum(float((w**2).sum()) for w in net.weights())
    for name, (x, labels) in (("training", train), ("validation", val), ("test", test)):
        assert r[f"{name}_cost"] == pytest.approx(net.total_cost(x, labels) + penalty), name


def test_the_training_accuracy_alone_can_be_monitored(data):
    train, val, _ = data
    s = spec(epochs=1, monitor={"training_accuracy": True})
    net = build_network(s)
    r = fit(net, s, train, val, log=None, progress=False).records[0]
    assert r["training_accuracy"] == net.accuracy(*train) and "training_cost" not in r


def test_float64_data_trains_a_float32_net_as_float32_data_does(data):
    """The inputs are cast to the network's dtype once, before training (float32 arithmetic
    throughout, as the chapter 6 program's)."""
    (x, labels), val, _ = data
    s = spec(epochs=2, dtype="float32")
    weights = []
    for inputs in (x, x.astype(numpy.float32)):
        net = build_network(s)
        fit(net, s, (inputs, labels), log=None, progress=False)
        weights.append(net.state_dict())
    for name, w in weights[0].items():
        assert w.dtype == numpy.float32
        numpy.testing.assert_array_equal(w, weights[1][name])


def test_the_gradient_norms_are_those_of_the_bias_gradients(data):
    """Chapter 5's speed of learning: ||dC/db^l|| of every layer, for the mean cost."""
    (x, labels), _, _ = data
    net = build_network(spec())
    norms = net.gradient_norms(x[:50], labels[:50])
    net.backprop(x[:50], one_hot(labels[:50], 3, net.xp, net.dtype))
    assert norms == [float(numpy.linalg.norm(layer.grads["b"])) for layer in net.layers]


def test_an_improvement_restarts_the_schedules_count(data):
    """The schedule counts epochs since the validation accuracy last strictly improved: a flat
    epoch before an improvement does not count towards the next halving."""
    train, val, test = data
    s = spec(epochs=6, eta=0.8, eta_schedule={"kind": "halve_on_plateau", "patience": 2, "min_fraction": 0.01})
    net = build_network(s)
    # e0 best; e1 flat; e2 better (count restarts); e3, e4 flat -> halve after e4
    scripted_accuracy(net, val, test, [0.5, 0.5, 0.6, 0.6, 0.6, 0.6], [0.0] * 6)
    history = fit(net, s, train, val, test, log=None, progress=False)
    assert [r["eta"] for r in history.records] == [0.8, 0.8, 0.8, 0.8, 0.8, 0.4]


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_epoch_trains_on_its_own_order_of_the_training_set(data, shuffle):
    """Shuffled runs (network.py, network2.py) visit the training set in a fresh order every
    epoch, the successive draws of the seed's shuffle stream; unshuffled runs (network3.py) in
    the stored order every epoch."""
    from pipeline.nn.seeding import streams

    x, labels = data[0][0][:40], data[0][1][:40]
    s = spec(epochs=3, batch_size=10, shuffle=shuffle, seed=5)
    net = build_network(s)
    seen = []
    forward = net.layers[0].forward

    def recording_forward(batch, train=False):
        if train:
            seen.append(numpy.array(batch))
        return forward(batch, train)

    net.layers[0].forward = recording_forward
    fit(net, s, (x, labels), log=None, progress=False)
    epochs = numpy.concatenate(seen).reshape(3, 40, -1)
    shuffle_stream = streams(5).shuffle
    orders = [shuffle_stream.permutation(40) if shuffle else numpy.arange(40) for _ in range(3)]
    for rows, order in zip(epochs, orders):
        numpy.testing.assert_array_equal(rows, x[order])
    if shuffle:
        assert not numpy.array_equal(epochs[0], epochs[1])


def test_an_undefined_validation_accuracy_is_never_the_best():
    """A NaN validation accuracy (no validation examples) neither becomes nor blocks the best epoch."""
    from pipeline.nn.train import History, track_best

    class Net:  # its "weights" name the epoch they were taken after
        epoch = None

        def state_dict(self):
            return {"epoch": self.epoch}

    history, net = History(), Net()
    for epoch, accuracy in enumerate([float("nan"), 0.5, float("nan")]):
        net.epoch = epoch
        track_best(history, {"epoch": epoch, "validation_accuracy": accuracy}, net)
    assert (history.best_epoch, history.best_validation_accuracy) == (1, 0.5)
    assert history.best_weights == {"epoch": 1}


def test_a_blas_threadpoolctl_cannot_see_is_not_taken_for_one_thread(monkeypatch):
    """Apple's Accelerate (numpy's BLAS on macOS 14+) has no threadpoolctl controller: with no
    library to ask, "every library runs one thread" must not come out true, or the step would
    take the one-thread in-place GEMM while the BLAS may thread."""
    from types import SimpleNamespace

    from pipeline.nn import blas

    monkeypatch.setattr(blas, "_blas_controller", lambda: SimpleNamespace(lib_controllers=[]))
    assert blas.blas_single_threaded_now() is False
