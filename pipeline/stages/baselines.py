"""Stage ``baselines``: chapter 1's average-darkness and SVM classifiers on the book's split,
and chapter 3's SVM on the first n training images (its companion to ``ch3-more-data``)."""

from __future__ import annotations

from pathlib import Path

from pipeline import baselines as bl
from pipeline import tracking
from pipeline.atomic import check_writable, write_json
from pipeline.data.mnist import SPLITS, digest, load_images, split_file
from pipeline.params import load_params
from pipeline.settings import check_settings, require_sections
from pipeline.stages._common import log, stage, stage_command


def _load_sets(prepared_dir: str) -> dict:
    return {name: load_images(split_file(prepared_dir, name)) for name in SPLITS}


def main() -> None:
    """Darkness, then the book's SVM and the sweep's, which share one fit (``svm_scores``)."""
    with stage("baselines"):
        params = load_params()
        require_sections(params, ("profile",))  # its name alone, for the runs' tags
        check_settings(params, ("data", "baselines"))
        data, cfg = params["data"], params["baselines"]
        profile = params["profile"]["name"]
        check_writable(cfg["out_dir"])  # named now, not after the SVM's minutes of fitting
        sets = _load_sets(data["prepared_dir"])
        train_digest = digest(split_file(data["prepared_dir"], "train"))

        trained_with = tracking.environment_tags()

        def start_run(name: str):
            return tracking.start_run(name, params=bl.run_params(name, cfg), tags=tracking.standard_tags(
                name, bl.RUN_CHAPTERS[name], profile, None, train_digest, trained_with))

        metrics, run_ids = {}, {}
        with start_run("B-darkness") as run:
            metrics["darkness"] = bl.darkness_scores(sets, log)
            run.log_metrics(bl.run_metrics("B-darkness", metrics, {}))
            run_ids["B-darkness"] = run.run_id
        with start_run("B-svm") as run:
            metrics["svm"], swept = bl.svm_scores(sets, cfg, log)
            run.log_metrics(bl.run_metrics("B-svm", metrics, swept))
            run_ids["B-svm"] = run.run_id
        with start_run("svm-sweep") as run:  # its fits were made beside the book's SVM
            run.log_metrics(bl.run_metrics("svm-sweep", metrics, swept))
            run_ids["svm-sweep"] = run.run_id
        # for pipeline.restore_runs: the runs, where and with which settings they were made
        metrics.update(mlflow_run_ids=run_ids, trained_with=trained_with, settings=cfg)
        write_json(Path(cfg["out_dir"]) / "svm_sweep.json", swept)
        write_json(Path(cfg["out_dir"]) / "metrics.json", metrics)


if __name__ == "__main__":
    stage_command(__spec__.name, __doc__)
    main()
