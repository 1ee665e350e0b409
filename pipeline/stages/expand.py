"""Stage ``expand@<name>``: an expanded training set plus a PNG preview of what it does.

Usage: ``python -m pipeline.stages.expand shifted`` (the name is a key of ``expand`` in
params.yaml).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data import expand as ex
from pipeline.data.mnist import load_images, save_images, split_file
from pipeline.errors import InputError
from pipeline.params import load_params
from pipeline.settings import check_settings
from pipeline.stages._common import log, stage, stage_command


def preview(images: np.ndarray, cfg: dict, order: int | None, path: Path, n: int = 8) -> None:
    """A grid: each row one original training image, then its shifted and rotated copies."""
    from pipeline import figures  # matplotlib: only when the stage gets this far

    originals = images[:n]
    columns = [("original", originals)]
    if cfg["shifts"]:
        columns += [(f"shift {name}", ex.shift(originals, dy, dx)) for name, dy, dx in ex.SHIFTS]
    columns += [(f"rotate {a:+g}°", ex.rotate(originals, a, order))
                for a in cfg["angles"]]
    figures.save_figure(figures.expansion_preview(columns), path, dpi=100)


def main(name: str) -> None:
    with stage(f"expand@{name}"):
        params = load_params()
        check_settings(params, ("data", "expand"))
        data, sets = params["data"], params["expand"]
        if name not in sets:
            raise InputError(f"no set {name!r} in params.yaml's expand (have: {', '.join(sets)})")
        cfg = sets[name]
        order = cfg.get("order")  # set wherever there are angles (check_settings); shifts need none
        rotation = {"order": order} if cfg["angles"] else {}
        images, labels = load_images(split_file(data["prepared_dir"], "train"))
        expanded, expanded_labels = ex.expand(images, labels, shifts=cfg["shifts"],
                                              angles=list(cfg["angles"]), seed=cfg["seed"], **rotation)
        out = Path(data["expanded_dir"]) / f"{name}.npz"
        save_images(out, expanded, expanded_labels)
        log(f"expand@{name}: {out} {len(expanded_labels):,} images "
            f"(shifts={cfg['shifts']}, angles={list(cfg['angles'])}, seed={cfg['seed']})")
        preview(images, cfg, order, Path("results/expand") / f"{name}_preview.png")


if __name__ == "__main__":
    main(stage_command(__spec__.name, __doc__, "name",
                       "the expanded set to make: a key of `expand` in params.yaml (e.g. shifted)"))
