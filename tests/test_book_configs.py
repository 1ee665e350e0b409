"""Every run of the book is a valid config, in every profile; bad configs are named clearly."""

import copy
import json
import math
from pathlib import Path

import pytest
import yaml

from pipeline.config import compose
from pipeline.errors import SettingError
from pipeline.experiment import BOOK_RUN_IDS, check_book_figure, validate_run

REPO_ROOT = Path(__file__).resolve().parents[1]
BOOK_IDS = BOOK_RUN_IDS  # the rows of shared BOOK.md (plus chapter 3's runs without a figure)


@pytest.fixture(scope="module", params=["quick", "fast", "book", "smoke"])
def profile_params(request):
    return yaml.safe_load(compose(REPO_ROOT, [f"profile={request.param}"]))


def test_every_book_run_present_and_valid(profile_params):
    missing = BOOK_IDS - set(profile_params["book"])
    assert not missing, f"BOOK.md rows without a config in conf/book/: {sorted(missing)}"
    for book_id, run in profile_params["book"].items():
        validate_run(book_id, run)


def _runs_of_our_own_with_a_figure(book: dict) -> list[str]:
    return sorted(i for i in set(book) - BOOK_IDS if book[i]["book"]["value"] is not None)


def test_a_run_of_our_own_claims_no_figure_of_the_books(profile_params):
    # Runs beyond BOOK.md's rows are welcome (README: "An experiment of your own"), but the
    # report would set a figure under "book" beside them: only the book's rows may have one.
    assert _runs_of_our_own_with_a_figure(profile_params["book"]) == [], "not rows of BOOK.md: book.value must be null"
    # the check sees one (there is none in conf/book/ today)
    mine = {"my-tanh": {"book": {"value": 0.99}}, "my-relu": {"book": {"value": None}}}
    assert _runs_of_our_own_with_a_figure({**profile_params["book"], **mine}) == ["my-tanh"]
    # and so does pipeline.config's check, before anything trains
    copied = copy.deepcopy(profile_params["book"]["ch6-relu"])
    with pytest.raises(SettingError, match=r"^book.my-tanh.book.value: my-tanh is not a row of the book "
                                           r"\(BOOK.md\), so it has no figure .*: null .*got 0.9923$"):
        check_book_figure("my-tanh", copied)
    check_book_figure("ch6-relu", copied)
    copied["book"]["value"] = None
    check_book_figure("my-tanh", copied)


def test_book_profile_keeps_the_books_hyperparameters():
    params = yaml.safe_load(compose(REPO_ROOT, ["profile=book"]))
    book = params["book"]
    assert params["profile"]["limits"] == {"epochs": None, "train_examples": None,
                                           "eval_examples": None}
    assert book["ch1-30"]["training"]["epochs"] == 30 and book["ch1-30"]["training"]["eta"] == 3.0
    assert book["ch6-relu"]["training"]["epochs"] == 60
    assert book["ch6-dropout"]["training"]["epochs"] == 40
    assert len(book["ch6-dropout"]["seeds"]) == 5
    assert all(len(run["seeds"]) >= 3 for run in book.values())
    assert book["ch3-more-data-100"]["training"]["epochs"] == 15000
    # every run trains the epochs behind the book's figure, which the report sets beside a cut
    # profile's ("25 of 60")
    assert all(run["training"]["epochs"] == run["book"]["epochs"] for run in book.values())
    # BOOK.md: chapters 1 and 6 report the best of three runs, chapters 3 and 5 one run
    assert {run["book"]["runs"] for run in book.values() if run["chapter"] in (1, 6)} == {3}
    assert {run["book"]["runs"] for run in book.values() if run["chapter"] in (3, 5)} == {1}


