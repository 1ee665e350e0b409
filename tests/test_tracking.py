"""pipeline.tracking against a real temporary sqlite store."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipeline import machine, tracking

# MLflow's own store setup emits a SQLAlchemy deprecation warning; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow")

DVC_ENV = ("DVC_ROOT", "DVC_STAGE", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV")


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> Path:
    """One store for the module: creating a sqlite store runs its migrations (seconds)."""
    return tmp_path_factory.mktemp("store")


@pytest.fixture
def client(store_dir, monkeypatch) -> MlflowClient:
    uri = f"sqlite:///{store_dir}/mlflow.db"
    for name in DVC_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("DVC_ROOT", str(store_dir))
    monkeypatch.chdir(store_dir)
    return MlflowClient(tracking_uri=uri)


def run_of(client: MlflowClient, run_id: str):
    return client.get_run(run_id)


def test_params_are_flattened_stringified_and_batched(client):
    many = {f"p{i:03d}": i for i in range(150)}  # more than one 100-param batch
    params = {
        "net": {"sizes": [784, 30, 10], "cost": "cross_entropy", "init": {"scheme": "default"}},
        "train": {"eta": 0.5, "epochs": 30, "lmbda": None},
        "note": "x" * 700,
        "many": many,
    }
    with tracking.start_run("params", params=params) as run:
        pass
    logged = run_of(client, run.run_id).data.params
    assert logged["net.sizes"] == "[784, 30, 10]"
    assert logged["net.cost"] == "cross_entropy"
    assert logged["net.init.scheme"] == "default"
    assert logged["train.eta"] == "0.5"
    assert logged["train.epochs"] == "30"
    assert logged["train.lmbda"] == "None"
    assert len(logged["note"]) <= tracking.PARAM_VALUE_MAX
    assert logged["note"].startswith("xxx")
    assert {f"many.p{i:03d}" for i in range(150)} <= set(logged)
    assert logged["many.p149"] == "149"
    assert len(logged) == 6 + 1 + 150


def test_log_epoch_uses_epoch_as_step_and_skips_missing_values(client):
    records = [
        {
            "epoch": e,
            "eta": 0.5,
            "seconds": 1.0 + e,
            "training_cost": 1.0 / (e + 1),
            "validation_accuracy": 0.90 + 0.01 * e,
            "test_accuracy": None if e == 1 else 0.89 + 0.01 * e,  # None: not logged
            "grad_norm_layer1": 0.1 * e,
        }
        for e in range(4)
    ]
    with tracking.start_run("epochs") as run:
        for record in records:
            run.log_epoch(record)
        run.log_metrics({"best_validation_accuracy": 0.93, "skipped": None})

    history = client.get_metric_history(run.run_id, "validation_accuracy")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [0, 1, 2, 3]
    assert {m.step: m.value for m in history} == pytest.approx({0: 0.90, 1: 0.91, 2: 0.92, 3: 0.93})
    seconds = client.get_metric_history(run.run_id, "epoch_seconds")
    assert {m.step: m.value for m in seconds} == {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}
    test = client.get_metric_history(run.run_id, "test_accuracy")
    assert sorted(m.step for m in test) == [0, 2, 3]
    assert len(client.get_metric_history(run.run_id, "grad_norm_layer1")) == 4
    metrics = run_of(client, run.run_id).data.metrics
    assert "epoch" not in metrics and "seconds" not in metrics and "skipped" not in metrics
    assert metrics["best_validation_accuracy"] == 0.93
    assert metrics["training_cost"] == pytest.approx(0.25)  # latest value
    assert metrics["eta"] == 0.5


def test_epochs_are_written_in_batches_a_second_apart_and_all_before_the_run_ends(client, monkeypatch):
    """Fast epochs share a store write (one a second at most), so a net whose epochs take
    milliseconds does not spend its time in sqlite; every epoch is in before the run ends,
    also when it is interrupted."""
    clock = [0.0]
    monkeypatch.setattr(tracking.time, "monotonic", lambda: clock[0])
    log_batch = _refused(0, MlflowClient.log_batch)
    monkeypatch.setattr(MlflowClient, "log_batch", lambda self, *a, **k: log_batch(self, *a, **k))

    def steps(run_id):
        return sorted(m.step for m in client.get_metric_history(run_id, "validation_accuracy"))

    with tracking.start_run("fast epochs") as run:
        for epoch in range(95):
            clock[0] += 0.125  # an epoch of 1/8 s
            run.log_epoch({"epoch": epoch, "validation_accuracy": 0.5, "test_accuracy": 0.5})
            if epoch == 25:
                # written up to the last full second: epochs 0-23 (the clock is at 3.25 s)
                assert steps(run.run_id) == list(range(24))
                assert run.pending == 2 * 2
    assert steps(run.run_id) == list(range(95))
    assert len(client.get_metric_history(run.run_id, "test_accuracy")) == 95
    assert log_batch.calls == 12  # one for each of 11 full seconds, one for the last 7 epochs
    assert status_of(client, run.run_id) == "FINISHED"

    with pytest.raises(KeyboardInterrupt):
        with tracking.start_run("stopped") as run:
            for epoch in range(3):
                run.log_epoch({"epoch": epoch, "validation_accuracy": 0.5})
            assert run.pending == 3
            raise KeyboardInterrupt
    assert steps(run.run_id) == [0, 1, 2]
    assert status_of(client, run.run_id) == "KILLED"


def test_a_stop_during_a_store_write_waits_for_the_write_to_end():
    """SIGTERM raised inside a sqlite transaction once left it open, and the run's closing
    writes then waited on the process's own lock until the test timed out."""
    from pipeline import interrupts

    done = []

    def write():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)  # the handler would run here if the signal were not held
        done.append("written")
        return "result"

    with pytest.raises(interrupts.Terminated), interrupts.stops_raise_once():
        tracking._write(write)
    assert done == ["written"]
    with interrupts.signals_held() as came:  # while a run is created or closed: held on for it
        assert tracking._write(write) == "result"
    assert came == [signal.SIGTERM] and done == ["written"] * 2


