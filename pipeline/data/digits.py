"""A digit of your own, made into an MNIST image that the book's networks can read.

MNIST's images are white digits on black, 28 x 28, each scaled so that its longer side fits a
20 x 20 box (anti-aliased to grey levels) and placed so that its centre of mass is at the
centre of the 28 x 28 field (LeCun, Cortes and Burges' description of the set; on average
MNIST's digits have it at pixel (14, 14), not the middle, 13.5). A network trained on them
expects exactly that, so ``to_mnist`` does the same to any greyscale picture:

1. ink is bright: a picture whose border is mostly light (dark pen on white paper) is inverted
   (``invert="auto"``; or say ``"yes"`` / ``"no"``);
2. a picture that is already 28 x 28 is taken as it is (MNIST's own images, exported);
3. any other size is cropped to the bounding box of its ink, scaled so that the longer side is
   20 pixels (Lanczos, aspect ratio kept) and pasted into a black 28 x 28 field with its centre
   of mass at pixel (14, 14), rounded to whole pixels: where MNIST's own digits have theirs.

The result is uint8, like the prepared sets, and becomes the network's input the way they do
(``network_input``: raw/256, the book's scaling).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.mnist import scale_pixels
from pipeline.errors import InputError

SIDE = 28  # MNIST's field
BOX = 20  # the box the digit's longer side is scaled to
INVERT = ("auto", "yes", "no")
INK = 0.1  # a pixel brighter than this fraction of the brightest is ink (the bounding box's)


class DigitImageError(InputError):
    """A picture that cannot be read, or that holds no digit."""


def read_grey(path: str | Path) -> np.ndarray:
    """A picture file (PNG, JPEG, anything Pillow reads) as greyscale floats in [0, 1], (h, w).

    Transparent pixels count as white paper (a drawing exported with a transparent
    background)."""
    from PIL import Image, UnidentifiedImageError  # imported here: matplotlib's dependency
    from PIL.Image import DecompressionBombError

    path = Path(path)
    if path.is_dir():
        raise DigitImageError(f"{path}: a folder, not a picture: give its pictures, e.g. {path}/*.png")
    if not path.is_file():
        raise DigitImageError(f"{path}: no such file")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(white, rgba)
            mode = image.mode
            grey = np.asarray(image.convert("F"), dtype=np.float64)
    except (UnidentifiedImageError, OSError) as error:
        raise DigitImageError(f"{path}: not a picture Pillow can read ({error})") from None
    except DecompressionBombError as error:  # 14,000 x 14,000 in a 23 kB PNG: refused unread
        raise DigitImageError(f"{path}: too large to read safely ({error}); crop it to the digit") from None
    if grey.ndim != 2 or grey.size == 0:
        raise DigitImageError(f"{path}: expected a 2-d picture, got shape {grey.shape}")
    # "F" holds the picture's own levels: 0..255 from 8-bit modes, 0..65535 from 16-bit
    # greyscale ("I;16", "I"), and as stored from a floating-point picture ("F": 0..1 or 0..255)
    if mode.startswith("I"):
        peak = 65535.0
    elif mode == "F" and grey.max() <= 1.0:
        peak = 1.0
    else:
        peak = 255.0
    return np.clip(grey / peak, 0.0, 1.0)


def needs_inverting(grey: np.ndarray) -> bool:
    """Whether the picture is dark ink on light paper: the median of its border is light."""
    border = np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])
    return bool(np.median(border) > 0.5)


def _scaled_to_box(ink: np.ndarray) -> np.ndarray:
    """The ink's bounding box scaled so that its longer side is ``BOX`` pixels (Lanczos)."""
    from PIL import Image

    rows = np.flatnonzero(ink.max(axis=1) > INK * ink.max())
    cols = np.flatnonzero(ink.max(axis=0) > INK * ink.max())
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = crop.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # Pillow's (width, height)
    resized = Image.fromarray(crop.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float64), 0.0, 1.0)


def centre_of_mass_paste(digit: np.ndarray, centre: float = SIDE / 2) -> np.ndarray:
    """``digit`` pasted into a black ``SIDE`` x ``SIDE`` field with its centre of mass (in
    whole pixels) at pixel (``centre``, ``centre``), (14, 14) by default, kept inside the field."""
    h, w = digit.shape
    total = digit.sum()
    cy = (digit.sum(axis=1) @ np.arange(h)) / total
    cx = (digit.sum(axis=0) @ np.arange(w)) / total
    # MNIST's own digits have theirs at row and column 14.0 on average (13.98 and 14.01 over
    # the first 500 test images, pixel indices from 0), not at the field's middle, 13.5
    top = int(np.clip(round(centre - cy), 0, SIDE - h))
    left = int(np.clip(round(centre - cx), 0, SIDE - w))
    field = np.zeros((SIDE, SIDE))
    field[top:top + h, left:left + w] = digit
    return field


def to_mnist(grey: np.ndarray, invert: str = "auto") -> np.ndarray:
    """A greyscale picture in [0, 1] as an MNIST image: uint8 (28, 28), white ink on black.

    See the module's docstring for the three steps."""
    if invert not in INVERT:
        raise ValueError(f"invert: unknown {invert!r}; allowed: {', '.join(INVERT)}")
    grey = np.asarray(grey, dtype=np.float64)
    if grey.ndim != 2 or min(grey.shape) < 1:
        raise DigitImageError(f"expected a 2-d greyscale picture, got shape {grey.shape}")
    if invert == "yes" or (invert == "auto" and needs_inverting(grey)):
        grey = 1.0 - grey
    if grey.max() - grey.min() < 1e-3 or grey.max() <= 0:  # 28 x 28 ones too: nothing to read
        raise DigitImageError("the picture is blank: no ink found (is --invert right?)")
    if grey.shape != (SIDE, SIDE):
        grey = centre_of_mass_paste(_scaled_to_box(grey - grey.min()))
    return np.round(np.clip(grey, 0.0, 1.0) * 255).astype(np.uint8)


def network_input(images) -> np.ndarray:
    """uint8 MNIST images (n, 28, 28) as float32 (n, 784) in [0, 255/256], exactly as
    ``pipeline.data.mnist.load_dataset`` scales the prepared sets."""
    return scale_pixels(np.asarray(images, dtype=np.uint8), np.float32)


def read_digit(path: str | Path, invert: str = "auto") -> np.ndarray:
    """``read_grey`` then ``to_mnist``, naming the file in any error."""
    try:
        return to_mnist(read_grey(path), invert)
    except DigitImageError as error:
        if str(error).startswith(str(path)):
            raise
        raise DigitImageError(f"{path}: {error}") from None