# BOOK.md's rows, transcribed by hand (the configs must not be their own witness): network,
# hidden activation, cost, init, epochs, eta, lambda, training data, the book's figure and how
# the book measured it. "50k": the prepared training set; a number n: its first n images;
# "250k": the set expanded by 1-pixel shifts.
CH3, CH6 = "cross_entropy", "log_likelihood"
# BOOK.md, "How the book reports a number": chapter 1 peak test; chapter 3 the peak on the named
# set, the final epoch where the row says so; chapter 6 test at the best validation epoch;
# chapter 5 names the set only (we read it as chapter 3's rule, docs/findings.md)
PT, PV, FV, TBV = "peak_test", "peak_validation", "final_validation", "test_at_best_validation"
MORE_DATA = {100: 0.6909, 200: 0.7637, 500: 0.8529, 1000: 0.8885, 2000: 0.9127, 5000: 0.9324,
             10000: 0.9489, 20000: 0.9585, 50000: 0.9597}
BOOK_ROWS = {
    "ch1-30": ("784-30-10", "sigmoid", "quadratic", "large", 30, 3.0, 0, "50k", 0.9542, PT),
    "ch1-100": ("784-100-10", "sigmoid", "quadratic", "large", 30, 3.0, 0, "50k", 0.9659, PT),
    "ch3-ce-30": ("784-30-10", "sigmoid", CH3, "large", 30, 0.5, 0, "50k", 0.9549, PT),
    "ch3-ce-100": ("784-100-10", "sigmoid", CH3, "large", 30, 0.5, 0, "50k", 0.9682, PT),
    "ch3-overfit-1k": ("784-30-10", "sigmoid", CH3, "large", 400, 0.5, 0, 1000, 0.8227, PT),
    "ch3-l2-1k": ("784-30-10", "sigmoid", CH3, "large", 400, 0.5, 0.1, 1000, 0.8710, PT),
    "ch3-l2-30": ("784-30-10", "sigmoid", CH3, "large", 30, 0.5, 5.0, "50k", 0.9649, PT),
    "ch3-l2-100": ("784-100-10", "sigmoid", CH3, "large", 30, 0.5, 5.0, "50k", 0.9792, PV),
    "ch3-l2-100-tuned": ("784-100-10", "sigmoid", CH3, "large", 60, 0.1, 5.0, "50k", 0.9804, PV),
    "ch3-init-30-default": ("784-30-10", "sigmoid", CH3, "default", 30, 0.1, 5.0, "50k", None, FV),
    "ch3-init-30-large": ("784-30-10", "sigmoid", CH3, "large", 30, 0.1, 5.0, "50k", None, FV),
    "ch3-init-100-default": ("784-100-10", "sigmoid", CH3, "default", 30, 0.1, 5.0, "50k", 0.9781, PV),
    "ch3-init-100-large": ("784-100-10", "sigmoid", CH3, "large", 30, 0.1, 5.0, "50k", 0.9755, PV),
    **{f"ch3-more-data-{n}": ("784-30-10", "sigmoid", CH3, "large", 1_500_000 // n, 0.5, 0.0001 * n,
                              "50k" if n == 50000 else n, value, FV) for n, value in MORE_DATA.items()},
    "ch5-depth-1": ("784-30-10", "sigmoid", CH3, "default", 30, 0.1, 5.0, "50k", 0.9648, PV),
    "ch5-depth-2": ("784-30-30-10", "sigmoid", CH3, "default", 30, 0.1, 5.0, "50k", 0.9690, PV),
    "ch5-depth-3": ("784-30-30-30-10", "sigmoid", CH3, "default", 30, 0.1, 5.0, "50k", 0.9657, PV),
    "ch5-depth-4": ("784-30-30-30-30-10", "sigmoid", CH3, "default", 30, 0.1, 5.0, "50k", 0.9653, PV),
    "ch6-fc": ("784-100-softmax10", "sigmoid", CH6, "network3", 60, 0.1, 0, "50k", 0.9780, TBV),
    "ch6-conv1": ("conv20-100-softmax10", "sigmoid", CH6, "network3", 60, 0.1, 0, "50k", 0.9878, TBV),
    "ch6-conv2": ("conv20-conv40-100-softmax10", "sigmoid", CH6, "network3", 60, 0.1, 0, "50k", 0.9906, TBV),
    "ch6-relu": ("conv20-conv40-100-softmax10", "relu", CH6, "network3", 60, 0.03, 0.1, "50k", 0.9923, TBV),
    "ch6-expanded": ("conv20-conv40-100-softmax10", "relu", CH6, "network3", 60, 0.03, 0.1, "250k", 0.9937, TBV),
    "ch6-fc300": ("conv20-conv40-300-softmax10", "relu", CH6, "network3", 60, 0.03, 0.1, "250k", 0.9946, TBV),
    "ch6-fc1000": ("conv20-conv40-1000-softmax10", "relu", CH6, "network3", 60, 0.03, 0.1, "250k", 0.9943, TBV),
    "ch6-2fc": ("conv20-conv40-100-100-softmax10", "relu", CH6, "network3", 60, 0.03, 0.1, "250k", 0.9943, TBV),
    "ch6-2fc300": ("conv20-conv40-300-300-softmax10", "relu", CH6, "network3", 60, 0.03, 0.1, "250k", 0.9948, TBV),
    "ch6-2fc1000": ("conv20-conv40-1000-1000-softmax10", "relu", CH6, "network3", 60, 0.03, 0.1, "250k", 0.9947,
                    TBV),
    # dropout 0.5 on the inputs of both FC layers and of the softmax: "d" marks a layer's input
    "ch6-dropout": ("conv20-conv40-d1000-d1000-dsoftmax10", "relu", CH6, "network3", 40, 0.03, 0, "250k", 0.9960,
                    TBV),
}


