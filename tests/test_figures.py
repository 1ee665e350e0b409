"""Per-run figures: they show what they say they show."""

import numpy as np
import pytest

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
    assert tiles.shape == (10 + 32, 3 * 32)  # one row of three 32-pixel tiles under their labels, no empty ones
    assert ax.images[0].get_cmap().name == "gray_r"  # white on black drawn black on white
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


def test_expansion_preview_shows_each_copy_in_its_own_titled_column():
    originals = np.zeros((3, 28, 28), np.uint8)
    originals[:, 10, 10] = [50, 100, 150]
    shifted = np.roll(originals, 1, axis=2)
    fig = figures.expansion_preview([("original", originals), ("shift right", shifted)])
    axes = np.array(fig.axes).reshape(3, 2)
    assert [ax.get_title() for ax in axes[0]] == ["original", "shift right"]
    for row in range(3):
        assert np.array_equal(axes[row, 0].images[0].get_array(), originals[row])
        assert np.array_equal(axes[row, 1].images[0].get_array(), shifted[row])
        assert axes[row, 0].images[0].get_clim() == (0, 255)  # as bright as it is, not stretched to its own range


def test_the_confusion_matrix_counts_true_digits_by_row_and_answers_by_column():
    fig = figures.confusion_matrix([3, 3, 5], [3, 8, 5])
    ax = fig.axes[0]
    expected = np.zeros((10, 10), dtype=int)
    expected[3, 3] = expected[3, 8] = expected[5, 5] = 1
    np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), expected)
    assert (ax.get_ylabel(), ax.get_xlabel()) == ("true digit", "predicted digit")
    # each cell's count written in it, at (answer, true digit); white on the darker cells
    written = {text.get_position(): (text.get_text(), text.get_color()) for text in ax.texts}
    assert written[(8, 3)] == ("1", "white") and written[(3, 8)] == ("0", "black")
    assert ax.get_title() == "confusion matrix: 3 images, accuracy 66.67%"
    figures.plt.close(fig)


def test_learning_curves_draw_accuracies_and_the_books_figure_in_percent():
    records = [{"epoch": e, "validation_accuracy": 0.90 + 0.01 * e, "test_accuracy": 0.91 + 0.01 * e,
                "training_cost": 0.3} for e in range(2)]
    fig = figures.learning_curves(records, "ch1-30", 0.9542)
    drawn = {line.get_label(): list(line.get_ydata()) for line in fig.axes[0].get_lines()}
    assert drawn["validation"] == pytest.approx([90.0, 91.0]) and drawn["test"] == pytest.approx([91.0, 92.0])
    assert drawn["book: 95.42%"] == pytest.approx([95.42, 95.42])
    # the costs recorded on a second axes below
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "cost"
    assert {line.get_label(): list(line.get_ydata()) for line in fig.axes[1].get_lines()} == {"training": [0.3, 0.3]}
    figures.plt.close(fig)


def test_digits_with_answers_labels_each_picture_with_its_name_and_answer():
    images = np.zeros((2, 784), np.float32)
    images[1, :28] = 1.0  # the second picture's top row
    fig = figures.digits_with_answers(images, ["seven.png", "two.png"], ["7", "2"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["seven.png: 7", "two.png: 2"]
    assert ax.get_title() == "what the networks saw, and their answers"
    tiles = np.asarray(ax.images[0].get_array())
    assert tiles[:, :32].sum() == 0 and tiles[:, 32:].sum() == 28  # in the order given
    figures.plt.close(fig)


def test_save_figure_writes_the_format_its_name_asks_for_and_closes_the_figure(tmp_path):
    from PIL import Image

    fig = figures.plt.figure(figsize=(2, 1))
    assert figures.save_figure(fig, tmp_path / "plot.png") == tmp_path / "plot.png"
    assert Image.open(tmp_path / "plot.png").size == (220, 110)  # 110 dpi by default
    assert not figures.plt.fignum_exists(fig.number)
    fig = figures.plt.figure(figsize=(2, 1))
    figures.save_figure(fig, tmp_path / "plot.svg")
    assert "<svg" in (tmp_path / "plot.svg").read_text()
    assert not figures.plt.fignum_exists(fig.number)
