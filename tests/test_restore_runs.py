"""Runs restored by DVC, logged again into another machine's MLflow store as they were first logged."""

import csv
import io
import json
import os
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from test_experiment import RUN as TINY  # the tests folder is on sys.path, as for tests/nn/nnhelpers

from pipeline import experiment, restore_runs, tracking

# test_experiment's tiny run, monitoring the training set, with the book's run replayed beside it
RUN = dict(TINY, model=dict(TINY["model"], init="large"),
           training=dict(TINY["training"], monitor={"training_cost": True, "training_accuracy": True}))
RUN["replay"] = {"script": "overfitting.py", "seed": 12345678, "rng": {"kind": "network2"},
                 "settings_digest": ""}
RUN["replay"]["settings_digest"] = experiment.settings_digest(RUN, 60)
PARAMS = {
    "profile": {"name": "test", "limits": {}, "replay": True},
    "data": {"prepared_dir": "data/prepared", "expanded_dir": "data/expanded", "n_train": 60},
    "book": {"tiny": RUN},
    "ensemble": {"id": "tiny-ensemble"},
    "baselines": {"out_dir": "results/baselines"},
}


def _said(capsys) -> str:
    """What the command printed, on stdout and stderr."""
    out, err = capsys.readouterr()
    return out + err


def _store(path):
    client = MlflowClient(tracking_uri=f"sqlite:///{path}")
    experiment_ = client.get_experiment_by_name("nielsen-mnist")
    runs = client.search_runs([experiment_.experiment_id]) if experiment_ else []
    return client, {r.info.run_id: r for r in runs}


TRAINED_AT = "a" * 40  # the commit the fixture's runs are trained at


@pytest.fixture
def trained(workdir, monkeypatch):
    """The tiny run trained (two seeds and the book's run replayed) into the store ``mlflow.db``,
    its code at commit TRAINED_AT; after it, this machine's code is at another commit."""
    git = {"rev-parse": TRAINED_AT, "status": " M x.py"}
    monkeypatch.setattr(tracking, "_git", lambda *args: git[args[0]])
    metrics = experiment.train_entry("tiny", RUN, PARAMS["data"], PARAMS["profile"], "models/tiny",
                                     "results/tiny", log=lambda _: None)
    git["rev-parse"] = "b" * 40
    return metrics


def test_restored_runs_hold_what_the_first_runs_held(trained, workdir, monkeypatch):
    original, first = _store(workdir / "mlflow.db")
    assert len(first) == 3
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir}/elsewhere.db")
    lines = []
    done = restore_runs.restore(PARAMS, log=lines.append)
    assert (done.logged, done.present) == (3, 0)
    assert done.missing == ["baselines", "tiny-ensemble"]  # no outputs of theirs here
    client, restored = _store(workdir / "elsewhere.db")
    assert len(restored) == 3
    by_origin = {r.data.tags["restored_from"]: r for r in restored.values()}
    assert set(by_origin) == set(first)
    for run_id, run in first.items():
        again = by_origin[run_id]
        assert again.info.run_name == run.info.run_name == "tiny" and again.info.status == "FINISHED"
        assert again.data.params == run.data.params
        assert again.data.metrics == run.data.metrics
        for name in ("validation_accuracy", "training_cost", "epoch_seconds"):
            assert ([(m.step, m.value) for m in client.get_metric_history(again.info.run_id, name)]
                    == [(m.step, m.value) for m in original.get_metric_history(run_id, name)]), name
        assert (sorted(a.path for a in client.list_artifacts(again.info.run_id))
                == sorted(a.path for a in original.list_artifacts(run_id)))
        # every tag of the first run but MLflow's of the process that logs it (its script, user,
        # host and pid), the code and machine that trained it included
        of_the_process = {"mlflow.source.name", "mlflow.source.type", "mlflow.user", "mlflow.runName",
                          tracking.HOST_TAG, tracking.PID_TAG}
        assert ({k: v for k, v in again.data.tags.items() if k not in of_the_process | {"restored_from"}}
                == {k: v for k, v in run.data.tags.items() if k not in of_the_process})
        assert again.data.tags["mlflow.source.git.commit"] == TRAINED_AT and again.data.tags["git_dirty"] == "true"
        assert "mlflow.source.name" in run.data.tags and "mlflow.source.name" not in again.data.tags
    assert any("the book's run replayed" in line for line in lines)