def _network(run: dict) -> str:
    """A run's layers written as BOOK.md writes them (784-30-10; conv20-conv40-100-softmax10)."""
    model = run["model"]
    first = model["layers"][0]["type"]
    parts = [] if first == "conv" else [str(math.prod(model["input_shape"]))]
    for layer in model["layers"]:
        mark = "d" if layer.get("dropout") else ""
        assert layer.get("dropout") in (None, 0, 0.0, 0.5), layer  # the book's only dropout is 0.5
        if layer["type"] == "conv":
            assert (layer.get("kernel", 5), layer.get("pool", 2)) == (5, 2), layer  # 5x5 valid, 2x2 max-pool
            parts.append(f"{mark}conv{layer['filters']}")
        else:
            parts.append(f"{mark}{'softmax' if layer['type'] == 'softmax' else ''}{layer['units']}")
    return "-".join(parts)


def _training_data(run: dict):
    data = run["data"]
    if data["train"] == "shifted":
        assert data["train_limit"] is None
        return "250k"
    assert data["train"] == "train", data
    return "50k" if data["train_limit"] is None else data["train_limit"]


@pytest.fixture(scope="module")
def book_profile():
    return yaml.safe_load(compose(REPO_ROOT, ["profile=book"]))


@pytest.mark.parametrize("book_id", sorted(BOOK_ROWS))
def test_book_profile_runs_are_the_rows_of_book_md(book_profile, book_id):
    """Every setting BOOK.md gives for a row, in the composed book profile: network, activation,
    cost, init, epochs, eta, lambda and its scaling, mini-batch, data, the figure and its metric."""
    run = book_profile["book"][book_id]
    network, activation, cost, init, epochs, eta, lmbda, data, value, metric = BOOK_ROWS[book_id]
    training = run["training"]
    regularization = training.get("regularization", {"kind": "none", "lmbda": 0.0})
    chapter = int(book_id[2])
    assert _network(run) == network
    assert {layer["activation"] for layer in run["model"]["layers"] if layer["type"] != "softmax"} == {activation}
    assert (run["model"]["cost"], run["model"]["init"]) == (cost, init)
    assert (training["epochs"], training["eta"], training["batch_size"]) == (epochs, eta, 10)
    assert regularization["lmbda"] == pytest.approx(lmbda)
    assert regularization["kind"] == ("l2" if lmbda else "none")
    if chapter == 6:  # network3.py: lambda over the mini-batches, no reshuffling, classic dropout
        assert (regularization["scaling"], training["shuffle"]) == ("network3", False)
        assert training.get("dropout_mode", "classic") == "classic"
    elif lmbda:
        assert regularization["scaling"] == "network2"
    assert _training_data(run) == data
    assert run["book"]["value"] == (pytest.approx(value) if value is not None else None)
    assert run["book"]["metric"] == metric
    assert run["book"]["epochs"] == epochs


