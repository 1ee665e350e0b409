"""The book's seeded chapter 3 runs, replayed: the streams' bookkeeping, then the book's own
numbers on real MNIST.

The known answers on real data are the book's: the per-epoch counts that its figure scripts
saved with their figures (``fig/overfitting.json``, ``fig/weight_initialization_30.json`` in
the book's repository) and the final validation accuracy it reports for 200 images (BOOK.md).
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.data.mnist import load_dataset
from pipeline.experiment import run_spec, validate_run
from pipeline.nn import build_network, fit
from pipeline.nn.network2_rng import Python27Shuffle, network2_parameters
from pipeline.params import load_params

REPO_ROOT = Path(__file__).resolve().parents[1]


def _python27_shuffle(items: list, draw) -> None:
    for i in reversed(range(1, len(items))):
        j = int(draw() * (i + 1))
        items[i], items[j] = items[j], items[i]


def test_parameters_come_from_the_constructor_draw_then_each_large_draw():
    sizes, seed = [4, 3, 2], 7
    state = np.random.RandomState(seed)
    draws = []
    for _ in range(4):  # the constructor's draw, then three large initialisations
        biases = [state.randn(3, 1), state.randn(2, 1)]
        weights = [state.randn(3, 4), state.randn(2, 3)]
        draws.append((biases, weights))

    default = network2_parameters(sizes, seed, "default")
    biases, weights = draws[0]
    for (w, b), w0, b0, n_in in zip(default, weights, biases, (4, 3)):
        np.testing.assert_array_equal(w, w0.T / math.sqrt(n_in))
        np.testing.assert_array_equal(b, b0[:, 0])
        assert w.dtype == np.float64 and w.flags.c_contiguous
    for inits_before in (0, 2):
        large = network2_parameters(sizes, seed, "large", inits_before)
        biases, weights = draws[1 + inits_before]
        for (w, b), w0, b0 in zip(large, weights, biases):
            np.testing.assert_array_equal(w, w0.T)
            np.testing.assert_array_equal(b, b0[:, 0])
    with pytest.raises(ValueError, match="constructor"):
        network2_parameters(sizes, seed, "default", inits_before=1)
    with pytest.raises(ValueError, match="network3"):
        network2_parameters(sizes, seed, "network3")


def test_orders_skip_the_draws_of_earlier_runs_or_carry_their_list():
    seed, n = 12345678, 6
    # a fresh script: each epoch shuffles the same list again
    expected, draw = list(range(n)), random.Random(seed).random
    shuffler = Python27Shuffle(seed, n)
    for _ in range(3):
        _python27_shuffle(expected, draw)
        assert shuffler.permutation().tolist() == expected

    # earlier runs on other lists (the training-set-size sweep): only their draws are used up
    draw = random.Random(seed).random
    for _ in range(4 * 9 + 2 * 19):
        draw()
    expected = list(range(n))
    _python27_shuffle(expected, draw)
    assert Python27Shuffle(seed, n, [[10, 4], [20, 2]]).permutation().tolist() == expected

    # an earlier run on this very list (the weight-initialisation script): its order carries over
    draw = random.Random(seed).random
    expected = list(range(n))
    for _ in range(3):
        _python27_shuffle(expected, draw)
    assert Python27Shuffle(seed, n, [[n, 2]], order_carried=True).permutation().tolist() == expected
    with pytest.raises(ValueError, match="order_carried"):
        Python27Shuffle(seed, n, [[n + 1, 2]], order_carried=True)


def test_every_replay_config_is_valid():
    book = load_params(REPO_ROOT / "params.yaml")["book"]
    replays = {i: run for i, run in book.items() if run.get("replay")}
    assert {"ch3-overfit-1k", "ch3-l2-1k", "ch3-more-data-50000", "ch3-init-100-large"} <= set(replays)
    for book_id, run in replays.items():
        validate_run(book_id, run)
        assert run_spec(run, run["replay"]["seed"], {}, replay=True)["training"]["rng"]["kind"] == "network2"


def _profiles_that_replay() -> list[str]:
    return [p.stem for p in sorted((REPO_ROOT / "conf/profile").glob("*.yaml"))
            if (yaml.safe_load(p.read_text(encoding="utf-8"))["profile"]).get("replay")]


@pytest.mark.parametrize("profile", _profiles_that_replay())
def test_every_replay_pins_its_rows_settings_as_conf_composes_them(profile):
    """A replay block's settings_digest is its row's, in every profile that replays: else the
    stage would train the row's seeds alone and never the book's run."""
    from pipeline.config import compose
    from pipeline.experiment import replay_problem, settings_digest

    params = yaml.safe_load(compose(REPO_ROOT, [f"profile={profile}"]))
    replays = {i: run for i, run in params["book"].items() if run.get("replay")}
    assert len(replays) == 16
    for book_id, run in replays.items():
        now = settings_digest(run, params["data"]["n_train"])
        assert run["replay"]["settings_digest"] == now, (
            f"conf/book/{book_id}.yaml: its settings no longer digest to replay.settings_digest. If the "
            f"row was corrected to the book's settings, set it to '{now}' (and check the replay still "
            f"retraces the book's figure data: docs/findings.md); if not, the replay is not the book's run")
        assert replay_problem(book_id, run, params["data"]["n_train"], params["profile"]["limits"]) is None


def test_replay_profiles_are_found():
    assert {"quick", "book"} <= set(_profiles_that_replay()) and "smoke" not in _profiles_that_replay()


@pytest.fixture(scope="module")
def mnist(mnist_prepared_dir):
    return {name: load_dataset(mnist_prepared_dir / f"{name}.npz")
            for name in ("train", "validation", "test")}


def _replay(book_id: str, mnist, epochs: int | None = None):
    run = load_params(REPO_ROOT / "params.yaml")["book"][book_id]
    spec = run_spec(run, run["replay"]["seed"], {"epochs": epochs}, replay=True)
    spec["training"]["monitor"] = {}
    n = run["data"]["train_limit"] or len(mnist["train"].y)
    train = mnist["train"].x[:n], mnist["train"].y[:n]
    val, test = mnist["validation"], mnist["test"]
    history = fit(build_network(spec), spec, train, (val.x, val.y), (test.x, test.y), log=None)
    count = lambda key: [round(10_000 * r[key]) for r in history.records]  # noqa: E731
    return count("validation_accuracy"), count("test_accuracy")


@pytest.mark.realdata
@pytest.mark.slow
def test_the_overfitting_run_retraces_the_books_first_epochs(mnist):
    """The book's figure data: test counts 5887, 6505, 6970, 7271, 7433, 7198 after epochs 0-5."""
    _, test = _replay("ch3-overfit-1k", mnist, epochs=6)
    assert test == [5887, 6505, 6970, 7271, 7433, 7198]


@pytest.mark.realdata
@pytest.mark.slow
def test_the_large_init_run_starts_where_the_default_run_left_the_list(mnist):
    """weight_initialization.py trains the default-init net, then the large-init one on the
    same, already shuffled list: validation counts 8643, 9044 after epochs 0-1."""
    validation, _ = _replay("ch3-init-30-large", mnist, epochs=2)
    assert validation == [8643, 9044]


@pytest.mark.realdata
@pytest.mark.slow
def test_the_training_set_size_sweep_gives_the_books_figure_for_200_images(mnist):
    """more_data.py's second size: one large initialisation and 15,000 epochs of 100 images
    come first in its streams; the book reports 76.37% final validation accuracy."""
    validation, _ = _replay("ch3-more-data-200", mnist)
    assert validation[-1] == 7637
