"""One run of the book end to end on tiny synthetic data: results, model, MLflow status."""

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from pipeline import experiment, tracking
from pipeline.data.mnist import save_images
from pipeline.errors import InputError

RUN = {
    "chapter": 3, "title": "tiny", "what_changed": "test",
    "book": {"value": 0.5, "metric": "peak_validation", "runs": 1, "epochs": 3, "note": ""},
    "data": {"train": "train", "train_file": "data/prepared/train.npz", "train_limit": None},
    "seeds": [1, 2],
    "model": {"input_shape": [784], "cost": "cross_entropy", "init": "default",
              "layers": [{"type": "fc", "units": 8}, {"type": "fc", "units": 10}]},
    "training": {"epochs": 3, "batch_size": 10, "eta": 0.5},
}
DATA = {"prepared_dir": "data/prepared", "expanded_dir": "data/expanded", "n_train": 60}
PROFILE = {"name": "test", "limits": {}}


def _runs(workdir):
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir}/mlflow.db")
    exp = client.get_experiment_by_name("nielsen-mnist")
    return client, client.search_runs([exp.experiment_id])


@pytest.mark.parametrize("workers", [1, 2])
def test_train_entry_writes_results_models_and_finished_runs(workdir, workers):
    metrics = experiment.train_entry("tiny", RUN, DATA, PROFILE, "models/tiny", "results/tiny",
                                     log=lambda _: None,
                                     compute={"seed_workers": workers, "blas_threads": 1})
    saved = json.loads((workdir / "results/tiny/metrics.json").read_text())
    assert saved["ours_book_metric"]["n_seeds"] == 2 and len(saved["seeds"]) == 2
    assert saved["honest_test_at_best_validation"]["n"] == 2
    assert sorted(p.name for p in (workdir / "models/tiny").iterdir()) == ["seed1", "seed2"]
    model = json.loads((workdir / "models/tiny/seed1/model.json").read_text())
    assert model["metadata"]["test_examples"] == 30 and model["metadata"]["profile"] == "test"
    assert model["metadata"]["train_examples"] == DATA["n_train"]  # what it learned from: predict reads it
    assert model["metadata"]["profile_cut"] == {}  # no limits: trained as its run asks
    header, *rows = (workdir / "results/tiny/history.csv").read_text().splitlines()
    assert header.startswith("seed,epoch") and len(rows) == 6
    client, runs = _runs(workdir)
    assert sorted(r.info.run_id for r in runs) == sorted(metrics["mlflow_run_ids"])
    assert {r.info.status for r in runs} == {"FINISHED"}
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "validation_accuracy")]
    assert steps == [0, 1, 2]


def test_a_model_records_what_the_profiles_limits_cut(workdir):
    """For predict, which says so of a net trained on a cut: the set's cap where it was reached,
    and the epochs, with those the run asked for."""
    limits = {"epochs": 2, "train_examples": 40, "eval_examples": None}
    experiment.train_entry("tiny", dict(RUN, seeds=[1]), DATA, dict(PROFILE, limits=limits), "models/tiny",
                           "results/tiny", log=lambda _: None)
    model = json.loads((workdir / "models/tiny/seed1/model.json").read_text())
    assert model["metadata"]["train_examples"] == 40
    assert model["metadata"]["profile_cut"] == {"epochs": 2, "epochs_asked": 3, "train_examples": 40}


def _with_replay(run: dict) -> dict:
    """``run`` with the book's own run of it to replay, its settings pinned as they are."""
    run = dict(run, replay={"script": "overfitting.py", "seed": 12345678, "rng": {"kind": "network2"},
                            "settings_digest": ""})
    run["replay"]["settings_digest"] = experiment.settings_digest(run, DATA["n_train"])
    return run


@pytest.mark.parametrize("workers", [1, 2])
def test_a_replay_trains_beside_the_seeds_and_is_reported_apart(workdir, workers):
    run = _with_replay(dict(RUN, seeds=[1], model=dict(RUN["model"], init="large")))
    nothing_capped = {"epochs": None, "train_examples": None, "eval_examples": None}  # as in the quick profile
    metrics = experiment.train_entry("tiny", run, DATA, dict(PROFILE, replay=True, limits=nothing_capped),
                                     "models/tiny", "results/tiny", log=lambda _: None,
                                     compute={"seed_workers": workers, "blas_threads": 1})
    # the book's rule and the honest numbers are over our seeds only
    assert metrics["ours_book_metric"]["n_seeds"] == 1 and [s["seed"] for s in metrics["seeds"]] == [1]
    replay = metrics["replay"]
    assert replay["seed"] == 12345678 and replay["script"] == "overfitting.py"
    header, *rows = (workdir / "results/tiny/history.csv").read_text().splitlines()
    replay_rows = [r for r in rows if r.startswith("12345678,")]
    assert len(rows) == 6 and len(replay_rows) == 3
    peak = max(float(r.split(",")[header.split(",").index("validation_accuracy")]) for r in replay_rows)
    assert replay["value"] == pytest.approx(peak) and replay["difference"] == pytest.approx(peak - 0.5)
    assert sorted(p.name for p in (workdir / "models/tiny").iterdir()) == ["seed1", "seed12345678"]
    client, runs = _runs(workdir)
    tags = {r.info.run_id: r.data.tags for r in runs}
    assert tags[replay["mlflow_run_id"]]["replay"] == "overfitting.py"
    assert "replay" not in tags[metrics["mlflow_run_ids"][0]]
    assert client.get_run(replay["mlflow_run_id"]).data.params["training.rng.kind"] == "network2"

    # a profile without replays trains the seeds alone
    metrics = experiment.train_entry("tiny", run, DATA, dict(PROFILE, replay=False), "models/tiny",
                                     "results/tiny", log=lambda _: None)
    assert "replay" not in metrics and metrics["mlflow_run_ids"] == [s["mlflow_run_id"] for s in metrics["seeds"]]


