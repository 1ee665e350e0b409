"""Stage ``expand@<name>``: an expanded training set plus a PNG preview of what it does.

Usage: ``python -m pipeline.stages.expand shifted`` (the name is a key of ``expand`` in
params.yaml).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from pipeline.data import expand as ex
from pipeline.data.mnist import load_images, save_images
from pipeline.params import load_params
from pipeline.settings import check_settings
from pipeline.stages._common import log, stage


def preview(images: np.ndarray, cfg: dict, path: Path, n: int = 8) -> None:
    """A grid: each row one original training image, then its shifted and rotated copies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.atomic import atomic_path

    originals = images[:n]
    columns = [("original", originals)]
    if cfg["shifts"]:
        columns += [(f"shift {name}", ex.shift(originals, dy, dx)) for name, dy, dx in ex.SHIFTS]
    columns += [(f"rotate {a:+g}°", ex.rotate(originals, a, cfg.get("order", 1)))
                for a in cfg["angles"]]
    fig, axes = plt.subplots(n, len(columns), figsize=(1.1 * len(columns), 1.1 * n), squeeze=False)
    for col, (title, copies) in enumerate(columns):
        axes[0, col].set_title(title, fontsize=7)
        for row in range(n):
            axes[row, col].imshow(copies[row], cmap="gray_r", vmin=0, vmax=255)
            axes[row, col].axis("off")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def main(name: str) -> None:
    params = load_params()
    data, sets = params["data"], params["expand"]
    if name not in sets:
        sys.exit(f"expand: no set {name!r} in params.yaml (have: {', '.join(sets)})")
    cfg = sets[name]
    with stage(f"expand@{name}"):
        check_settings(params, ("data", "expand"))
        images, labels = load_images(Path(data["prepared_dir"]) / "train.npz")
        expanded, expanded_labels = ex.expand(images, labels, shifts=cfg["shifts"],
                                              angles=list(cfg["angles"]), seed=cfg["seed"],
                                              order=cfg.get("order", 1))
        out = Path(data["expanded_dir"]) / f"{name}.npz"
        save_images(out, expanded, expanded_labels)
        log(f"expand@{name}: {out} {len(expanded_labels):,} images "
            f"(shifts={cfg['shifts']}, angles={list(cfg['angles'])}, seed={cfg['seed']})")
        preview(images, cfg, Path("results/expand") / f"{name}_preview.png")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m pipeline.stages.expand <set name>")
    main(sys.argv[1])