def test_epochs_a_failed_write_left_out_go_in_when_the_run_ends_failed(client, monkeypatch):
    from mlflow.exceptions import MlflowException

    clock = [0.0]
    monkeypatch.setattr(tracking.time, "monotonic", lambda: clock[0])
    with pytest.raises(MlflowException, match="database is locked"):
        with tracking.start_run("write failed") as run:
            run.log_epoch({"epoch": 0, "validation_accuracy": 0.5})
            bad = _refused(1, MlflowClient.log_batch, code="INVALID_PARAMETER_VALUE")
            monkeypatch.setattr(MlflowClient, "log_batch", lambda self, *a, **k: bad(self, *a, **k))
            clock[0] = 1.0
            run.log_epoch({"epoch": 1, "validation_accuracy": 0.6})  # its write fails
    assert run.pending == 0 and bad.calls == 2
    history = client.get_metric_history(run.run_id, "validation_accuracy")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.5), (1, 0.6)]
    assert status_of(client, run.run_id) == "FAILED"


def test_standard_tags_reach_the_run(client, monkeypatch, tmp_path):
    monkeypatch.setenv("DVC_STAGE", "train@ch1-30-hidden")
    monkeypatch.setenv("DVC_EXP_NAME", "brave-newt")
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "init"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    monkeypatch.chdir(repo)

    tags = tracking.standard_tags("ch1-fig1", 1, "smoke", 12345, "sha256:abc")
    with tracking.start_run("tags", tags=tags) as run:
        run.set_tags({"extra": "yes", "dropped": None})
    logged = run_of(client, run.run_id).data.tags
    assert logged["book_id"] == "ch1-fig1"
    assert logged["chapter"] == "1"
    assert logged["profile"] == "smoke"
    assert logged["seed"] == "12345"
    assert logged["data_digest"] == "sha256:abc"
    assert logged["mlflow.source.git.commit"] == head.strip()
    assert logged["git_dirty"] == "false"
    assert logged["dvc.stage"] == "train@ch1-30-hidden"
    assert logged["dvc.exp_name"] == "brave-newt"
    assert "dvc.exp_baseline_rev" not in logged
    assert logged["python_version"].count(".") == 2
    assert logged["numpy_version"]
    assert logged["cpu"] == machine.cpu_model()
    assert "OpenBLAS" in logged["blas"]  # numpy's wheels bring OpenBLAS
    assert logged["mlflow.runName"] == "tags"
    assert logged["extra"] == "yes" and "dropped" not in logged


def test_the_dirty_flag_is_the_code_not_what_dvc_rewrites(monkeypatch, tmp_path):
    """DVC rewrites dvc.lock after each stage and .gitignore files for new outputs: a run after
    the first is not trained on changed code for that. A config file not yet added is a change."""
    import subprocess

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@e", *args], cwd=tmp_path,
                       check=True, capture_output=True)

    git("init", "-q")
    for name in ("dvc.lock", ".gitignore", "models/.gitignore", "train.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("a\n")
    git("add", ".")
    git("commit", "-qm", "code")
    monkeypatch.chdir(tmp_path)
    for name in ("dvc.lock", ".gitignore", "models/.gitignore"):
        (tmp_path / name).write_text("b\n")
    assert tracking.environment_tags()["git_dirty"] == "false"
    (tmp_path / "train.py").write_text("b\n")
    assert tracking.environment_tags()["git_dirty"] == "true"
    git("checkout", "--", "train.py")
    (tmp_path / "notes.txt").write_text("new\n")  # a new file outside code and config: clean
    assert tracking.environment_tags()["git_dirty"] == "false"
    (tmp_path / "conf/book").mkdir(parents=True)
    (tmp_path / "conf/book/my-tanh.yaml").write_text("my-tanh: {}\n")  # not added: not in the commit
    assert tracking.environment_tags()["git_dirty"] == "true"


def test_standard_tags_without_git(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable
    tags = tracking.standard_tags("b", 1, "smoke", 0, "d")
    assert "mlflow.source.git.commit" not in tags
    assert tags["book_id"] == "b"


def status_of(client, run_id) -> str:
    return run_of(client, run_id).info.status


def test_normal_exit_is_finished(client):
    with tracking.start_run("ok") as run:
        assert status_of(client, run.run_id) == "RUNNING"
    assert status_of(client, run.run_id) == "FINISHED"


def test_exception_is_failed_and_reraised(client):
    with pytest.raises(ValueError, match="diverged"):
        with tracking.start_run("boom") as run:
            raise ValueError("diverged")
    assert status_of(client, run.run_id) == "FAILED"


def test_keyboard_interrupt_is_killed_and_reraised(client):
    with pytest.raises(KeyboardInterrupt):
        with tracking.start_run("ctrl-c") as run:
            raise KeyboardInterrupt
    assert status_of(client, run.run_id) == "KILLED"


def _run_killed_outright(store_dir, name: str, inside: str = "") -> tuple[str, int]:
    """A process that starts a run named ``name`` (and runs the lines ``inside`` it), then is
    killed with SIGKILL, its run left RUNNING: the run's id and the process's pid."""
    child = subprocess.Popen(
        [sys.executable, "-c", f"import time\nfrom pipeline import tracking\n"
         f"with tracking.start_run({name!r}) as run:\n{inside}"
         "    print(run.run_id, flush=True)\n    time.sleep(600)\n"],
        cwd=store_dir, stdout=subprocess.PIPE, text=True)
    killed_id = child.stdout.readline().strip()
    child.kill()
    child.wait(timeout=30)
    return killed_id, child.pid


def test_a_run_whose_process_was_killed_outright_is_ended_killed_by_the_next_run(client, store_dir):
    """SIGKILL (or the out-of-memory killer) gives a run no chance to end: the next run started
    on the machine ends it KILLED. Runs of live processes and of other machines stay RUNNING."""
    killed_id, killed_pid = _run_killed_outright(store_dir, "killed outright")
    assert status_of(client, killed_id) == "RUNNING"
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT).experiment_id
    elsewhere = client.create_run(experiment, tags={"host": "another-machine", "pid": str(killed_pid)})
    alive = client.create_run(experiment, tags={"host": socket.gethostname(), "pid": str(os.getpid())})
    with tracking.start_run("next") as run:
        pass
    assert status_of(client, killed_id) == "KILLED"
    assert f"process {killed_pid} that started it was gone" in client.get_run(killed_id).data.tags["ended_by"]
    assert status_of(client, elsewhere.info.run_id) == status_of(client, alive.info.run_id) == "RUNNING"
    tags = client.get_run(run.run_id).data.tags
    assert (tags["host"], tags["pid"]) == (socket.gethostname(), str(os.getpid()))
    for other in (elsewhere, alive):
        client.set_terminated(other.info.run_id, "KILLED")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize("ending", ["ctrl-c", "finished"])
def test_a_stop_while_the_run_closes_waits_until_it_is_closed(client, monkeypatch, ending, sig):
    """Ctrl-C or SIGTERM while a stopped run writes its status (or while a finished one does)
    cannot leave the run RUNNING: it is held until the run is closed, then raised if the run
    had finished, dropped if it was already being stopped."""
    real, seen = MlflowClient.set_terminated, []

    def set_terminated_hit_by_a_signal(self, *args, **kwargs):
        os.kill(os.getpid(), sig)
        time.sleep(0.05)  # Python would run a handler here, between bytecodes
        seen.append(signal.getsignal(sig))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "set_terminated", set_terminated_hit_by_a_signal)
    # Python's own Ctrl-C handler, as in a terminal (a process started in the background, as
    # pytest-xdist's workers under CI may be, inherits SIGINT ignored)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    before = signal.getsignal(sig)
    try:
        with pytest.raises(KeyboardInterrupt) as stopped:
            with tracking.start_run(ending) as run:
                run.log_epoch({"epoch": 0, "validation_accuracy": 0.5})
                if ending == "ctrl-c":
                    raise KeyboardInterrupt("the first Ctrl-C")
        restored = signal.getsignal(sig)
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert status_of(client, run.run_id) == ("KILLED" if ending == "ctrl-c" else "FINISHED")
    if ending == "ctrl-c":
        assert str(stopped.value) == "the first Ctrl-C"
    else:
        assert isinstance(stopped.value, tracking.Terminated) == (sig == signal.SIGTERM)
        assert "while an MLflow run was being created or closed" in str(stopped.value)
    assert len(seen) == 1 and seen[0] not in (signal.default_int_handler, before)  # held during the write
    assert restored is before  # and restored after


