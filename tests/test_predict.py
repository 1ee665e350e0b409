"""Pictures of digits made into MNIST images (pipeline.data.digits), and the predict command
(pipeline.predict) on networks trained on real MNIST."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import figures, predict
from pipeline.data.digits import (
    BOX,
    SIDE,
    DigitImageError,
    needs_inverting,
    network_input,
    read_digit,
    read_grey,
    to_mnist,
)
from pipeline.data.mnist import load_dataset
from pipeline.nn import build_network, fit, save_model
from pipeline.nn.io import FINAL_EPOCH_WEIGHTS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow")


def ink_box(image: np.ndarray) -> tuple[int, int]:
    """Height and width of the bounding box of the pixels above 10% of the brightest."""
    rows = np.flatnonzero(image.max(axis=1) > 0.1 * image.max())
    cols = np.flatnonzero(image.max(axis=0) > 0.1 * image.max())
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    image = image.astype(np.float64)
    total = image.sum()
    return (image.sum(axis=1) @ np.arange(image.shape[0]) / total,
            image.sum(axis=0) @ np.arange(image.shape[1]) / total)


def pen_on_paper(h: int = 300, w: int = 240) -> np.ndarray:
    """Dark ink on white paper, off centre: a tall ellipse 160 high and 60 wide, and a bar."""
    yy, xx = np.mgrid[:h, :w]
    ink = ((yy - 120) / 80.0) ** 2 + ((xx - 80) / 30.0) ** 2 <= 1.0
    ink |= (yy >= 190) & (yy < 200) & (xx >= 60) & (xx < 140)
    return np.where(ink, 0.05, 0.97)


# -- making an MNIST image ----------------------------------------------------------------------
def test_a_28_by_28_picture_is_taken_as_it_is():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (SIDE, SIDE)).astype(np.uint8)
    image[0, :] = 0  # a dark border: nothing to invert
    assert np.array_equal(to_mnist(image / 255.0, "no"), image)
    assert np.array_equal(to_mnist(image / 255.0, "yes"), 255 - image)


def test_dark_ink_on_light_paper_is_inverted_scaled_into_the_box_and_centred():
    paper = pen_on_paper()
    assert needs_inverting(paper) and not needs_inverting(1.0 - paper)
    image = to_mnist(paper)
    assert image.dtype == np.uint8 and image.shape == (SIDE, SIDE)
    assert image[0].max() == 0 and image[:, 0].max() == 0  # black background
    h, w = ink_box(image)
    assert h == BOX and 7 <= w <= 12  # the longer side fills the box; the aspect ratio is kept
    cy, cx = centre_of_mass(image)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    assert np.array_equal(image, to_mnist(1.0 - paper))  # white on black: left as it is


def test_invert_can_be_forced_either_way():
    paper = pen_on_paper()
    assert np.array_equal(to_mnist(paper, "yes"), to_mnist(paper))
    # not inverted, the paper is the "ink": it fills the box, a bright square with a hole
    assert to_mnist(paper, "no").mean() > to_mnist(paper).mean()


def test_a_blank_picture_or_an_unknown_invert_is_refused():
    with pytest.raises(DigitImageError, match="blank"):
        to_mnist(np.ones((50, 50)))
    with pytest.raises(ValueError, match="allowed: auto, yes, no"):
        to_mnist(pen_on_paper(), "maybe")


def test_pictures_are_read_from_files_transparent_as_white(tmp_path):
    paper = pen_on_paper()
    grey = tmp_path / "grey.png"
    Image.fromarray(np.round(paper * 255).astype(np.uint8)).save(grey)
    assert np.array_equal(read_digit(grey), to_mnist(np.round(paper * 255) / 255))
    # a drawing with a transparent background: black strokes, alpha marks the ink
    alpha = np.where(paper < 0.5, 255, 0).astype(np.uint8)
    rgba = np.dstack([np.zeros_like(alpha)] * 3 + [alpha])
    transparent = tmp_path / "transparent.png"
    Image.fromarray(rgba).save(transparent)
    assert needs_inverting(read_grey(transparent))
    assert ink_box(read_digit(transparent))[0] == BOX
    assert read_grey(transparent).min() == 0.0
    # 16-bit greyscale and colour pictures
    deep = tmp_path / "deep.png"
    Image.fromarray(np.round(paper * 65535).astype(np.uint16)).save(deep)
    assert np.abs(read_grey(deep) - paper).max() < 1e-4
    colour = tmp_path / "colour.png"
    Image.fromarray(np.dstack([np.round(paper * 255).astype(np.uint8)] * 3)).save(colour)
    assert np.array_equal(read_digit(colour), read_digit(grey))


def test_unreadable_or_missing_pictures_are_named(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(DigitImageError, match="notes.png: not a picture Pillow can read"):
        read_digit(text)
    with pytest.raises(DigitImageError, match="nothing.png: no such file"):
        read_digit(tmp_path / "nothing.png")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((40, 40), 255, np.uint8)).save(blank)
    with pytest.raises(DigitImageError, match="blank.png: the picture is blank"):
        read_digit(blank)
    small_blank = tmp_path / "small_blank.png"  # already 28 x 28: taken as it is, but empty
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(small_blank)
    with pytest.raises(DigitImageError, match="small_blank.png: the picture is blank"):
        read_digit(small_blank)
    with pytest.raises(DigitImageError, match="a folder, not a picture"):
        read_digit(tmp_path)
    huge = tmp_path / "huge.png"  # 14,000 x 14,000 one-bit pixels in a few kilobytes
    Image.new("1", (14_000, 14_000), 1).save(huge)
    with pytest.raises(DigitImageError, match="huge.png: too large to read safely"):
        read_digit(huge)


# -- the command, with networks trained on real MNIST -------------------------------------------
FC30 = {"model": {"input_shape": [784], "cost": "cross_entropy", "init": "default",
                  "layers": [{"type": "fc", "units": 30}, {"type": "fc", "units": 10}]},
        "training": {"epochs": 1, "batch_size": 10, "eta": 0.5, "seed": 1}}


@pytest.fixture(scope="module")
def trained(mnist_prepared_dir, tmp_path_factory):
    """Two 784-30-10 nets trained one epoch on the book's 50,000 images (seeds 1 and 2), saved
    as training saves them (one with the run's history beside it, as in a checkout)."""
    sets = {name: load_dataset(mnist_prepared_dir / f"{name}.npz") for name in ("train", "validation", "test")}
    root = tmp_path_factory.mktemp("checkout")
    folders, nets = [], []
    for seed in (1, 2):
        spec = {"model": FC30["model"], "training": dict(FC30["training"], seed=seed)}
        net = build_network(spec)
        history = fit(net, spec["training"], (sets["train"].x, sets["train"].y),
                      (sets["validation"].x, sets["validation"].y), (sets["test"].x, sets["test"].y), log=None)
        folder = root / "models" / "fc30" / f"seed{seed}"
        save_model(folder, net, spec, metadata={"seed": seed, "weights": FINAL_EPOCH_WEIGHTS,
                                                "metrics": history.summary()})
        folders.append(folder)
        nets.append(net)
    return {"folders": folders, "nets": nets, "test": sets["test"], "prepared": mnist_prepared_dir,
            "images": np.load(mnist_prepared_dir / "test.npz")["images"]}


@pytest.mark.realdata
def test_mnist_test_digits_saved_as_pictures_get_the_networks_own_answers(trained, tmp_path, capsys):
    """28 x 28 pictures are read back bit for bit and scaled as the prepared sets are."""
    images, net = trained["images"][:40], trained["nets"][0]
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"digit{i}.png")
        Image.fromarray(image).save(paths[-1])
    assert np.array_equal(network_input(np.stack([read_digit(p) for p in paths])), trained["test"].x[:40])
    assert predict.main([str(trained["folders"][0]), "--image", *map(str, paths)]) == 0
    lines = capsys.readouterr().out.splitlines()
    answers = [int(line.split(": ", 1)[1].split(" ", 1)[0]) for line in lines]
    assert answers == net.predict(trained["test"].x[:40]).tolist()
    assert "probability" not in lines[0] and "output" in lines[0]  # sigmoid outputs