def test_a_replay_config_is_checked_by_key(workdir):
    def with_replay(**replay):
        return dict(RUN, replay=dict({"script": "x.py", "seed": 9, "rng": {"kind": "network2"},
                                      "settings_digest": "0123456789abcdef"}, **replay))

    with pytest.raises(ValueError, match=r"book.tiny.replay.seed: .*not one of the seeds"):
        experiment.validate_run("tiny", with_replay(seed=1))
    with pytest.raises(ValueError, match=r"book.tiny.replay.rng.inits_before: .*constructor"):
        experiment.validate_run("tiny", with_replay(rng={"kind": "network2", "inits_before": 1}))
    for key in ("rng", "settings_digest"):
        run = with_replay()
        del run["replay"][key]
        with pytest.raises(ValueError, match=rf"book.tiny.replay.{key}: required key is missing"):
            experiment.validate_run("tiny", run)
    with pytest.raises(ValueError, match=r"book.tiny.replay.settings_digest: expected 16 hex digits "
                                         r"\(pipeline.experiment.settings_digest .*\), got 'abc'"):
        experiment.validate_run("tiny", with_replay(settings_digest="abc"))
    with pytest.raises(ValueError, match=r"book.tiny.replay.settings_digest: expected 16 hex digits in quotes: "
                                         r"unquoted, YAML read them as the number 1234567890123456"):
        experiment.validate_run("tiny", with_replay(settings_digest=1234567890123456))


def test_settings_digest_covers_what_makes_the_books_run_and_nothing_else():
    run = _with_replay(RUN)
    digest = experiment.settings_digest(run, 60)
    changed = [dict(run, training=dict(run["training"], eta=0.1)),
               dict(run, model=dict(run["model"], init="large")),
               dict(run, data=dict(run["data"], train_limit=30)),
               dict(run, replay=dict(run["replay"], seed=7)),
               dict(run, replay=dict(run["replay"], rng={"kind": "network2", "inits_before": 1}))]
    assert all(experiment.settings_digest(r, 60) != digest for r in changed)
    assert experiment.settings_digest(run, 55) != digest  # another split: data.n_train
    same = [dict(run, seeds=[7]),  # who trains beside the replay
            dict(run, book=dict(run["book"], value=0.9), title="another"),
            dict(run, training=dict(run["training"], device="gpu")),  # the machine's choice
            dict(run, training=dict(run["training"], epochs=3.0)),  # YAML's 3 and 3.0 are one number
            dict(run, replay=dict(run["replay"], settings_digest="0123456789abcdef"))]
    assert all(experiment.settings_digest(r, 60) == digest for r in same)


@pytest.mark.parametrize("change", ["eta", "n_train", "limits"])
def test_a_row_changed_since_its_replay_was_written_trains_without_it(workdir, change):
    """``dvc exp run -S book.<id>.training.eta=…`` rewrites the row in params.yaml but not its
    replay block: trained at the new η, the replay would be labelled the book's run."""
    run = _with_replay(dict(RUN, seeds=[1], model=dict(RUN["model"], init="large")))
    profile, data = dict(PROFILE, replay=True), dict(DATA)
    if change == "eta":
        run["training"] = dict(run["training"], eta=0.1)
    elif change == "n_train":
        data["n_train"] = 50  # the split the prepare stage made (see workdir) stays; its size is what is pinned
    else:
        profile["limits"] = {"epochs": 2, "train_examples": None}
    lines = []
    metrics = experiment.train_entry("tiny", run, data, profile, "models/tiny", "results/tiny", log=lines.append)
    assert "replay" not in metrics and [s["seed"] for s in metrics["seeds"]] == [1]
    assert sorted(p.name for p in (workdir / "models/tiny").iterdir()) == ["seed1"]
    _, runs = _runs(workdir)
    assert len(runs) == 1 and "replay" not in runs[0].data.tags
    said = next(line for line in lines if "not replayed" in line)
    saved = json.loads((workdir / "results/tiny/metrics.json").read_text())["replay_not_run"]
    assert saved == {"cause": "limits" if change == "limits" else "settings",
                     "why": said.split("not replayed: ")[1], "script": "overfitting.py"}
    if change == "limits":
        assert said.endswith("is not replayed: profile.limits are set (epochs=2); only its seeds train")
        # in MLflow, beside runs of other profiles, the run's params say what was capped
        params = runs[0].data.params
        assert (params["limits.epochs"], params["limits.train_examples"], params["limits.eval_examples"]) == (
            "2", "None", "None")
        # and its model says so, for predict: 2 of the run's 3 epochs
        model = json.loads((workdir / "models/tiny/seed1/model.json").read_text())
        assert model["metadata"]["profile_cut"] == {"epochs": 2, "epochs_asked": 3}
    else:
        now = experiment.settings_digest(run, data["n_train"])
        assert said == (f"train tiny: the book's own run (overfitting.py) is not replayed: book.tiny is not at "
                        f"the book's settings, which its replay pins (they digest to "
                        f"{run['replay']['settings_digest']}, the row as it is to {now}); only its seeds train. "
                        f"If conf/book/tiny.yaml was corrected to the book's, set its replay.settings_digest "
                        f"to '{now}'")


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_interrupted_training_saves_weights_and_ends_killed(workdir, monkeypatch, signal_name):
    from pipeline.interrupts import Terminated, exit_status

    stop = Terminated("signal 15") if signal_name == "SIGTERM" else KeyboardInterrupt()
    real_fit = experiment.fit

    def interrupted_fit(*args, **kwargs):
        history = real_fit(*args, **kwargs)
        history.interrupted, history.stopped_by = True, stop  # as if it came after the last epoch
        return history

    monkeypatch.setattr(experiment, "fit", interrupted_fit)
    run = dict(RUN, seeds=[1])
    with pytest.raises(KeyboardInterrupt) as info:
        experiment.train_entry("tiny", run, DATA, PROFILE, "models/tiny", "results/tiny",
                               log=lambda _: None)
    # the stage exits 143 after a SIGTERM, 130 after Ctrl-C
    assert exit_status(info.value) == (143 if signal_name == "SIGTERM" else 130)
    assert (workdir / "models/tiny/seed1/weights.npz").is_file()
    assert not (workdir / "results/tiny/metrics.json").exists()
    _, runs = _runs(workdir)
    assert [r.info.status for r in runs] == ["KILLED"]