def test_a_stop_while_the_run_is_created_ends_it_killed_before_its_work(client, monkeypatch):
    real, ran = MlflowClient.create_run, []

    def create_run_hit_by_sigterm(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "create_run", create_run_hit_by_sigterm)
    with pytest.raises(tracking.Terminated):
        with tracking.start_run("stopped at birth"):
            ran.append(True)
    (run,) = client.search_runs([client.get_experiment_by_name(tracking.EXPERIMENT).experiment_id],
                                filter_string="attributes.run_name = 'stopped at birth'")
    assert run.info.status == "KILLED" and ran == []


def test_a_stop_the_moment_the_run_exists_ends_it_killed(client, monkeypatch):
    """The step after MLflow made the run is already inside the part that ends it: a stop
    there (raised from the run's logger, as a signal's handler would raise it) does not leave
    it RUNNING."""
    def stopped(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(tracking, "RunLogger", stopped)
    with pytest.raises(KeyboardInterrupt):
        with tracking.start_run("stopped at once"):
            pytest.fail("the run's work began")
    (run,) = client.search_runs([client.get_experiment_by_name(tracking.EXPERIMENT).experiment_id],
                                filter_string="attributes.run_name = 'stopped at once'")
    assert run.info.status == "KILLED"


def test_a_run_mlflow_could_not_make_raises_mlflows_error(client, monkeypatch):
    from mlflow.exceptions import MlflowException

    def refused(*args, **kwargs):
        raise MlflowException("the store refused it")

    monkeypatch.setattr(MlflowClient, "create_run", refused)
    with pytest.raises(MlflowException, match="the store refused it"):
        with tracking.start_run("never made"):
            pytest.fail("the run's work began")


def _refused(times: int, real, code: str = "TEMPORARILY_UNAVAILABLE"):
    """``real``, but raising MLflow's "temporarily unavailable" (a busy sqlite store; or the
    error ``code`` names) the first ``times`` calls; ``calls`` counts every attempt."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos import databricks_pb2

    def call(*args, **kwargs):
        call.calls += 1
        if call.calls <= times:
            raise MlflowException("(sqlite3.OperationalError) database is locked",
                                  error_code=getattr(databricks_pb2, code))
        return real(*args, **kwargs)

    call.calls = 0
    return call


def test_writes_a_busy_store_refuses_are_retried(client, monkeypatch):
    """Two seeds' processes writing to one sqlite store: the one refused at once ("database is
    locked", rolled back) writes again, and a run still ends KILLED when its closing write was
    the refused one (in CI it once stayed RUNNING)."""
    sleeps = []
    # tracking's own clock only: MLflow's telemetry thread (on outside CI) sleeps in time.sleep too
    monkeypatch.setattr(tracking, "time", types.SimpleNamespace(sleep=sleeps.append, time=time.time,
                                                                 monotonic=time.monotonic))
    log_batch = _refused(2, MlflowClient.log_batch)
    set_terminated = _refused(1, MlflowClient.set_terminated)
    monkeypatch.setattr(MlflowClient, "log_batch", lambda self, *a, **k: log_batch(self, *a, **k))
    monkeypatch.setattr(MlflowClient, "set_terminated", lambda self, *a, **k: set_terminated(self, *a, **k))
    with pytest.raises(KeyboardInterrupt):
        with tracking.start_run("busy") as run:
            run.log_epoch({"epoch": 0, "validation_accuracy": 0.5})
            raise KeyboardInterrupt
    assert status_of(client, run.run_id) == "KILLED"
    assert [m.value for m in client.get_metric_history(run.run_id, "validation_accuracy")] == [0.5]
    assert (log_batch.calls, set_terminated.calls) == (3, 2) and sleeps == [0.05, 0.1, 0.05]


def test_writes_are_not_retried_for_other_errors_or_forever(client, monkeypatch):
    from mlflow.exceptions import MlflowException

    monkeypatch.setattr(tracking.time, "sleep", lambda s: None)
    real_log_batch = MlflowClient.log_batch
    with tracking.start_run("refused") as run:
        bad = _refused(1, MlflowClient.log_batch, code="INVALID_PARAMETER_VALUE")
        monkeypatch.setattr(MlflowClient, "log_batch", lambda self, *a, **k: bad(self, *a, **k))
        with pytest.raises(MlflowException, match="database is locked"):
            run.log_metrics({"x": 1.0})
        assert bad.calls == 1
        busy = _refused(tracking.STORE_RETRIES, MlflowClient.log_batch)
        monkeypatch.setattr(MlflowClient, "log_batch", lambda self, *a, **k: busy(self, *a, **k))
        with pytest.raises(MlflowException, match="database is locked"):
            run.log_metrics({"x": 1.0})
        assert busy.calls == tracking.STORE_RETRIES
        monkeypatch.setattr(MlflowClient, "log_batch", real_log_batch)
    assert status_of(client, run.run_id) == "FINISHED"


def test_sigterm_is_killed_and_handler_restored(client):
    def previous(signum, frame):  # a handler the caller had installed
        pass

    old = signal.signal(signal.SIGTERM, previous)
    try:
        with pytest.raises(tracking.Terminated):
            with tracking.start_run("sigterm") as run:
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(100):  # Python runs the handler between bytecodes
                    time.sleep(0.01)
                pytest.fail("SIGTERM did not interrupt the run")
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, old)
    assert status_of(client, run.run_id) == "KILLED"
    assert issubclass(tracking.Terminated, KeyboardInterrupt)


@pytest.mark.parametrize("stop", [KeyboardInterrupt, tracking.Terminated])
def test_a_stop_that_a_library_turned_into_its_own_error_is_still_a_stop(client, stop):
    """matplotlib's first load of its backend, cut short by a Ctrl-C, raised ImportError
    "initialization failed" from the KeyboardInterrupt: the run ended FAILED."""
    with pytest.raises(stop) as raised:
        with tracking.start_run("stopped in a library") as run:
            try:
                raise stop()
            except KeyboardInterrupt as cut_short:
                raise ImportError("initialization failed") from cut_short
    assert type(raised.value) is stop and isinstance(raised.value.__cause__, ImportError)
    assert status_of(client, run.run_id) == "KILLED"
    with pytest.raises(ImportError):  # an error with no stop among its causes stays what it is
        with tracking.start_run("failed in a library") as run:
            raise ImportError("no such module")
    assert status_of(client, run.run_id) == "FAILED"


def test_artifacts_land_next_to_the_store_and_are_listed(client, store_dir, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (tmp_path / "model.json").write_text('{"sizes": [784, 30, 10]}')
    outdir = tmp_path / "out"
    (outdir / "sub").mkdir(parents=True)
    (outdir / "a.txt").write_text("a")
    (outdir / "sub" / "b.txt").write_text("b")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])

    with tracking.start_run("artifacts") as run:
        run.log_artifact(tmp_path / "model.json")
        run.log_artifact(tmp_path / "model.json", artifact_path="models")
        run.log_artifacts(outdir, "outputs")
        run.log_figure(fig, "figures/curve.png")
        run.log_dict({"eta": 0.5}, "config.json")
    plt.close(fig)

    def listing(path=None):
        return {f.path for f in client.list_artifacts(run.run_id, path)}

    assert listing() == {"model.json", "models", "outputs", "figures", "config.json"}
    assert listing("outputs") == {"outputs/a.txt", "outputs/sub"}
    assert listing("outputs/sub") == {"outputs/sub/b.txt"}
    assert listing("figures") == {"figures/curve.png"}

    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    expected_root = store_dir / "mlartifacts" / tracking.EXPERIMENT
    assert experiment.artifact_location == expected_root.as_uri()
    files = expected_root / run.run_id / "artifacts"
    assert (files / "figures" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((files / "config.json").read_text()) == {"eta": 0.5}


def test_a_store_it_cannot_write_is_refused_before_a_run_but_read(monkeypatch, tmp_path):
    from pipeline.errors import InputError

    for name in DVC_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    with tracking.start_run("while it was writable"):
        pass
    real_access = os.access
    # root writes anywhere: the file as a read-only mount or a chmod would make it for a user
    monkeypatch.setattr(os, "access", lambda path, mode: mode != os.W_OK and real_access(path, mode))
    with pytest.raises(InputError, match=rf"the tracking store sqlite:///{tmp_path}/mlflow.db cannot be written "
                                         rf"here: {tmp_path}/mlflow.db is read-only for this user"):
        tracking.start_run("now").__enter__()
    client, experiment_id = tracking._client(create=False)  # reading it needs no write
    assert [r.info.run_name for r in client.search_runs([experiment_id])] == ["while it was writable"]


def test_a_tracking_uri_in_a_folder_that_does_not_exist_is_named_not_made(monkeypatch, tmp_path):
    from pipeline.errors import InputError

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/no-such-folder/mlflow.db")
    with pytest.raises(InputError, match=rf"MLFLOW_TRACKING_URI names a store in {tmp_path}/no-such-folder, "
                                         r"a folder that does not exist: fix the path, or make the folder"):
        tracking.start_run("never").__enter__()
    assert not (tmp_path / "no-such-folder").exists()


def test_a_store_moved_from_another_folder_is_refused_with_the_fix(monkeypatch, tmp_path):
    """MLflow records the experiment's artifact folder whole: in a moved repository its runs
    would list no artifacts and new ones would go to the old folder."""
    from pipeline.errors import InputError

    for name in DVC_ENV:
        monkeypatch.delenv(name, raising=False)
    old, new = tmp_path / "repo", tmp_path / "moved"
    old.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{old}/mlflow.db")
    with tracking.start_run("before the move"):
        pass
    old.rename(new)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{new}/mlflow.db")
    for reading in (False, True):
        with pytest.raises(InputError, match=rf"keeps its runs' artifacts in {(old / 'mlartifacts').as_uri()}/"
                                             rf"nielsen-mnist, not beside it in {(new / 'mlartifacts').as_uri()}/"
                                             r"nielsen-mnist: the folder was moved .*pipeline.restore_runs"):
            tracking.stored_models() if reading else tracking.start_run("after").__enter__()


@pytest.mark.parametrize("store", ["not-a-database", "under-a-file", "a-folder", "under-proc"])
def test_an_unusable_store_is_named_with_where_it_comes_from(monkeypatch, tmp_path, store):
    """At once: a folder is not left to MLflow's minutes of retries, nor a lock file that
    cannot be made (under /proc) to filelock's endless ones."""
    from pipeline.errors import InputError

    if store == "not-a-database":
        (tmp_path / "mlflow.db").write_text("garbage, not sqlite")
        uri = f"sqlite:///{tmp_path}/mlflow.db"
    elif store == "under-a-file":
        (tmp_path / "afile").write_text("")
        uri = f"sqlite:///{tmp_path}/afile/mlflow.db"
    elif store == "a-folder":
        (tmp_path / "mlflow.db").mkdir()
        uri = f"sqlite:///{tmp_path}/mlflow.db"
    else:
        if not Path("/proc/self").is_dir():
            pytest.skip("no /proc")
        uri = "sqlite:////proc/no-such.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(InputError, match=r"MLflow cannot use the tracking store sqlite:///.*it comes from "
                                         r"MLFLOW_TRACKING_URI: fix it, or unset it"):
        with tracking.start_run("never"):
            pytest.fail("a run started")


