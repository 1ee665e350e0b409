"""Chapter 5's speed of learning on real MNIST: the book's figure runs (``ch5-speed-*``).

The book's figure script set no seed, so there is no run of the book's to retrace; its starting
values (``book.speeds``, from its figure data) are one draw of the initialisation. Ours, over ten
seeds, must show the same ordering and the same magnitudes.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from pipeline.data.mnist import load_dataset
from pipeline.experiment import run_spec
from pipeline.nn import build_network, fit
from pipeline.params import load_params

REPO_ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.realdata]


@pytest.fixture(scope="module")
def first_1000(mnist_prepared_dir):
    train = load_dataset(mnist_prepared_dir / "train.npz")
    return train.x[:1000], train.y[:1000]


def _run(book_id: str):
    return load_params(REPO_ROOT / "params.yaml")["book"][book_id]


@pytest.mark.parametrize("book_id", ["ch5-speed-2", "ch5-speed-3", "ch5-speed-4"])
def test_each_hidden_layer_starts_slower_than_the_next_as_in_the_book(book_id, first_1000):
    run = _run(book_id)
    ours = []
    for seed in range(1, 11):
        norms = build_network(run_spec(run, seed, {})).gradient_norms(*first_1000)[:-1]
        assert norms == sorted(norms), (seed, norms)  # the first hidden layer learns slowest
        ours.append(norms)
    for layer, book in enumerate(run["book"]["speeds"]):
        median = statistics.median(n[layer] for n in ours)
        assert book / 2 < median < 2 * book, (layer, book, median)


def test_the_records_start_with_the_initial_network_and_the_first_layer_slows_down(first_1000):
    run = _run("ch5-speed-4")
    spec = run_spec(run, 1, {"epochs": 30})
    net = build_network(spec)
    initial = net.gradient_norms(*first_1000)
    history = fit(net, spec, first_1000, log=None, progress=False)
    assert history.records[0]["gradient_norms"] == pytest.approx(initial, rel=1e-12)
    first_layer = [r["gradient_norms"][0] for r in history.records]
    # the book's figure data: the first layer's falls from 0.0030 to 0.00003 in 30 epochs
    assert first_layer[-1] < first_layer[0] / 10
