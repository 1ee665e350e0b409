"""The ensemble stage votes exactly the member run's seeds, each trained to its last epoch."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.data.mnist import Dataset, scale_pixels
from pipeline.nn import build_network, load_model, save_model
from pipeline.stages import ensemble

# "large" init: untrained nets that answer differently from image to image (with the default,
# each answers nearly always the same digit), so that a vote differs from each member
SPEC = {"model": {"input_shape": [784], "cost": "log_likelihood", "init": "large",
                  "layers": [{"type": "fc", "units": 8}, {"type": "softmax", "units": 10}]},
        "training": {"epochs": 1, "batch_size": 10, "eta": 0.1}}


@pytest.fixture
def stage_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = {"ensemble": {"id": "ch6-ensemble", "members": "ch6-dropout", "chapter": 6, "title": "t",
                           "what_changed": "w", "book": {"value": 0.9967, "metric": "ensemble_test"}},
              "data": {"prepared_dir": "data/prepared"}, "profile": {"name": "test", "limits": {}},
              "book": {"ch6-dropout": {"seeds": [1, 2], "book": {"epochs": 40}}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def _save(seed: int, weights: str, epochs_run: int = 1, book_id: str = "ch6-dropout", folder_seed=None) -> None:
    metadata = {"book_id": book_id, "seed": seed, "weights": weights, "metrics": {"epochs_run": epochs_run}}
    if epochs_run is None:
        del metadata["metrics"]["epochs_run"]
    save_model(f"models/ch6-dropout/seed{folder_seed or seed}", build_network(SPEC, seed=seed), SPEC,
               metadata=metadata)


@pytest.mark.parametrize("member, message", [
    ({"book_id": "ch6-relu"},
     "models/ch6-dropout/seed2 holds the net of run 'ch6-relu', seed 2, not 'ch6-dropout' seed 2"),
    ({"seed": 1, "folder_seed": 2}, "models/ch6-dropout/seed2 holds the net of run 'ch6-dropout', seed 1, not"),
    ({"seed": 2, "epochs_run": None}, "models/ch6-dropout/seed2/model.json: metadata.metrics.epochs_run is missing"),
], ids=["another run's net", "another seed's net", "no epochs"])
def test_a_member_folder_holding_another_net_is_refused(stage_dir, capsys, member, message):
    _save(1, "final epoch")
    _save(member.get("seed", 2), "final epoch", **{k: v for k, v in member.items() if k != "seed"})
    with pytest.raises(SystemExit) as stopped:
        ensemble.main()
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "dvc repro train@ch6-dropout" in err and "Traceback" not in err
    assert not Path("results/ch6-ensemble/metrics.json").exists()


def test_a_results_folder_it_cannot_write_is_named_before_the_vote_is_tracked(
        stage_dir, capsys, monkeypatch, lock_folders):
    """Not a FINISHED MLflow run for every retry of a stage that then cannot write its metrics."""
    _save(1, "final epoch")
    _save(2, "final epoch")
    lock_folders(lambda folder: folder.name == "ch6-ensemble")
    monkeypatch.setattr(ensemble.tracking, "start_run", lambda *a, **k: pytest.fail("tracked"))
    with pytest.raises(SystemExit) as stopped:
        ensemble.main()
    assert stopped.value.code == 2
    assert "no permission for results/ch6-ensemble: Permission denied" in capsys.readouterr().err


def test_a_missing_member_is_named(stage_dir, capsys):
    _save(1, "final epoch")
    _save(3, "final epoch")  # not one of the run's seeds: not a member
    with pytest.raises(SystemExit) as stopped:
        ensemble.main()
    assert stopped.value.code == 2
    assert "missing: ['models/ch6-dropout/seed2']" in capsys.readouterr().err


def test_an_ensemble_of_a_run_that_is_not_in_the_book_is_named(stage_dir, capsys):
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["ensemble"]["members"] = "ch6-dropuot"
    Path("params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(SystemExit) as stopped:
        ensemble.main()
    assert stopped.value.code == 2
    assert "ensemble.members: 'ch6-dropuot' is not a run in params.yaml's book" in capsys.readouterr().err


def test_an_interrupted_member_is_refused(stage_dir, capsys):
    _save(1, "final epoch")
    _save(2, "interrupted during epoch 1")
    with pytest.raises(SystemExit) as stopped:
        ensemble.main()
    assert stopped.value.code == 2
    assert "seed2'] hold the weights of an interrupted run" in capsys.readouterr().err


def _vote(predictions: list[np.ndarray]) -> np.ndarray:
    """The plurality vote, written out: the most-voted label, the smallest on a tie."""
    return np.array([min(set(column), key=lambda label: (-list(column).count(label), label))
                     for column in zip(*predictions)])


def test_the_vote_is_scored_and_its_epochs_are_the_members(stage_dir, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{stage_dir}/mlflow.db")
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["book"]["ch6-dropout"]["seeds"] = [1, 2, 3]
    # a profile's limit caps what is there, as in training: 500 of sets of 60 is all 60
    params["profile"]["limits"] = {"eval_examples": 500}
    Path("params.yaml").write_text(yaml.safe_dump(params))
    for seed in (1, 2, 3):
        _save(seed, "final epoch", epochs_run=3)
    nets = [load_model(f"models/ch6-dropout/seed{seed}").network for seed in (1, 2, 3)]
    rng = np.random.default_rng(0)
    Path("data/prepared").mkdir(parents=True)
    expected = {}
    # labels: one member's answers (seed 1's on the test set, seed 2's on validation), so that
    # the vote of all three, one member alone, and the other split all score differently
    for split, right in (("validation", 1), ("test", 0)):
        images = rng.integers(0, 256, (60, 28, 28), dtype=np.uint8)
        answers = [net.predict(scale_pixels(images)) for net in nets]
        np.savez(f"data/prepared/{split}.npz", images=images, labels=answers[right].astype(np.uint8))
        expected[split] = int(np.sum(_vote(answers) != answers[right]))
        three_ways = np.array([len(set(column)) == 3 for column in zip(*answers)])  # three voters tie 1-1-1
        expected[f"{split}_ties"] = (int(three_ways.sum()),
                                     int(np.sum(three_ways & (_vote(answers) != answers[right]))))
        assert 0 < expected[split] and len({tuple(a) for a in answers}) == 3  # the test can tell
    assert expected["validation"] != expected["test"]
    ensemble.main()
    result = json.loads(Path("results/ch6-ensemble/metrics.json").read_text())
    assert result["ours_book_metric"]["rule"] == "vote of 3"
    assert (result["validation_errors"], result["test_errors"]) == (expected["validation"], expected["test"])
    assert result["test_accuracy"] == pytest.approx((60 - expected["test"]) / 60)
    # the difference from the book's 99.67% is the test accuracy's, not validation's
    assert result["difference"] == pytest.approx(result["test_accuracy"] - 0.9967)
    assert result["ours_book_metric"]["value"] == result["test_accuracy"]
    for split in ("validation", "test"):
        assert (result[f"{split}_ties"], result[f"{split}_errors_on_ties"]) == expected[f"{split}_ties"]
    assert result["test_ties"] > 0
    assert result["test_member_accuracies"][0] == 1.0  # seed 1 set the test labels
    # the report's epochs column: "3 of 40", the members' epochs beside the book's
    assert (result["epochs"], result["book"]["epochs"], result["book"]["value"]) == (3, 40, 0.9967)


def test_the_vote_is_scored_on_the_profiles_images_and_tracked_as_the_ensembles_own_run(stage_dir, monkeypatch):
    """The smoke profile's members were evaluated on the first ``eval_examples`` images: so is
    their vote. The run in MLflow is the ensemble's (named and tagged by its id), and
    metrics.json points at it; the epochs are the longest member's."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{stage_dir}/mlflow.db")
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["profile"]["limits"] = {"eval_examples": 20}
    Path("params.yaml").write_text(yaml.safe_dump(params))
    for seed, epochs_run in ((1, 2), (2, 3)):
        _save(seed, "final epoch", epochs_run=epochs_run)
    nets = [load_model(f"models/ch6-dropout/seed{seed}").network for seed in (1, 2)]
    rng = np.random.default_rng(1)
    Path("data/prepared").mkdir(parents=True)
    for split in ("validation", "test"):
        images = rng.integers(0, 256, (60, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, 60).astype(np.uint8)
        np.savez(f"data/prepared/{split}.npz", images=images, labels=labels)
        if split == "test":
            voted = _vote([net.predict(scale_pixels(images)) for net in nets])
            errors = int(np.sum(voted[:20] != labels[:20]))
            assert errors != int(np.sum(voted != labels))  # the test can tell 20 from 60
    ensemble.main()
    result = json.loads(Path("results/ch6-ensemble/metrics.json").read_text())
    assert result["test_errors"] == errors and result["test_accuracy"] == pytest.approx((20 - errors) / 20)
    assert result["epochs"] == 3
    client = MlflowClient(tracking_uri=f"sqlite:///{stage_dir}/mlflow.db")
    [run] = client.search_runs([client.get_experiment_by_name("nielsen-mnist").experiment_id])
    assert result["mlflow_run_ids"] == [run.info.run_id] and run.info.status == "FINISHED"
    assert (run.info.run_name, run.data.tags["book_id"]) == ("ch6-ensemble", "ch6-ensemble")
    assert run.data.metrics["test_accuracy"] == pytest.approx(result["test_accuracy"])
    # named as a training run's: the book's figure and the difference from it; no chapter or
    # epochs among the numbers; the seeds that voted and the profile's limits among the params
    assert run.data.metrics["book_value"] == 0.9967
    assert run.data.metrics["difference_vs_book"] == pytest.approx(result["test_accuracy"] - 0.9967)
    assert not {"chapter", "epochs", "difference"} & set(run.data.metrics)
    assert (run.data.params["member_seeds"], run.data.params["limits.eval_examples"]) == ("[1, 2]", "20")
    drawn = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "confusion_matrix.png", "misclassified.png"} <= drawn
    # the vote as an MLflow model: the members' nets, predicting their vote, with the vote's numbers
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    test = np.load("data/prepared/test.npz")
    assert np.array_equal(model.predict(scale_pixels(test["images"]).astype(nets[0].dtype)), voted)
    [listed] = client.search_logged_models([run.info.experiment_id])
    assert {m.key: m.value for m in listed.metrics}["test_accuracy"] == pytest.approx(result["test_accuracy"])


