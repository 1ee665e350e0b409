"""The Hydra app outside DVC: a seed sweep through the joblib launcher, logged to MLflow."""

import contextlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from pipeline.data.mnist import save_images
from pipeline.errors import SettingError
from pipeline.train import (
    hydra_parser_allowed,
    interrupted_message,
    launcher_problem,
    output_dir_problem,
    override_problem,
    run_config,
    without_replay,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_joblib_sweep_trains_each_seed_as_its_own_job_and_run(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("train", 500), ("validation", 500), ("test", 500)):  # the smoke sizes
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = (rng.random((n, 28, 28)) * 40).astype(np.uint8) + labels[:, None, None] * 20
        save_images(tmp_path / "data/prepared" / f"{name}.npz", images, labels)
    db = tmp_path / "mlflow.db"
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{db}")
    sweep = tmp_path / "multirun"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "-m", "book=ch1-30", "seed=1,2",
         "hydra/launcher=joblib", "profile=smoke", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Joblib.Parallel" in out and "launching 2 jobs" in out

    # job k of the sweep is seed k + 1, with its own results and model in its own folder
    for job, seed in ((0, 1), (1, 2)):
        metrics = json.loads((sweep / str(job) / "results/ch1-30/metrics.json").read_text())
        assert [s["seed"] for s in metrics["seeds"]] == [seed]
        assert (sweep / str(job) / f"models/ch1-30/seed{seed}").is_dir()
        log = (sweep / str(job) / "train.log").read_text()  # Hydra's log of the job
        # the profile's cut is said, not silent
        assert f"train ch1-30 seed {seed}: 500 training images, 1 epoch (of 30: the profile's limits.epochs)" \
            in log and "epoch 0/0 " in log, log
        # the jobs' lines side by side on the terminal say whose they are
        assert f"[job {job}: book=ch1-30,profile=smoke,seed={seed}] train ch1-30 seed {seed}" in log, log
        assert "train ch1-30: peak_test " in log, log
        # and the job's last line says where to look next
        run_id = metrics["mlflow_run_ids"][0]
        assert log.rstrip().endswith(f"train ch1-30: models and results in {sweep.relative_to(tmp_path) / str(job)}; "
                                     f"MLflow run {run_id}"), log

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("nielsen-mnist")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["seed"] for r in runs) == ["1", "2"]
    assert {r.info.run_name for r in runs} == {"ch1-30"}
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["profile"] for r in runs} == {"smoke"}
    # each run names its job's folder and what its command line changed
    for r in runs:
        seed = int(r.data.tags["seed"])
        assert r.data.tags["hydra.output_dir"] == str((sweep / str(seed - 1)).resolve())
        assert r.data.tags["hydra.overrides"] == f"book=ch1-30 seed={seed} profile=smoke"
    for r in runs:
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "validation_accuracy")]
        assert steps == [0]  # the smoke profile's one epoch


def _smoke_data(folder: Path) -> dict:
    """Synthetic sets of the smoke profile's sizes in ``folder``; the environment of a run
    that logs to a store of its own there."""
    rng = np.random.default_rng(0)
    for name, n in (("train", 500), ("validation", 500), ("test", 500)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = (rng.random((n, 28, 28)) * 40).astype(np.uint8) + labels[:, None, None] * 20
        save_images(folder / "data/prepared" / f"{name}.npz", images, labels)
    return dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}")


def _runs(folder: Path) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    return client.search_runs([client.get_experiment_by_name("nielsen-mnist").experiment_id])