def test_a_stopped_seed_whose_weights_cannot_be_saved_still_ends_killed(workdir, monkeypatch):
    """`dvc queue stop --kill` removes a queued experiment's copy while its stage stops: the
    save fails, but the stop is what ended the run (KILLED, not FAILED), and the log says the
    weights were not saved."""
    real_fit = experiment.fit

    def interrupted_fit(*args, **kwargs):
        history = real_fit(*args, **kwargs)
        history.interrupted, history.stopped_by = True, KeyboardInterrupt()
        return history

    def folder_gone(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "models/tiny/seed1")

    monkeypatch.setattr(experiment, "fit", interrupted_fit)
    monkeypatch.setattr(experiment, "save_model", folder_gone)
    said: list[str] = []
    with pytest.raises(KeyboardInterrupt) as info:
        experiment.train_entry("tiny", dict(RUN, seeds=[1]), DATA, PROFILE, "models/tiny", "results/tiny",
                               log=said.append)
    assert isinstance(info.value.__cause__, FileNotFoundError)
    assert said[-1] == ("train tiny seed 1: interrupted; its weights could not be saved: "
                        "[Errno 2] No such file or directory: 'models/tiny/seed1'")
    _, runs = _runs(workdir)
    assert [r.info.status for r in runs] == ["KILLED"]