def test_a_second_restore_and_the_training_store_log_nothing(trained, workdir, monkeypatch):
    done = restore_runs.restore(PARAMS, log=lambda _: None)  # the store that trained them
    assert (done.logged, done.present) == (0, 3)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir}/elsewhere.db")
    assert restore_runs.restore(PARAMS, log=lambda _: None, dry_run=True).logged == 3
    assert not (workdir / "elsewhere.db").exists()  # a dry run logs nothing, and makes no store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir}/other-experiments.db")
    MlflowClient(tracking_uri=f"sqlite:///{workdir}/other-experiments.db").create_experiment("another")
    assert restore_runs.restore(PARAMS, log=lambda _: None, dry_run=True).logged == 3
    assert MlflowClient(tracking_uri=f"sqlite:///{workdir}/other-experiments.db").get_experiment_by_name(
        "nielsen-mnist") is None  # nor the experiment in a store without it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir}/elsewhere.db")
    assert restore_runs.restore(PARAMS, log=lambda _: None).logged == 3
    again = restore_runs.restore(PARAMS, log=lambda _: None)
    assert (again.logged, again.present) == (0, 3)
    assert len(_store(workdir / "elsewhere.db")[1]) == 3


def test_results_of_another_profile_are_left_out_and_said_so(trained, workdir, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir}/elsewhere.db")
    lines = []
    done = restore_runs.restore(dict(PARAMS, profile=dict(PARAMS["profile"], name="quick")), log=lines.append)
    assert (done.logged, done.left_out) == (0, ["tiny"])
    assert any("profile 'test', params.yaml is 'quick'" in line for line in lines)