def _endless_training(tmp_path: Path, log: Path, *overrides: str, sweep: bool = False, **popen):
    """``python -m pipeline.train book=ch1-30`` on the smoke data for 100,000 epochs (a run that
    only a signal ends), with ``overrides``, a sweep (``-m``) if asked; its output goes to ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.train", *(["-m"] if sweep else []), "book=ch1-30", "epochs=100000",
             "profile=smoke", "profile.limits.epochs=100000", *overrides],
            cwd=tmp_path, env=_smoke_data(tmp_path), stdout=out, stderr=subprocess.STDOUT, **popen)


def _wait_until(ready, process, log: Path, poll: float = 0.1):
    """Polls ``ready()`` until true, for two minutes at most; fails with the log if the
    process ends first. Returns what ``ready()`` last returned."""
    import time

    deadline = time.monotonic() + 120
    while not (answer := ready()):
        assert time.monotonic() < deadline and process.poll() is None, log.read_text()
        time.sleep(poll)
    return answer


def test_a_failing_job_of_a_joblib_sweep_leaves_the_others_to_finish(tmp_path):
    """A job's mistake ends that job alone (before, its sys.exit killed its joblib worker and
    joblib every other job); the sweep then names it and exits 2."""
    env = _smoke_data(tmp_path)
    sweep = tmp_path / "multirun"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "-m", "book=ch1-30", "seed=2,-1", "hydra/launcher=joblib",
         "profile=smoke", f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600)
    assert result.returncode == 2, result.stderr
    assert ("sweep: 1 job(s) did not finish:\n  job 1 (book=ch1-30,profile=smoke,seed=-1): seed: expected an "
            "integer >= 0") in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert (sweep / "0/results/ch1-30/metrics.json").is_file() and not (sweep / "1/results").exists()
    assert [r.info.status for r in _runs(tmp_path)] == ["FINISHED"]
    assert not (sweep / ".jobs").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="the sweep's workers found through /proc")
@pytest.mark.parametrize("launcher", ["joblib", "basic"])
def test_a_sweep_stopped_by_sigterm_stops_every_job_cleanly(tmp_path, launcher):
    """`kill <pid>` of a sweep: the jobs training save their weights and end KILLED, no job
    starts after it, no worker is left behind, and the sweep exits 143. Before, with joblib,
    the parent died at once and its workers trained on to the end, orphaned."""
    import signal

    import psutil

    sweep = tmp_path / "multirun"
    log = tmp_path / "sweep.log"
    training = 2 if launcher == "joblib" else 1
    process = _endless_training(
        tmp_path, log, "seed=1,2,3", f"hydra.sweep.dir={sweep}",
        *(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else []),
        sweep=True, start_new_session=True)
    workers = []
    try:
        _wait_until(lambda: sum(f"[job {j}: " in line and " epoch 5/" in line for j in range(3)
                                for line in log.read_text().splitlines()) >= training, process, log)
        workers = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGTERM)  # the sweep's process alone
        assert process.wait(timeout=60) == 143, log.read_text()
        gone, alive = psutil.wait_procs(workers, timeout=30)
        text = log.read_text()
        assert not alive, f"left running: {alive}\n{text}"
        assert ("job 2 (book=ch1-30,epochs=100000,profile.limits.epochs=100000,profile=smoke,seed=3): "
                "not started") in text
        assert sorted(r.info.status for r in _runs(tmp_path)) == ["KILLED"] * training, text
        assert len(list(sweep.glob("*/models/ch1-30/seed*/weights.npz"))) == training
        assert "Traceback" not in text
    finally:
        for p in [process, *workers]:
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                p.kill()


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGUSR2"), reason="SLURM's warning signal is POSIX's")
def test_slurms_time_limit_warning_stops_a_run_saying_why(tmp_path):
    """SLURM sends SIGUSR2 before a job's time limit: the run saves its weights, says that this
    was the reason (not a plain "interrupted"), and exits 128 + SIGUSR2."""
    import signal

    run = tmp_path / "run"
    log = tmp_path / "run.log"
    process = _endless_training(tmp_path, log, "seed=1", f"hydra.run.dir={run}")
    try:
        _wait_until(lambda: " epoch 1/" in log.read_text(), process, log)
        process.send_signal(signal.SIGUSR2)
        assert process.wait(timeout=60) == 128 + signal.SIGUSR2, log.read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    assert ("SLURM's warning that the job's time limit is near (SIGUSR2): interrupted: the weights so far "
            f"are in {run / 'models'}") in log.read_text()
    assert [r.info.status for r in _runs(tmp_path)] == ["KILLED"]


def _cmdline(process) -> list[str]:
    """A child's command line, or none where it ended between being listed and being read."""
    import psutil

    try:
        return process.cmdline()
    except psutil.NoSuchProcess:
        return []