def test_a_store_another_process_holds_locked_is_not_called_damaged(monkeypatch, tmp_path):
    """A lock held past the wait (another process hangs while opening the store) is named as
    such: moving mlflow.db aside, the fix for a damaged store, would set its runs aside."""
    import filelock

    from pipeline.errors import InputError

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(tracking, "tracking_uri", lambda: uri)
    monkeypatch.setattr(tracking, "STORE_LOCK_SECONDS", 0.2)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time, filelock
        with filelock.FileLock("{tmp_path}/mlflow.db.lock"):
            print("held", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=r"another process holds locked.*the store itself is fine") as raised:
            with tracking.start_run("never"):
                pytest.fail("a run started")
        assert isinstance(raised.value.__cause__, filelock.Timeout)
        assert "move a damaged mlflow.db aside" not in str(raised.value)
    finally:
        holder.kill()
        holder.wait()


def test_a_tracking_server_that_does_not_answer_is_named_at_once(monkeypatch):
    """Not after MLflow's minutes of retries: a port nobody listens on is refused."""
    import socket

    from pipeline.errors import InputError

    with socket.socket() as probe:  # a free port, closed again: connecting to it is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)  # a proxy would leave the server to MLflow's retries
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    with pytest.raises(InputError, match=rf"tracking store http://127.0.0.1:{port} \(ConnectionError: "
                                         rf"no server answers at 127.0.0.1:{port}.*it comes from MLFLOW_TRACKING_URI"):
        with tracking.start_run("never"):
            pytest.fail("a run started")


