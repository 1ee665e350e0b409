"""Stage ``prepare``: the book's train/validation/test split as compact uint8 files."""

from __future__ import annotations

from pipeline.data.mnist import read_raw, save_images, split_book, split_file
from pipeline.params import load_params
from pipeline.settings import check_settings
from pipeline.stages._common import log, stage, stage_command


def main() -> None:
    with stage("prepare"):
        params = load_params()
        check_settings(params, ("data",))
        data = params["data"]
        sets = split_book(read_raw(data["raw_dir"]), data["n_train"])
        for name, (images, labels) in sets.items():
            path = split_file(data["prepared_dir"], name)
            save_images(path, images, labels)
            log(f"prepare: {path} {len(labels):,} images, first labels {labels[:10].tolist()}")


if __name__ == "__main__":
    stage_command(__spec__.name, __doc__)
    main()