def test_a_net_trained_with_other_settings_than_params_yaml_is_left_out(trained, workdir, monkeypatch):
    """An edited config not yet run: its params would not be the net's."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir}/elsewhere.db")
    lines = []
    edited = dict(RUN, training=dict(RUN["training"], eta=RUN["training"]["eta"] / 2))
    done = restore_runs.restore(dict(PARAMS, book={"tiny": edited}), log=lines.append)
    assert done.logged == 0 and len(done.left_out) == 3
    assert sum("trained with other settings than params.yaml's book.tiny (training.eta)" in line
               for line in lines) == 3
    assert not _store(workdir / "elsewhere.db")[1]
    lines.clear()  # a data setting edited (the run's metrics.json records them)
    edited = dict(RUN, data=dict(RUN["data"], train_limit=40))
    done = restore_runs.restore(dict(PARAMS, book={"tiny": edited}), log=lines.append)
    assert (done.logged, done.left_out) == (0, ["tiny"])
    assert any("results/tiny/metrics.json was made with other settings than params.yaml's (data.train_limit)" in line
               for line in lines)


def test_a_missing_net_is_named_and_the_other_runs_still_logged(trained, workdir, monkeypatch, capsys):
    import shutil

    import yaml

    (workdir / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir}/elsewhere.db")
    shutil.rmtree(workdir / "models/tiny/seed1")
    assert restore_runs.main([]) == 2
    out, err = capsys.readouterr()
    assert "not logged: tiny seed 1: models/tiny/seed1" in out
    assert "logged 2 run(s)" in out and "not logged, their outputs damaged or missing (see above): tiny seed 1" in err
    assert sorted(r.data.tags["seed"] for r in _store(workdir / "elsewhere.db")[1].values()) == ["12345678", "2"]


def _save_a_net(folder: Path, **metadata) -> None:
    """A 784-10 net saved as a member of the ensemble (the vote's MLflow model holds it)."""
    from pipeline.nn import build_network, save_model, validate_spec

    spec = validate_spec({"model": {"input_shape": [784], "cost": "cross_entropy", "init": "default",
                                    "layers": [{"type": "fc", "units": 10, "activation": "sigmoid"}]},
                          "training": {"epochs": 1, "batch_size": 10, "eta": 0.5}})
    save_model(folder, build_network(spec, seed=1), spec, {"data_digest": "abc", **metadata})


def test_an_ensemble_of_other_limits_is_left_out_and_an_older_one_logged_with_its_nets_seeds(workdir):
    """The stage records the voting seeds and the profile's limits since 2026-12-06: a vote
    scored under other limits than params.yaml's is left out; one of an older stage is logged
    with the seeds its nets record and params.yaml's limits, the test set it is drawn on."""
    from pipeline.atomic import write_json

    for seed in (3, 5):
        _save_a_net(workdir / f"models/m/seed{seed}", seed=seed)
    vote = {"id": "tiny-ensemble", "profile": "test", "members": ["models/m/seed3", "models/m/seed5"],
            "test_accuracy": 0.75, "mlflow_run_ids": ["e" * 32], "book": {"value": 0.8}}
    params = dict(PARAMS, book={}, ensemble={"id": "tiny-ensemble", "chapter": 6, "members": "m"},
                  profile=dict(PARAMS["profile"], limits={"eval_examples": 20}))
    write_json(workdir / "results/tiny-ensemble/metrics.json", dict(vote, limits={"eval_examples": None}))
    lines = []
    assert restore_runs.restore(params, log=lines.append).left_out == ["tiny-ensemble"]
    assert any("its vote was scored under the profile limits {'eval_examples': None}, params.yaml's are "
               "{'eval_examples': 20}" in line for line in lines)
    write_json(workdir / "results/tiny-ensemble/metrics.json", vote)  # an older stage's: neither key
    assert restore_runs.restore(params, log=lambda _: None).logged == 1
    [run] = _store(workdir / "mlflow.db")[1].values()
    assert (run.data.params["member_seeds"], run.data.params["limits.eval_examples"]) == ("[3, 5]", "20")


def test_the_ensemble_and_the_baselines_are_restored_from_the_run_ids_they_record(workdir, monkeypatch):
    from pipeline.atomic import write_json
    _save_a_net(workdir / "models/m/seed1")
    write_json(workdir / "results/tiny-ensemble/metrics.json",
               {"id": "tiny-ensemble", "profile": "test", "members": ["models/m/seed1"], "test_accuracy": 0.75,
                "test_errors": 5, "mlflow_run_ids": ["e" * 32], "trained_with": {"cpu": "elsewhere"},
                "book": {"value": 0.8, "metric": "ensemble_test"}, "epochs": 3, "member_seeds": [1],
                "limits": {"eval_examples": None}})
    baselines_metrics = {
        "darkness": {"test_accuracy": 0.2}, "svm": {"test_accuracy": 0.9, "train_size": 60},
        "mlflow_run_ids": {"B-darkness": "d" * 32, "B-svm": "s" * 32, "svm-sweep": "w" * 32},
        "trained_with": {"mlflow.source.git.commit": "c" * 40}}
    write_json(workdir / "results/baselines/metrics.json", baselines_metrics)
    write_json(workdir / "results/baselines/svm_sweep.json",
               {"points": [{"n": 100, "validation_accuracy": 0.7}]})
    baselines_cfg = {"out_dir": "results/baselines", "svm": {"C": 1.0, "train_limit": None}, "sweep": {"sizes": [100]}}
    params = dict(PARAMS, book={}, ensemble={"id": "tiny-ensemble", "chapter": 6, "members": "m"},
                  baselines=dict(baselines_cfg, sweep={"sizes": [100, 200]}),
                  profile=dict(PARAMS["profile"], limits={"eval_examples": None}))  # as the vote's
    lines = []
    other_sizes = restore_runs.restore(params, log=lines.append)  # the sweep's sizes edited since
    assert other_sizes.left_out == ["B-darkness", "B-svm", "svm-sweep"] and other_sizes.logged == 1
    assert any("other settings than params.yaml's baselines (sweep_sizes)" in line for line in lines)
    # the settings the stage now records, with a C that params.yaml no longer has
    write_json(workdir / "results/baselines/metrics.json",
               dict(baselines_metrics, settings=dict(baselines_cfg, svm={"C": 2.0, "train_limit": None})))
    params = dict(params, baselines=baselines_cfg)
    lines.clear()
    assert restore_runs.restore(params, log=lines.append).left_out == ["B-darkness", "B-svm", "svm-sweep"]
    assert any("other settings than params.yaml's baselines (svm.C)" in line for line in lines)
    write_json(workdir / "results/baselines/metrics.json", dict(baselines_metrics, settings=baselines_cfg))
    done = restore_runs.restore(params, log=lambda _: None)
    assert (done.logged, done.present, done.missing) == (3, 1, [])
    _, runs = _store(workdir / "mlflow.db")
    by_name = {r.info.run_name: r for r in runs.values()}
    # as the stage logs it: the vote's scores, the book's figure and the difference from it
    assert by_name["tiny-ensemble"].data.metrics == {"test_accuracy": 0.75, "test_errors": 5, "book_value": 0.8,
                                                     "difference_vs_book": -0.05}
    assert {k: v for k, v in by_name["tiny-ensemble"].data.params.items() if k.startswith(("member_", "limits"))} \
        == {"member_seeds": "[1]", "limits.eval_examples": "None"}
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    drawn = {a.path for a in client.list_artifacts(by_name["tiny-ensemble"].info.run_id)}
    assert {"config.json", "confusion_matrix.png", "misclassified.png"} <= drawn
    assert by_name["tiny-ensemble"].data.tags["data_digest"] == "abc"
    assert by_name["tiny-ensemble"].data.tags["cpu"] == "elsewhere"
    # and its vote as an MLflow model again, of the member nets DVC restored
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir}/mlflow.db")
    [member] = tracking.download_model(by_name["tiny-ensemble"].info.run_id, workdir / "dl").folders
    assert (member / "weights.npz").read_bytes() == (workdir / "models/m/seed1/weights.npz").read_bytes()
    assert by_name["B-svm"].data.params == {"C": "1.0", "train_limit": "None"}
    assert by_name["B-svm"].data.metrics == {"test_accuracy": 0.9, "train_size": 60}
    assert by_name["B-darkness"].data.tags["mlflow.source.git.commit"] == "c" * 40
    assert by_name["svm-sweep"].data.metrics == {"validation_accuracy_n100": 0.7}
    assert by_name["svm-sweep"].data.tags["chapter"] == "3"
    assert {r.data.tags["restored_from"] for r in runs.values()} == {c * 32 for c in "edsw"}