def test_the_runs_figures_are_of_the_vote_not_of_one_member(monkeypatch):
    """The confusion matrix is the vote's, and the misclassified digits are the ones the
    vote got wrong, each shown with the vote's answer."""
    from pipeline import vote

    nets = [build_network(SPEC, seed=seed) for seed in (1, 2, 3)]
    images = scale_pixels(np.random.default_rng(0).integers(0, 256, (60, 28, 28), dtype=np.uint8))
    answers = [net.predict(images) for net in nets]
    labels, voted = answers[0], _vote(answers)
    wrong = voted != labels
    assert 0 < wrong.sum() < len(labels)  # the test can tell the vote from its first member
    drawn = {}
    monkeypatch.setattr(vote.figures, "confusion_matrix", lambda y, p, *a: drawn.setdefault("confusion", (y, p)))
    monkeypatch.setattr(vote.figures, "misclassified_digits", lambda x, y, p: drawn.setdefault("wrong", (x, y, p)))

    class Run:
        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    vote.log_vote(Run(), {}, nets, [], answers, Dataset(images, labels))
    assert np.array_equal(drawn["confusion"][0], labels) and np.array_equal(drawn["confusion"][1], voted)
    x, y, p = drawn["wrong"]
    assert np.array_equal(x, images[wrong]) and np.array_equal(y, labels[wrong]) and np.array_equal(p, voted[wrong])


