"""Per-run figures: they show what they say they show."""

import numpy as np

from pipeline import figures


def test_misclassified_digits_tiles_only_the_wrong_predictions_with_their_labels():
    rng = np.random.default_rng(0)
    images = rng.random((10, 784)).astype(np.float32)
    y_true = np.arange(10) % 10
    y_pred = y_true.copy()
    wrong = [1, 4, 7]
    y_pred[wrong] = (y_true[wrong] + 5) % 10

    fig = figures.misclassified_digits(images, y_true, y_pred)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.texts]
    assert labels == [f"pred {y_pred[i]} / true {y_true[i]}" for i in wrong]
    assert ax.get_title() == "misclassified: first 3 of 3"
    tiles = np.asarray(ax.images[0].get_array())
    # every wrong digit appears, whole, somewhere in the tiled image; a right one does not
    for i in range(10):
        digit = images[i].reshape(28, 28)
        found = any(np.array_equal(tiles[r:r + 28, c:c + 28], digit)
                    for r in range(tiles.shape[0] - 27) for c in range(tiles.shape[1] - 27))
        assert found == (i in wrong), i


def test_misclassified_digits_caps_the_count_and_handles_none_wrong():
    images = np.zeros((50, 28, 28))
    y_true = np.zeros(50, dtype=int)
    fig = figures.misclassified_digits(images, y_true, np.ones(50, dtype=int), max_n=12)
    assert len(fig.axes[0].texts) == 12
    assert fig.axes[0].get_title() == "misclassified: first 12 of 50"
    fig = figures.misclassified_digits(images, y_true, y_true)
    assert len(fig.axes[0].texts) == 0
    assert fig.axes[0].get_title() == "misclassified: first 0 of 0"
