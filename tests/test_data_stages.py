"""The prepare and expand stages, run in a folder of their own on tiny synthetic data."""

import numpy as np
import pytest
import yaml

from pipeline.data import expand as ex
from pipeline.data.idx import encode_idx
from pipeline.data.mnist import RAW_FILES, load_images


@pytest.fixture
def stage_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for part, n in (("train", 12), ("test", 4)):
        (tmp_path / "raw").mkdir(exist_ok=True)
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n)  # each image says where it came from
        (tmp_path / "raw" / RAW_FILES[f"{part}_images"]).write_bytes(encode_idx(images))
        (tmp_path / "raw" / RAW_FILES[f"{part}_labels"]).write_bytes(encode_idx(np.arange(n, dtype=np.uint8) % 10))
    params = {"data": {"n_train": 9, "raw_dir": "raw", "prepared_dir": "prepared", "expanded_dir": "expanded"},
              "expand": {"shifted": {"shifts": True, "angles": [], "seed": 7}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def test_prepare_splits_at_the_configured_n_train_in_the_original_order(stage_dir):
    from pipeline.stages import prepare

    prepare.main()
    for name, first, last in (("train", 0, 9), ("validation", 9, 12), ("test", 0, 4)):
        images, labels = load_images(stage_dir / "prepared" / f"{name}.npz")
        assert images[:, 0, 0].tolist() == list(range(first, last)), name
        assert labels.tolist() == [i % 10 for i in range(first, last)], name


def test_expand_stores_the_shifted_copies_shuffled_with_the_configured_seed(stage_dir, monkeypatch):
    from pipeline.stages import expand, prepare

    prepare.main()
    monkeypatch.setattr(expand, "preview", lambda *args, **kwargs: None)  # matplotlib: not the point here
    expand.main("shifted")
    images, labels = load_images(stage_dir / "expanded" / "shifted.npz")
    train, train_labels = load_images(stage_dir / "prepared" / "train.npz")
    want_images, want_labels = ex.expand(train, train_labels, shifts=True, angles=[], seed=7)
    assert len(labels) == 5 * 9
    np.testing.assert_array_equal(images, want_images)
    np.testing.assert_array_equal(labels, want_labels)
