"""The ensemble stage votes exactly the member run's seeds, each trained to its last epoch."""

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
              "book": {"ch6-dropout": {"seeds": [1, 2]}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def _save(seed: int, weights: str) -> None:
    save_model(f"models/ch6-dropout/seed{seed}", build_network(SPEC), SPEC, metadata={"weights": weights})


def test_a_missing_member_is_named(stage_dir):
    _save(1, "final epoch")
    _save(3, "final epoch")  # not one of the run's seeds: not a member
    with pytest.raises(SystemExit, match=r"missing: \['models/ch6-dropout/seed2'\]"):
        ensemble.main()


def test_an_interrupted_member_is_refused(stage_dir):
    _save(1, "final epoch")
    _save(2, "interrupted during epoch 1")
    with pytest.raises(SystemExit, match=r"seed2'\] hold the weights of an interrupted run"):
        ensemble.main()
