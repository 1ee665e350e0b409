"""Smoke test of ``python -m pipeline.bench``: a tiny fraction of an epoch, every case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import bench


def test_per_example_reference_matches_minibatch_gradient():
    """The chapter 1 reference's summed per-example gradients equal a mini-batch computation."""
    net = bench.PerExampleNetwork([6, 4, 3], seed=1)
    rng = np.random.default_rng(2)
    xs = [rng.random((6, 1)) for _ in range(5)]
    ys = [np.eye(3)[i % 3].reshape(3, 1) for i in range(5)]
    nb = [np.zeros_like(b) for b in net.biases]
    for x, y in zip(xs, ys):
        dnb, _ = net.backprop(x, y)
        nb = [a + d for a, d in zip(nb, dnb)]
    X, Y = np.hstack(xs), np.hstack(ys)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    z1 = net.weights[0] @ X + net.biases[0]
    a1 = sig(z1)
    z2 = net.weights[1] @ a1 + net.biases[1]
    d2 = (sig(z2) - Y) * sig(z2) * (1 - sig(z2))
    d1 = (net.weights[1].T @ d2) * sig(z1) * (1 - sig(z1))
    np.testing.assert_allclose(nb[1], d2.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(nb[0], d1.sum(axis=1, keepdims=True))


def test_bench_smoke(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = bench.main(["--epoch-fraction", "0.002", "--repeats", "1", "--threads", "1", "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["machine"]["cores"] >= 1 and result["machine"]["numpy"]
    rows = {(r["case"], r["batch_size"]) for r in result["results"]}
    assert rows == {("ch1", 10), ("fc30", 10), ("fc100", 10), ("conv", 10), ("conv", 100)}
    for r in result["results"]:
        assert all(t > 0 for ts in r["times_s"].values() for t in ts)
    printed = capsys.readouterr()
    assert "ours" in printed.out
    # the load averages are printed as uptime prints them; the JSON keeps them unrounded
    loads = " ".join(f"{load:.2f}" for load in result["loadavg_before"])
    assert f"load average over 1, 5, 15 min: before {loads}, after " in printed.out + printed.err


@pytest.mark.parametrize("args, message", [
    (["--repeats", "0"], "--repeats: expected counts >= 1, got 0"),
    (["--threads", "1", "0"], "--threads: expected counts >= 1, got 1 0"),
    (["--batch-size", "0"], "--batch-size: expected counts >= 1, got 0"),
    (["--out", "{tmp}"], "is a folder; give the JSON file to write"),
    (["--out", "{tmp}/text.npz/bench.json"], "--out: [Errno 17] File exists"),  # a file where its folder goes
    (["--data", "{tmp}/none.npz"], "none.npz is missing"),
    (["--data", "{tmp}/text.npz"], "text.npz is not an .npz file"),
])
def test_bad_arguments_are_refused_before_anything_is_timed(tmp_path, capsys, args, message):
    (tmp_path / "text.npz").write_text("not a zip\n")
    with pytest.raises(SystemExit) as stopped:
        bench.main([a.replace("{tmp}", str(tmp_path)) for a in args])
    assert stopped.value.code == 2
    out = capsys.readouterr()
    assert message in out.err and "machine:" not in out.out


def test_conv2fc1000_is_asked_for_and_is_the_book_net(tmp_path):
    """The case is chapter 6's heaviest net as conf/book/ch6-2fc1000.yaml declares it (model and
    step), timed only when named in --cases."""
    book = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "book" / "ch6-2fc1000.yaml").read_text())
    run = book["ch6-2fc1000"]
    spec = bench._spec("conv2fc1000", 10)
    assert len(spec["model"]["layers"]) == len(run["model"]["layers"])
    for ours, declared in zip(spec["model"]["layers"], run["model"]["layers"]):
        assert ours == {**ours, **declared}  # every declared setting, defaults filled in
    assert {k: spec["model"][k] for k in ("input_shape", "cost", "init")} == {
        k: run["model"][k] for k in ("input_shape", "cost", "init")}
    for key in ("batch_size", "eta", "shuffle", "regularization"):
        assert spec["training"][key] == run["training"][key], key
    assert "conv2fc1000" not in bench.DEFAULT_CASES

    out = tmp_path / "bench.json"
    rc = bench.main(["--cases", "conv2fc1000", "--epoch-fraction", "0.002", "--repeats", "1", "--threads", "1",
                     "--out", str(out)])
    assert rc == 0
    (row,) = json.loads(out.read_text())["results"]
    assert (row["case"], row["batch_size"]) == ("conv2fc1000", 10)
    assert "target_ratio" not in row and all(t > 0 for t in row["times_s"]["ours"])


def test_a_book_run_changed_beyond_what_the_references_implement_is_refused():
    import copy

    import pytest

    conv, fc = bench._spec("conv", 10), bench._spec("fc30", 10)
    bench._check_references_follow("conv", conv)  # as the book's runs are: accepted
    for case, spec, change, named in (
        ("fc30", fc, lambda s: s["training"]["regularization"].update(kind="l2", lmbda=5.0), "regularization 'l2'"),
        ("fc30", fc, lambda s: s["model"]["layers"][0].update(activation="relu"), "a unit other than sigmoid"),
        ("conv", conv, lambda s: s["model"]["layers"][2].update(dropout=0.5), "dropout or momentum"),
        ("conv", conv, lambda s: s["model"].update(cost="cross_entropy"), "cost 'cross_entropy'"),
    ):
        changed = copy.deepcopy(spec)
        change(changed)
        with pytest.raises(ValueError, match=named):
            bench._check_references_follow(case, changed)


def test_pytorchs_twin_has_our_networks_parameters():
    """The twin is built from the spec: per layer, as many weights and biases as ours."""
    import pytest

    torch = pytest.importorskip("torch")
    from pipeline.nn import build_network

    for case in bench.CASES:
        spec = bench._spec(case, 10)
        ours = sorted(int(np.prod(shape)) for shape in build_network(spec).param_shapes().values())
        twin = sorted(p.numel() for p in bench._torch_net(torch.nn, spec["model"]).parameters())
        assert twin == ours, case