def test_a_seed_whose_weights_cannot_be_saved_after_training_ends_failed(workdir, monkeypatch):
    def disk_gone(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(experiment, "save_model", disk_gone)
    with pytest.raises(OSError, match="Input/output error"):
        experiment.train_entry("tiny", dict(RUN, seeds=[1]), DATA, PROFILE, "models/tiny", "results/tiny",
                               log=lambda _: None)
    _, runs = _runs(workdir)
    assert [r.info.status for r in runs] == ["FAILED"]


@pytest.mark.parametrize("workers", [1, 2])
def test_compute_blas_threads_pins_every_training_process(workdir, monkeypatch, workers):
    from threadpoolctl import threadpool_info

    real = experiment.train_seed

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        # after training: every BLAS the engine used, scipy's own OpenBLAS included
        pools = [p for p in threadpool_info() if p["user_api"] == "blas"]
        result["summary"]["blas_threads_seen"] = sorted({p["num_threads"] for p in pools})
        return result

    monkeypatch.setattr(experiment, "train_seed", spy)
    metrics = experiment.train_entry("tiny", RUN, DATA, PROFILE, "models/tiny", "results/tiny",
                                     log=lambda _: None,
                                     compute={"seed_workers": workers, "blas_threads": 1})
    assert [s["blas_threads_seen"] for s in metrics["seeds"]] == [[1], [1]]


def test_compute_device_reaches_every_seed_and_a_gpu_trains_in_this_process(workdir, monkeypatch):
    """``compute.device: gpu`` goes into each seed's training config (and so into MLflow), and
    the seeds train one by one here: forked workers cannot share a CUDA context."""
    import os

    seen = []
    real = experiment.train_seed

    def spy(book_id, run_cfg, seed, *args, **kwargs):
        seen.append((seed, run_cfg["training"]["device"], os.getpid()))
        # then train for real, on the CPU: there is no GPU here
        return real(book_id, dict(run_cfg, training=dict(run_cfg["training"], device="cpu")), seed,
                    *args, **kwargs)

    monkeypatch.setattr(experiment, "train_seed", spy)
    monkeypatch.setattr(experiment, "get_xp", lambda device: None)  # as if CuPy and a GPU were here
    experiment.train_entry("tiny", RUN, DATA, PROFILE, "models/tiny", "results/tiny", log=lambda _: None,
                           compute={"device": "gpu", "seed_workers": 2, "blas_threads": 1})
    assert seen == [(seed, "gpu", os.getpid()) for seed in RUN["seeds"]] and len(seen) == 2


@pytest.mark.parametrize("edit, where", [
    # each seed's spec takes them from elsewhere: set in a run, they would be silently replaced
    ({"training": dict(RUN["training"], seed=5)},
     r"book.tiny.training.seed: not a setting of a run: its seeds are book.tiny.seeds"),
    ({"training": dict(RUN["training"], device="gpu")},
     r"book.tiny.training.device: not a setting of a run: every run trains on the machine's compute.device"),
    ({"chapter": 9}, r"book.tiny.chapter: expected the book's chapter, 1..6, got 9"),
])
def test_a_key_a_run_does_not_set_and_a_chapter_not_in_the_book_are_refused(edit, where):
    from pipeline.errors import SettingError

    with pytest.raises(SettingError, match=where):
        experiment.validate_run("tiny", dict(RUN, **edit))


def test_seed_workers_off_linux_train_the_seeds_one_after_another_and_say_so(workdir, monkeypatch):
    """macOS's Accelerate does not survive a fork, Windows has none: no forked workers there."""
    import os

    pids = []
    real = experiment.train_seed

    def spy(*args, **kwargs):
        pids.append(os.getpid())
        return real(*args, **kwargs)

    monkeypatch.setattr(experiment, "train_seed", spy)
    monkeypatch.setattr(experiment, "forked_workers_safe", lambda: False)
    said = []
    metrics = experiment.train_entry("tiny", RUN, DATA, PROFILE, "models/tiny", "results/tiny", log=said.append,
                                     compute={"seed_workers": 2})
    assert pids == [os.getpid()] * 2 and len(metrics["seeds"]) == 2
    assert "train tiny: seeds one after another (seed workers are forked processes: Linux only)" in said


def test_unknown_compute_device_is_rejected_by_name(workdir):
    with pytest.raises(ValueError, match=r"compute\.device: expected one of cpu, gpu, got 'tpu'"):
        experiment.train_entry("tiny", RUN, DATA, PROFILE, "models/tiny", "results/tiny", log=lambda _: None,
                               compute={"device": "tpu"})


def test_a_gpu_asked_for_where_there_is_none_stops_before_any_data_loads(workdir, monkeypatch):
    from pipeline.nn import BackendError

    def no_gpu(device):
        raise BackendError("device 'gpu' needs CuPy")

    monkeypatch.setattr(experiment, "get_xp", no_gpu)
    monkeypatch.setattr(experiment, "load_run_data", lambda *a: pytest.fail("data loaded"))
    with pytest.raises(BackendError, match="needs CuPy"):
        experiment.train_entry("tiny", RUN, DATA, PROFILE, "models/tiny", "results/tiny", log=lambda _: None,
                               compute={"device": "gpu"})


@pytest.mark.parametrize("compute, where", [
    ({"seed_workers": 0}, "compute.seed_workers: expected an integer >= 1, got 0"),
    ({"seed_workers": "two"}, "compute.seed_workers: expected an integer >= 1, got 'two'"),
    ({"blas_threads": 0}, "compute.blas_threads: expected an integer >= 1 or null"),
    ({"blas_threads": "abc"}, "compute.blas_threads: expected an integer >= 1 or null"),
    ({"bogus": 1}, "compute.bogus: unknown key; allowed: device, seed_workers, blas_threads"),
])
def test_compute_settings_are_checked_by_key(compute, where):
    from pipeline.errors import SettingError

    with pytest.raises(SettingError, match=where) as info:
        experiment.check_compute(compute)
    assert type(info.value) is SettingError  # not the engine's SpecError: compute is no network spec
    experiment.check_compute({"device": "cpu", "seed_workers": 2, "blas_threads": None})


@pytest.mark.parametrize("limits, where", [
    ({"train_examples": -5}, "profile.limits.train_examples: expected an integer >= 1 or null"),
    ({"eval_examples": 0}, "profile.limits.eval_examples: expected an integer >= 1 or null"),
    ({"epochs": 1.5}, "profile.limits.epochs: expected an integer >= 1 or null"),
    ({"epoch": 1}, "profile.limits.epoch: unknown key"),
])
def test_profile_limits_are_checked_by_key(workdir, limits, where):
    from pipeline.errors import SettingError

    with pytest.raises(SettingError, match=where):
        experiment.train_entry("tiny", RUN, DATA, dict(PROFILE, limits=limits), "models/tiny", "results/tiny",
                               log=lambda _: None)
    run = dict(RUN, data=dict(RUN["data"], train_limit=-5))
    with pytest.raises(SettingError, match="book.tiny.data.train_limit: expected an integer >= 1 or null") as info:
        experiment.validate_run("tiny", run)
    assert type(info.value) is SettingError


@pytest.mark.parametrize("edit, where", [
    ({"seeds": [1, 1]}, r"book.tiny.seeds: a seed is listed twice: \[1, 1\]"),
    ({"book": dict(RUN["book"], value=95.42)}, r"book.tiny.book.value: expected the book's accuracy as a fraction"),
])
def test_duplicate_seeds_and_a_book_figure_in_percent_are_refused(edit, where):
    from pipeline.errors import SettingError

    with pytest.raises(SettingError, match=where) as info:
        experiment.validate_run("tiny", dict(RUN, **edit))
    assert type(info.value) is SettingError


def test_a_profile_limit_caps_but_a_runs_train_limit_must_be_there(workdir):
    """The smoke profile's 500 images cap what a set has; a run's own "first 1,000 images" is
    part of the experiment, and a file with fewer is an error."""
    from pipeline.errors import InputError

    train, validation, _, _ = experiment.load_run_data(RUN, DATA, {"train_examples": 1000, "eval_examples": 20})
    assert (len(train.y), len(validation.y)) == (60, 20)
    run = dict(RUN, data=dict(RUN["data"], train_limit=100))
    with pytest.raises(InputError, match="asked for the first 100 examples, it has 60"):
        experiment.load_run_data(run, DATA, {})


@pytest.mark.parametrize("model_edit, where", [
    ({"input_shape": [700]}, r"model.input_shape: \[700\] is not the shape of the data's 28 × 28 pictures: "
                             r"use \[784\] \(fully connected\) or \[1, 28, 28\] \(conv\)"),
    ({"input_shape": [1, 32, 32]}, r"model.input_shape: \[1, 32, 32\] is not the shape"),
    ({"input_shape": [4, 14, 14]}, r"model.input_shape: \[4, 14, 14\] is not the shape"),  # 784 values
    ({"layers": [{"type": "fc", "units": 8}, {"type": "fc", "units": 12}]},
     r"model.layers\[1\].units: the output layer has 12 units, MNIST has 10 digits"),
])
def test_a_network_that_does_not_fit_the_data_is_named_before_any_run_starts(workdir, model_edit, where):
    from pipeline.errors import SettingError

    run = dict(RUN, model=dict(RUN["model"], **model_edit))
    with pytest.raises(SettingError, match="book.tiny." + where):
        experiment.train_entry("tiny", run, DATA, PROFILE, "models/tiny", "results/tiny", log=lambda _: None)
    assert not (workdir / "mlflow.db").exists() and not (workdir / "models").exists()


@pytest.mark.parametrize("limits, batch, where", [
    ({}, 100, r"book.tiny.training.batch_size: 100 is more than the 60 training examples, and "
              r"regularization.scaling network3 trains whole mini-batches only"),
    ({"train_examples": 30}, 50, r"book.tiny.training.batch_size: 50 is more than the 30 .*"
                                 r"\(profile.limits.train_examples keeps 30 of the training set\)"),
])
def test_a_mini_batch_network3_cannot_train_is_named_before_any_run_starts(workdir, limits, batch, where):
    run = dict(RUN, training=dict(RUN["training"], batch_size=batch,
                                  regularization={"kind": "l2", "lmbda": 0.1, "scaling": "network3"}))
    with pytest.raises(InputError, match=where):
        experiment.train_entry("tiny", run, DATA, dict(PROFILE, limits=limits), "models/tiny", "results/tiny",
                               log=lambda _: None)
    assert not (workdir / "mlflow.db").exists() and not (workdir / "models").exists()


def test_a_network_too_big_for_the_memory_is_named_before_anything_is_allocated(workdir, monkeypatch):
    from pipeline.errors import SettingError

    # 784 * 8 + 8 + 8 * 10 + 10 = 6,370 float32 parameters, held four times: 101,920 bytes
    experiment.check_fits_memory("tiny", RUN, 1, memory=101_920)
    with pytest.raises(SettingError, match=r"book.tiny.model.layers: 6,370 parameters take at least 0.0 GiB "
                                           r"to train, 2 seeds at once, more than"):
        experiment.check_fits_memory("tiny", RUN, 2, memory=101_920 * 2 - 1)
    monkeypatch.setattr(experiment, "physical_memory", lambda: 100_000)
    with pytest.raises(SettingError, match="use fewer units or filters"):
        experiment.train_entry("tiny", RUN, DATA, PROFILE, "models/tiny", "results/tiny", log=lambda _: None)
    assert not (workdir / "mlflow.db").exists() and not (workdir / "models").exists()


def test_a_results_folder_it_cannot_write_is_named_before_training(workdir, monkeypatch, lock_folders):
    """Without the check the run trained to its end, its MLflow run FINISHED, and only then
    did writing metrics.json fail."""
    from pipeline.atomic import disk_error_message

    lock_folders(lambda folder: "results" in str(folder))
    monkeypatch.setattr(experiment, "fit", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(PermissionError) as info:
        experiment.train_entry("tiny", RUN, DATA, PROFILE, "models/tiny", "results/tiny", log=lambda _: None)
    assert disk_error_message(info.value).startswith("no permission for results/tiny: Permission denied.")
    assert not (workdir / "models/tiny").exists() or not any((workdir / "models/tiny").iterdir())


def test_a_damaged_data_file_is_named_with_the_fix(workdir):
    from pipeline.data.mnist import load_images
    from pipeline.errors import InputError

    path = workdir / "data/prepared/train.npz"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(InputError, match=r"train.npz: not a readable .npz data set .*delete it, "
                                         r"then build it with `dvc repro prepare`"):
        load_images(path)
    path.write_text("garbage")
    with pytest.raises(InputError, match="not a readable .npz data set"):
        load_images(path)
    save_images(path, np.zeros((3, 14, 14), np.uint8), np.zeros(3, np.uint8))
    with pytest.raises(InputError, match=r"expected uint8 images \(n, 28, 28\)"):
        load_images(path)
    save_images(path, np.zeros((3, 28, 28), np.uint8), np.array([1, 42, 3], np.uint8))
    with pytest.raises(InputError, match="labels must be digits 0..9, found 42"):
        load_images(path)
    save_images(path, np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8))  # reshape(0, -1) failed
    with pytest.raises(InputError, match=r"train.npz: holds no images: delete it, then build it"):
        load_images(path)


def test_a_train_file_of_ones_own_that_is_no_data_set_is_not_to_be_deleted_or_rebuilt(workdir):
    """A data stage's damaged file is to be made again; a file of one's own, named by mistake
    (the README), is neither deleted nor something `dvc repro prepare` makes."""
    (workdir / "README.md").write_text("# not images\n")
    for name, error in (("README.md", InputError), ("mine.npz", FileNotFoundError)):
        run = dict(RUN, data=dict(RUN["data"], train_file=name))
        with pytest.raises(error) as info:
            experiment.load_run_data(run, DATA, {})
        said = str(info.value)
        assert said.startswith(name) and "point data.train_file at a data set of the pipeline's" in said, said
        assert "delete" not in said and "dvc repro" not in said, said
    (workdir / "data/prepared/train.npz").write_bytes(b"damaged")  # the stage's own: made again
    with pytest.raises(InputError, match="delete it, then build it with `dvc repro prepare`"):
        experiment.load_run_data(RUN, DATA, {})


def test_a_plain_float_key_takes_an_integer_but_not_a_string():
    from pipeline.errors import SettingError

    experiment._check_keys({"x": 1}, "run", {"x": float})  # YAML's 1 for 1.0
    with pytest.raises(SettingError, match="run.x: expected float, got str 'high'"):
        experiment._check_keys({"x": "high"}, "run", {"x": float})


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_run_data_is_loaded_in_the_runs_dtype_with_the_same_pixels(workdir, dtype):
    """The seed workers share the parent's arrays: loaded in the net's dtype, ``fit`` has no
    cast (and copy) of its own to make; the pixels are raw/256 exactly in either dtype."""
    run = dict(RUN, training=dict(RUN["training"], dtype=dtype))
    train, validation, test, _ = experiment.load_run_data(run, DATA, {})
    assert {train.x.dtype, validation.x.dtype, test.x.dtype} == {np.dtype(dtype)}
    default = experiment.load_run_data(RUN, DATA, {})[0]  # no dtype key: the engine's float32
    assert default.x.dtype == np.float32
    np.testing.assert_array_equal(train.x, default.x.astype(dtype))


def _interrupt_every_fit(monkeypatch):
    """Each seed trains in full, then reports itself interrupted, as after a Ctrl-C."""
    real_fit = experiment.fit

    def interrupted_fit(*args, **kwargs):
        history = real_fit(*args, **kwargs)
        history.interrupted = True
        return history

    monkeypatch.setattr(experiment, "fit", interrupted_fit)


def test_a_rerun_that_is_stopped_leaves_none_of_the_earlier_runs_results(workdir, monkeypatch):
    """Outside DVC (which removes a stage's outputs before running it) the earlier run's
    metrics.json, history.csv and seed folders go once every check has passed: a rerun stopped
    part-way leaves its own partial weights, never the earlier results beside them."""
    experiment.train_entry("tiny", RUN, DATA, PROFILE, "models/tiny", "results/tiny", log=lambda _: None)
    (workdir / "models/tiny/notes.txt").write_text("mine\n")
    _interrupt_every_fit(monkeypatch)
    said = []
    with pytest.raises(KeyboardInterrupt):
        experiment.train_entry("tiny", dict(RUN, seeds=[3]), DATA, PROFILE, "models/tiny", "results/tiny",
                               log=said.append)
    assert not (workdir / "results/tiny/metrics.json").exists()
    assert not (workdir / "results/tiny/history.csv").exists()
    assert sorted(p.name for p in (workdir / "models/tiny").iterdir()) == ["notes.txt", "seed3"]
    assert any(line.startswith("removed an earlier run's outputs: results/tiny/metrics.json") for line in said)


def test_a_rerun_refused_by_its_checks_leaves_the_earlier_results_alone(workdir):
    experiment.train_entry("tiny", RUN, DATA, PROFILE, "models/tiny", "results/tiny", log=lambda _: None)
    bad = dict(RUN, training=dict(RUN["training"], eta="fast"))
    with pytest.raises(Exception, match="eta"):
        experiment.train_entry("tiny", bad, DATA, PROFILE, "models/tiny", "results/tiny", log=lambda _: None)
    assert (workdir / "results/tiny/metrics.json").is_file()
    assert sorted(p.name for p in (workdir / "models/tiny").iterdir()) == ["seed1", "seed2"]


def test_a_rerun_whose_tracking_store_cannot_be_used_leaves_the_earlier_results_alone(workdir, monkeypatch):
    experiment.train_entry("tiny", RUN, DATA, PROFILE, "models/tiny", "results/tiny", log=lambda _: None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'a-file' / 'mlflow.db'}")
    (workdir / "a-file").write_text("not a folder\n")
    with pytest.raises(InputError, match="MLflow cannot use the tracking store"):
        experiment.train_entry("tiny", RUN, DATA, PROFILE, "models/tiny", "results/tiny", log=lambda _: None)
    assert (workdir / "results/tiny/metrics.json").is_file()
    assert sorted(p.name for p in (workdir / "models/tiny").iterdir()) == ["seed1", "seed2"]


def test_metrics_json_applies_the_books_count_of_runs():
    """Best of the first ``runs`` seeds where the book took a best of three; the mean over the
    seeds where it reports one run; the difference is ours minus the book's."""
    seeds = [{"seed": k, "summary": {}, "records": [{"epoch": 0, "test_accuracy": v}]}
             for k, v in ((1, 0.95), (2, 0.97), (3, 0.96), (4, 0.99))]
    best = experiment.ours_by_the_book(seeds, {"metric": "peak_test", "runs": 3, "value": 0.9542})
    assert (best["ours_book_metric"]["value"], best["ours_book_metric"]["seed"]) == (0.97, 2)
    assert best["ours_book_metric"]["rule"] == "best of 3" and best["ours_book_metric"]["n_seeds"] == 4
    assert best["difference"] == 0.0158
    one = experiment.ours_by_the_book(seeds, {"metric": "peak_test", "runs": 1, "value": 0.9542})
    assert one["ours_book_metric"]["value"] == pytest.approx(0.9675) and one["difference"] == pytest.approx(0.0133)


def test_a_profiles_epoch_limit_only_cuts_a_run_never_lengthens_it():
    assert experiment.run_spec(RUN, 1, {"epochs": 2})["training"]["epochs"] == 2
    assert experiment.run_spec(RUN, 1, {"epochs": 100})["training"]["epochs"] == 3
    assert experiment.run_spec(RUN, 1, {})["training"] == dict(RUN["training"], seed=1)


def test_each_seeds_mlflow_metrics_give_its_difference_from_the_book():
    metrics = experiment._summary_metrics({"best_validation_accuracy": 0.97, "interrupted": False},
                                          {"metric": "peak_validation", "value": 0.9792}, 0.97)
    assert metrics == {"best_validation_accuracy": 0.97, "book_metric_peak_validation": 0.97,
                       "book_value": 0.9792, "difference_vs_book": -0.0092}


def test_a_seeds_mlflow_run_holds_its_own_seed_data_digest_model_and_whole_history(workdir, monkeypatch):
    """What a reader of MLflow finds for each seed: its own seed and the digest of the file it
    trained on (here one of its own, as the expanded-set runs have), the model it saved, its
    history with the last epoch, and a confusion matrix of the test set's true digits against
    the net's answers."""
    from pipeline import figures
    from pipeline.data.mnist import digest, load_dataset

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 40).astype(np.uint8)
    save_images(workdir / "data/expanded/mine.npz",
                (rng.random((40, 28, 28)) * 40).astype(np.uint8) + labels[:, None, None] * 20, labels)
    run = dict(RUN, data=dict(RUN["data"], train="mine", train_file="data/expanded/mine.npz"))
    drawn = []
    real_confusion = figures.confusion_matrix
    monkeypatch.setattr(figures, "confusion_matrix",
                        lambda y_true, y_pred: drawn.append(np.array(y_true)) or real_confusion(y_true, y_pred))
    metrics = experiment.train_entry("tiny", run, DATA, PROFILE, "models/tiny", "results/tiny",
                                     log=lambda _: None)
    assert metrics["train_examples"] == 40  # the run's training set, not a held-out one
    test_labels = load_dataset(workdir / "data/prepared/test.npz").y
    assert len(drawn) == 2 and all(np.array_equal(y_true, test_labels) for y_true in drawn)
    client, _ = _runs(workdir)
    for seed, run_id in zip(run["seeds"], metrics["mlflow_run_ids"]):
        logged = client.get_run(run_id).data
        assert (logged.tags["book_id"], logged.tags["seed"], logged.params["seed"]) == ("tiny", str(seed), str(seed))
        assert logged.tags["data_digest"] == digest(workdir / "data/expanded/mine.npz")
        assert {"config.json", "history.csv", "learning_curves.png", "confusion_matrix.png",
                "misclassified.png"} <= {a.path for a in client.list_artifacts(run_id)}
        # the config is the run's whole: what it trains on and how much the profile cut, not
        # the engine's spec alone, and its params are that config flattened
        config = json.loads(Path(client.download_artifacts(run_id, "config.json", str(workdir / "cfg"))).read_text())
        assert (config["book_id"], config["seed"], config["data"]) == ("tiny", seed, run["data"])
        assert {"limits", "model", "training", "profile"} <= set(config)
        assert tracking.flatten(config) == logged.params
        # the model: an MLflow model of the seed's network, listed with its last epoch's metrics
        [folder] = tracking.download_model(run_id, workdir / "dl" / run_id).folders
        model = json.loads((folder / "model.json").read_text())
        assert (model["metadata"]["seed"], model["metadata"]["data_digest"]) == (seed, logged.tags["data_digest"])
        assert (folder / "weights.npz").read_bytes() == (workdir / f"models/tiny/seed{seed}/weights.npz").read_bytes()
        [listed] = client.search_logged_models([client.get_run(run_id).info.experiment_id],
                                               filter_string=f"source_run_id = '{run_id}'")
        assert listed.tags["seed"] == str(seed)
        assert {m.key: (m.step, m.value) for m in listed.metrics}["test_accuracy"] == (
            2, client.get_metric_history(run_id, "test_accuracy")[-1].value)
        history = Path(client.download_artifacts(run_id, "history.csv", dst_path=str(workdir / "dl" / run_id)))
        header, *rows = history.read_text().splitlines()
        epoch = header.split(",").index("epoch")
        assert [float(r.split(",")[epoch]) for r in rows] == [0, 1, 2]


