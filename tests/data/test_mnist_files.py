"""The prepared data's file names (no MNIST needed)."""

import pytest


def test_each_split_has_one_file_and_an_unknown_split_is_refused(tmp_path):
    from pipeline.data.mnist import SPLITS, split_file

    assert [split_file(tmp_path, s).name for s in SPLITS] == ["train.npz", "validation.npz", "test.npz"]
    with pytest.raises(ValueError, match="unknown split 'valid'; the book's are train, validation, test"):
        split_file(tmp_path, "valid")
