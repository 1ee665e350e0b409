"""Stage ``prepare``: the book's train/validation/test split as compact uint8 files."""

from __future__ import annotations

from pathlib import Path

from pipeline.data.mnist import read_raw, save_images, split_book
from pipeline.params import load_params
from pipeline.settings import check_settings
from pipeline.stages._common import log, stage


def main() -> None:
    params = load_params()
    data = params["data"]
    with stage("prepare"):
        check_settings(params, ("data",))
        sets = split_book(read_raw(data["raw_dir"]), data["n_train"])
        for name, (images, labels) in sets.items():
            path = Path(data["prepared_dir"]) / f"{name}.npz"
            save_images(path, images, labels)
            log(f"prepare: {path} {len(labels):,} images, first labels {labels[:10].tolist()}")


if __name__ == "__main__":
    main()
