"""Chapter 1's two baselines, for the networks to beat.

- Average darkness (``mnist_average_darkness.py``): the mean total pixel value of each digit
  over the training set; an image is classified as the digit whose mean is nearest its own
  total. The book reports 2,225 / 10,000 correct on test.
- Support vector machine (``mnist_svm.py``): scikit-learn's ``SVC`` with the 2015 defaults,
  RBF kernel, C = 1, gamma = 1/n_features (``gamma='auto'`` today), on the 50,000 training
  images. The book reports 94.35% on test (and quotes 94.48% on validation).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np

from pipeline.data.mnist import scale_pixels
from pipeline.errors import InputError


def darkness_means(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean darkness (sum of raw pixel values) of each digit 0..9, shape (10,)."""
    missing = sorted(set(range(10)) - set(np.unique(labels).tolist()))
    if missing:  # a digit without a mean would be nearest to nothing, or (NaN) to everything
        raise InputError(f"the darkness baseline needs training images of every digit; {len(labels):,} "
                         f"images hold no {', '.join(map(str, missing))}: raise data.n_train")
    darkness = images.reshape(len(images), -1).sum(axis=1, dtype=np.int64)
    return np.array([darkness[labels == d].mean() for d in range(10)])


def darkness_predict(means: np.ndarray, images: np.ndarray) -> np.ndarray:
    """The digit whose mean darkness is nearest each image's darkness."""
    darkness = images.reshape(len(images), -1).sum(axis=1, dtype=np.int64)
    return np.abs(darkness[:, None] - means[None, :]).argmin(axis=1)


def resolve_gamma(gamma, x: np.ndarray) -> float:
    """scikit-learn's ``gamma='auto'`` (1/n_features) or ``'scale'`` as a number, from the
    training set ``x`` as ``SVC`` does, so that all the pairwise machines of one SVM share
    one kernel (each pair's own subset would give ``'scale'`` another value)."""
    if gamma == "auto":
        return 1.0 / x.shape[1]
    if gamma == "scale":
        return 1.0 / (x.shape[1] * x.var())
    return float(gamma)


def pair_indices(y: np.ndarray, i, j) -> np.ndarray:
    """The examples of classes ``i`` then ``j``, each in their original order: libsvm's
    one-vs-one subproblem for the pair, in the same order libsvm builds it."""
    return np.concatenate([np.flatnonzero(y == i), np.flatnonzero(y == j)])


def _fit_pair(x: np.ndarray, y: np.ndarray, index: np.ndarray, C: float, gamma: float):
    from sklearn.svm import SVC

    machine = SVC(C=C, kernel="rbf", gamma=gamma).fit(x[index], y[index])
    # sklearn's binary convention: decision > 0 means the second class (j); libsvm's is the negative
    return index[machine.support_], machine.dual_coef_[0].copy(), float(machine.intercept_[0])


@dataclass
class PairwiseSVM:
    """A one-vs-one RBF SVM as libsvm (scikit-learn's ``SVC``) builds it: one binary machine
    per pair of classes, a vote among them. Fitting the machines separately lets them run on
    every core (libsvm fits them one after another on one); predicting with one kernel matrix
    against all support vectors (a BLAS product) replaces libsvm's one-image-at-a-time loop.
    Same subproblems in the same order, so the same machines and predictions as ``SVC``.
    """
    classes: np.ndarray
    gamma: float
    support_vectors: np.ndarray          # (n_sv, d): every pair's support vectors, once
    pairs: list[tuple[int, int]]         # (i, j) indices into classes, i < j
    pair_support: list[np.ndarray]       # per pair: rows of support_vectors
    pair_coef: list[np.ndarray]          # per pair: dual coefficients y_k alpha_k
    pair_intercept: np.ndarray           # per pair: b

    @property
    def n_support(self) -> int:
        return len(self.support_vectors)

    def kernel(self, x: np.ndarray) -> np.ndarray:
        """K(x, sv) = exp(-gamma |x - sv|^2), through |x|^2 + |sv|^2 - 2 x.sv."""
        sq = (np.einsum("ij,ij->i", x, x)[:, None]
              + np.einsum("ij,ij->i", self.support_vectors, self.support_vectors)[None, :]
              - 2.0 * x @ self.support_vectors.T)
        return np.exp(-self.gamma * np.maximum(sq, 0.0))

    def decision(self, x: np.ndarray) -> np.ndarray:
        """Each pair's decision value, shape (n, n_pairs); >= 0 votes for the pair's j."""
        k = self.kernel(x)
        return np.stack([k[:, rows] @ coef + b for rows, coef, b
                         in zip(self.pair_support, self.pair_coef, self.pair_intercept)], axis=1)

    def predict(self, x: np.ndarray, chunk: int = 2000) -> np.ndarray:
        """The class with the most votes; a tie goes to the smaller class, as in libsvm."""
        pairs = np.array(self.pairs)
        out = []
        for start in range(0, len(x), chunk):
            # libsvm votes for i where its own decision, the negative of ours, is > 0, so a
            # decision of exactly 0 goes to j
            wins_j = self.decision(x[start:start + chunk]) >= 0
            votes = np.zeros((len(wins_j), len(self.classes)), dtype=np.int64)
            for p, (i, j) in enumerate(pairs):
                votes[:, j] += wins_j[:, p]
                votes[:, i] += ~wins_j[:, p]
            out.append(self.classes[votes.argmax(axis=1)])
        return np.concatenate(out)


