"""Classify digits with trained networks: pictures of your own, or the book's test set.

    python -m pipeline.predict models/ch6-relu/seed1 --image my-seven.png
    python -m pipeline.predict models/ch6-dropout/seed1 models/ch6-dropout/seed2 \\
        models/ch6-dropout/seed3 --image a.png b.png          # several nets: they vote
    python -m pipeline.predict models/ch6-relu/seed1 --test  # the test set, against the run's record
                                                             # (exit status 1 if they differ)
    python -m pipeline.predict --run <MLflow run id> --image my-seven.png   # a model MLflow logged
    python -m pipeline.predict models/ch6-relu/seed1 --image my-seven.png --show seen.png

A picture is made into an MNIST image first (``pipeline.data.digits``: inverted if it is dark
ink on light paper, its ink scaled into a 20 x 20 box and centred by its centre of mass);
``--show`` draws what the networks saw. Model folders are what training writes
(``models/<id>/seed<N>/``: ``weights.npz`` and ``model.json``, checked on loading).
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pipeline import params
from pipeline.data.digits import INVERT, DigitImageError, network_input, read_digit
from pipeline.data.mnist import load_dataset, split_file
from pipeline.errors import EXIT_STATUS
from pipeline.nn import ModelFileError, load_model, plurality_vote, score_vote, to_numpy
from pipeline.nn.io import FINAL_EPOCH_WEIGHTS


class Voter(NamedTuple):
    name: str  # where it came from: the folder, or the MLflow run
    network: object
    metadata: dict  # model.json's: the run's summary, seed, which weights
    test_accuracy: dict[int, float]  # the run's record of test accuracy per epoch, where found


def load_voters(model_dirs: list[Path], run_ids: list[str], download_to: Path) -> list[Voter]:
    """Every model named, from its folder or (``run_ids``) downloaded from MLflow."""
    voters = []
    for folder in model_dirs:
        loaded = load_model(folder)
        voters.append(Voter(str(folder), loaded.network, loaded.metadata,
                            history_test_accuracy(folder, loaded.metadata.get("seed"))))
    if run_ids:
        from pipeline import tracking  # imported here: MLflow only when a run is named

        for run_id in run_ids:
            logged = tracking.download_model(run_id, download_to / run_id)
            restored = f", restored here as {logged.run_id}" if logged.run_id != run_id else ""
            for i, folder in enumerate(logged.folders):  # several: the nets of an ensemble's run
                loaded = load_model(folder)
                which = f", net {i + 1} of {len(logged.folders)}" if len(logged.folders) > 1 else ""
                voters.append(Voter(f"MLflow run {run_id} ({logged.run_name}{restored}{which})",
                                    loaded.network, loaded.metadata, logged.test_accuracy))
    classes = {v.network.classes for v in voters}
    if len(classes) > 1:
        raise ModelFileError(f"the models give different numbers of classes {sorted(classes)}; they cannot vote")
    for voter in voters:
        weights = voter.metadata.get("weights")
        if weights is not None and weights != FINAL_EPOCH_WEIGHTS:  # saved by a stopped run
            print(f"predict: {voter.name} holds the weights of a run that did not finish "
                  f"({weights}), not those of its last epoch", file=sys.stderr)
        if (about := cut_training_about(voter.metadata)) is not None:  # e.g. smoke's: a pipeline check
            print(f"predict: {voter.name} was trained under the {voter.metadata['profile']} profile: {about}",
                  file=sys.stderr)
    return voters


def history_test_accuracy(model_dir: Path, seed) -> dict[int, float]:
    """The test accuracy per epoch of seed ``seed`` in the run's ``results/<id>/history.csv``,
    when ``model_dir`` is ``models/<id>/seed<N>`` of a checkout that holds it; else empty.
    The record is only compared with ``--test``'s score: a damaged one is named on stderr,
    with how to restore it, and left out, instead of stopping the predictions."""
    model_dir = model_dir.resolve()
    if model_dir.parent.parent.name != params.MODELS:
        return {}
    history = params.run_folders(model_dir.parent.name, model_dir.parents[2])[1] / "history.csv"
    if not history.is_file():
        return {}
    try:
        with open(history, newline="", encoding="utf-8") as fh:
            return {int(row["epoch"]): float(row["test_accuracy"]) for row in csv.DictReader(fh)
                    if row.get("seed") == str(seed) and row.get("test_accuracy")}
    except (KeyError, ValueError, TypeError, csv.Error) as error:  # UnicodeDecodeError is a ValueError
        print(f"predict: {history} cannot be read ({type(error).__name__}: {error}), so the run's record "
              f"of test accuracy is not compared; `dvc checkout {history.relative_to(model_dir.parents[2])}` "
              f"restores it, `dvc repro train@{model_dir.parent.name}` makes it anew", file=sys.stderr)
        return {}


def outputs(voter: Voter, x: np.ndarray) -> np.ndarray:
    """The network's output activations for ``x`` (a softmax net's are probabilities)."""
    return to_numpy(voter.network.forward(voter.network.xp.asarray(x, dtype=voter.network.dtype)))


def describe(voter: Voter, a: np.ndarray) -> str:
    """The net's choice for one picture and its runner-up, with their output activations."""
    kind = "probability" if voter.network.output_layer.kind == "softmax" else "output"
    first, second = np.argsort(a)[::-1][:2]
    return f"{first} ({kind} {a[first]:.4f}; next {second}, {a[second]:.2g})"