def test_an_ensemble_whose_second_net_is_missing_is_named_and_logs_nothing(workdir):
    """Its model holds every member net: each is checked before the run is started."""
    from pipeline.atomic import write_json
    _save_a_net(workdir / "models/m/seed1")
    write_json(workdir / "results/tiny-ensemble/metrics.json",
               {"id": "tiny-ensemble", "profile": "test", "members": ["models/m/seed1", "models/m/seed2"],
                "test_accuracy": 0.75, "mlflow_run_ids": ["e" * 32]})
    lines = []
    done = restore_runs.restore(dict(PARAMS, book={}, ensemble={"id": "tiny-ensemble", "chapter": 6, "members": "m"}),
                                log=lines.append)
    assert done.damaged == ["tiny-ensemble"] and done.logged == 0
    assert any(line.startswith("not logged: tiny-ensemble: models/m/seed2") and "dvc repro --pull" in line
               for line in lines), lines
    assert not (workdir / "mlflow.db").exists() or not _store(workdir / "mlflow.db")[1]


def test_an_ensemble_of_another_profile_and_damaged_baselines_log_nothing(workdir, monkeypatch, capsys):
    import yaml

    from pipeline.atomic import write_json

    write_json(workdir / "results/tiny-ensemble/metrics.json",
               {"id": "tiny-ensemble", "profile": "smoke", "members": ["models/m/seed1"], "mlflow_run_ids": ["e" * 32]})
    write_json(workdir / "results/baselines/metrics.json",  # no darkness
               {"svm": {"train_size": 60}, "mlflow_run_ids": {"B-darkness": "d" * 32}})
    write_json(workdir / "results/baselines/svm_sweep.json", {"points": []})
    params = dict(PARAMS, book={}, ensemble={"id": "tiny-ensemble", "chapter": 6, "members": "m"},
                  baselines={"out_dir": "results/baselines", "svm": {"train_limit": None}, "sweep": {"sizes": []}})
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    assert restore_runs.main([]) == 2
    out, err = capsys.readouterr()
    assert "left out tiny-ensemble: its results are of profile 'smoke', params.yaml is 'test'" in out
    assert "results/baselines/metrics.json: not as its stage writes it (no 'darkness')" in out
    assert "not logged, their outputs damaged or missing (see above): baselines" in err
    assert not _store(workdir / "mlflow.db")[1]  # no run left FAILED
    # a metrics.json that names no profile is damaged, not "of profile None"
    write_json(workdir / "results/tiny-ensemble/metrics.json",
               {"id": "tiny-ensemble", "members": ["models/m/seed1"], "mlflow_run_ids": ["e" * 32]})
    assert restore_runs.main([]) == 2
    out, err = capsys.readouterr()
    assert "tiny-ensemble: its metrics.json names no profile (profile: None); run `dvc repro --pull`" in out
    assert "profile=None" not in out + err


