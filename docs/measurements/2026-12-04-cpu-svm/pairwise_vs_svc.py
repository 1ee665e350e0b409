"""The SVM paragraph of the README: on one core, the 45 pairwise machines for the first N
training images fitted one after another by ``pipeline.baselines.fit_pairwise_svms`` against
scikit-learn's ``SVC`` (libsvm's own one-against-one loop) on the same images, alternating,
REPEATS times each; and whether the two predict the same on the validation set.

    cd docs/measurements/2026-12-04-cpu-svm
    python pairwise_vs_svc.py 10000 3 2>/dev/null >> pairwise_vs_svc.log
    python pairwise_vs_svc.py 50000 1 2>/dev/null >> pairwise_vs_svc.log
"""

import statistics
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from pipeline.baselines import fit_pairwise_svms, resolve_gamma
from pipeline.data.mnist import load_images, scale_pixels

ROOT = Path(__file__).resolve().parents[3]  # the repo root
N, REPEATS = int(sys.argv[1]), int(sys.argv[2])
images, labels = load_images(ROOT / "data/prepared/train.npz")
x, y = scale_pixels(images[:N], np.float64), labels[:N]
val_images, val_labels = load_images(ROOT / "data/prepared/validation.npz")
xv = scale_pixels(val_images, np.float64)
times = {"pairwise, one core": [], "SVC": []}
with threadpool_limits(1):
    for _ in range(REPEATS):
        start = time.perf_counter()
        ours = fit_pairwise_svms(x, y, [N], C=1.0, gamma="auto", n_jobs=1, log=lambda _: None)[N]
        times["pairwise, one core"].append(time.perf_counter() - start)
        start = time.perf_counter()
        svc = SVC(C=1.0, kernel="rbf", gamma=resolve_gamma("auto", x), decision_function_shape="ovo").fit(x, y)
        times["SVC"].append(time.perf_counter() - start)
for name, seconds in times.items():
    shown = ", ".join(f"{s:.1f}" for s in seconds)
    print(f"first {N:,} images, {name}: median {statistics.median(seconds):.1f} s of {shown}")
same = np.array_equal(ours.predict(xv), svc.predict(xv))
print(f"support vectors: pairwise {ours.n_support:,}, SVC {int(svc.n_support_.sum()):,}; "
      f"the same validation predictions: {same}")