def test_a_ctrl_c_as_a_joblib_sweeps_workers_start_ends_it_in_a_few_lines(tmp_path):
    """A terminal's Ctrl-C reaches every process of the group; a worker still starting up died
    unpacking its job, and the sweep ended with joblib's traceback and exit 1."""
    import signal

    import psutil

    sweep = tmp_path / "multirun"
    log = tmp_path / "sweep.log"
    process = _endless_training(
        tmp_path, log, "seed=1,2", f"hydra.sweep.dir={sweep}", "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2", sweep=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as from a terminal
    workers = []
    try:
        def two_workers_starting():
            starting = [p for p in psutil.Process(process.pid).children(recursive=True)
                        if "popen_loky_posix" in " ".join(_cmdline(p))]
            return starting if len(starting) >= 2 else None

        workers = _wait_until(two_workers_starting, process, log, poll=0.02)
        os.killpg(process.pid, signal.SIGINT)  # the workers are starting: importing, unpacking their jobs
        assert process.wait(timeout=60) == 130, log.read_text()
        gone, alive = psutil.wait_procs(workers, timeout=30)
        text = log.read_text()
        assert not alive, f"left running: {alive}\n{text}"
        assert "sweep: 2 job(s) did not finish:" in text and "Traceback" not in text, text
        assert not (sweep / ".jobs").exists()
        if (tmp_path / "mlflow.db").exists():  # a job that started before the signal came
            assert {r.info.status for r in _runs(tmp_path)} <= {"KILLED"}, text
    finally:
        for p in [process, *workers]:
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                p.kill()


def test_joblibs_workers_start_with_sigint_blocked(tmp_path, monkeypatch):
    """What keeps a Ctrl-C from killing a worker before it can ignore the signal."""
    import signal

    from joblib.externals.loky.backend import fork_exec

    from pipeline.train import block_sigint_in_joblib_workers

    monkeypatch.setattr(fork_exec, "fork_exec", fork_exec.fork_exec)  # put back after the test
    block_sigint_in_joblib_workers()
    said = tmp_path / "blocked"
    check = ("import signal; blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []); "
             f"open({str(said)!r}, 'w').write(str(blocked))")
    pid = fork_exec.fork_exec([sys.executable, "-c", check], [])
    assert os.waitpid(pid, 0)[1] == 0
    assert said.read_text() == "True"
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # this process as it was


def test_a_run_file_of_ones_own_with_a_mistake_gets_a_message_not_a_traceback(tmp_path):
    """A copy of a run whose top key was not renamed, or with a misspelt key, stops at once."""
    extra = tmp_path / "extra" / "book"
    extra.mkdir(parents=True)
    relu = (REPO_ROOT / "conf/book/ch6-relu.yaml").read_text()
    (extra / "my-nokey.yaml").write_text(relu)  # still `ch6-relu:` at the top
    (extra / "my-typo.yaml").write_text(relu.replace("ch6-relu:", "my-typo:").replace("batch_size:", "batch_sise:"))
    (extra / "my-interp.yaml").write_text(relu.replace("ch6-relu:", "my-interp:")
                                          .replace("${data.prepared_dir}", "${data.prepared_dirr}"))
    for name, message in (("my-nokey", "conf/book/my-nokey.yaml must hold its run under the top key `my-nokey:`"),
                          ("my-typo", "book.my-typo.training.batch_sise: unknown key"),
                          ("my-interp", "book.my-interp.data.train_file: Interpolation key 'data.prepared_dirr' "
                                        "not found")):
        result = subprocess.run(
            [sys.executable, "-m", "pipeline.train", f"book={name}", "profile=smoke",
             f"hydra.searchpath=[file://{tmp_path / 'extra'}]", f"hydra.run.dir={tmp_path / name}"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, result.stdout + result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_folder_is_shown_relative_below_the_working_folder_and_whole_outside_it(tmp_path, monkeypatch):
    from pipeline.train import _shown

    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    assert _shown(tmp_path / "repo/outputs/x") == str(Path("outputs/x"))
    assert _shown(Path("outputs/x")) == str(Path("outputs/x"))
    assert _shown(tmp_path / "elsewhere") == str(tmp_path / "elsewhere")  # not ../elsewhere


def test_a_seed_that_is_not_an_integer_is_named(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "book=ch1-30", "profile=smoke", "seed=abc",
         f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "seed: expected an integer >= 0 (seed=2), got 'abc'" in result.stderr  # as typed, not `seeds`
    assert "Traceback" not in result.stderr
    assert (tmp_path / "run").is_dir()  # a folder the user named stays, even for a refused run


def test_a_refused_run_leaves_no_folder_where_hydra_named_it():
    """In outputs/<date>/<time>/ (Hydra's own name), a run refused before it started leaves
    nothing (the date folder above it, if it holds nothing else: the next test)."""
    def folders():
        return {p for p in (REPO_ROOT / "outputs").glob("*/*")} if (REPO_ROOT / "outputs").is_dir() else set()

    before = folders()
    result = subprocess.run([sys.executable, "-m", "pipeline.train", "book=ch1-30", "profile=smoke", "seed=abc"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "seed: expected an integer" in result.stderr, result.stderr
    assert folders() == before


def test_only_what_hydra_made_goes_with_a_refused_runs_folder(tmp_path, monkeypatch):
    from pipeline.train import remove_if_nothing_ran

    date = tmp_path
    (date / "10-00-00-000000").mkdir()  # another run's folder on the same date
    tmp_path = date / "10-00-01-000000"
    (tmp_path / ".hydra").mkdir(parents=True)
    (tmp_path / ".hydra" / "config.yaml").write_text("x: 1")
    (tmp_path / "train.log").write_text("")
    (tmp_path / "mine.txt").write_text("a user's file")  # something else there: kept, and the folder
    remove_if_nothing_ran(tmp_path, named_by_user=False)
    assert (tmp_path / "mine.txt").exists() and (tmp_path / ".hydra").exists()
    (tmp_path / "mine.txt").unlink()
    (tmp_path / "train.log").write_text("epoch 0/0 ...")  # a run that started: kept
    remove_if_nothing_ran(tmp_path, named_by_user=False)
    assert (tmp_path / "train.log").exists()
    (tmp_path / "train.log").write_text("")
    remove_if_nothing_ran(tmp_path, named_by_user=True)  # hydra.run.dir=<the user's folder>: kept
    assert (tmp_path / ".hydra").exists()
    remove_if_nothing_ran(tmp_path, named_by_user=False)
    assert not tmp_path.exists() and date.is_dir()  # the other run's folder keeps the date's
    # the date's only run: its folder goes too
    (date / "10-00-00-000000" / ".hydra").mkdir()
    (date / "10-00-00-000000" / "train.log").write_text("")
    remove_if_nothing_ran(date / "10-00-00-000000", named_by_user=False)
    assert not date.exists()
    # a run folder that is the working folder (hydra.run.dir=. in a config of one's own) stays
    (date / ".hydra").mkdir(parents=True)
    (date / "train.log").write_text("")
    monkeypatch.chdir(date)
    remove_if_nothing_ran(date, named_by_user=False)
    assert (date / ".hydra").is_dir() and (date / "train.log").exists()


@pytest.mark.parametrize("seed", [1.7, -1, True])
def test_the_seed_shortcut_takes_only_an_integer_at_least_zero(seed):
    cfg = {"seed": seed, "book": {"ch1-30": {"seeds": [1, 2], "training": {}}}}
    with pytest.raises(SettingError, match=f"^seed: expected an integer >= 0 \\(seed=2\\), got {seed!r}$"):
        run_config(cfg, "ch1-30")
    assert run_config({**cfg, "seed": 7}, "ch1-30")[1]["seeds"] == [7]


@pytest.mark.parametrize("key, value, allowed", [("eta", "abc", "a number > 0 (eta=0.1)"),
                                                 ("eta", -1, "a number > 0 (eta=0.1)"),
                                                 ("epochs", 0, "an integer >= 1 (epochs=30)"),
                                                 ("epochs", 1.5, "an integer >= 1 (epochs=30)")])
def test_the_eta_and_epochs_shortcuts_are_named_as_typed(key, value, allowed):
    cfg = {key: value, "book": {"ch1-30": {"seeds": [1], "training": {"eta": 3.0, "epochs": 30}}}}
    with pytest.raises(SettingError, match=f"^{key}: expected {re.escape(allowed)}, got {re.escape(repr(value))}$"):
        run_config(cfg, "ch1-30")
    assert run_config({**cfg, key: 2}, "ch1-30")[1]["training"][key] == 2


def test_a_stop_says_where_the_weights_are_only_where_this_run_saved_some(tmp_path):
    models = tmp_path / "models"
    assert interrupted_message(models, 1000.0) == "interrupted before any weights were saved"
    (models / "ch1-30" / "seed1").mkdir(parents=True)
    assert interrupted_message(models, 1000.0) == "interrupted before any weights were saved"
    weights = models / "ch1-30" / "seed1" / "weights.npz"
    weights.write_bytes(b"")
    os.utime(weights, (999.0, 999.0))  # an earlier run's, in a folder named by hydra.run.dir
    assert interrupted_message(models, 1000.0) == "interrupted before any weights were saved"
    os.utime(weights, (1000.0, 1000.0))
    assert interrupted_message(models, 1000.0) == f"interrupted: the weights so far are in {models}"


def test_a_sweeps_first_stop_signal_stops_its_workers_once_and_a_second_is_ignored(tmp_path, monkeypatch):
    """In the sweep's own process (``SweepOutcome``'s handler): no job starts after it, each
    worker is sent one SIGTERM, and a second Ctrl-C does not stop them again mid-save."""
    import signal
    import socket

    from pipeline import interrupts, train

    stopped = []
    monkeypatch.setattr(interrupts, "stop_workers", stopped.append)
    monkeypatch.setattr(train, "_sweep_signal", [])
    monkeypatch.setenv(train.SWEEP_JOBS_ENV, str(tmp_path))
    monkeypatch.setenv(train.SWEEP_PARENT_ENV, f"{socket.gethostname()}:{os.getpid()}")
    (tmp_path / f"{train.WORKER_PREFIX}4321").touch()
    try:
        train._sweep_stop(signal.SIGTERM, None)
        train._sweep_stop(signal.SIGINT, None)
        assert interrupts.stop_requested()
    finally:
        interrupts.clear_stop()
    assert stopped == [[4321]]
    assert (tmp_path / train.STOP_MARK).read_text() == f"{int(signal.SIGTERM)}\n"  # the sweep ends 143


def test_two_runs_started_in_one_second_get_two_output_folders():
    """Hydra's default folder name ends at the second: two ad-hoc runs started together shared
    one folder and one overwrote the other's results."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO_ROOT / "conf"), version_base=None):
        cfg = compose("train", return_hydra_config=True)
    for group in ("run", "sweep"):
        folder = OmegaConf.to_container(cfg.hydra[group], resolve=False)["dir"]
        assert folder.endswith("${now:%H-%M-%S-%f}"), folder


def test_a_key_the_app_does_not_read_is_refused_not_ignored():
    """`+lr=0.1` (what Hydra's message for `lr=0.1` suggests) must not train at the config's eta."""
    cfg = {"book": {"ch1-30": {"seeds": [1], "training": {"eta": 3.0}}}, "lr": 0.1}
    with pytest.raises(SettingError, match=r"^lr: unknown key; allowed at the top: data, .*seed, eta, epochs\. .*"
                                           r"book\.ch1-30\.training\.eta=0\.1"):
        run_config(cfg, "ch1-30")
    del cfg["lr"]
    assert run_config({**cfg, "eta": 0.1}, "ch1-30")[1]["training"]["eta"] == 0.1


def test_data_not_built_yet_is_named_with_the_data_stages_to_run(tmp_path):
    """A try-out before any `dvc repro`: one line naming the file and the data stages (a minute),
    not the whole profile's `dvc repro`, and exit status 2."""
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "book=ch1-30", "profile=smoke",
         f"data.prepared_dir={tmp_path / 'none'}", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{tmp_path / 'none' / 'train.npz'} is missing: build it with `dvc repro prepare`" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_run_changed_on_the_command_line_says_the_books_run_is_not_replayed_beside_it(tmp_path):
    """The note is said before anything else (here, data not built yet) stops the run."""
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "book=ch3-l2-30", "profile=quick", "eta=0.1",
         f"data.prepared_dir={tmp_path / 'none'}", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    note = "the book's own run (overfitting.py) is not replayed beside it: eta=0.1 data.prepared_dir="
    assert note in result.stdout and note in (tmp_path / "run/train.log").read_text(), result.stdout


def test_a_run_whose_output_folder_refuses_a_file_says_which_in_a_line(tmp_path):
    """A full, read-only or forbidden disk is the user's to fix: one line naming the folder and
    exit 2, not a traceback (Python runs as root here, so the refusal is made in the process)."""
    env = _smoke_data(tmp_path)
    run = tmp_path / "run"
    start = ("import errno, runpy, sys, tempfile\n"
             "real = tempfile.mkstemp\n"
             "def mkstemp(*args, dir=None, **kwargs):\n"
             "    if 'models' in str(dir):\n"
             "        raise PermissionError(errno.EACCES, 'Permission denied')\n"
             "    return real(*args, dir=dir, **kwargs)\n"
             "tempfile.mkstemp = mkstemp\n"
             f"sys.argv = ['pipeline.train', 'book=ch1-30', 'profile=smoke', 'hydra.run.dir={run}']\n"
             "runpy.run_module('pipeline.train', run_name='__main__', alter_sys=True)\n")
    result = subprocess.run([sys.executable, "-c", start], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"no permission for {run / 'models/ch1-30'}: Permission denied." in result.stderr
    assert "Traceback" not in result.stderr


def test_a_launcher_whose_plugin_is_not_installed_names_the_extra_to_install(tmp_path):
    """Hydra alone says "Could not load 'hydra/launcher/submitit_slurm'"; the SLURM launcher is
    an extra (`.[launchers]`), not in `.[dev]`."""
    if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None:
        pytest.skip("hydra-submitit-launcher is installed here: the sweep would go to SLURM")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "-m", "book=ch1-30", "profile=smoke", "seed=1,2",
         "hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == ("hydra/launcher=slurm needs the hydra-submitit-launcher package, which "
                                     "is not installed: pip install -e '.[launchers]'")
    assert list(tmp_path.iterdir()) == []  # nothing started


def test_an_installed_launcher_or_none_is_let_through():
    assert launcher_problem(["book=ch1-30", "seed=1,2", "hydra/launcher=joblib"]) is None  # .[dev] has it
    assert launcher_problem(["book=ch1-30", "hydra/launcher=basic"]) is None  # Hydra's own


def test_slurm_off_a_cluster_is_said_in_a_line(monkeypatch):
    """submitit itself raises a RuntimeError deep in Hydra's sweep: a 20-line traceback."""
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())  # the plugin "installed"
    args = ["book=ch1-30", "seed=1,2", "hydra/launcher=slurm"]
    assert launcher_problem(args, which=lambda program: None) == (
        "hydra/launcher=slurm submits the runs to SLURM, but this machine has no `srun`: run the "
        "command on the cluster, or use hydra/launcher=joblib to run them here")
    assert launcher_problem(args, which=lambda program: f"/usr/bin/{program}") is None  # on the cluster
    assert launcher_problem(["hydra/launcher=submitit_local"], which=lambda program: None) is None
    # showing the settings (what would be submitted) needs no cluster
    assert launcher_problem([*args, "--cfg", "hydra"], which=lambda program: None) is None
    assert launcher_problem([*args, "--info=config"], which=lambda program: None) is None


def test_a_run_changed_on_the_command_line_does_not_replay_the_books_run():
    """`book=ch3-l2-30 eta=0.1` trained the book's own run at eta 0.1 too, labelled as the
    book's and set beside its figure; `profile.replay=false` still checked the replay's seed."""
    def row():
        return {"seeds": [1], "replay": {"script": "overfitting.py", "seed": 12345678, "rng": {}}}

    quick = {"replay": True}
    kept = row()
    assert without_replay(kept, quick, ["book=ch3-l2-30", "profile=smoke", "book.ch1-30.training.eta=1"],
                          "ch3-l2-30") is None and "replay" in kept  # another run's setting: not this one
    for changes in (["eta=0.1"], ["seed=2"], ["epochs=3"], ["book.ch3-l2-30.training.lmbda=1.0"],
                    ["data.n_train=40000"]):
        run = row()
        note = without_replay(run, quick, ["book=ch3-l2-30", *changes], "ch3-l2-30")
        assert "replay" not in run
        assert note == f"the book's own run (overfitting.py) is not replayed beside it: {changes[0]} changes the run"
    off = row()
    assert without_replay(off, {"replay": False}, ["book=ch3-l2-30", "seed=12345678"], "ch3-l2-30") is None
    assert "replay" not in off  # its seed, now the run's own, is no longer checked against the replay's
    assert without_replay({"seeds": [1]}, quick, ["eta=0.1"], "ch1-30") is None  # a row without a replay


@pytest.mark.parametrize("arg, said", [
    ("etaa=0.1", "etaa: unknown key; allowed at the top: "),
    ("device=gpu", "device: unknown key; allowed at the top: "),
    ("book=ch9-nope", "book=ch9-nope: there is no conf/book/ch9-nope.yaml; the choices are ch1-100, ch1-30, "),
    ("profile=nope", "profile=nope: there is no conf/profile/nope.yaml; the choices are book, fast, quick, smoke"),
    # under quick, a profile's cuts make book.ch6-relu.training exist, so Hydra took it and ch1-30
    # trained (under smoke, as here, Hydra's own message: exit 1); the function's own test is below
    ("book.ch6-relu.training.epochs=2", "book.ch6-relu.training.epochs: a setting of ch6-relu, but the run "
                                        "trained is ch1-30, conf/train.yaml's default: add book=ch6-relu"),
    ("book.ch1-30.training.etaa=0.1", "book.ch1-30.training.etaa: unknown key; allowed keys: epochs, batch_size, "
                                      "eta, momentum"),
])
def test_a_key_or_choice_the_app_does_not_have_is_said_in_a_line_exit_2(arg, said):
    """Hydra's own message for `etaa=0.1` exits 1 and advises `+etaa=0.1`, a key nothing reads."""
    result = subprocess.run([sys.executable, "-m", "pipeline.train", "profile=smoke", arg], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith(said), result.stderr
    assert "Traceback" not in result.stderr and "+etaa" not in result.stderr
    assert "To append to your config use" not in result.stderr


def test_a_nested_key_that_is_not_there_is_named_with_the_keys_that_are(tmp_path):
    """Read from conf/ composed with the command line's choices, a run of one's own included;
    a sweep over profiles, an added (+) key and a key that is there are left alone."""
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(REPO_ROOT / "conf", conf)
    mine = (conf / "book" / "ch6-relu.yaml").read_text().replace("\nch6-relu:", "\nmy-tanh:", 1)
    (conf / "book" / "my-tanh.yaml").write_text(mine)
    assert override_problem(["profile=smoke", "book=my-tanh", "book.my-tanh.training.eta=0.1"], conf) is None
    assert override_problem(["profile=smoke", "book=my-tanh", "book.my-tanh.training.etaa=0.1"], conf).startswith(
        "book.my-tanh.training.etaa: unknown key; allowed keys: epochs, batch_size, eta, momentum")
    assert override_problem(["profile=smoke", "book=my-tanh", "book.my-tanh.training.momentum=0.5"], conf) == (
        "book.my-tanh.training.momentum: not set in this run's config (it takes the engine's default); add it "
        "with +book.my-tanh.training.momentum=0.5")
    assert override_problem(["book=ch6-relu", "book.ch6-relu.model.layers.9.units=3"], conf) == (
        "book.ch6-relu.model.layers.9.units: book.ch6-relu.model.layers is a list of 4; '9' is not one of its "
        "indices 0..3")
    assert override_problem(["compute.devise=gpu"], conf).startswith(
        "compute.devise: unknown key 'devise' under compute; allowed keys: ")
    assert override_problem(["-m", "profile=smoke,quick", "book.ch1-30.training.etaa=0.1"], conf) is None
    assert override_problem(["+book.ch1-30.training.etaa=0.1"], conf) is None
    # what a + or ++ before it made is there; a misspelt key below an absent one is no "add it"
    assert override_problem(["++book.ch1-30.training.momentum=0.5", "book.ch1-30.training.momentum=0.4"],
                            conf) is None
    assert override_problem(["book.ch1-30.training.regularization.lmbdaa=5"], conf) == (
        "book.ch1-30.training.regularization.lmbdaa: unknown key; allowed keys: kind, lmbda, scaling")
    # a bare run or profile name: Hydra's "missing EQUAL"; an option's own value is no setting
    assert override_problem(["ch1-30"], conf) == "ch1-30: a setting is key=value: book=ch1-30"
    assert override_problem(["-m", "smoke"], conf) == "smoke: a setting is key=value: profile=smoke"
    assert override_problem(["--cfg", "job", "--info", "plugins"], conf) is None
    (conf / "book" / "job.yaml").write_text(mine.replace("\nmy-tanh:", "\njob:", 1))
    assert override_problem(["--cfg", "job"], conf) is None
    assert override_problem(["profile=smoke", "book.ch1-30.training.eta=0.1", "data.n_train=100"], conf) is None


def test_a_setting_of_a_run_not_trained_is_named():
    assert override_problem(["book=ch1-30", "+book.ch6-relu.training.momentum=0.5"]) == (
        "book.ch6-relu.training.momentum: a setting of ch6-relu, but the run trained is book=ch1-30: "
        "add book=ch6-relu")
    assert override_problem(["-m", "book=ch1-30,ch3-l2-30", "book.ch6-relu.training.eta=1"]).endswith(
        "but the runs trained are book=ch1-30,ch3-l2-30: add book=ch6-relu")
    assert override_problem(["book=ch6-relu", "book.ch6-relu.training.eta=1"]) is None
    assert override_problem(["-m", "book=ch1-30,ch6-relu", "book.ch6-relu.training.eta=1"]) is None
    assert override_problem(["book.ch1-30.training.eta=1"]) is None  # conf/train.yaml's default run
    # a whole run's key, a quoted choice, a removed choice
    assert override_problem(["+book.my-run={chapter: 6}"]).startswith("book.my-run: a setting of my-run")
    assert override_problem(["book='ch6-relu'", "book.ch6-relu.training.eta=1"]) is None
    assert override_problem(["~book", "book.ch1-30.training.eta=1"]) is None
    # another config folder may default to another run: only a named book= is held to
    assert override_problem(["--config-dir", "mine", "book.my-run.training.eta=1"]) is None
    assert override_problem(["--config-dir", "mine", "book=a", "book.my-run.training.eta=1"]).endswith(
        "add book=my-run")


def test_what_the_app_has_passes_the_check():
    assert override_problem(["-m", "book=ch1-30, ch6-relu", "seed=1,2", "eta=0.1", "+book.ch1-30.x=1",
                             "compute.device=gpu", "hydra/launcher=joblib", "hydra.run.dir=x",
                             "profile.limits.epochs=3", "book=glob(ch1-*)"]) is None
    # a run file in a config folder of one's own
    assert override_problem(["--config-dir", "my-runs", "book=my-run"]) is None
    assert override_problem(["-cd=my-runs", "book=my-run"]) is None


def test_an_output_folder_that_cannot_be_made_is_said_in_a_line(tmp_path, monkeypatch):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    assert output_dir_problem([f"hydra.run.dir={a_file}/run"]) == (
        f"hydra.run.dir={a_file}/run: {a_file} is a file, not a folder, so the run's folder cannot be "
        f"made there; name another folder")
    assert "is a file" in output_dir_problem([f"hydra.sweep.dir='{a_file}'"])
    assert output_dir_problem([f"hydra.run.dir={tmp_path}/new/deeper", "book=ch1-30"]) is None
    assert output_dir_problem([f"hydra.run.dir={tmp_path}/" + "${now:%H}"]) is None  # Hydra fills it in
    assert output_dir_problem([f"data.prepared_dir={a_file}/x"]) is None  # not an output folder
    # a folder one may not write in (root may write anywhere, so os.access is asked as a user's would answer)
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path or not mode & os.W_OK)
    assert output_dir_problem([f"hydra.run.dir={tmp_path}/run"]) == (
        f"hydra.run.dir={tmp_path}/run: {tmp_path} is not writable by you, so the run's folder cannot be "
        f"made there; name a folder you can write in")


def test_the_app_refuses_an_output_folder_under_a_file_before_hydra_starts(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    done = subprocess.run([sys.executable, "-m", "pipeline.train", "book=ch1-30", f"hydra.run.dir={a_file}/run"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().endswith("is a file, not a folder, so the run's folder cannot be made there; "
                                        "name another folder")
    assert "Traceback" not in done.stderr


# What Python 3.14's argparse does as each argument is added (its `_ActionsContainer._check_help`):
# format the help, and refuse one that does not format as a string
PYTHON_314_HELP_CHECK = """
import argparse

def _check_help(self, action):
    if action.help and hasattr(self, "_get_formatter"):
        try:
            self._get_formatter()._expand_help(action)
        except (ValueError, TypeError, KeyError) as error:
            raise ValueError("badly formed help string") from error

_add_argument = argparse._ActionsContainer.add_argument

def add_argument(self, *args, **kwargs):
    action = _add_argument(self, *args, **kwargs)
    self._check_help(action)
    return action

argparse._ActionsContainer._check_help = _check_help
argparse._ActionsContainer.add_argument = add_argument
"""


@pytest.fixture
def python_314_help_check():
    """argparse as on Python 3.14, for the length of a test (this Python has no such check)."""
    import argparse

    saved = {name: vars(argparse._ActionsContainer).get(name) for name in ("_check_help", "add_argument")}
    exec(PYTHON_314_HELP_CHECK, {})
    yield
    for name, value in saved.items():
        if value is None:
            delattr(argparse._ActionsContainer, name)
        else:
            setattr(argparse._ActionsContainer, name, value)


def test_hydras_parser_is_built_on_python_314_and_other_helps_are_still_checked(python_314_help_check):
    """hydra#3121: Hydra 1.3's `--shell-completion` help is not a string, which 3.14 refuses."""
    import argparse

    from hydra._internal.utils import get_args_parser

    with pytest.raises(ValueError, match="badly formed help string"):
        get_args_parser()  # what every Hydra 1.3 app meets on 3.14
    with hydra_parser_allowed():
        assert "--shell-completion" in get_args_parser().format_usage()
        with pytest.raises(ValueError, match="badly formed help string"):
            argparse.ArgumentParser().add_argument("--x", help="%(no_such_key)s")
    assert "_check_help" not in vars(argparse.ArgumentParser)  # as it was
    with pytest.raises(ValueError, match="badly formed help string"):
        get_args_parser()


def test_before_python_314_nothing_is_changed():
    import argparse

    if hasattr(argparse.ArgumentParser, "_check_help"):
        pytest.skip("this Python checks helps: the test above covers it")
    with hydra_parser_allowed():
        assert not hasattr(argparse.ArgumentParser, "_check_help")


def test_the_app_reads_its_command_line_under_python_314s_argparse():
    """The app's own entry point, in a Python whose argparse checks helps as 3.14's does."""
    start = PYTHON_314_HELP_CHECK + (
        "import runpy, sys\n"
        "sys.argv = ['pipeline.train', 'book=ch1-30', '--cfg', 'job']\n"
        "runpy.run_module('pipeline.train', run_name='__main__', alter_sys=True)\n")
    result = subprocess.run([sys.executable, "-c", start], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ch1-30:" in result.stdout and "badly formed" not in result.stderr
