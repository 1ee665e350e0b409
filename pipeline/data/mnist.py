"""The book's MNIST split and the one loader every stage uses.

``split_book`` cuts the raw files into the book's three sets, in the original order:
training = raw training images 0..49,999, validation = 50,000..59,999, test = the official
10,000. Each set is stored compactly as uint8 images ``(n, 28, 28)`` plus uint8 labels in an
uncompressed ``.npz`` (fast to load). ``load_dataset`` turns any such file into what the
networks eat: pixels ``raw/256`` (the book's scaling, range [0, 255/256]) in the run's dtype
(float32 unless asked; chapters 1-5 train in float64) of shape ``(n, 784)`` and int64 labels.
"""

from __future__ import annotations

import shlex
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.atomic import save_npz
from pipeline.data.fetch import MNIST_FILES
from pipeline.data.idx import read_idx
from pipeline.errors import InputError
from pipeline.hashing import sha256_file

# what each file holds, in MNIST_FILES' order
RAW_FILES = dict(zip(("train_images", "train_labels", "test_images", "test_labels"),
                     (f.name for f in MNIST_FILES), strict=True))
PIXEL_SCALE = 256.0  # the book's mnist.pkl.gz stores raw/256, not raw/255
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Dataset:
    """Network-ready data: ``x`` float (n, 784) in [0, 255/256], ``y`` int64 labels (n,)."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


def read_raw(raw_dir: str | Path) -> dict[str, np.ndarray]:
    """Parse the four raw IDX files, checking that images and labels agree in count."""
    raw_dir = Path(raw_dir)
    arrays = {}
    for key, name in RAW_FILES.items():
        path = raw_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `dvc repro download` first.")
        arrays[key] = read_idx(path, expect_ndim=3 if key.endswith("images") else 1)
    for part in ("train", "test"):
        n_images, n_labels = len(arrays[f"{part}_images"]), len(arrays[f"{part}_labels"])
        files = f"{raw_dir / RAW_FILES[part + '_images']} and {raw_dir / RAW_FILES[part + '_labels']}"
        redo = "delete them and run `dvc repro download` (it checks every file's SHA-256)"
        if n_images != n_labels:
            raise InputError(f"{files}: {n_images} images but {n_labels} labels: {redo}.")
        if n_labels == 0:
            raise InputError(f"{files}: no images: {redo}.")
        if arrays[f"{part}_labels"].max() > 9:
            raise InputError(f"{raw_dir / RAW_FILES[part + '_labels']}: labels outside 0..9: {redo}.")
    return arrays


def split_book(raw: dict[str, np.ndarray], n_train: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The book's split: the first ``n_train`` raw training images train, the rest validate."""
    images, labels = raw["train_images"], raw["train_labels"]
    if not 0 < n_train < len(labels):
        raise InputError(f"data.n_train={n_train} must lie in 1..{len(labels) - 1}.")
    parts = ((images[:n_train], labels[:n_train]), (images[n_train:], labels[n_train:]),
             (raw["test_images"], raw["test_labels"]))
    return dict(zip(SPLITS, parts, strict=True))


def split_file(prepared_dir: str | Path, split: str) -> Path:
    """``<prepared_dir>/<split>.npz``: where the prepare stage keeps one of the book's sets."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; the book's are {', '.join(SPLITS)}")
    return Path(prepared_dir) / f"{split}.npz"


def save_images(path: str | Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Store a set as uint8 ``images`` (n, 28, 28) and uint8 ``labels`` (n,), atomically."""
    save_npz(path, images=np.ascontiguousarray(images, dtype=np.uint8),
             labels=np.ascontiguousarray(labels, dtype=np.uint8))


# how a missing or damaged set is made again: the data stages alone, a minute or two (a bare
# `dvc repro` would also train every run of the profile)
BUILD = ("build it with `dvc repro prepare` (the book's split) or `dvc repro expand` (the expanded "
         "sets), or fetch it from a DVC remote with `dvc repro --pull prepare expand`")