def test_the_server_check_leaves_proxied_servers_to_mlflow_and_names_a_uri_without_a_host(monkeypatch):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:3128")  # requests would go through it
    tracking._check_server_answers(f"http://127.0.0.1:{port}")  # no direct probe: no error
    monkeypatch.setenv("no_proxy", "127.0.0.1")  # ...unless the host bypasses the proxy
    with pytest.raises(ConnectionError, match=f"no server answers at 127.0.0.1:{port}"):
        tracking._check_server_answers(f"http://127.0.0.1:{port}")
    with pytest.raises(ConnectionError, match="names no host"):
        tracking._check_server_answers("http:///experiments")


def test_tracking_uri_prefers_env_then_dvc_root_then_project_root(monkeypatch, tmp_path):
    for name in ("MLFLOW_TRACKING_URI", *DVC_ENV):
        monkeypatch.delenv(name, raising=False)
    project = tmp_path / "project"
    deep = project / "pipeline" / "stages"
    deep.mkdir(parents=True)
    (project / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(deep)
    assert tracking.tracking_uri() == f"sqlite:///{project}/mlflow.db"

    elsewhere = tmp_path / "main-repo"
    monkeypatch.setenv("DVC_ROOT", str(elsewhere))
    assert tracking.tracking_uri() == f"sqlite:///{elsewhere}/mlflow.db"
    assert tracking.artifact_root() == elsewhere / "mlartifacts"

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri() == "http://127.0.0.1:5000"
    assert tracking.artifact_root() is None


def test_runs_go_to_dvc_root_store_from_a_temp_workspace(monkeypatch, tmp_path):
    """A queued DVC experiment runs in a temporary copy but logs to the main repo's store."""
    for name in ("MLFLOW_TRACKING_URI", *DVC_ENV):
        monkeypatch.delenv(name, raising=False)
    main, workspace = tmp_path / "main", tmp_path / "tmp-exp"
    main.mkdir()
    workspace.mkdir()
    (workspace / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.setenv("DVC_ROOT", str(main))
    monkeypatch.chdir(workspace)
    with tracking.start_run("queued") as run:
        run.log_dict({"a": 1}, "a.json")
    assert (main / "mlflow.db").is_file()
    assert not (workspace / "mlflow.db").exists()
    assert (main / "mlartifacts" / tracking.EXPERIMENT / run.run_id / "artifacts" / "a.json").is_file()
    client = MlflowClient(tracking_uri=f"sqlite:///{main}/mlflow.db")
    assert client.get_run(run.run_id).info.status == "FINISHED"


OPEN_STORE_WHEN_TOLD = """
import pathlib, sys, time
from pipeline import tracking  # imports mlflow before the race starts
ready, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
ready.touch()
while not go.exists():
    time.sleep(0.005)
tracking.init_store()
"""


def test_processes_opening_a_new_store_at_once_all_succeed(monkeypatch, tmp_path):
    """Parallel runs (joblib launcher, queued experiments) may open a not-yet-created sqlite
    store together; its schema migrations must run once, not collide."""
    for name in DVC_ENV:
        monkeypatch.delenv(name, raising=False)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    go, ready = tmp_path / "go", [tmp_path / f"ready{i}" for i in range(4)]
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_STORE_WHEN_TOLD, str(r), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in ready]
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(outputs)
    experiments = MlflowClient(tracking_uri=uri).search_experiments()
    assert [e.name for e in experiments].count(tracking.EXPERIMENT) == 1


def test_a_run_whose_last_epochs_cannot_be_written_does_not_end_finished(client, monkeypatch):
    """A FINISHED run holds every epoch it trained: when the closing write of the pending
    epochs fails, the run ends FAILED and the error is raised, not warned about."""
    from mlflow.exceptions import MlflowException

    clock = [0.0]
    monkeypatch.setattr(tracking.time, "monotonic", lambda: clock[0])
    real = MlflowClient.log_batch
    bad = _refused(10**6, real, code="INVALID_PARAMETER_VALUE")
    with pytest.raises(MlflowException, match="database is locked"), \
            pytest.warns(UserWarning, match="were not written"):
        with tracking.start_run("last write failed") as run:
            run.log_epoch({"epoch": 0, "validation_accuracy": 0.5})  # pending: under a second
            monkeypatch.setattr(MlflowClient, "log_batch", lambda self, *a, **k: bad(self, *a, **k))
    monkeypatch.setattr(MlflowClient, "log_batch", real)
    assert status_of(client, run.run_id) == "FAILED"


def test_a_queued_experiments_name_and_baseline_revision_are_tags_of_their_own(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git: only the environment's tags matter here
    monkeypatch.setenv("DVC_EXP_NAME", "brave-newt")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "0123abc")
    tags = tracking.standard_tags("b", 1, "smoke", 0, "d")
    assert (tags["dvc.exp_name"], tags["dvc.exp_baseline_rev"]) == ("brave-newt", "0123abc")


TINY_NET = {"model": {"input_shape": [784], "cost": "cross_entropy", "init": "default",
                     "layers": [{"type": "fc", "units": 5, "activation": "sigmoid"},
                                {"type": "fc", "units": 10, "activation": "sigmoid"}]},
            "training": {"epochs": 1, "batch_size": 10, "eta": 0.5}}


def _saved_nets(folder: Path, seeds) -> list:
    """Random (untrained) networks saved as model folders ``folder/seed<N>``, as a run saves them."""
    from pipeline.nn import build_network, save_model, validate_spec

    spec = validate_spec(TINY_NET)
    nets = []
    for seed in seeds:
        net = build_network(spec, seed=seed)
        save_model(folder / f"seed{seed}", net, spec, {"seed": seed})
        nets.append(net)
    return nets


def test_a_runs_model_loads_in_mlflow_and_predicts_what_the_network_does(client, tmp_path):
    """``mlflow.pyfunc.load_model("runs:/<id>/model")`` gives the run's network: the same
    predictions, the signature and the pixel range enforced; the model is listed with the
    run's params, its tags and its metrics at the epoch of its weights; ``download_model``
    (``predict --run``) gets the network folder back, with the run's test accuracy per epoch."""
    import mlflow.pyfunc
    import numpy as np
    from mlflow.artifacts import download_artifacts

    [net] = _saved_nets(tmp_path / "models", [1])
    with tracking.start_run("fc5", params={"eta": 0.5}, tags={"book_id": "fc5", "seed": 1, "other": "x"}) as run:
        for epoch in range(3):
            run.log_epoch({"epoch": epoch, "validation_accuracy": 0.5 + epoch / 10,
                           "test_accuracy": 0.6 + epoch / 10})
        model_id = run.log_model([tmp_path / "models" / "seed1"], net, step=2)
    assert "model" not in {a.path for a in client.list_artifacts(run.run_id)}  # stored once, as the model
    logged = client.get_logged_model(model_id)
    assert (logged.name, logged.source_run_id, str(logged.status)) == ("model", run.run_id, "READY")
    assert logged.params == {"eta": "0.5"}
    assert (logged.tags["book_id"], logged.tags["seed"], "other" in logged.tags) == ("fc5", "1", False)
    assert {m.key: m.value for m in logged.metrics} == pytest.approx({"validation_accuracy": 0.7,
                                                                       "test_accuracy": 0.8})
    folder = download_artifacts(f"runs:/{run.run_id}/model", dst_path=str(tmp_path / "pyfunc"),
                                tracking_uri=client.tracking_uri)
    model = mlflow.pyfunc.load_model(folder)
    x = np.random.default_rng(0).random((50, 784)).astype(net.dtype)
    assert np.array_equal(model.predict(x), net.predict(x))
    with pytest.raises(Exception, match="dtype of input float64 does not match expected dtype float32"):
        model.predict(x.astype(np.float64))  # the signature's dtype: the network's
    with pytest.raises(Exception, match="shape"):
        model.predict(x[:, :700])
    with pytest.raises(Exception, match=r"pixels must be numbers in \[0, 1\].*divided by 256"):
        model.predict(x * 255)
    downloaded = tracking.download_model(run.run_id, tmp_path / "download")
    assert downloaded.run_name == "fc5" and len(downloaded.folders) == 1
    assert (downloaded.folders[0] / "model.json").read_bytes() == (tmp_path / "models/seed1/model.json").read_bytes()
    assert downloaded.test_accuracy == pytest.approx({0: 0.6, 1: 0.7, 2: 0.8})


def test_a_model_of_several_networks_is_their_plurality_vote(client, tmp_path):
    """The ensemble's run logs one model of its nets; it predicts their vote (ties to the
    smaller digit), and ``download_model`` gives every net's folder, in order."""
    import mlflow.pyfunc
    import numpy as np

    from pipeline.nn import ensemble_predict

    nets = _saved_nets(tmp_path / "models", [1, 2, 3, 4])
    folders = [tmp_path / "models" / f"seed{seed}" for seed in (1, 2, 3, 4)]
    with tracking.start_run("vote") as run:
        run.log_metrics({"test_accuracy": 0.99})
        run.log_model(folders, nets[0], step=0)
    model = mlflow.pyfunc.load_model(f"runs:/{run.run_id}/model")
    x = np.random.default_rng(1).random((200, 784)).astype(nets[0].dtype)
    vote = model.predict(x)
    assert np.array_equal(vote, ensemble_predict(nets, x))
    assert not any(np.array_equal(vote, net.predict(x)) for net in nets)  # not one net's answer
    downloaded = tracking.download_model(run.run_id, tmp_path / "download")
    assert [json.loads((f / "model.json").read_text())["metadata"]["seed"] for f in downloaded.folders] == [1, 2, 3, 4]
    assert downloaded.test_accuracy == {}  # the vote's record is not any one net's


def test_the_models_code_checks_what_the_signature_cannot():
    """The range of the pixels (the ends included, no NaN), an empty batch, the pixels of a conv
    net's [C, H, W] images, and a model without networks: checked by the model's own code."""
    from types import SimpleNamespace

    import numpy as np

    from pipeline.mlflow_model import DigitClassifier
    from pipeline.nn import build_network, validate_spec

    with pytest.raises(ValueError, match="this model has no network among its artifacts"):
        DigitClassifier().load_context(SimpleNamespace(artifacts={}))
    conv = {"input_shape": [1, 4, 4], "cost": "log_likelihood", "init": "default",
            "layers": [{"type": "conv", "filters": 1, "kernel": 1, "pool": 2, "activation": "linear"},
                       {"type": "softmax", "units": 10}]}
    model = DigitClassifier()
    model.networks = [build_network(validate_spec(dict(TINY_NET, model=conv)), seed=1)]
    x = np.random.default_rng(0).random((5, 16))
    x[0, 0], x[1, 1] = 0.0, 1.0  # the ends of the range are pixels too
    assert np.array_equal(model.predict(None, x), model.networks[0].predict(x))
    assert model.predict(None, x[:0]).shape == (0,)
    for bad in (x - 0.5, np.where(x > 0.5, np.nan, x)):
        with pytest.raises(ValueError, match=r"pixels must be numbers in \[0, 1\]"):
            model.predict(None, bad)
    with pytest.raises(ValueError, match=r"one image a row, 16 pixels each; got an array of shape \(5, 15\)"):
        model.predict(None, x[:, :15])


def test_a_one_epoch_runs_model_is_listed_with_that_epochs_metrics_not_the_summary(client, tmp_path):
    """Summary metrics are logged at step 0 too: a run of one epoch (last epoch 0) must not
    list its model with them, or the Models tab would compare unlike sets."""
    [net] = _saved_nets(tmp_path / "models", [1])
    with tracking.start_run("one epoch") as run:
        run.log_epoch({"epoch": 0, "test_accuracy": 0.6, "seconds": 1.5})
        run.log_metrics({"best_validation_accuracy": 0.7, "difference": -0.3})
        model_id = run.log_model([tmp_path / "models" / "seed1"], net, step=0)
    assert {m.key for m in client.get_logged_model(model_id).metrics} == {"test_accuracy", "epoch_seconds"}


def test_a_votes_networks_are_named_in_order_past_ten():
    folders = [Path(f"seed{i}") for i in range(12)]
    artifacts = tracking.network_artifacts(folders)
    assert tracking.network_names(dict(sorted(artifacts.items()))) == [f"network_{i}" for i in range(12)]
    assert tracking.network_artifacts(folders[:1]) == {"network": "seed0"}
    assert tracking.network_names({"network": "x", "notes": "y", "network_a": "z"}) == ["network"]


def _model_status(client, run_id: str) -> list[str]:
    experiment = client.get_run(run_id).info.experiment_id
    found = client.search_logged_models([experiment], filter_string=f"source_run_id = '{run_id}'")
    return [str(m.status) for m in found]


@pytest.mark.parametrize("where", ["copy", "creation", "ready"])
def test_a_stop_while_the_model_is_logged_never_leaves_it_pending(client, tmp_path, monkeypatch, where):
    """A SIGTERM while the model's files are copied ends it FAILED; one while it is created or
    marked READY waits for that write (a PENDING model would stay PENDING for good), then
    stops the run: KILLED, the model FAILED or READY."""
    [net] = _saved_nets(tmp_path / "models", [1])
    method = {"copy": "log_model_artifacts", "creation": "create_logged_model", "ready": "finalize_logged_model"}[where]
    real = getattr(MlflowClient, method)

    def hit_by_sigterm(self, *args, **kwargs):
        if where != "ready" or "READY" in str(args[1:]):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # Python would run a handler here, between bytecodes
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, method, hit_by_sigterm)
    with pytest.raises(tracking.Terminated):
        with tracking.start_run("stopped while logging") as run:
            run.log_epoch({"epoch": 0, "test_accuracy": 0.5})
            run.log_model([tmp_path / "models" / "seed1"], net, step=0)
    assert status_of(client, run.run_id) == "KILLED"
    assert _model_status(client, run.run_id) == ["READY" if where == "ready" else "FAILED"]


