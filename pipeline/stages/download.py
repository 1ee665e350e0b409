"""Stage ``download``: the four raw MNIST files into ``data.raw_dir``, SHA-256 verified."""

from __future__ import annotations

import sys

from pipeline.data.fetch import FetchError, build_sources, fetch_mnist
from pipeline.data.mnist import MNIST_FILES
from pipeline.params import load_params
from pipeline.settings import check_settings
from pipeline.stages._common import log, stage


def main() -> None:
    with stage("download"):
        params = load_params()
        check_settings(params, ("data", "download"))
        try:
            fetch_mnist(MNIST_FILES, build_sources(params["download"]),
                        params["data"]["raw_dir"], log=log)
        except FetchError as error:
            log(f"download failed: {error}")
            sys.exit(1)


if __name__ == "__main__":
    main()