def test_the_runs_metrics_are_the_votes_scores_on_both_splits():
    """The ensemble run's MLflow metrics: the vote's scores on validation and on test (numbers
    only), and the book's figure with the difference from it."""
    from pipeline.vote import run_metrics

    result = {"id": "e", "chapter": 6, "epochs": 3, "validation_accuracy": 0.5, "validation_errors": 5,
              "test_accuracy": 0.75, "test_ties": 2, "test_member_accuracies": [0.7, 0.6],
              "book": {"value": 0.8, "metric": "ensemble_test"}}
    assert run_metrics(result) == {"validation_accuracy": 0.5, "validation_errors": 5, "test_accuracy": 0.75,
                                   "test_ties": 2, "book_value": 0.8, "difference_vs_book": -0.05}


def test_a_vote_of_one_net_is_refused(stage_dir, capsys):
    """One net's answers are no vote: the ensemble needs the nets of at least two seeds."""
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["book"]["ch6-dropout"]["seeds"] = [1]
    Path("params.yaml").write_text(yaml.safe_dump(params))
    _save(1, "final epoch")
    with pytest.raises(SystemExit) as stopped:
        ensemble.main()
    assert stopped.value.code == 2
    assert "needs the ch6-dropout nets of seeds [1] (at least 2); missing: none" in capsys.readouterr().err
