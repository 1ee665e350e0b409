"""Stage ``baselines``: chapter 1's average-darkness and SVM classifiers on the book's split,
and chapter 3's SVM on the first n training images (its companion to ``ch3-more-data``)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pipeline import baselines as bl
from pipeline import tracking
from pipeline.atomic import write_json
from pipeline.data.mnist import SPLITS, digest, load_images, scale_pixels, split_file
from pipeline.params import load_params
from pipeline.settings import check_settings
from pipeline.stages._common import log, stage


def darkness(sets: dict) -> dict:
    means = bl.darkness_means(*sets["train"])
    result = {}
    for split in ("validation", "test"):
        images, labels = sets[split]
        predicted = bl.darkness_predict(means, images)
        result[f"{split}_correct"] = int((predicted == labels).sum())
        result[f"{split}_accuracy"] = bl.accuracy(predicted, labels)
    log(f"darkness: test {result['test_correct']:,}/{len(sets['test'][1]):,} "
        f"= {result['test_accuracy']:.2%}")
    return result


def svm(sets: dict, cfg: dict) -> tuple[dict, dict]:
    """The book's SVM on its training set and on each size of the chapter 3 sweep: every
    machine of every size fitted in one pool on all cores (see ``PairwiseSVM``); ``cfg``
    passed ``check_settings`` (the kernel is rbf, the only one the pairwise fit builds)."""
    images, labels = sets["train"]
    full = cfg["svm"]["train_limit"] or len(labels)  # more than there are is refused by the fit
    sizes = sorted(set(cfg["sweep"]["sizes"]) | {full})
    scale = lambda imgs: scale_pixels(imgs, np.float64)  # noqa: E731
    start = time.perf_counter()
    scaled = {split: scale(sets[split][0]) for split in ("validation", "test")}  # once, not per size
    models = bl.fit_pairwise_svms(scale(images[:max(sizes)]), labels[:max(sizes)], sizes,
                                  C=cfg["svm"]["C"], gamma=cfg["svm"]["gamma"], log=log)
    evaluated = {}
    for n in sizes:
        # the book's sweep plot is on validation data; test only for the book's own SVM
        splits = ("validation", "test") if n == full else ("validation",)
        point = {"n": n, "support_vectors": models[n].n_support}
        for split in splits:
            split_labels = sets[split][1]
            predicted = models[n].predict(scaled[split])
            point[f"{split}_correct"] = int((predicted == split_labels).sum())
            point[f"{split}_accuracy"] = bl.accuracy(predicted, split_labels)
        evaluated[n] = point
        log(f"svm on the first {n:,}: " + ", ".join(
            f"{split} {point[f'{split}_accuracy']:.2%}" for split in splits))
    seconds = round(time.perf_counter() - start, 1)
    book_svm = {k: v for k, v in evaluated[full].items() if k != "n"}
    book_svm.update(train_size=full, seconds=seconds)
    sweep = {"points": [evaluated[n] for n in sorted(cfg["sweep"]["sizes"])],
             "seconds": seconds}
    return book_svm, sweep


def _load_sets(prepared_dir: str) -> dict:
    return {name: load_images(split_file(prepared_dir, name)) for name in SPLITS}


def main() -> None:
    """Darkness, then the book's SVM and the sweep's, which share one fit (``svm``)."""
    with stage("baselines"):
        params = load_params()
        data, cfg = params["data"], params["baselines"]
        profile = params["profile"]["name"]
        check_settings(params, ("data", "baselines"))
        sets = _load_sets(data["prepared_dir"])
        train_digest = digest(split_file(data["prepared_dir"], "train"))

        trained_with = tracking.environment_tags()

        def start_run(name: str):
            return tracking.start_run(name, params=bl.run_params(name, cfg), tags=tracking.standard_tags(
                name, bl.RUN_CHAPTERS[name], profile, None, train_digest, trained_with))

        metrics, run_ids = {}, {}
        with start_run("B-darkness") as run:
            metrics["darkness"] = darkness(sets)
            run.log_metrics(bl.run_metrics("B-darkness", metrics, {}))
            run_ids["B-darkness"] = run.run_id
        with start_run("B-svm") as run:
            metrics["svm"], swept = svm(sets, cfg)
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
    main()