def test_models_left_pending_by_a_killed_process_are_failed_and_deleted_runs_take_their_models(client, store_dir,
                                                                                               tmp_path):
    """SIGKILL while a model is logged leaves it PENDING: the run that ends the dead process's
    run KILLED marks it FAILED. Deleting runs (restore_runs's copies cut short) deletes their
    models too, which MLflow would otherwise keep listing."""
    killed_id, _ = _run_killed_outright(
        store_dir, "killed while logging",
        "    e = run.client.get_run(run.run_id).info.experiment_id\n"
        "    run.client.create_logged_model(e, name='model', source_run_id=run.run_id)\n")
    assert _model_status(client, killed_id) == ["PENDING"]
    [net] = _saved_nets(tmp_path / "models", [1])
    with tracking.start_run("next") as run:
        run.log_model([tmp_path / "models" / "seed1"], net, step=0)
    assert status_of(client, killed_id) == "KILLED" and _model_status(client, killed_id) == ["FAILED"]
    tracking.delete_runs([killed_id, run.run_id])
    assert _model_status(client, killed_id) == _model_status(client, run.run_id) == []


def test_a_run_logged_before_runs_logged_mlflow_models_still_gives_its_model_folder(client, tmp_path):
    """Older runs hold the network folder as the plain artifact ``model``."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.json").write_text("{}")
    with tracking.start_run("fc30") as run:
        for epoch in range(3):
            run.log_epoch({"epoch": epoch, "validation_accuracy": 0.5 + epoch / 10,
                           "test_accuracy": 0.6 + epoch / 10})
        run.log_artifacts(tmp_path / "model", "model")
    logged = tracking.download_model(run.run_id, tmp_path / "download")
    assert logged.run_name == "fc30" and (logged.folders[0] / "model.json").is_file()
    assert logged.test_accuracy == pytest.approx({0: 0.6, 1: 0.7, 2: 0.8})


def test_a_model_is_found_by_the_id_it_had_in_the_store_that_trained_it(client, tmp_path):
    """A clone that restored a run (pipeline.restore_runs) gave it a new id; the id its
    metrics.json records, the first one, finds the restored copy: the FINISHED one, not a
    copy a stop cut short, and no other run."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.json").write_text("{}")
    first_id = "ab" * 16
    with tracking.start_run("fc30", tags=tracking.restored_tags({}, first_id)) as restored:
        restored.log_epoch({"epoch": 0, "test_accuracy": 0.9})
        restored.log_artifacts(tmp_path / "model", "model")
    time.sleep(0.01)  # start times in milliseconds: each later run starts later
    with tracking.start_run("other", tags=tracking.restored_tags({}, "cd" * 16)):
        pass  # a later FINISHED run restored from another id
    time.sleep(0.01)
    with pytest.raises(KeyboardInterrupt):
        with tracking.start_run("fc30", tags=tracking.restored_tags({}, first_id)):
            raise KeyboardInterrupt  # a copy cut short: KILLED, and later
    logged = tracking.download_model(first_id, tmp_path / "download")
    assert (logged.run_id, logged.run_name, logged.test_accuracy) == (restored.run_id, "fc30", {0: 0.9})
    with pytest.raises(LookupError, match="nor a run restored from it .*python -m pipeline.restore_runs"):
        tracking.download_model("ef" * 16, tmp_path / "none")
    with pytest.raises(LookupError, match="not in the tracking store"):
        tracking.download_model("not-an-id' or 1=1", tmp_path / "none")