def test_the_command_says_what_it_did_and_fails_with_nothing_to_log(workdir, monkeypatch, capsys):
    import yaml

    (workdir / "params.yaml").write_text(yaml.safe_dump({k: v for k, v in PARAMS.items() if k != "ensemble"}))
    assert restore_runs.main([]) == 2  # a hand-edited params.yaml: named, not a KeyError
    assert "restore_runs: ensemble: missing: compose params.yaml with `python -m pipeline.config`" in _said(capsys)
    (workdir / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    assert restore_runs.main([]) == 1  # nothing here at all
    assert "no outputs here for baselines, tiny, tiny-ensemble" in capsys.readouterr().out
    experiment.train_entry("tiny", RUN, PARAMS["data"], PARAMS["profile"], "models/tiny",
                           "results/tiny", log=lambda _: None)
    history = (workdir / "results/tiny/history.csv").read_text()
    (workdir / "results/tiny/history.csv").write_text("epoch\n0\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir}/elsewhere.db")
    assert restore_runs.main([]) == 2
    assert "results/tiny/history.csv: not a run's history" in _said(capsys)
    (workdir / "results/tiny/history.csv").write_text(history)
    metrics = json.loads((workdir / "results/tiny/metrics.json").read_text())
    del metrics["seeds"][0]["mlflow_run_id"]
    (workdir / "results/tiny/metrics.json").write_text(json.dumps(metrics))
    assert restore_runs.main([]) == 2
    assert "results/tiny/metrics.json: not as its stage writes it (no 'mlflow_run_id')" in _said(capsys)
    (workdir / "results/tiny/metrics.json").write_text("[]")
    assert restore_runs.main([]) == 2
    assert "results/tiny/metrics.json: expected a JSON object, got list" in _said(capsys)


def test_two_restores_started_together_log_each_run_once(trained, workdir, monkeypatch):
    """Each once read the store's runs at its start and logged all three: six runs. Both are
    held at the lock until both are there, then let go together."""
    import subprocess
    import sys
    import time

    import yaml

    (workdir / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir}/elsewhere.db")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    logs = [workdir / f"restore{i}.log" for i in range(2)]
    restores = []
    try:
        with tracking.one_at_a_time("restore_runs", lambda _: None):
            for log in logs:
                with log.open("w") as out:
                    restores.append(subprocess.Popen([sys.executable, "-m", "pipeline.restore_runs"], cwd=workdir,
                                                     env=env, stdout=out, stderr=subprocess.STDOUT))
            deadline = time.monotonic() + 120
            while not all("waiting for it to end" in log.read_text() for log in logs):
                assert time.monotonic() < deadline, [log.read_text() for log in logs]
                time.sleep(0.05)
        assert [p.wait(timeout=300) for p in restores] == [0, 0]
    finally:
        for p in restores:
            p.kill()
    said = [log.read_text() for log in logs]
    assert sum("logged 3 run(s)" in s for s in said) == 1 and sum("logged 0 run(s)" in s for s in said) == 1, said
    assert len(_store(workdir / "elsewhere.db")[1]) == 3


def test_a_restore_waits_for_another_one_on_the_same_store_and_says_so(workdir):
    import threading

    said, asked, entered = [], threading.Event(), threading.Event()

    def second():
        with tracking.one_at_a_time("restore_runs", lambda line: (said.append(line), asked.set())):
            entered.set()

    with tracking.one_at_a_time("restore_runs", said.append):
        waiting = threading.Thread(target=second)
        waiting.start()
        assert asked.wait(timeout=60)
        assert not entered.is_set() and len(said) == 1
        assert said[0].startswith(f"another restore_runs is logging into {workdir / 'mlflow.db'}: waiting")
    waiting.join(timeout=60)
    assert entered.is_set()


def test_a_stopped_restore_ends_its_run_killed_and_the_next_call_logs_it_again(trained, workdir, monkeypatch,
                                                                               capsys):
    import yaml

    (workdir / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir}/elsewhere.db")
    with pytest.raises(KeyboardInterrupt), tracking.start_run("tiny"):  # a training run of this store, stopped
        raise KeyboardInterrupt
    first_outcome = experiment.log_seed_outcome

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "log_seed_outcome", stopped)
    assert restore_runs.main([]) == 130
    assert "a run it was logging ended KILLED, and the next call logs it again" in capsys.readouterr().err
    assert [r.info.status for r in _store(workdir / "elsewhere.db")[1].values()] == ["KILLED"] * 2
    monkeypatch.setattr(experiment, "log_seed_outcome", first_outcome)
    deleting = tracking.delete_runs
    monkeypatch.setattr(tracking, "delete_runs", lambda ids: None)  # a call stopped before it deletes
    assert restore_runs.main([]) == 0
    assert "logged 3 run(s)" in capsys.readouterr().out
    assert len(_store(workdir / "elsewhere.db")[1]) == 5
    monkeypatch.setattr(tracking, "delete_runs", deleting)
    assert restore_runs.main(["--dry-run"]) == 0  # changes nothing: the copy cut short stays
    assert len(_store(workdir / "elsewhere.db")[1]) == 5
    capsys.readouterr()
    assert restore_runs.main([]) == 0  # logs nothing, and deletes the copy cut short
    assert "logged 0 run(s)" in capsys.readouterr().out
    # MLflow's soft delete: the UI lists each run once, and the stopped training run still
    client, active = _store(workdir / "elsewhere.db")
    assert sorted(r.info.status for r in active.values()) == ["FINISHED"] * 3 + ["KILLED"]
    assert [r.data.tags.get("restored_from") for r in active.values() if r.info.status == "KILLED"] == [None]
    every = client.search_runs([client.get_experiment_by_name("nielsen-mnist").experiment_id], run_view_type=3)
    assert sorted(r.info.status for r in every) == ["FINISHED"] * 3 + ["KILLED"] * 2


