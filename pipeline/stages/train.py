"""Stage ``train@<id>``: train one run of the book (every seed), tracked in MLflow.

Usage: ``python -m pipeline.stages.train <id>`` with ``<id>`` a key of ``book`` in params.yaml.
Outputs: ``models/<id>/seed<k>/`` and ``results/<id>/{metrics.json,history.csv}``.
"""

from __future__ import annotations

from pipeline.experiment import train_entry
from pipeline.machine import kernel_pin_note
from pipeline.params import book_run, load_params, run_folders
from pipeline.settings import check_settings
from pipeline.stages._common import log, stage, stage_command


def main(book_id: str) -> None:
    with stage(f"train@{book_id}"):
        params = load_params()
        check_settings(params, ("data", "profile"))
        run_cfg = book_run(params, book_id)
        if note := kernel_pin_note():
            log(note)
        model_dir, results_dir = run_folders(book_id)
        train_entry(book_id, run_cfg, params["data"], params["profile"],
                    model_dir=model_dir, results_dir=results_dir, log=log, compute=params.get("compute"))


if __name__ == "__main__":
    main(stage_command(__spec__.name, __doc__, "book_id",
                       "the run to train: a key of `book` in params.yaml (e.g. ch1-30)"))