def cache_copy_hint(path: Path) -> str:
    """How to remove a damaged file's copy in DVC's cache: DVC checks a stage's cached outputs
    out again unchecked where that copy kept its date (a disk's damage, not an edit), and
    `dvc repro -f` leaves the copy as it is. The copy has the damaged file's very bytes."""
    size = path.stat().st_size if path.is_file() else 0
    find = (f"find \"$(dvc cache dir)\" -type f -size {size}c "
            f"-exec cmp -s {shlex.quote(str(path))} {{}} ';' -print -delete")
    return (f"Should it come back damaged, its copy in DVC's cache is damaged too: delete that copy "
            f"(`{find}`) and the file, and run the command again")


def load_images(path: str | Path, fix: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 images and labels of a stored set (no pickles, ever). ``fix``: what to do
    about a file that is missing or not a data set, where it is not one the data stages make
    (by default: make it again)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {fix or BUILD}.")

    def remake() -> str:  # only for a file found damaged: the hint reads the file's size
        return fix or f"delete it, then {BUILD}. {cache_copy_hint(path)}"

    if not zipfile.is_zipfile(path):  # a truncated file, or not an .npz: numpy would try a pickle
        raise InputError(f"{path}: not a readable .npz data set (not a zip archive): {remake()}.")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = {"images", "labels"} - set(f.files)
            if missing:
                raise InputError(f"{path}: not a data set file (missing {sorted(missing)}): {remake()}.")
            images, labels = f["images"], f["labels"]
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # truncated, not a .npz, pickled
        raise InputError(f"{path}: not a readable .npz data set ({error}): {remake()}.") from None
    if (images.dtype != np.uint8 or images.shape[1:] != (28, 28) or labels.ndim != 1
            or len(images) != len(labels)):
        raise InputError(f"{path}: expected uint8 images (n, 28, 28) and n labels, got "
                         f"{images.dtype} {images.shape} and {labels.shape}: {remake()}.")
    if not len(labels):  # no set the pipeline makes is empty; the stages after it would fail obscurely
        raise InputError(f"{path}: holds no images: {remake()}.")
    if labels.dtype.kind != "u":  # as stored by save_images; a float or negative label is damage
        raise InputError(f"{path}: labels must be unsigned integers (digits 0..9), got {labels.dtype}: {remake()}.")
    if labels.size and labels.max() > 9:
        raise InputError(f"{path}: labels must be digits 0..9, found {int(labels.max())}: {remake()}.")
    return images, labels


def load_dataset(path: str | Path, limit: int | None = None, dtype=np.float32,
                 cap: int | None = None, fix: str | None = None) -> Dataset:
    """The one loader: pixels as ``raw/256`` in ``dtype``, shape (n, 784); labels int64.

    ``limit`` keeps the first ``limit`` examples (the book's "first 1,000 images"; a file with
    fewer is an error); ``cap`` then keeps at most that many (a profile's smaller sets); ``fix``
    as in :func:`load_images`.
    """
    images, labels = load_images(path, fix)
    for name, n in (("limit", limit), ("cap", cap)):
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
            raise InputError(f"{path}: {name} must be an integer >= 1 or None, got {n!r}.")
    if limit is not None:
        if limit > len(labels):
            raise InputError(f"{path}: asked for the first {limit} examples, it has {len(labels)}.")
        images, labels = images[:limit], labels[:limit]
    if cap is not None:
        images, labels = images[:cap], labels[:cap]
    return Dataset(x=scale_pixels(images, dtype), y=labels.astype(np.int64))


def scale_pixels(images: np.ndarray, dtype=np.float32) -> np.ndarray:
    """uint8 images (n, 28, 28) as the network's input: (n, 784) pixels ``raw/256`` in ``dtype``."""
    x = np.asarray(images).reshape(len(images), -1).astype(dtype)
    x /= x.dtype.type(PIXEL_SCALE)  # dtype may be a class, a numpy dtype or a name
    return x


def digest(path: str | Path) -> str:
    """SHA-256 of a data file: the data's identity in model files and MLflow tags."""
    return sha256_file(path)
