"""Stage ``baselines``: chapter 1's average-darkness and SVM classifiers on the book's split,
and chapter 3's SVM on the first n training images (its companion to ``ch3-more-data``)."""

from __future__ import annotations

import time
from pathlib import Path

from pipeline import baselines as bl
from pipeline import tracking
from pipeline.atomic import write_json
from pipeline.data.mnist import PIXEL_SCALE, digest, load_images
from pipeline.params import load_params
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


def svm(sets: dict, cfg: dict, splits=("validation", "test"), n_jobs: int = -1) -> dict:
    images, labels = sets["train"]
    if cfg.get("train_limit"):
        images, labels = images[:cfg["train_limit"]], labels[:cfg["train_limit"]]
    scale = lambda imgs: imgs.reshape(len(imgs), -1) / PIXEL_SCALE  # noqa: E731
    start = time.perf_counter()
    model = bl.train_svm(scale(images), labels, C=cfg["C"], kernel=cfg["kernel"],
                         gamma=cfg["gamma"], log=log)
    result = {"train_size": int(len(labels))}
    for split in splits:
        split_images, split_labels = sets[split]
        predicted = bl.predict_in_chunks(model, scale(split_images), desc=f"svm {split}",
                                         n_jobs=n_jobs)
        result[f"{split}_correct"] = int((predicted == split_labels).sum())
        result[f"{split}_accuracy"] = bl.accuracy(predicted, split_labels)
    result["seconds"] = round(time.perf_counter() - start, 1)
    scores = ", ".join(f"{split} {result[f'{split}_accuracy']:.2%}" for split in splits)
    log(f"svm on {len(labels):,}: {scores} ({result['seconds']:.0f} s)")
    return result


def _sweep_point(sets: dict, cfg: dict, n: int) -> dict:
    limited = dict(sets, train=(sets["train"][0][:n], sets["train"][1][:n]))
    # the book's sweep plot is on validation data; test would double the time
    return dict(svm(limited, dict(cfg["svm"], train_limit=n), ("validation",), n_jobs=1), n=n)


def sweep(sets: dict, cfg: dict) -> dict:
    """Chapter 3's SVM companion to the training-set-size sweep: the SVM on the first n."""
    return {"points": [_sweep_point(sets, cfg, n) for n in sorted(cfg["sweep"]["sizes"])]}


def _sweep_from_files(prepared_dir: str, cfg: dict) -> dict:
    """``sweep`` in a worker process, which loads the data itself rather than receive it."""
    return sweep(_load_sets(prepared_dir), cfg)


def _load_sets(prepared_dir: str) -> dict:
    return {name: load_images(Path(prepared_dir) / f"{name}.npz")
            for name in ("train", "validation", "test")}


def main() -> None:
    """Darkness and the 50k SVM here; the sweep's smaller SVMs meanwhile in a second process.

    libsvm fits on one core, and the 50k fit takes minutes: the sweep's fits (all of them
    together shorter than that one) run beside it on the other core instead of after it.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    params = load_params()
    data, cfg = params["data"], params["baselines"]
    profile = params["profile"]["name"]
    with stage("baselines"):
        sets = _load_sets(data["prepared_dir"])
        train_digest = digest(Path(data["prepared_dir"]) / "train.npz")
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            swept = pool.submit(_sweep_from_files, data["prepared_dir"], cfg)
            metrics = {}
            for name, book_id, compute in (("darkness", "B-darkness", lambda: darkness(sets)),
                                           ("svm", "B-svm", lambda: svm(sets, cfg["svm"]))):
                params_logged = cfg["svm"] if name == "svm" else {"method": "average darkness"}
                with tracking.start_run(book_id, params=params_logged,
                                        tags=tracking.standard_tags(book_id, 1, profile, None,
                                                                    train_digest)) as run:
                    metrics[name] = compute()
                    run.log_metrics(metrics[name])
            with tracking.start_run("svm-sweep", params=cfg,
                                    tags=tracking.standard_tags("svm-sweep", 3, profile, None,
                                                                train_digest)) as run:
                result = swept.result()
                for point in result["points"]:
                    run.log_metrics({f"validation_accuracy_n{point['n']}":
                                     point["validation_accuracy"]})
        write_json(Path(cfg["out_dir"]) / "svm_sweep.json", result)
        write_json(Path(cfg["out_dir"]) / "metrics.json", metrics)


if __name__ == "__main__":
    main()
