"""Expand the training set: the book's one-pixel shifts (chapter 6) and small rotations (chapter 3).

Both keep 28x28 and fill with zeros (the background), never wrap around. An expanded set is
the originals plus their copies, shuffled once with a recorded seed, stored like any other
set (uint8 images + labels).
"""

from __future__ import annotations

import numpy as np

# (name, rows, cols): content moves one pixel in that direction.
SHIFTS = (("up", -1, 0), ("down", 1, 0), ("left", 0, -1), ("right", 0, 1))


def shift(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Move the content of ``images`` (n, h, w) by ``dy`` rows and ``dx`` columns, zero-filled."""
    out = np.zeros_like(images)
    h, w = images.shape[1:]
    src_rows = slice(max(0, -dy), h - max(0, dy))
    dst_rows = slice(max(0, dy), h - max(0, -dy))
    src_cols = slice(max(0, -dx), w - max(0, dx))
    dst_cols = slice(max(0, dx), w - max(0, -dx))
    out[:, dst_rows, dst_cols] = images[:, src_rows, src_cols]
    return out


def rotate(images: np.ndarray, degrees: float, order: int = 1) -> np.ndarray:
    """Rotate ``images`` (n, h, w) counter-clockwise about their centres, same size, zero fill.

    Interpolation of the given spline ``order`` (1 = bilinear), then rounded back to uint8.
    """
    from scipy import ndimage

    rotated = ndimage.rotate(images.astype(np.float32), degrees, axes=(2, 1), reshape=False,
                             order=order, mode="constant", cval=0.0, prefilter=order > 1)
    return np.clip(np.rint(rotated), 0, 255).astype(np.uint8)


def shifted_copies(images: np.ndarray) -> list[np.ndarray]:
    """The four one-pixel shifts of every image: up, down, left, right."""
    return [shift(images, dy, dx) for _, dy, dx in SHIFTS]


def rotated_copies(images: np.ndarray, angles: list[float], order: int = 1) -> list[np.ndarray]:
    return [rotate(images, angle, order) for angle in angles]


def shuffled(images: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle images and labels together, once, reproducibly."""
    order = np.random.default_rng(seed).permutation(len(labels))
    return images[order], labels[order]


def expand(images: np.ndarray, labels: np.ndarray, *, shifts: bool, angles: list[float],
           seed: int, order: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Originals + (four shifts) + (one rotation per angle), shuffled once with ``seed``."""
    copies = [images]
    if shifts:
        copies += shifted_copies(images)
    copies += rotated_copies(images, angles, order)
    all_images = np.concatenate(copies)
    all_labels = np.tile(labels, len(copies))
    return shuffled(all_images, all_labels, seed)