def test_an_interrupted_seeds_model_says_its_weights_are_not_the_final_epochs(workdir, monkeypatch):
    """The ensemble and predict refuse or do not compare such weights by this line of model.json."""
    _interrupt_every_fit(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        experiment.train_entry("tiny", dict(RUN, seeds=[1]), DATA, PROFILE, "models/tiny", "results/tiny",
                               log=lambda _: None)
    metadata = json.loads((workdir / "models/tiny/seed1/model.json").read_text())["metadata"]
    assert metadata["weights"] == "interrupted during epoch 3"


def test_run_data_gives_validation_and_test_each_from_its_own_file(workdir):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, 20).astype(np.uint8)
    save_images(workdir / "data/prepared/test.npz", rng.integers(0, 256, (20, 28, 28)).astype(np.uint8), labels)
    _, validation, test, _ = experiment.load_run_data(RUN, DATA, {})
    assert (len(validation.y), len(test.y)) == (30, 20)
    np.testing.assert_array_equal(test.y, labels)


def test_each_epochs_gradient_norms_become_columns_numbered_from_layer_1():
    """The report reads ``grad_norm_layer<l>`` with l = 1 for the first hidden layer (BOOK.md's
    ||dC/db^1||), the last being the output layer's."""
    from pipeline.report import hidden_norm_keys

    row = experiment.flat_record({"epoch": 0, "validation_accuracy": 0.5, "gradient_norms": [0.01, 0.1, 0.5]})
    assert row == {"epoch": 0, "validation_accuracy": 0.5, "grad_norm_layer1": 0.01,
                   "grad_norm_layer2": 0.1, "grad_norm_layer3": 0.5}
    assert hidden_norm_keys([row]) == ["grad_norm_layer1", "grad_norm_layer2"]