def fit_pairwise_svms(x: np.ndarray, y: np.ndarray, sizes: list[int], *, C: float, gamma,
                      n_jobs: int = -1, log=print) -> dict[int, PairwiseSVM]:
    """An RBF ``SVC`` on each of the first ``n`` examples for every ``n`` in ``sizes``, all
    their pairwise machines fitted on ``n_jobs`` cores, the largest first so no core idles
    at the end. libsvm is single-threaded: this is where the cores come in."""
    from joblib import Parallel, delayed

    if max(sizes) > len(y):
        raise InputError(f"SVM training size {max(sizes):,} exceeds the {len(y):,} training "
                         "images: lower baselines.sweep.sizes or baselines.svm.train_limit")
    gammas = {n: resolve_gamma(gamma, x[:n]) for n in sizes}
    jobs = []
    for n in sizes:
        classes = np.unique(y[:n])
        for a in range(len(classes)):
            for b in range(a + 1, len(classes)):
                jobs.append((n, (a, b), pair_indices(y[:n], classes[a], classes[b])))
    jobs.sort(key=lambda job: -len(job[2]))
    # a named gamma ('auto': 1/784) with the number it stands for
    resolved = "" if not isinstance(gamma, str) else " = " + ", ".join(
        f"{g:.6g}" for g in sorted(set(gammas.values())))
    log(f"svm: fitting {len(jobs)} pairwise RBF machines (C={C}, gamma={gamma!r}{resolved}) for "
        f"training sizes {', '.join(f'{n:,}' for n in sizes)}, on every core...")
    start = time.perf_counter()
    fitted = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_fit_pair)(x, y, index, C, gammas[n]) for n, _, index in jobs)
    by_size: dict[int, dict] = {n: {} for n in sizes}
    for (n, pair, _), result in zip(jobs, _progress(fitted, jobs, start, log)):
        by_size[n][pair] = result
    models = {n: _assemble(x, y[:n], pairs, gammas[n]) for n, pairs in by_size.items()}
    log(f"svm: fitted in {time.perf_counter() - start:.0f} s; support vectors: "
        + ", ".join(f"{models[n].n_support:,} (n={n:,})" for n in sizes))
    return models


def _progress(results, jobs: list, start: float, log):
    """``results`` as they come, with progress: a tqdm bar in a terminal; elsewhere (a log
    file, CI) a line as each training size's machines are all fitted, since a bar's carriage
    returns make one endless line there."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(results, total=len(jobs), desc="svm pairs", unit="pair", leave=False)
        return
    machines = Counter(n for n, _, _ in jobs)
    left = machines.copy()
    for (n, _, _), result in zip(jobs, results):
        left[n] -= 1
        if not left[n]:
            log(f"svm on the first {n:,}: {machines[n]} machines fitted, {time.perf_counter() - start:.0f} s")
        yield result


def _assemble(x: np.ndarray, y: np.ndarray, fitted: dict, gamma: float) -> PairwiseSVM:
    pairs = sorted(fitted)
    support = np.unique(np.concatenate([fitted[p][0] for p in pairs]))
    return PairwiseSVM(
        classes=np.unique(y), gamma=gamma, support_vectors=np.ascontiguousarray(x[support]),
        pairs=pairs, pair_support=[np.searchsorted(support, fitted[p][0]) for p in pairs],
        pair_coef=[fitted[p][1] for p in pairs],
        pair_intercept=np.array([fitted[p][2] for p in pairs]))


def accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predicted == labels))


# The baselines stage's three MLflow runs, by name: the book's chapter of each, and what the
# stage logs as its params and summary metrics (``pipeline.restore_runs`` logs them again).
RUN_CHAPTERS = {"B-darkness": 1, "B-svm": 1, "svm-sweep": 3}


def run_params(name: str, cfg: dict) -> dict:
    """The params of baselines run ``name``, from the stage's config ``cfg``."""
    return {"B-darkness": {"method": "average darkness"}, "B-svm": cfg["svm"], "svm-sweep": cfg}[name]


