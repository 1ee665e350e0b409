import numpy as np
import pytest

from pipeline.data.idx import IDXError, encode_idx, parse_idx, read_idx


def test_round_trip_images_and_labels(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = np.arange(7, dtype=np.uint8)
    (tmp_path / "img").write_bytes(encode_idx(images))
    (tmp_path / "lab").write_bytes(encode_idx(labels))
    np.testing.assert_array_equal(read_idx(tmp_path / "img", expect_ndim=3), images)
    np.testing.assert_array_equal(read_idx(tmp_path / "lab", expect_ndim=1), labels)
    assert encode_idx(images)[:4] == bytes.fromhex("00000803")


def test_truncated_file_names_file_and_problem():
    data = encode_idx(np.zeros((3, 28, 28), np.uint8))[:-5]
    with pytest.raises(IDXError, match=r"train-images.*truncated"):
        parse_idx(data, name="train-images")


def test_trailing_bytes_rejected():
    with pytest.raises(IDXError, match="trailing"):
        parse_idx(encode_idx(np.zeros(4, np.uint8)) + b"\x00", name="labels")


def test_wrong_magic_says_gzip_hint():
    gz_like = b"\x1f\x8b\x08\x00" + bytes(20)
    with pytest.raises(IDXError, match=r"x\.gz: bad magic number 0x1f8b0800.*gzip"):
        parse_idx(gz_like, name="x.gz")


def test_wrong_dimension_count_rejected():
    labels = encode_idx(np.zeros(10, np.uint8))
    with pytest.raises(IDXError, match="has 1 dimensions, expected 3"):
        parse_idx(labels, name="labels", expect_ndim=3)


def test_header_count_disagreeing_with_data_rejected():
    data = bytearray(encode_idx(np.zeros((2, 28, 28), np.uint8)))
    data[7] = 3  # header now claims 3 images, data holds 2
    with pytest.raises(IDXError, match=r"shape \(3, 28, 28\)"):
        parse_idx(bytes(data), name="images")


def test_an_idx_file_of_another_element_type_is_refused():
    """MNIST's files hold unsigned bytes (0x08); signed bytes (0x09) of the same size are not them."""
    data = bytearray(encode_idx(np.zeros(3, np.uint8)))
    data[2] = 0x09
    with pytest.raises(IDXError, match="bad magic number 0x00000901"):
        parse_idx(bytes(data), name="labels")