def test_the_rows_without_a_table_keep_the_books_words(book_profile):
    """The ensemble (BOOK.md: five ch6-dropout nets, 99.67%) and the early-stopping rule
    (chapter 3: 10 epochs without improvement, halve eta, stop at eta/128)."""
    params = book_profile
    assert (params["ensemble"]["members"], params["ensemble"]["book"]["value"]) == ("ch6-dropout", 0.9967)
    assert len(params["book"]["ch6-dropout"]["seeds"]) == 5
    schedule = params["book"]["ch3-early-stop"]["training"]["eta_schedule"]
    assert (schedule["kind"], schedule["patience"], schedule["min_fraction"]) == ("halve_on_plateau", 10, 1 / 128)
    assert sorted(i for i in BOOK_IDS if i not in BOOK_ROWS) == sorted(
        ["ch3-dropout", "ch3-early-stop", "ch3-rotated", "ch5-speed-2", "ch5-speed-3", "ch5-speed-4"])


@pytest.mark.parametrize("profile", ["book", "quick"])
def test_the_baselines_are_chapter_1s_as_book_md_gives_them(profile):
    """BOOK.md's baselines table, transcribed by hand: darkness 22.25% (2,225 / 10,000); the SVM
    (scikit-learn's 2015 SVC(): RBF, C=1, gamma=1/784) on all 50,000 images, 94.35% test and
    94.48% validation. Both profiles the report sets beside the book train it so."""
    import numpy

    from pipeline.baselines import resolve_gamma

    params = yaml.safe_load(compose(REPO_ROOT, [f"profile={profile}"]))
    svm = params["baselines"]["svm"]
    assert (svm["kernel"], svm["C"], svm["train_limit"]) == ("rbf", 1.0, None)
    assert resolve_gamma(svm["gamma"], numpy.zeros((3, 784))) == 1 / 784
    figures = {row: (b["value"], b["split"], b["source"]) for row, b in params["report"]["baselines"].items()}
    assert figures == {"B-darkness": (0.2225, "test", "darkness"), "B-svm": (0.9435, "test", "svm"),
                       "B-svm-val": (0.9448, "validation", "svm")}


def test_quick_profile_gives_chapter_6_the_epochs_read_off_the_book_runs():
    """conf/profile/quick.yaml is profile fast where a chapter 6 row needs more epochs for
    every set of seeds to land inside its tolerance, with those epochs (the measured file
    scripts/epochs_to_tolerance.py wrote from fast's run), and nothing else changed."""
    quick = yaml.safe_load(compose(REPO_ROOT, ["profile=quick"]))
    fast = yaml.safe_load(compose(REPO_ROOT, ["profile=fast"]))
    measured = REPO_ROOT / "docs" / "measurements" / "2026-11-30-cpu-book" / "epochs-to-tolerance.json"
    rows = json.loads(measured.read_text())
    needed = {r["id"]: r["first_inside"] for r in rows}
    # the file reads fast's cuts (and was checked against fast's run)
    assert all(r["profile_epochs"] == fast["book"][r["id"]]["training"]["epochs"] for r in rows)
    assert quick["profile"] == dict(fast["profile"], name="quick", about=quick["profile"]["about"])
    assert {k: v for k, v in quick.items() if k not in ("book", "profile")} == \
        {k: v for k, v in fast.items() if k not in ("book", "profile")}
    for book_id, run in quick["book"].items():
        epochs = fast["book"][book_id]["training"]["epochs"]
        if book_id in needed:
            epochs = max(epochs, needed[book_id])
        assert run == dict(fast["book"][book_id], training=dict(
            fast["book"][book_id]["training"], epochs=epochs)), book_id
    assert {i for i in needed if needed[i] > fast["book"][i]["training"]["epochs"]} == {
        i for i in quick["book"] if quick["book"][i] != fast["book"][i]}