@pytest.mark.realdata
def test_digits_drawn_large_dark_on_light_are_recognised(trained, tmp_path, capsys):
    """The first 200 test digits, inverted and enlarged to 112 x 112 on a wider sheet: made
    back into MNIST images they stay close to the originals and are recognised about as well."""
    images, labels = trained["images"][:200], trained["test"].y[:200]
    net = trained["nets"][0]
    remade = []
    for image in images:
        large = np.asarray(Image.fromarray(255 - image).resize((112, 112), Image.Resampling.BICUBIC))
        sheet = np.full((160, 140), 255, np.uint8)
        sheet[30:142, 10:122] = large
        remade.append(to_mnist(sheet / 255.0))
    remade = np.stack(remade)
    difference = np.abs(remade.astype(float) - images).mean() / 255
    # measured 0.024 on the first 500 (centring on pixel 13.5 instead of 14 gave 0.058, and the
    # originals shifted one pixel differ from themselves by 0.065)
    assert difference < 0.035, difference
    original = float(np.mean(net.predict(network_input(images)) == labels))
    again = float(np.mean(net.predict(network_input(remade)) == labels))
    assert original > 0.9 and again >= original - 0.05, (original, again)


@pytest.mark.realdata
def test_test_set_scores_match_the_runs_record_and_several_nets_vote(trained, capsys):
    folders = [str(f) for f in trained["folders"]]
    assert predict.main([folders[0], "--test", "--prepared", str(trained["prepared"])]) == 0
    out = capsys.readouterr().out
    accuracy = trained["nets"][0].accuracy(trained["test"].x, trained["test"].y)
    assert f"test {accuracy:.2%}" in out and "for these weights: the same" in out
    assert predict.main([*folders, "--test", "--prepared", str(trained["prepared"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    # the vote of two, written out: where they disagree, the smaller label (plurality_vote's tie rule)
    first, second = (net.predict(trained["test"].x) for net in trained["nets"])
    errors = int(np.sum(np.where(first == second, first, np.minimum(first, second)) != trained["test"].y))
    assert errors != int(np.sum(first != trained["test"].y))  # the vote is not the first net's alone
    n = len(trained["test"].y)
    ties = first != second  # two voters tie wherever they disagree
    on_ties = int(np.sum(ties & (np.minimum(first, second) != trained["test"].y)))
    assert len(lines) == 3 and lines[2] == (f"the vote of 2: test {(n - errors) / n:.2%} ({errors} errors, "
                                            f"{on_ties} of them on the {int(ties.sum())} tied votes, "
                                            "which go to the smaller digit)")


@pytest.mark.realdata
def test_a_record_that_the_weights_do_not_give_is_reported(trained, capsys):
    net = trained["nets"][0]
    accuracy = net.accuracy(trained["test"].x, trained["test"].y)
    metadata = {"weights": FINAL_EPOCH_WEIGHTS, "metrics": {"epochs_run": 2, "best_epoch": 0}}
    lines, agree = predict.score_test([predict.Voter("n", net, metadata, {1: accuracy})], trained["prepared"])
    assert agree and lines[0].endswith("the same")
    lines, agree = predict.score_test([predict.Voter("n", net, metadata, {1: accuracy - 1e-4})],
                                      trained["prepared"])
    assert not agree and lines[0].endswith("DIFFERENT")


@pytest.mark.realdata
def test_a_smoke_run_is_compared_on_the_test_images_it_evaluated(trained):
    """The smoke profile evaluates on the first 500 test images (profile.limits), so its
    record is compared with those, not with all 10,000; an unknown profile is not compared."""
    net = trained["nets"][0]
    first = net.accuracy(trained["test"].x[:500], trained["test"].y[:500])
    metadata = {"profile": "smoke", "weights": FINAL_EPOCH_WEIGHTS, "metrics": {"epochs_run": 1, "best_epoch": 0,
                                                                               "test_at_best_validation": first}}
    lines, agree = predict.score_test([predict.Voter("n", net, metadata, {})], trained["prepared"])
    assert agree and "on the first 500 test images for these weights: the same" in lines[0]
    unknown = dict(metadata, profile="my-own")
    lines, agree = predict.score_test([predict.Voter("n", net, unknown, {})], trained["prepared"])
    assert agree and "recorded" not in lines[0]
    # a model that records how many it evaluated on is compared on those, whatever its profile
    recorded = dict(unknown, test_examples=500)
    lines, agree = predict.score_test([predict.Voter("n", net, recorded, {})], trained["prepared"])
    assert agree and "on the first 500 test images for these weights: the same" in lines[0]


@pytest.mark.realdata
def test_show_draws_what_the_nets_saw(trained, tmp_path, capsys, monkeypatch):
    picture = tmp_path / "seven.png"
    Image.fromarray(np.round(pen_on_paper() * 255).astype(np.uint8)).save(picture)
    shown = tmp_path / "seen.png"
    folders = [str(f) for f in trained["folders"]]
    drawn = []
    real_drawing = figures.digits_with_answers
    monkeypatch.setattr(figures, "digits_with_answers",
                        lambda *args: drawn.append(args) or real_drawing(*args))
    assert predict.main([*folders, "--image", str(picture), "--show", str(shown)]) == 0
    line = capsys.readouterr().out.splitlines()[0]  # "<path>: <answer> (the vote of 2 nets: a b)"
    assert line.startswith(f"{picture}: ") and "(the vote of 2 nets: " in line
    answer = line[len(f"{picture}: "):].split(" ")[0]
    # what is drawn is the MNIST image the nets read, named, with the answer printed
    images, names, answers = drawn[0]
    np.testing.assert_array_equal(images, read_digit(picture)[None])
    assert (list(names), list(answers)) == (["seven.png"], [answer])
    assert Image.open(shown).size[0] > 100


@pytest.mark.realdata
def test_show_into_a_folder_it_cannot_write_names_the_option(trained, tmp_path, capsys, monkeypatch):
    picture = tmp_path / "seven.png"
    Image.fromarray(np.round(pen_on_paper() * 255).astype(np.uint8)).save(picture)

    def read_only_folder(fig, path):  # what writing into a folder without write permission raises
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(figures, "save_figure", read_only_folder)
    shown = tmp_path / "locked" / "seen.png"
    folders = [str(f) for f in trained["folders"]]
    assert predict.main([*folders, "--image", str(picture), "--show", str(shown)]) == predict.EXIT_STATUS
    err = capsys.readouterr().err
    assert f"predict: --show: cannot write {shown}: Permission denied; give a path in a folder" in err


@pytest.mark.realdata
def test_a_model_logged_in_mlflow_is_fetched_by_its_run_id(trained, tmp_path, monkeypatch, capsys):
    from pipeline import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    net = trained["nets"][0]
    with tracking.start_run("fc30") as run:
        run.log_model(trained["folders"][:1], net, step=0)
    with tracking.start_run("vote") as vote:  # the ensemble's run: one model of its nets
        vote.log_model(trained["folders"], net, step=0)
    with tracking.start_run("no-model") as bare:
        bare.log_text("x", "notes.txt")
    assert predict.main(["--run", run.run_id, "--test", "--prepared", str(trained["prepared"])]) == 0
    accuracy = trained["nets"][0].accuracy(trained["test"].x, trained["test"].y)
    assert f"MLflow run {run.run_id} (fc30): test {accuracy:.2%}" in capsys.readouterr().out
    assert predict.main(["--run", vote.run_id, "--test", "--prepared", str(trained["prepared"])]) == 0
    out = capsys.readouterr().out
    for i, member in enumerate(trained["nets"]):
        member_accuracy = member.accuracy(trained["test"].x, trained["test"].y)
        assert f"MLflow run {vote.run_id} (vote, net {i + 1} of 2): test {member_accuracy:.2%}" in out, out
    assert predict.main(["--run", bare.run_id, "--test"]) == 2
    assert "logged no model (its artifacts: notes.txt); training runs that finish do" in capsys.readouterr().err
    with pytest.raises(KeyboardInterrupt), tracking.start_run("stopped") as stopped:
        raise KeyboardInterrupt  # Ctrl-C: the run ends KILLED, and logged no model
    assert predict.main(["--run", stopped.run_id, "--test"]) == 2
    assert "(its artifacts: none); it ended KILLED: a stopped or failed run logs none" in capsys.readouterr().err
    assert predict.main(["--run", "0" * 32, "--test"]) == 2
    assert "not in the tracking store" in capsys.readouterr().err
    # a clone that restored the run (pipeline.restore_runs) finds it by its first id too; this
    # copy holds the net as runs logged before MLflow models did: a plain artifact folder
    with tracking.start_run("fc30", tags=tracking.restored_tags({}, "1" * 32)) as restored:
        restored.log_artifacts(trained["folders"][0], "model")
    assert predict.main(["--run", "1" * 32, "--test", "--prepared", str(trained["prepared"])]) == 0
    assert (f"MLflow run {'1' * 32} (fc30, restored here as {restored.run_id}): test {accuracy:.2%}"
            in capsys.readouterr().out)


def test_the_runs_record_of_the_final_weights_comes_from_model_json_or_the_history(tmp_path):
    """model.json keeps the test accuracy at the best-validation epoch only; for final weights
    from a later epoch the record is the run's per-epoch history (history.csv or MLflow's)."""
    metadata = {"seed": 2, "weights": FINAL_EPOCH_WEIGHTS,
                "metrics": {"epochs_run": 3, "best_epoch": 1, "test_at_best_validation": 0.97}}
    folder = tmp_path / "models" / "ch1-30" / "seed2"
    folder.mkdir(parents=True)
    (tmp_path / "results" / "ch1-30").mkdir(parents=True)
    (tmp_path / "results" / "ch1-30" / "history.csv").write_text(
        "seed,epoch,test_accuracy\n1,2,0.91\n2,0,0.95\n2,1,0.97\n2,2,0.96\n")
    history = predict.history_test_accuracy(folder, 2)
    assert history == {0: 0.95, 1: 0.97, 2: 0.96}
    assert predict.recorded_final_test(predict.Voter("x", None, metadata, history)) == 0.96
    assert predict.recorded_final_test(predict.Voter("x", None, metadata, {})) is None
    best_is_last = dict(metadata, metrics=dict(metadata["metrics"], best_epoch=2))
    assert predict.recorded_final_test(predict.Voter("x", None, best_is_last, {})) == 0.97
    interrupted = dict(metadata, weights="interrupted during epoch 2")
    assert predict.recorded_final_test(predict.Voter("x", None, interrupted, history)) is None
    assert predict.history_test_accuracy(tmp_path / "elsewhere" / "seed2", 2) == {}


def test_the_test_set_is_the_checkouts_from_any_folder_of_it(monkeypatch):
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root / "docs")
    assert predict.parse_args(["m", "--test"]).prepared == root / "data" / "prepared"
    assert predict.parse_args(["m", "--test", "--prepared", "p"]).prepared == Path("p")


def test_weights_a_stopped_run_saved_are_said_to_be_so(tmp_path, capsys):
    folders = []
    for seed, weights in ((1, FINAL_EPOCH_WEIGHTS), (2, "interrupted during epoch 2")):
        spec = {"model": FC30["model"], "training": dict(FC30["training"], seed=seed)}
        folders.append(tmp_path / f"seed{seed}")
        save_model(folders[-1], build_network(spec), spec, metadata={"seed": seed, "weights": weights})
    predict.load_voters(folders, [], tmp_path)
    err = capsys.readouterr().err
    assert f"predict: {folders[1]} holds the weights of a run that did not finish (interrupted during epoch 2)" in err
    assert str(folders[0]) not in err


def test_nets_with_different_numbers_of_classes_cannot_vote(tmp_path):
    from pipeline.nn import ModelFileError

    folders = []
    for units in (10, 12):
        model = dict(FC30["model"], layers=[{"type": "fc", "units": 30}, {"type": "fc", "units": units}])
        spec = {"model": model, "training": FC30["training"]}
        folders.append(tmp_path / f"classes{units}")
        save_model(folders[-1], build_network(spec), spec, metadata={"seed": 1, "weights": FINAL_EPOCH_WEIGHTS})
    with pytest.raises(ModelFileError, match=r"different numbers of classes \[10, 12\]; they cannot vote"):
        predict.load_voters(folders, [], tmp_path)


def test_a_net_of_the_smoke_profile_is_said_to_be_a_pipeline_check(tmp_path, capsys):
    """By the images it learned from, where its model records them: a smoke run whose limits
    were lifted to the whole set is not a pipeline check."""
    folders = []
    for seed, profile, trained_on in ((1, "quick", 50000), (2, "smoke", 500), (3, "smoke", None),
                                      (4, "smoke", 50000)):
        spec = {"model": FC30["model"], "training": dict(FC30["training"], seed=seed)}
        folders.append(tmp_path / f"seed{seed}")
        metadata = {"seed": seed, "weights": FINAL_EPOCH_WEIGHTS, "profile": profile}
        if trained_on is not None:  # a model saved before 2026-12-06 records none: its profile says
            metadata["train_examples"] = trained_on
        save_model(folders[-1], build_network(spec), spec, metadata=metadata)
    predict.load_voters(folders, [], tmp_path)
    err = capsys.readouterr().err
    for folder in folders[1:3]:
        assert (f"predict: {folder} was trained under the smoke profile: 500 training images and one epoch per "
                f"run: a test of the pipeline. Its numbers say nothing about the book's. Expect many wrong") in err
    assert str(folders[0]) not in err and str(folders[3]) not in err


def test_a_net_whose_training_a_profiles_limits_cut_is_said_so(tmp_path, capsys):
    """By the cut its model records (since 2026-12-07), whatever its profile: the smoke profile's
    own cut gives its about, limits set by hand on the quick profile the cut itself."""
    cases = {"whole": {}, "smoke": {"epochs": 1, "epochs_asked": 30, "train_examples": 500},
             "images": {"train_examples": 1000}, "epochs": {"epochs": 1, "epochs_asked": 30},
             "malformed": "1,000 images"}
    folders = {}
    for seed, (name, cut) in enumerate(cases.items(), start=1):
        spec = {"model": FC30["model"], "training": dict(FC30["training"], seed=seed)}
        folders[name] = tmp_path / name
        trained_on = cut.get("train_examples", 50000) if isinstance(cut, dict) else 50000
        save_model(folders[name], build_network(spec), spec, metadata={
            "seed": seed, "weights": FINAL_EPOCH_WEIGHTS, "profile": "smoke" if name == "smoke" else "quick",
            "train_examples": trained_on, "profile_cut": cut})
    predict.load_voters(list(folders.values()), [], tmp_path)
    err = capsys.readouterr().err
    assert (f"predict: {folders['smoke']} was trained under the smoke profile: 500 training images and one "
            f"epoch per run: a test of the pipeline. Its numbers say nothing about the book's. Expect many "
            f"wrong answers") in err
    assert (f"predict: {folders['images']} was trained under the quick profile: its limits cut its training "
            f"to 1,000 training images, so it is not the net its run describes.") in err
    assert (f"predict: {folders['epochs']} was trained under the quick profile: its limits cut its training "
            f"to 1 of its run's 30 epochs, so it is not the net its run describes.") in err
    assert str(folders["whole"]) not in err and str(folders["malformed"]) not in err


@pytest.mark.parametrize("damage", [b"seed,era,test_accuracy\n2,0,0.95\n", b"seed,epoch,test_accuracy\n2,0,abc\n",
                                    b"\x81\x82\x00garbage"], ids=["renamed column", "not a number", "binary"])
def test_a_damaged_history_is_named_and_left_out_not_fatal(tmp_path, capsys, damage):
    """The run's record is only compared with --test's score: a damaged history.csv says so,
    with how to restore it, and predictions go on without it."""
    folder = tmp_path / "models" / "ch1-30" / "seed2"
    folder.mkdir(parents=True)
    (tmp_path / "results" / "ch1-30").mkdir(parents=True)
    (tmp_path / "results" / "ch1-30" / "history.csv").write_bytes(damage)
    assert predict.history_test_accuracy(folder, 2) == {}
    err = capsys.readouterr().err
    assert "results/ch1-30/history.csv cannot be read" in err
    assert "`dvc checkout results/ch1-30/history.csv` restores it" in err and "dvc repro train@ch1-30" in err


def test_typed_digits_script_writes_thirty_pictures_that_make_mnist_images(tmp_path):
    script = Path(__file__).resolve().parents[1] / "scripts" / "typed_digits.py"
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True)
    paths = sorted(tmp_path.glob("*.png"))
    assert len(paths) == 30 and paths[0].name == "mono-0.png"
    for path in paths:
        assert Image.open(path).size == (200, 200)
        assert max(ink_box(read_digit(path))) == BOX


def test_typed_digits_leave_no_half_written_picture(tmp_path, monkeypatch, load_script):
    """A stop in the middle of a picture leaves the old one (here none) and no part of the new."""
    from matplotlib.figure import Figure

    script = load_script("typed_digits.py")
    (tmp_path / "sans-0.png").write_bytes(b"the old picture")

    def savefig_stopped_halfway(fig, target, **kwargs):
        Path(target).write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", savefig_stopped_halfway)
    with pytest.raises(KeyboardInterrupt):
        script.write_digits(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["sans-0.png"]
    assert (tmp_path / "sans-0.png").read_bytes() == b"the old picture"


def test_typed_digits_into_a_folder_it_may_not_write_is_a_message(tmp_path, lock_folders, capsys, load_script):
    script = load_script("typed_digits.py")
    lock_folders()
    assert script.run_command("typed_digits", lambda: script.main([str(tmp_path / "typed")])) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"typed_digits: no permission for {tmp_path / 'typed'}: Permission denied.")
    assert not list((tmp_path / "typed").iterdir())


def test_bad_command_lines_and_missing_models_are_explained(tmp_path, capsys):
    with pytest.raises(SystemExit):
        predict.main(["--test"])
    assert "at least one model folder or --run" in capsys.readouterr().err
    picture = tmp_path / "seven.png"
    picture.write_bytes(b"")
    for show, said in ((tmp_path, "is a folder; give the picture's file name"), (picture / "x.png", "is under a file")):
        with pytest.raises(SystemExit):
            predict.main([str(tmp_path), "--image", str(picture), "--show", str(show)])
        assert f"--show: {show} {said}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict.main([str(tmp_path)])
    assert "--image PICTURE... or --test" in capsys.readouterr().err
    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(SystemExit):
        predict.main(["--image", "seven.png", str(tmp_path)])
    assert "model folders before --image" in capsys.readouterr().err
    assert predict.main([str(tmp_path / "models" / "nothing"), "--test"]) == 2
    assert "model.json: not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict.main([str(tmp_path), "--test", "--blas-threads", "0"])
    assert "--blas-threads: expected a count >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("argv, threads", [([], 1), (["--blas-threads", "2"], 2)])
def test_the_nets_run_on_the_blas_threads_asked_for(tmp_path, monkeypatch, argv, threads):
    """One thread unless told: where the other core is busy, a second OpenBLAS thread's
    waiting made scoring two conv nets on the test set twice as slow (2.9 s against 1.5 s)."""
    from threadpoolctl import threadpool_info

    seen = []

    def score_test(voters, prepared):  # what the nets would run on: every BLAS library's threads
        seen.extend(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")
        return [], True

    monkeypatch.setattr(predict, "load_voters", lambda *args: [])
    monkeypatch.setattr(predict, "score_test", score_test)
    assert predict.main([str(tmp_path), "--test", *argv]) == 0
    assert seen and set(seen) == {threads}, seen


def test_the_runs_record_is_this_seeds_own_whatever_follows_it_in_the_history(tmp_path):
    folder = tmp_path / "models" / "ch1-30" / "seed2"
    folder.mkdir(parents=True)
    (tmp_path / "results" / "ch1-30").mkdir(parents=True)
    (tmp_path / "results" / "ch1-30" / "history.csv").write_text(
        "seed,epoch,test_accuracy\n2,0,0.95\n2,1,0.97\n3,0,0.10\n3,1,0.20\n")
    assert predict.history_test_accuracy(folder, 2) == {0: 0.95, 1: 0.97}


def test_a_net_whose_weights_do_not_give_its_record_exits_1(tmp_path, capsys):
    """``--test`` as a check in a script: the exit status says whether the record held."""
    from pipeline.data.mnist import save_images

    rng = np.random.default_rng(0)
    save_images(tmp_path / "prepared" / "test.npz", rng.integers(0, 256, (30, 28, 28)).astype(np.uint8),
                rng.integers(0, 10, 30).astype(np.uint8))
    net = build_network(FC30)
    test = load_dataset(tmp_path / "prepared" / "test.npz")
    accuracy = net.accuracy(test.x, test.y)
    for recorded, status in ((accuracy, 0), (accuracy + 1 / 30, 1)):
        metadata = {"seed": 1, "weights": FINAL_EPOCH_WEIGHTS, "test_examples": 30,
                    "metrics": {"epochs_run": 1, "best_epoch": 0, "test_at_best_validation": recorded}}
        save_model(tmp_path / "net", net, FC30, metadata=metadata)
        assert predict.main([str(tmp_path / "net"), "--test", "--prepared", str(tmp_path / "prepared")]) == status
        out, err = capsys.readouterr()
        assert ("DIFFERENT" in out) == bool(status)
        assert ("differs from its run's record" in err) == bool(status)


@pytest.mark.parametrize("profile", ["../../../elsewhere/x", "/tmp/x", ["smoke"]])
def test_a_models_profile_names_a_profile_of_conf_not_another_file(profile, tmp_path):
    """metadata.profile comes from a model.json anyone may have made: not a path to read."""
    (tmp_path / "x.yaml").write_text("profile:\n  about: a file outside conf/profile\n  limits: {train_examples: 5}\n")
    if isinstance(profile, str) and profile.startswith("/"):
        profile = str(tmp_path / "x")
    elif isinstance(profile, str):
        profile = "../" * 30 + str(tmp_path / "x").lstrip("/")
    assert predict.cut_profile_about(profile) is None
    assert predict.evaluated_examples({"profile": profile}) is False  # not known here
    assert predict.cut_profile_about("smoke") is not None  # the checkout's own still is