def test_epochs_not_evaluated_leave_cells_empty_and_their_runs_are_still_restored(workdir, monkeypatch):
    """With ``eval_every`` > 1 and the speed of learning monitored, the epochs between
    evaluations record their gradient norms and no accuracies: their other cells of
    history.csv are empty, and each run is restored with the epochs it recorded."""
    run = dict(TINY, training=dict(TINY["training"], eval_every=2, monitor={"gradient_norms": 10}))
    experiment.train_entry("tiny", run, PARAMS["data"], PARAMS["profile"], "models/tiny", "results/tiny",
                           log=lambda _: None)
    rows = list(csv.DictReader(io.StringIO((workdir / "results/tiny/history.csv").read_text())))
    assert any(cell == "" for row in rows for cell in row.values())  # the test can tell
    original, first = _store(workdir / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir}/elsewhere.db")
    done = restore_runs.restore(dict(PARAMS, book={"tiny": run}), log=lambda _: None)
    assert (done.logged, done.damaged) == (2, [])
    client, restored = _store(workdir / "elsewhere.db")
    for again in restored.values():
        run_id = again.data.tags["restored_from"]
        assert ([(m.step, m.value) for m in client.get_metric_history(again.info.run_id, "validation_accuracy")]
                == [(m.step, m.value) for m in original.get_metric_history(run_id, "validation_accuracy")])