def test_a_store_that_fails_is_not_reported_as_a_missing_run(client, monkeypatch, tmp_path):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR

    def failing(self, run_id):
        raise MlflowException("disk I/O error", error_code=INTERNAL_ERROR)

    monkeypatch.setattr(MlflowClient, "get_run", failing)
    with pytest.raises(MlflowException, match="disk I/O error"):
        tracking.download_model("ab" * 16, tmp_path / "none")


def test_a_run_started_by_one_of_our_scripts_names_it_by_its_path_in_the_repo(client, monkeypatch):
    """Not by a whole path: that names a folder of one machine, or the temporary copy of a
    queued experiment, which DVC removes."""
    import mlflow.tracking.context.default_context as default_context

    ours = Path(tracking.__file__).resolve().parent / "stages" / "train.py"
    for script, expected in ((ours, "pipeline/stages/train.py"), ("/elsewhere/notebook.py", "/elsewhere/notebook.py")):
        monkeypatch.setattr(default_context, "_get_main_file", lambda script=script: str(script))
        with tracking.start_run("source") as run:
            pass
        assert run_of(client, run.run_id).data.tags["mlflow.source.name"] == expected


# -- models from a shared store: what loading one runs, and where its networks are -------------


def _stored_model_files(store_dir: Path, model_id: str) -> Path:
    """The folder of a logged model's files in the store (what anyone who can write it can change)."""
    return store_dir / "mlartifacts" / tracking.EXPERIMENT / "models" / model_id / "artifacts"


