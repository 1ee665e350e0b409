"""Stage ``download``: the four raw MNIST files into ``data.raw_dir``, SHA-256 verified."""

from __future__ import annotations

from pipeline.data.fetch import MNIST_FILES, build_sources, fetch_mnist
from pipeline.params import load_params
from pipeline.settings import check_settings
from pipeline.stages._common import log, stage, stage_command


def main() -> None:
    with stage("download"):
        params = load_params()
        check_settings(params, ("data", "download"))
        # a FetchError names every source tried; stage() prints it and exits 2
        fetch_mnist(MNIST_FILES, build_sources(params["download"]), params["data"]["raw_dir"], log=log)


if __name__ == "__main__":
    stage_command(__spec__.name, __doc__)
    main()