def test_a_runs_epochs_are_the_most_any_seed_trained():
    """A seed that an eta schedule ended early does not shorten the run's epochs column."""
    def trained(seed, epochs_run):
        records = [{"epoch": e, "validation_accuracy": 0.5} for e in range(epochs_run)]
        return {"seed": seed, "mlflow_run_id": f"r{seed}", "records": records,
                "summary": {"epochs_run": epochs_run, "test_at_best_validation": 0.5}}

    metrics = experiment.run_metrics("tiny", RUN, "test", [trained(1, 2), trained(2, 3)], 60, 1.0)
    assert metrics["epochs"] == 3 and metrics["train_examples"] == 60


def test_an_earlier_runs_seed_folders_go_whatever_their_number_and_nothing_else_does(tmp_path):
    """A replay's folder (``seed12345678``) or a tenth seed's is an earlier output as much as
    ``seed1``; a folder or file of the user's beside them stays."""
    models, results_dir = tmp_path / "models/tiny", tmp_path / "results/tiny"
    for name in ("seed1", "seed12", "seed12345678", "seedlings"):
        (models / name).mkdir(parents=True)
    results_dir.mkdir(parents=True)
    for name in ("metrics.json", "history.csv", "notes.txt"):
        (results_dir / name).write_text("x\n")
    experiment.clear_earlier_outputs(models, results_dir, log=lambda _: None)
    assert [p.name for p in models.iterdir()] == ["seedlings"]
    assert [p.name for p in results_dir.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("edit, where", [
    ({"chapter": 7}, r"book.tiny.chapter: expected the book's chapter, 1..6, got 7"),
    ({"book": dict(RUN["book"], runs=0)}, r"book.tiny.book.runs: expected the number of runs .* \(>= 1\), got 0"),
    ({"book": dict(RUN["book"], epochs=0)},
     r"book.tiny.book.epochs: expected the book's number of epochs \(>= 1\), got 0"),
])
def test_a_run_setting_just_past_its_bound_is_refused(edit, where):
    """The first value past each bound of a run's config (chapter 7, a figure of no runs or of
    no epochs) is refused, named by its key."""
    from pipeline.errors import SettingError

    with pytest.raises(SettingError, match=where):
        experiment.validate_run("tiny", dict(RUN, **edit))


def test_history_csv_has_a_column_for_every_key_any_epoch_recorded():
    """With ``eval_every`` > 1 and gradient norms monitored, an epoch between evaluations records
    its norms alone: the accuracies of a later epoch still get their column, left empty there."""
    rows = [{"epoch": 0, "grad_norm_layer1": 0.5}, {"epoch": 1, "grad_norm_layer1": 0.25, "validation_accuracy": 0.9}]
    assert experiment.history_csv(rows) == "epoch,grad_norm_layer1,validation_accuracy\n0,0.5,\n1,0.25,0.9\n"


def test_a_seed_with_no_value_by_the_books_metric_logs_no_difference_from_it():
    """No value to compare (the metric needs epochs the seed did not record): the book's figure
    is logged, and no difference (MLflow takes no None)."""
    metrics = experiment._summary_metrics({"epochs_run": 3}, {"metric": "peak_validation", "value": 0.9792}, None)
    assert metrics == {"epochs_run": 3, "book_value": 0.9792}


def test_limits_that_cut_nothing_are_not_recorded_as_a_cut(workdir):
    """An epoch limit equal to the run's epochs and a cap above the training set's size cut
    nothing: predict must not say the net was trained on a cut."""
    limits = {"epochs": 3, "train_examples": 100, "eval_examples": None}
    experiment.train_entry("tiny", dict(RUN, seeds=[1]), DATA, dict(PROFILE, limits=limits),
                           "models/tiny", "results/tiny", log=lambda _: None)
    model = json.loads((workdir / "models/tiny/seed1/model.json").read_text())
    assert model["metadata"]["profile_cut"] == {}


def test_metrics_json_holds_no_nan_or_infinity():
    """NaN and infinite numbers (a cost that overflowed) become null, in nested lists and
    mappings too: Python's json writes them as NaN and Infinity, which strict JSON readers refuse."""
    found = experiment._json_safe({"cost": float("inf"), "seeds": [{"cost": float("nan")}, 0.5], "n": 3,
                                   "low": float("-inf")})
    assert found == {"cost": None, "seeds": [{"cost": None}, 0.5], "n": 3, "low": None}