def classify_images(voters: list[Voter], paths: list[Path], invert: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Each picture as an MNIST image, the answers (the vote's, for several nets), and one line
    per picture saying how the nets came to it."""
    images = np.stack([read_digit(p, invert) for p in paths])
    x = network_input(images)
    activations = [outputs(v, x) for v in voters]
    labels = [a.argmax(axis=1) for a in activations]
    voted = plurality_vote(labels, voters[0].network.classes)
    lines = []
    for i, path in enumerate(paths):
        if len(voters) == 1:
            lines.append(f"{path}: {describe(voters[0], activations[0][i])}")
        else:
            votes = " ".join(str(int(label[i])) for label in labels)
            lines.append(f"{path}: {voted[i]} (the vote of {len(voters)} nets: {votes})")
    return images, voted, lines


def recorded_final_test(voter: Voter) -> float | None:
    """The test accuracy the run recorded for these weights (its last epoch), if known: from
    ``model.json`` when the last epoch was the best-validation one, else from the run's
    per-epoch record (its history.csv in a checkout, or MLflow's metric history)."""
    metrics = voter.metadata.get("metrics") or {}
    epochs_run = metrics.get("epochs_run")
    last = epochs_run - 1 if isinstance(epochs_run, int) and not isinstance(epochs_run, bool) else -1
    if last < 0 or voter.metadata.get("weights") != FINAL_EPOCH_WEIGHTS:
        return None
    if metrics.get("best_epoch") == last:
        return metrics.get("test_at_best_validation")
    return voter.test_accuracy.get(last)


def _profile_section(profile: str | None) -> dict | None:
    """conf/profile/<profile>.yaml's ``profile`` mapping, or None where this checkout has no such file.
    ``profile`` comes from a model.json, anyone's: only a plain name, not a path to another file."""
    if not isinstance(profile, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", profile):
        return None
    path = params.CONF / "profile" / f"{profile}.yaml"
    if not path.is_file():
        return None
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path)).get("profile") or {}


def cut_profile_about(profile: str | None, trained_on: int | None = None) -> str | None:
    """What a profile that trains on a cut of the training set (``limits.train_examples``; the
    smoke profile's 500 images) says of itself (its ``about``), or None for one that trains on
    the whole set, or that this checkout does not have, or where the net's ``trained_on``
    (its model's ``train_examples``, recorded since 2026-12-06) is more than that cut: the
    profile's limits were changed for that run."""
    section = _profile_section(profile)
    cut = None if section is None else (section.get("limits") or {}).get("train_examples")
    if not cut or (trained_on is not None and trained_on > cut):
        return None
    return " ".join(str(section.get("about") or "").split()) or \
        f"{section['limits']['train_examples']} training images."


PIPELINE_CHECK = ("Expect many wrong answers; the quick profile (`python -m pipeline.config && dvc repro`) "
                  "trains the book's nets.")


def cut_training_about(metadata: dict) -> str | None:
    """What cut a net's training, where its profile's limits did: the profile's ``about`` where
    they are the profile's own (the smoke profile), else the cut itself (limits set by hand on
    another profile); None for a net trained as its run asks. A model saved before 2026-12-07
    records no ``profile_cut``: only its profile's file can say (``cut_profile_about``)."""
    if "profile_cut" in metadata:
        recorded = metadata["profile_cut"]
        if not recorded or not isinstance(recorded, dict):
            return None  # nothing cut (a malformed record, in anyone's model.json, says no more)
    else:
        recorded = None  # saved before the record: only its profile's file can say
    if (about := cut_profile_about(metadata.get("profile"), metadata.get("train_examples"))) is not None:
        return f"{about} {PIPELINE_CHECK}"
    if recorded is None:
        return None
    what = []
    if isinstance(recorded.get("train_examples"), int):
        what.append(f"{recorded['train_examples']:,} training images")
    if isinstance(recorded.get("epochs"), int) and isinstance(recorded.get("epochs_asked"), int):
        what.append(f"{recorded['epochs']} of its run's {recorded['epochs_asked']} epochs")
    return (f"its limits cut its training to {' and '.join(what)}, so it is not the net its run "
            f"describes." if what else None)


def evaluated_examples(metadata: dict) -> int | None | bool:
    """How many test images the run that saved a model evaluated on: its ``test_examples``
    (recorded since 2026-12-04); for a model saved before, its profile's
    ``limits.eval_examples`` in conf/profile/<name>.yaml (None: all; smoke: the first 500), or
    False for a profile this checkout does not have (its record cannot be compared). A model
    that names no profile was evaluated on all of them."""
    if metadata.get("test_examples") is not None:
        return metadata["test_examples"]
    profile = metadata.get("profile")
    if not profile:
        return None
    section = _profile_section(profile)
    if section is None:
        return False
    return (section.get("limits") or {}).get("eval_examples")


def score_test(voters: list[Voter], prepared: Path) -> tuple[list[str], bool]:
    """Each net's test accuracy (beside the run's record of it) and, for several, the vote's;
    and whether every record found agrees with what the weights give now."""
    test = load_dataset(split_file(prepared, "test"))
    lines, labels, agree = [], [], True
    for voter in voters:
        predicted = voter.network.predict(test.x)
        labels.append(predicted)
        correct = int(np.sum(predicted == test.y))
        line = f"{voter.name}: test {correct / len(test):.2%} ({len(test) - correct} errors)"
        recorded = recorded_final_test(voter)
        n = evaluated_examples(voter.metadata)
        if recorded is not None and n is not False:
            # the run measured its profile's test set: all of it, or its first n images
            n = min(n or len(test), len(test))
            ours = int(np.sum(predicted[:n] == test.y[:n]))
            same = round(recorded * n) == ours
            agree &= same
            line += (f"; the run recorded {recorded:.2%}" + (f" on the first {n} test images" if n < len(test) else "")
                     + f" for these weights: {'the same' if same else 'DIFFERENT'}"
                     + (f" ({ours / n:.2%} here)" if n < len(test) else ""))
        lines.append(line)
    if len(voters) > 1:
        vote = score_vote(labels, test.y, voters[0].network.classes)
        lines.append(f"the vote of {len(voters)}: test {vote['accuracy']:.2%} ({vote['errors']} errors, "
                     f"{vote['errors_on_ties']} of them on the {vote['ties']} tied votes, "
                     "which go to the smaller digit)")
    return lines, agree


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.predict", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("models", nargs="*", type=Path, help="model folders (models/<id>/seed<N>)")
    parser.add_argument("--run", action="append", default=[], metavar="RUN_ID",
                        help="a training run's id in MLflow: its logged model (repeatable)")
    parser.add_argument("--image", nargs="+", type=Path, default=[], help="pictures of digits")
    parser.add_argument("--invert", choices=INVERT, default="auto",
                        help="make dark ink on light paper white on black (default: auto, from the border)")
    parser.add_argument("--show", type=Path, help="draw the MNIST images the nets saw, with their answers, here")
    parser.add_argument("--test", action="store_true", help="score the nets on the book's test set")
    parser.add_argument("--blas-threads", type=int, default=1, metavar="N",
                        help="BLAS threads (default 1: a second one saves little, and where the other "
                             "core is busy OpenBLAS's waiting threads make it twice as slow or worse)")
    prepared = params.conf_data()["prepared_dir"]
    parser.add_argument("--prepared", type=Path,
                        help=f"folder of test.npz (default: {prepared} in the repository, from `dvc repro prepare`)")
    args = parser.parse_args(argv)
    if args.prepared is None:  # the checkout's, from any folder of it (model paths are the user's own)
        args.prepared = (params.repo_root() or Path(".")) / prepared
    if not args.models and not args.run:
        if any((path / "model.json").is_file() for path in args.image):
            parser.error("name the model folders before --image, which takes every path after it")
        parser.error("name at least one model folder or --run")
    if not args.image and not args.test:
        parser.error("give --image PICTURE... or --test (or both)")
    if args.show and not args.image:
        parser.error("--show draws the pictures of --image")
    if args.show and args.show.is_dir():
        parser.error(f"--show: {args.show} is a folder; give the picture's file name, e.g. {args.show / 'answers.png'}")
    if args.show and any(parent.exists() and not parent.is_dir() for parent in args.show.parents):
        parser.error(f"--show: {args.show} is under a file, not a folder")
    if args.blas_threads < 1:
        parser.error(f"--blas-threads: expected a count >= 1, got {args.blas_threads}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from threadpoolctl import threadpool_limits

    try:
        with tempfile.TemporaryDirectory(prefix="mlflow-models-") as downloads, threadpool_limits(args.blas_threads):
            voters = load_voters(args.models, args.run, Path(downloads))
            if args.image:
                images, answers, lines = classify_images(voters, args.image, args.invert)
                print("\n".join(lines))
                if args.show:
                    from pipeline.figures import digits_with_answers, save_figure

                    names = [p.name for p in args.image]
                    try:
                        save_figure(digits_with_answers(images, names, [str(a) for a in answers]), args.show)
                    except OSError as error:  # a folder that is not writable, a full disk
                        raise OSError(f"--show: cannot write {args.show}: {error.strerror or error}; "
                                      "give a path in a folder you can write to") from error
                    print(f"wrote {args.show}")
            if args.test:
                lines, agree = score_test(voters, args.prepared)
                print("\n".join(lines))
                if not agree:
                    print("predict: a net's test accuracy differs from its run's record", file=sys.stderr)
                    return 1
    except (ModelFileError, DigitImageError, LookupError, OSError, ValueError) as error:
        print(f"predict: {error}", file=sys.stderr)
        return EXIT_STATUS
    return 0


if __name__ == "__main__":
    sys.exit(main())
