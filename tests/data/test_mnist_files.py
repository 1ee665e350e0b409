"""The prepared data's file names, and raw files that disagree (no MNIST needed)."""

import numpy as np
import pytest


def test_each_split_has_one_file_and_an_unknown_split_is_refused(tmp_path):
    from pipeline.data.mnist import SPLITS, split_file

    assert [split_file(tmp_path, s).name for s in SPLITS] == ["train.npz", "validation.npz", "test.npz"]
    with pytest.raises(ValueError, match="unknown split 'valid'; the book's are train, validation, test"):
        split_file(tmp_path, "valid")


@pytest.mark.parametrize("bad_part, n_labels, bad_label, message", [
    ("train", 3, 7, "train-images-idx3-ubyte and {raw}/train-labels-idx1-ubyte: 2 images but 3 labels"),
    ("train", 2, 12, "train-labels-idx1-ubyte: labels outside 0..9"),
    ("train", 2, 10, "train-labels-idx1-ubyte: labels outside 0..9"),
    ("test", 3, 7, "t10k-images-idx3-ubyte and {raw}/t10k-labels-idx1-ubyte: 2 images but 3 labels"),
    ("test", 2, 10, "t10k-labels-idx1-ubyte: labels outside 0..9"),
])
def test_raw_files_that_disagree_are_named_with_the_fix(tmp_path, bad_part, n_labels, bad_label, message):
    import numpy as np

    from pipeline.data.idx import encode_idx
    from pipeline.data.mnist import RAW_FILES, read_raw
    from pipeline.errors import InputError

    images, good = np.zeros((2, 28, 28), np.uint8), np.array([3, 9], np.uint8)
    for part in ("train", "test"):  # the other part's files are sound
        labels = np.full(n_labels, bad_label, np.uint8) if part == bad_part else good
        (tmp_path / RAW_FILES[f"{part}_images"]).write_bytes(encode_idx(images))
        (tmp_path / RAW_FILES[f"{part}_labels"]).write_bytes(encode_idx(labels))
    with pytest.raises(InputError) as refused:
        read_raw(tmp_path)
    assert message.format(raw=tmp_path) in str(refused.value) and "dvc repro download" in str(refused.value)


def test_raw_files_without_images_are_refused_with_the_fix(tmp_path):
    import numpy as np

    from pipeline.data.idx import encode_idx
    from pipeline.data.mnist import RAW_FILES, read_raw
    from pipeline.errors import InputError

    for part in ("train", "test"):
        (tmp_path / RAW_FILES[f"{part}_images"]).write_bytes(encode_idx(np.zeros((0, 28, 28), np.uint8)))
        (tmp_path / RAW_FILES[f"{part}_labels"]).write_bytes(encode_idx(np.zeros(0, np.uint8)))
    with pytest.raises(InputError, match="train-labels-idx1-ubyte: no images: delete them and run `dvc repro"):
        read_raw(tmp_path)


@pytest.mark.parametrize("labels, found", [(np.array([0.7, 1.2, 2.9]), "float64"),
                                           (np.array([-1, 1, 2], np.int8), "int8")])
def test_a_set_with_labels_that_are_not_digits_is_refused(tmp_path, labels, found):
    from pipeline.data.mnist import load_images
    from pipeline.errors import InputError

    path = tmp_path / "train.npz"
    np.savez(path, images=np.zeros((3, 28, 28), np.uint8), labels=labels)
    with pytest.raises(InputError, match=f"labels must be unsigned integers \\(digits 0..9\\), got {found}"):
        load_images(path)


def test_the_books_split_cuts_the_raw_training_set_in_its_original_order():
    """Training = raw 0..n_train-1, validation = raw n_train.., each image with its own label;
    test = the official test set, untouched."""
    from pipeline.data.mnist import split_book

    images = np.arange(12, dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8)
    labels = np.arange(12, dtype=np.uint8) % 10
    test = (np.full((3, 28, 28), 200, np.uint8), np.array([7, 2, 1], np.uint8))
    sets = split_book({"train_images": images, "train_labels": labels,
                       "test_images": test[0], "test_labels": test[1]}, 8)
    assert list(sets) == ["train", "validation", "test"]
    for name, first, last in (("train", 0, 8), ("validation", 8, 12)):
        split_images, split_labels = sets[name]
        assert split_images[:, 0, 0].tolist() == list(range(first, last))
        np.testing.assert_array_equal(split_labels, labels[first:last])
    np.testing.assert_array_equal(sets["test"][0], test[0])
    np.testing.assert_array_equal(sets["test"][1], test[1])