def test_a_copy_cut_short_is_deleted_by_the_call_that_logs_its_run_whole(trained, workdir, monkeypatch):
    """A copy a stopped call left KILLED goes with the call that logs its run whole, not one
    call later. (A call stopped before it deleted: the test above.)"""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir}/elsewhere.db")
    logged_whole = experiment.log_seed_outcome

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "log_seed_outcome", stopped)
    with pytest.raises(KeyboardInterrupt):
        restore_runs.restore(PARAMS, log=lambda _: None)
    assert [r.info.status for r in _store(workdir / "elsewhere.db")[1].values()] == ["KILLED"]
    monkeypatch.setattr(experiment, "log_seed_outcome", logged_whole)
    assert restore_runs.restore(PARAMS, log=lambda _: None).logged == 3
    assert sorted(r.info.status for r in _store(workdir / "elsewhere.db")[1].values()) == ["FINISHED"] * 3


def test_a_seed_folder_holding_the_net_of_another_run_is_left_out(trained, workdir, monkeypatch):
    """A seed trained again since the run's metrics.json was written: its net is not the run's
    that metrics.json names, and logging it under that run's id would mix the two."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir}/elsewhere.db")
    model_json = workdir / "models/tiny/seed2/model.json"
    model = json.loads(model_json.read_text())
    model["metadata"]["mlflow_run_id"] = "f" * 32
    model_json.write_text(json.dumps(model))
    lines = []
    done = restore_runs.restore(PARAMS, log=lines.append)
    assert (done.logged, done.left_out) == (2, ["tiny seed 2"])
    assert any(f"models/tiny/seed2 holds the net of run {'f' * 32}, not of run" in line for line in lines), lines


def test_baselines_whose_metrics_name_no_runs_are_left_out_and_logged_once(workdir):
    """An older baselines stage recorded no MLflow run ids: nothing to restore them from. With
    them, a second call finds the runs in the store and logs none again."""
    from pipeline.atomic import write_json

    cfg = {"out_dir": "results/baselines", "svm": {"C": 1.0, "train_limit": None}, "sweep": {"sizes": [100]}}
    metrics = {"darkness": {"test_accuracy": 0.2}, "svm": {"test_accuracy": 0.9, "train_size": 60},
               "settings": cfg}
    write_json(workdir / "results/baselines/metrics.json", metrics)
    write_json(workdir / "results/baselines/svm_sweep.json", {"points": [{"n": 100, "validation_accuracy": 0.7}]})
    params = dict(PARAMS, book={}, baselines=cfg)
    lines = []
    done = restore_runs.restore(params, log=lines.append)
    assert (done.logged, done.left_out) == (0, ["B-darkness", "B-svm", "svm-sweep"])
    assert sum("does not name its MLflow run" in line for line in lines) == 3
    write_json(workdir / "results/baselines/metrics.json",
               dict(metrics, mlflow_run_ids={"B-darkness": "d" * 32, "B-svm": "s" * 32, "svm-sweep": "w" * 32}))
    assert restore_runs.restore(params, log=lambda _: None).logged == 3
    again = restore_runs.restore(params, log=lambda _: None)
    assert (again.logged, again.present) == (0, 3)
    assert len(_store(workdir / "mlflow.db")[1]) == 3


def test_the_votes_figures_are_drawn_again_on_the_test_images_it_was_scored_on(workdir, monkeypatch):
    """A profile's ``eval_examples`` capped the vote's test set (20 of the 30 here): its
    confusion matrix and misclassified digits are drawn again on those 20, not on all 30."""
    from pipeline import vote
    from pipeline.atomic import write_json

    _save_a_net(workdir / "models/m/seed1", seed=1)
    write_json(workdir / "results/tiny-ensemble/metrics.json",
               {"id": "tiny-ensemble", "profile": "test", "members": ["models/m/seed1"], "test_accuracy": 0.75,
                "mlflow_run_ids": ["e" * 32], "member_seeds": [1], "limits": {"eval_examples": 20}})
    drawn_on = []
    logging = vote.log_vote
    monkeypatch.setattr(vote, "log_vote", lambda run, config, nets, members, votes, test: (
        drawn_on.append((len(test), [len(v) for v in votes])), logging(run, config, nets, members, votes, test)))
    params = dict(PARAMS, book={}, ensemble={"id": "tiny-ensemble", "chapter": 6, "members": "m"},
                  profile=dict(PARAMS["profile"], limits={"eval_examples": 20}))
    assert restore_runs.restore(params, log=lambda _: None).logged == 1
    assert drawn_on == [(20, [20])]
