"""The SVM baseline fitted pair by pair must be scikit-learn's SVC, machine for machine."""

import numpy as np
import pytest
from sklearn.svm import SVC

from pipeline.baselines import PairwiseSVM, fit_pairwise_svms


def _blobs(n=240, classes=4, dims=12, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = rng.normal(0, 1.0, (classes, dims))
    return centres[y] + rng.normal(0, 1.2, (n, dims)), y


@pytest.mark.parametrize("gamma", ["auto", "scale", 0.05])
def test_pairwise_svm_equals_sklearn_svc(gamma):
    x, y = _blobs()
    new_x, _ = _blobs(300, seed=1)
    sizes = [120, 240]
    models = fit_pairwise_svms(x, y, sizes, C=1.0, gamma=gamma, n_jobs=2, log=lambda _: None)
    for n in sizes:
        ref = SVC(C=1.0, kernel="rbf", gamma=gamma, decision_function_shape="ovo").fit(x[:n], y[:n])
        ours = models[n]
        assert ours.n_support == ref.n_support_.sum()
        np.testing.assert_array_equal(np.sort(ours.support_vectors, axis=0),
                                      np.sort(ref.support_vectors_, axis=0))
        # libsvm's one-vs-one decision is positive for the pair's first class; ours for the second
        np.testing.assert_allclose(ours.decision(new_x), -ref.decision_function(new_x),
                                   rtol=1e-9, atol=1e-9)
        np.testing.assert_array_equal(ours.predict(new_x, chunk=64), ref.predict(new_x))


def test_vote_ties_go_to_the_smaller_class_as_in_libsvm():
    # three classes, each pair's machine votes cyclically: 0 beats 1, 1 beats 2, 2 beats 0
    model = PairwiseSVM(classes=np.array([0, 1, 2]), gamma=1.0, support_vectors=np.zeros((1, 2)),
                        pairs=[(0, 1), (0, 2), (1, 2)], pair_support=[np.array([0])] * 3,
                        pair_coef=[np.array([0.0])] * 3, pair_intercept=np.array([-1.0, 1.0, -1.0]))
    assert model.predict(np.zeros((1, 2))).tolist() == [0]
    # break the cycle: 2 now beats 1 as well as 0, and wins outright
    model.pair_intercept = np.array([-1.0, 1.0, 1.0])
    assert model.predict(np.zeros((1, 2))).tolist() == [2]


def test_a_training_size_beyond_the_data_is_rejected_with_the_fix():
    x, y = _blobs(50)
    with pytest.raises(ValueError, match="exceeds the 50 training images.*baselines.sweep.sizes"):
        fit_pairwise_svms(x, y, [60], C=1.0, gamma="auto", log=lambda _: None)


def test_a_book_svm_trained_beyond_the_data_is_rejected_not_cut():
    from pipeline.baselines import svm_scores as svm

    x, y = _blobs(50)
    cfg = {"svm": {"C": 1.0, "kernel": "rbf", "gamma": "auto", "train_limit": 60}, "sweep": {"sizes": [20]}}
    with pytest.raises(ValueError, match="exceeds the 50 training images.*baselines.svm.train_limit"):
        svm({"train": (x, y), "validation": (x, y), "test": (x, y)}, cfg)


def test_outside_a_terminal_the_fit_reports_progress_in_whole_lines(monkeypatch):
    # a log file gets no tqdm bar (its carriage returns made one 6,486-character line of
    # quick-27's log) but a line as each training size's machines are done, largest first
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    x, y = _blobs(160)
    lines = []
    fit_pairwise_svms(x, y, [80, 160], C=1.0, gamma="auto", n_jobs=1, log=lines.append)
    progress = [line.rsplit(",", 1)[0] for line in lines if "machines fitted" in line]
    assert progress == ["svm on the first 160: 6 machines fitted", "svm on the first 80: 6 machines fitted"]
    # a named gamma is shown with the number it stands for ('auto': 1/n_features, here 1/12)
    assert lines[0].startswith("svm: fitting 12 pairwise RBF machines (C=1.0, gamma='auto' = 0.0833333) ")


def test_darkness_needs_every_digit_in_its_training_images():
    from pipeline.baselines import darkness_means

    images, labels = np.zeros((20, 28, 28), np.uint8), np.arange(20) % 9  # no 9
    with pytest.raises(ValueError, match="20 images hold no 9: raise data.n_train"):
        darkness_means(images, labels)


def _of_darkness(*totals):
    """28 x 28 uint8 images whose pixels add up to each of ``totals``."""
    flat = np.zeros((len(totals), 784), np.int64)
    for row, total in zip(flat, totals):
        row[:total // 255], row[total // 255] = 255, total % 255
    return flat.reshape(-1, 28, 28).astype(np.uint8)


def test_darkness_is_fitted_on_train_and_answers_the_digit_of_the_nearest_mean():
    """Offline, what the real-data test's 2,225 checks: digit d's training images average
    1,000 d + 500; a held-out image is the digit whose mean darkness is nearest its own."""
    from pipeline.baselines import darkness_scores

    digits = np.arange(10).repeat(2)
    train = (_of_darkness(*(1000 * digits + np.tile([400, 600], 10))), digits)
    sets = {"train": train,
            "validation": (_of_darkness(2550, 7100, 5500), np.array([2, 7, 3])),  # 7,100 is nearer 7,500
            "test": (_of_darkness(9500, 500), np.array([9, 0]))}  # only two digits: no means of its own
    lines = []
    scores = darkness_scores(sets, log=lines.append)
    assert scores == {"validation_correct": 2, "validation_accuracy": 2 / 3,
                      "test_correct": 2, "test_accuracy": 1.0}
    assert lines == ["darkness: test 2/2 = 100.00%"]


def test_the_book_svm_trains_on_its_train_limit_and_is_scored_on_test_beside_a_longer_sweep():
    """``svm.train_limit`` smaller than the sweep's largest size: the book's SVM is still the
    one trained on the first ``train_limit`` images, with its test accuracy."""
    from pipeline.baselines import svm_scores as svm

    x, y = _blobs(90)
    images = np.clip(x.repeat(66, axis=1)[:, :784] * 40 + 128, 0, 255).astype(np.uint8).reshape(90, 28, 28)
    sets = {"train": (images[:60], y[:60]), "validation": (images[60:75], y[60:75]),
            "test": (images[75:], y[75:])}
    cfg = {"svm": {"C": 1.0, "kernel": "rbf", "gamma": "auto", "train_limit": 40}, "sweep": {"sizes": [20, 60]}}
    book_svm, sweep = svm(sets, cfg)
    scaled = {k: images.reshape(len(images), -1)[s] / 256.0 for k, s in
              (("train", slice(0, 40)), ("test", slice(75, 90)))}
    ref = SVC(C=1.0, kernel="rbf", gamma="auto").fit(scaled["train"], y[:40])
    assert book_svm["train_size"] == 40
    assert book_svm["test_accuracy"] == np.mean(ref.predict(scaled["test"]) == y[75:])
    assert [p["n"] for p in sweep["points"]] == [20, 60]
    assert all("test_accuracy" not in p for p in sweep["points"])  # the sweep is read on validation


def test_the_settings_a_config_makes_are_those_its_outputs_show():
    """What pipeline.restore_runs compares: a ``train_limit`` is the book's SVM's training-set
    size, and none means the whole training set."""
    from pipeline.baselines import settings_shown, settings_shown_by

    metrics, sweep = {"svm": {"train_size": 40}}, {"points": [{"n": 20}, {"n": 60}]}
    cfg = {"svm": {"train_limit": 40}, "sweep": {"sizes": [60, 20]}}
    assert settings_shown_by(cfg, 90) == settings_shown(metrics, sweep) == {"svm_train_size": 40,
                                                                           "sweep_sizes": [20, 60]}
    assert settings_shown_by({**cfg, "svm": {"train_limit": None}}, 90)["svm_train_size"] == 90


def test_a_decision_of_exactly_zero_votes_as_libsvm_does():
    """Two mirror-image classes (intercept 0): far from every support vector the RBF kernel is 0,
    so each decision is exactly 0; libsvm votes for the pair's second class where its own
    decision is not > 0, and SVC predicts class 1 there."""
    x, y = np.array([[-1.0, 0], [1.0, 0], [-1.0, 1], [1.0, 1]]), np.array([0, 1, 0, 1])
    far = np.array([[0.0, 100.0], [100.0, 0.0]])
    ref = SVC(C=1.0, kernel="rbf", gamma=1.0).fit(x, y)
    ours = fit_pairwise_svms(x, y, [4], C=1.0, gamma=1.0, n_jobs=1, log=lambda _: None)[4]
    assert ours.decision(far).tolist() == [[0.0], [0.0]] and ref.predict(far).tolist() == [1, 1]
    np.testing.assert_array_equal(ours.predict(far), ref.predict(far))