def settings_shown(metrics: dict, sweep: dict) -> dict:
    """The settings that the stage's ``metrics.json`` and ``svm_sweep.json`` show they were made
    with: the book's SVM's training-set size and the sweep's sizes."""
    return {"svm_train_size": metrics["svm"]["train_size"],
            "sweep_sizes": sorted(point["n"] for point in sweep["points"])}


def settings_shown_by(cfg: dict, train_size: int) -> dict:
    """``settings_shown`` of the outputs that config ``cfg`` makes from ``train_size`` images."""
    return {"svm_train_size": cfg["svm"]["train_limit"] or train_size,
            "sweep_sizes": sorted(cfg["sweep"]["sizes"])}


def run_metrics(name: str, metrics: dict, sweep: dict) -> dict:
    """The summary metrics of baselines run ``name``, from the stage's ``metrics.json`` and
    ``svm_sweep.json``: the sweep's as one validation accuracy per training-set size."""
    if name == "svm-sweep":
        return {f"validation_accuracy_n{p['n']}": p["validation_accuracy"] for p in sweep["points"]}
    return metrics[{"B-darkness": "darkness", "B-svm": "svm"}[name]]


def darkness_scores(sets: dict, log: Callable[[str], None] = print) -> dict:
    """The darkness baseline fitted on ``sets["train"]`` (images, labels), scored on
    validation and test."""
    means = darkness_means(*sets["train"])
    result = {}
    for split in ("validation", "test"):
        images, labels = sets[split]
        predicted = darkness_predict(means, images)
        result[f"{split}_correct"] = int((predicted == labels).sum())
        result[f"{split}_accuracy"] = accuracy(predicted, labels)
    log(f"darkness: test {result['test_correct']:,}/{len(sets['test'][1]):,} "
        f"= {result['test_accuracy']:.2%}")
    return result


def svm_scores(sets: dict, cfg: dict, log: Callable[[str], None] = print) -> tuple[dict, dict]:
    """The book's SVM on its training set and on each size of the chapter 3 sweep: every
    machine of every size fitted in one pool on all cores (see ``PairwiseSVM``); ``cfg``
    passed ``check_settings`` (the kernel is rbf, the only one the pairwise fit builds). The
    book's SVM's scores on validation and test, and the sweep's on validation."""
    images, labels = sets["train"]
    full = cfg["svm"]["train_limit"] or len(labels)  # more than there are is refused by the fit
    sizes = sorted(set(cfg["sweep"]["sizes"]) | {full})
    scale = lambda imgs: scale_pixels(imgs, np.float64)  # noqa: E731
    start = time.perf_counter()
    scaled = {split: scale(sets[split][0]) for split in ("validation", "test")}  # once, not per size
    models = fit_pairwise_svms(scale(images[:max(sizes)]), labels[:max(sizes)], sizes,
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
            point[f"{split}_accuracy"] = accuracy(predicted, split_labels)
        evaluated[n] = point
        log(f"svm on the first {n:,}: " + ", ".join(
            f"{split} {point[f'{split}_accuracy']:.2%}" for split in splits))
    seconds = round(time.perf_counter() - start, 1)
    book_svm = {k: v for k, v in evaluated[full].items() if k != "n"}
    book_svm.update(train_size=full, seconds=seconds)
    sweep = {"points": [evaluated[n] for n in sorted(cfg["sweep"]["sizes"])],
             "seconds": seconds}
    return book_svm, sweep
