import numpy as np
import pytest

from pipeline.data.expand import expand, rotate, shift


@pytest.fixture
def images():
    return np.random.default_rng(3).integers(1, 256, (6, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize("dy,dx", [(-1, 0), (1, 0), (0, -1), (0, 1)])
def test_shift_moves_exactly_one_pixel_with_zero_fill(images, dy, dx):
    out = shift(images, dy, dx)
    # every pixel moved by (dy, dx): compare the overlapping region
    h, w = 28, 28
    src = images[:, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    dst = out[:, max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
    np.testing.assert_array_equal(dst, src)
    # the uncovered row/column is zero (images have no zeros, so no wrap-around hides here)
    edge = {(-1, 0): out[:, -1, :], (1, 0): out[:, 0, :], (0, -1): out[:, :, -1], (0, 1): out[:, :, 0]}
    assert not edge[(dy, dx)].any()
    assert out.sum(dtype=np.int64) < images.sum(dtype=np.int64)


def test_zero_degree_rotation_is_identity(images):
    np.testing.assert_array_equal(rotate(images, 0.0), images)


def test_rotation_keeps_size_zero_fills_and_turns_the_right_way():
    bar = np.zeros((1, 28, 28), np.uint8)
    bar[0, 14, 14:26] = 255  # a horizontal bar pointing right from the centre
    turned = rotate(bar, 90.0)
    assert turned.shape == (1, 28, 28)
    rows, cols = np.nonzero(turned[0] > 128)
    # counter-clockwise by 90 degrees: the bar now points up from the centre
    assert rows.max() <= 14.5 and rows.min() < 6 and abs(cols.mean() - 14) <= 1
    corner = rotate(np.full((1, 28, 28), 255, np.uint8), 45.0)[0]
    assert corner[0, 0] == 0  # zero fill where no source pixel maps


def test_expand_counts_and_shuffle_keeps_every_copy(images):
    labels = np.arange(6, dtype=np.uint8)
    x, y = expand(images, labels, shifts=True, angles=[-5, 5], seed=1)
    assert x.shape == (6 * 7, 28, 28) and y.shape == (42,)
    assert np.bincount(y).tolist() == [7] * 6
    # the originals, their four 1-pixel shifts and two rotations are all there, once each, with
    # the original's label
    versions = [images, *(shift(images, dy, dx) for dy, dx in [(-1, 0), (1, 0), (0, -1), (0, 1)]),
                rotate(images, -5), rotate(images, 5)]
    for version in versions:
        for i in range(6):
            matches = np.flatnonzero((x == version[i]).all(axis=(1, 2)))
            assert len(matches) == 1 and y[matches[0]] == labels[i]
    x2, y2 = expand(images, labels, shifts=True, angles=[-5, 5], seed=1)
    np.testing.assert_array_equal(x, x2)  # the shuffle is reproducible
    x3, _ = expand(images, labels, shifts=True, angles=[-5, 5], seed=2)
    assert not np.array_equal(x, x3)


def test_rotated_pixels_are_rounded_to_the_nearest_grey_level_not_truncated():
    """Bilinear interpolation gives fractions; truncating them would darken every rotated copy
    by half a grey level. About the centre of a horizontal ramp, the mean stays the same."""
    ramp = np.broadcast_to((np.arange(28) * 9).astype(np.uint8), (1, 28, 28)).copy()
    centre = (slice(None), slice(7, 21), slice(7, 21))
    for angle in (-10, -5, 5, 10):
        assert abs(rotate(ramp, angle)[centre].mean() - ramp[centre].mean()) < 0.25


@pytest.mark.parametrize("order", [1, 3])
def test_rotation_uses_the_configured_spline_order(images, order):
    """``expand.order`` reaches scipy: the rotation equals ndimage.rotate at that order (with the
    spline prefilter that orders above 1 need), and orders 1 and 3 give different images."""
    from scipy import ndimage

    reference = ndimage.rotate(images.astype(np.float64), 10, axes=(2, 1), reshape=False, order=order,
                               mode="constant", cval=0.0, prefilter=True)
    turned = rotate(images, 10, order=order)
    assert np.abs(turned.astype(np.int16) - np.clip(np.rint(reference), 0, 255)).max() <= 1  # float32 rounding
    assert not np.array_equal(rotate(images, 10, order=1), rotate(images, 10, order=3))
    labels = np.arange(6, dtype=np.uint8)
    x, _ = expand(images, labels, shifts=False, angles=[10], seed=1, order=order)
    assert all((x == turned[i]).all(axis=(1, 2)).sum() == 1 for i in range(6))