def test_a_model_whose_code_is_not_this_checkouts_is_not_loaded(client, store_dir, tmp_path):
    """MLflow runs the code file stored in the model: one changed in the store is not run."""
    from pipeline.errors import InputError

    [net] = _saved_nets(tmp_path / "models", [1])
    with tracking.start_run("fc5") as run:
        model_id = run.log_model([tmp_path / "models" / "seed1"], net, step=0)
    assert tracking.load_as_pyfunc(tracking.download_stored_model(model_id, tmp_path / "good")) is not None
    marker = tmp_path / "ran"
    code = _stored_model_files(store_dir, model_id) / tracking.MODEL_CODE.name
    code.write_text(code.read_text() + f"\nimport pathlib; pathlib.Path({str(marker)!r}).write_text('ran')\n")
    folder = tracking.download_stored_model(model_id, tmp_path / "changed")
    with pytest.raises(InputError, match="not loaded, as loading it would run code other than this checkout's "
                                         "mlflow_model.py: its code mlflow_model.py differs"):
        tracking.load_as_pyfunc(folder)
    assert not marker.exists()


def test_a_model_whose_mlmodel_names_a_network_outside_it_is_refused(client, store_dir, tmp_path):
    """``predict --run`` loads the networks the stored MLmodel file names: only inside the download."""
    [net] = _saved_nets(tmp_path / "models", [1])
    _saved_nets(tmp_path / "elsewhere", [1])
    with tracking.start_run("fc5") as run:
        model_id = run.log_model([tmp_path / "models" / "seed1"], net, step=0)
    mlmodel = _stored_model_files(store_dir, model_id) / "MLmodel"
    escape = "../" * 20 + str(tmp_path / "elsewhere" / "seed1").lstrip("/")
    text = mlmodel.read_text()
    assert "path: artifacts/seed1" in text
    mlmodel.write_text(text.replace("path: artifacts/seed1", f"path: {escape}"))
    with pytest.raises(LookupError, match="names the network folder .*, outside the downloaded model"):
        tracking.download_model(run.run_id, tmp_path / "download")
