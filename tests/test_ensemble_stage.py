"""The ensemble stage votes exactly the member run's seeds, each trained to its last epoch."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.nn import build_network, save_model
from pipeline.stages import ensemble

SPEC = {"model": {"input_shape": [784], "cost": "log_likelihood",
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


def _save(seed: int, weights: str, epochs_run: int = 1) -> None:
    save_model(f"models/ch6-dropout/seed{seed}", build_network(SPEC, seed=seed), SPEC,
               metadata={"weights": weights, "metrics": {"epochs_run": epochs_run}})


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


def test_the_vote_is_scored_and_its_epochs_are_the_members(stage_dir, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{stage_dir}/mlflow.db")
    rng = np.random.default_rng(0)
    Path("data/prepared").mkdir(parents=True)
    for split in ("validation", "test"):
        np.savez(f"data/prepared/{split}.npz", images=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
                 labels=rng.integers(0, 10, 20))
    _save(1, "final epoch", epochs_run=3)
    _save(2, "final epoch", epochs_run=3)
    ensemble.main()
    result = json.loads(Path("results/ch6-ensemble/metrics.json").read_text())
    assert result["ours_book_metric"]["rule"] == "vote of 2"
    assert result["test_errors"] == 20 - round(result["test_accuracy"] * 20)
    # the report's epochs column: "3 of 40", the members' epochs beside the book's
    assert (result["epochs"], result["book"]["epochs"], result["book"]["value"]) == (3, 40, 0.9967)
