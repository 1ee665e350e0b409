"""Chapter 1's two baselines, for the networks to beat.

- Average darkness (``mnist_average_darkness.py``): the mean total pixel value of each digit
  over the training set; an image is classified as the digit whose mean is nearest its own
  total. The book reports 2,225 / 10,000 correct on test.
- Support vector machine (``mnist_svm.py``): scikit-learn's ``SVC`` with the 2015 defaults,
  RBF kernel, C = 1, gamma = 1/n_features (``gamma='auto'`` today), on the 50,000 training
  images. The book reports 94.35% on test (and quotes 94.48% on validation).
"""

from __future__ import annotations

import time

import numpy as np


def darkness_means(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean darkness (sum of raw pixel values) of each digit 0..9, shape (10,)."""
    darkness = images.reshape(len(images), -1).sum(axis=1, dtype=np.int64)
    return np.array([darkness[labels == d].mean() for d in range(10)])


def darkness_predict(means: np.ndarray, images: np.ndarray) -> np.ndarray:
    """The digit whose mean darkness is nearest each image's darkness."""
    darkness = images.reshape(len(images), -1).sum(axis=1, dtype=np.int64)
    return np.abs(darkness[:, None] - means[None, :]).argmin(axis=1)


def train_svm(x: np.ndarray, y: np.ndarray, *, C: float, kernel: str, gamma, log=print):
    """Fit scikit-learn's SVC; slow (minutes for 50k on two cores), so say how long it took."""
    from sklearn.svm import SVC

    model = SVC(C=C, kernel=kernel, gamma=gamma)
    log(f"svm: fitting SVC(C={C}, kernel={kernel!r}, gamma={gamma!r}) on {len(y):,} images "
        "(single-threaded; several minutes for the full 50,000)...")
    start = time.perf_counter()
    model.fit(x, y)
    log(f"svm: fitted in {time.perf_counter() - start:.0f} s, "
        f"{model.n_support_.sum():,} support vectors")
    return model


def predict_in_chunks(model, x: np.ndarray, chunk: int = 1000, desc: str = "predict",
                      n_jobs: int = -1) -> np.ndarray:
    """Predict in chunks on every core, with a progress bar.

    libsvm predicts on one core and 10,000 images take minutes; chunks run in parallel.
    """
    from joblib import Parallel, delayed
    from tqdm import tqdm

    starts = range(0, len(x), chunk)
    parts = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(model.predict)(x[i:i + chunk]) for i in starts)
    return np.concatenate(list(tqdm(parts, total=len(starts), desc=desc, unit="chunk",
                                    leave=False)))


def accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predicted == labels))