@pytest.mark.parametrize("path,value,fragment", [
    (("training", "eta"), "fast", "book.ch1-30.training.eta: expected a number"),
    (("training", "epochs_typo"), 3, "book.ch1-30.training.epochs_typo: unknown key"),
    (("model", "layers", 0, "activation"), "relux", "book.ch1-30.model.layers[0].activation"),
    (("book", "metric"), "best_guess", "book.ch1-30.book.metric: unknown"),
    (("book", "runs"), 0, "book.ch1-30.book.runs"),
    (("book", "runs"), "three", "book.ch1-30.book.runs: expected int"),
    (("book", "runs"), True, "book.ch1-30.book.runs: expected int, got bool"),
    (("chapter",), True, "book.ch1-30.chapter: expected int, got bool"),
    (("book", "value"), "high", "book.ch1-30.book.value: expected float or null"),
    (("book", "epochs"), 0, "book.ch1-30.book.epochs: expected the book's number of epochs"),
    (("book", "epochs"), 2.5, "book.ch1-30.book.epochs: expected int"),
    (("seeds",), [1, "two"], "book.ch1-30.seeds"),
    (("colour",), "red", "book.ch1-30.colour: unknown key"),
])
def test_bad_run_configs_are_rejected_naming_the_key(path, value, fragment):
    run = copy.deepcopy(yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["book"]["ch1-30"])
    node = run
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(SettingError) as info:
        validate_run("ch1-30", run)
    assert fragment in str(info.value)
    assert type(info.value) is SettingError  # a run's setting, not the engine's SpecError


@pytest.mark.parametrize("change,fragment", [
    (lambda run: run["book"].update(speeds=[0.07]), "book.ch5-speed-2.book.speeds: expected 2 positive"),
    (lambda run: run["book"].update(speeds=[0.07, -0.31]), "book.ch5-speed-2.book.speeds"),
    (lambda run: run["book"].update(speeds="fast"), "book.ch5-speed-2.book.speeds: expected list"),
    (lambda run: run["training"].pop("monitor"), "book.ch5-speed-2.training.monitor.gradient_norms"),
])
def test_bad_speeds_of_learning_are_rejected_naming_the_key(change, fragment):
    run = copy.deepcopy(yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["book"]["ch5-speed-2"])
    validate_run("ch5-speed-2", copy.deepcopy(run))
    change(run)
    with pytest.raises(SettingError) as info:
        validate_run("ch5-speed-2", run)
    assert fragment in str(info.value)
    assert type(info.value) is SettingError  # a run's setting, not the engine's SpecError


def test_hydra_app_selects_one_run_and_applies_shortcuts():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from pipeline.train import run_config

    def selected(*overrides):
        with initialize_config_dir(str(REPO_ROOT / "conf"), version_base=None):
            cfg = hydra_compose("train", overrides=["book=ch6-relu", *overrides],
                                return_hydra_config=True)
        choice = cfg.hydra.runtime.choices["book"]
        plain = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        return run_config(OmegaConf.to_container(plain, resolve=True), choice)

    book_id, run = selected("seed=2", "eta=0.1")
    assert book_id == "ch6-relu" and run["seeds"] == [2] and run["training"]["eta"] == 0.1
    assert run["training"]["epochs"] == 25  # the quick profile's cut
    assert selected("profile=book")[1]["training"]["epochs"] == 60


def test_a_seed_out_of_the_engines_range_is_rejected_before_any_worker_starts():
    # network2's streams take 32-bit seeds: the run's spec checked only with training.seed
    # passed, and the seed's worker failed later, its error lost in a broken process pool
    run = copy.deepcopy(yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["book"]["ch1-30"])
    run["training"]["rng"] = {"kind": "network2"}
    run["seeds"] = [1, 2**32]
    with pytest.raises(SettingError, match=r"book\.ch1-30\.seeds: must be in 0\.\.4294967295"):
        validate_run("ch1-30", run)


def test_a_setting_error_survives_the_trip_from_a_seeds_worker_process():
    import pickle

    from pipeline.nn.spec import SpecError

    for error in (SettingError("book.ch1-30.seeds", "a seed is listed twice"),
                  SpecError("training.eta", "must be > 0")):
        back = pickle.loads(pickle.dumps(error))
        assert (type(back), str(back), back.path) == (type(error), str(error), error.path)
