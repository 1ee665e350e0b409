"""Per-run figures (matplotlib, Agg backend). Functions return Figures; the caller saves
them with ``save_figure`` or logs them through ``pipeline.tracking``. No MLflow here."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

# the backend's compiled module, loaded now rather than at a run's first figure: a Ctrl-C
# landing in that first load came out as an ImportError, and its MLflow run ended FAILED
import matplotlib.backends.backend_agg
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from pipeline.atomic import atomic_path

SPLITS = ("training", "validation", "test")
COLORS = {"training": "tab:blue", "validation": "tab:orange", "test": "tab:green"}


def _series(records: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of ``key`` over the records that have a value for it."""
    points = [(int(r["epoch"]), float(r[key])) for r in records if r.get(key) is not None]
    return [e for e, _ in points], [v for _, v in points]


def learning_curves(
    records: Sequence[Mapping[str, Any]], title: str, book_value: float | None = None
) -> Figure:
    """Accuracy per epoch (training / validation / test, where present) above cost per epoch.

    Accuracies are fractions, as the engine records them, drawn as percent; ``book_value``, the
    book's reported accuracy (a fraction too), is drawn dashed.
    Epochs are 0-based in the records, as in the book's plots.
    """
    has_cost = any(r.get(f"{s}_cost") is not None for r in records for s in SPLITS)
    fig, axes = plt.subplots(
        2 if has_cost else 1, 1, figsize=(7, 6.5 if has_cost else 4), sharex=True, squeeze=False
    )
    acc_ax = axes[0, 0]
    for split in SPLITS:
        epochs, values = _series(records, f"{split}_accuracy")
        if epochs:
            acc_ax.plot(epochs, [100 * v for v in values], marker=".", color=COLORS[split], label=split)
    if book_value is not None:
        book = 100 * book_value
        acc_ax.axhline(book, color="black", linestyle="--", linewidth=1, label=f"book: {book:.2f}%")
    acc_ax.set_ylabel("accuracy (%)")
    acc_ax.set_title(title)
    acc_ax.grid(alpha=0.3)
    if acc_ax.has_data():
        acc_ax.legend(loc="lower right")
    if has_cost:
        cost_ax = axes[1, 0]
        for split in SPLITS:
            epochs, values = _series(records, f"{split}_cost")
            if epochs:
                cost_ax.plot(epochs, values, marker=".", color=COLORS[split], label=split)
        cost_ax.set_ylabel("cost")
        cost_ax.grid(alpha=0.3)
        cost_ax.legend(loc="upper right")
    axes[-1, 0].set_xlabel("epoch")
    axes[-1, 0].xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return fig


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int = 10) -> Figure:
    """Counts of (true digit, predicted digit); the diagonal holds the correct predictions."""
    y_true = np.asarray(y_true, dtype=int).ravel()
    y_pred = np.asarray(y_pred, dtype=int).ravel()
    counts = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(counts, (y_true, y_pred), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(counts, cmap="Blues", norm=matplotlib.colors.PowerNorm(0.4))
    threshold = counts.max() * 0.4 if counts.size else 0
    for t in range(n_classes):
        for p in range(n_classes):
            ax.text(
                p, t, str(counts[t, p]), ha="center", va="center", fontsize=8,
                color="white" if counts[t, p] > threshold else "black",
            )
    ticks = range(n_classes)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"confusion matrix: {counts.sum()} images, accuracy {100 * accuracy:.2f}%")
    fig.colorbar(image, ax=ax, shrink=0.8, label="count")
    fig.tight_layout()
    return fig


def misclassified_digits(images, y_true, y_pred, max_n: int = 36, cols: int = 6) -> Figure:
    """The first ``max_n`` images whose prediction is wrong, each labelled "pred p / true t"."""
    images = np.asarray(images).reshape(-1, 28, 28)
    y_true = np.asarray(y_true, dtype=int).ravel()
    y_pred = np.asarray(y_pred, dtype=int).ravel()
    wrong = np.flatnonzero(y_true != y_pred)[:max_n]
    total = int((y_true != y_pred).sum())
    return digit_tiles(images[wrong], [f"pred {y_pred[i]} / true {y_true[i]}" for i in wrong],
                       f"misclassified: first {len(wrong)} of {total}", cols)


def digits_with_answers(images, names: Sequence[str], answers: Sequence[str], cols: int = 6) -> Figure:
    """Pictures as the networks saw them (MNIST images), each labelled "name: answer"."""
    return digit_tiles(np.asarray(images).reshape(-1, 28, 28),
                       [f"{name}: {answer}" for name, answer in zip(names, answers)],
                       "what the networks saw, and their answers", cols)


def digit_tiles(images, labels: Sequence[str], title: str, cols: int = 6) -> Figure:
    """28 x 28 images tiled in rows of ``cols``, white on black drawn black on white, each with
    its label above it.

    The digits are tiled into one image drawn on one axes: a grid of 36 axes took about 2 s
    to draw and save, once per seed of every run.
    """
    cols = max(1, min(cols, len(images)))
    rows = max(1, -(-len(images) // cols))
    cell, label = 28 + 4, 10  # pixels per tile (2-pixel margin) and above it for the label
    tiles = np.zeros((rows * (cell + label), cols * cell), dtype=np.float32)
    fig, ax = plt.subplots(figsize=(1.6 * cols, 1.8 * rows + 0.4))
    for k, (image, text) in enumerate(zip(images, labels)):
        top, left = (k // cols) * (cell + label) + label + 2, (k % cols) * cell + 2
        tiles[top:top + 28, left:left + 28] = image
        ax.text(left + 14, top - 2, text, fontsize=8, ha="center", va="bottom")
    ax.imshow(tiles, cmap="gray_r", interpolation="nearest")
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def expansion_preview(columns: Sequence[tuple[str, np.ndarray]]) -> Figure:
    """A grid of uint8 digits: one column per ``(title, images)``, one row per digit (the
    original, then each copy the expansion makes of it)."""
    rows = len(columns[0][1])
    fig, axes = plt.subplots(rows, len(columns), figsize=(1.1 * len(columns), 1.1 * rows), squeeze=False)
    for col, (title, copies) in enumerate(columns):
        axes[0, col].set_title(title, fontsize=7)
        for row in range(rows):
            axes[row, col].imshow(copies[row], cmap="gray_r", vmin=0, vmax=255)
            axes[row, col].axis("off")
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` atomically (temp file + os.replace), then close it."""
    path = Path(path)
    try:
        with atomic_path(path, suffix=path.suffix) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    finally:
        plt.close(fig)
    return path
