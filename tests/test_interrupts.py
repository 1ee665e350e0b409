"""Stopping a run whose seeds train in forked workers: every way of stopping it ends with
each started seed's weights saved and its MLflow run KILLED, no seed started afterwards, and
no worker left behind."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from pipeline import interrupts

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="forked seed workers: Linux")

# Three seeds on two workers, so one seed waits in the pool's queue when the stop comes.
# Each epoch is slowed down to a fifth of a second, so the run is still training when stopped.
CHILD = textwrap.dedent("""
    import functools, os, signal, sys, time
    import numpy as np
    # as in a terminal: a test runner started in the background (nohup, CI) may pass SIGINT on
    # ignored, and Python then installs no Ctrl-C handler of its own
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from pipeline import experiment
    from pipeline.data.mnist import save_images

    rng = np.random.default_rng(0)
    for name, n in (("train", 60), ("validation", 30), ("test", 30)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = (rng.random((n, 28, 28)) * 40).astype(np.uint8) + labels[:, None, None] * 20
        save_images(f"data/prepared/{name}.npz", images, labels)
    real_flat_record = experiment.flat_record
    def slow_flat_record(record):
        time.sleep(0.2)
        if record["epoch"] == 4 and os.environ.get("CRASH_ONE_SEED"):
            try:  # the first seed to get here crashes, the other trains on
                os.close(os.open("crashed", os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                raise RuntimeError("a seed crashed on purpose")
        return real_flat_record(record)
    experiment.flat_record = slow_flat_record
    run = {
        "chapter": 3, "title": "tiny", "what_changed": "test",
        "book": {"value": 0.5, "metric": "peak_validation", "runs": 1, "epochs": 100000, "note": ""},
        "data": {"train": "train", "train_file": "data/prepared/train.npz", "train_limit": None},
        "seeds": [1, 2, 3],
        "model": {"input_shape": [784], "cost": "cross_entropy", "init": "default",
                  "layers": [{"type": "fc", "units": 8}, {"type": "fc", "units": 10}]},
        "training": {"epochs": 100000, "batch_size": 10, "eta": 0.5},
    }
    data = {"prepared_dir": "data/prepared", "expanded_dir": "data/expanded", "n_train": 60}
    experiment.train_entry("tiny", run, data, {"name": "test", "limits": {}}, "models/tiny",
                           "results/tiny", log=functools.partial(print, flush=True),
                           compute={"seed_workers": 2, "blas_threads": 1})
""")


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(params=[False])
def training(tmp_path, request):
    """The run above, started in its own process group; yields (process, its two workers, log).
    Parametrised with True, one seed raises an ordinary exception in its fifth epoch."""
    (tmp_path / "child.py").write_text(CHILD)
    log = tmp_path / "out.log"
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db")
    if request.param:
        env["CRASH_ONE_SEED"] = "1"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "child.py"], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    workers: list[psutil.Process] = []
    try:
        _wait_for(lambda: all(f"[seed {s}] epoch 1/" in log.read_text() for s in (1, 2)),
                  120, "both seeds' second epoch")
        workers = psutil.Process(proc.pid).children()
        assert len(workers) == 2
        yield proc, workers, log
    finally:
        for p in [proc, *workers]:
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                p.kill()


def _assert_stopped_cleanly(tmp_path, workers, log, statuses=("KILLED", "KILLED")):
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, f"workers left running: {alive}\n{log.read_text()}"
    text = log.read_text()
    assert "train tiny seed 3" not in text, "a queued seed started after the stop"
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("nielsen-mnist").experiment_id])
    assert sorted(r.info.status for r in runs) == sorted(statuses), text
    saved = sorted(p.name for p in (tmp_path / "models/tiny").iterdir())
    assert len(saved) == statuses.count("KILLED") and set(saved) <= {"seed1", "seed2"}
    assert not (tmp_path / "results/tiny/metrics.json").exists()


# tgkill(2): a signal to one thread of a process, as the kernel may route a process's signal
TGKILL = {"x86_64": 234, "aarch64": 131}.get(os.uname().machine)


def _signal_a_thread_other_than_main(pid: int, signum: int) -> None:
    import ctypes

    if TGKILL is None:
        pytest.skip(f"tgkill's number on {os.uname().machine} is not known here")

    def blocks(tid: int) -> bool:  # as jemalloc's background thread does every signal
        status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        return bool(int(re.search(r"SigBlk:\s*([0-9a-f]+)", status).group(1), 16) >> (signum - 1) & 1)

    others = [t.id for t in psutil.Process(pid).threads() if t.id != pid and not blocks(t.id)]
    assert others, "the parent has no thread but its main one that takes the signal"
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.syscall(TGKILL, pid, others[0], signum) == 0, os.strerror(ctypes.get_errno())


@pytest.mark.parametrize("how", ["sigterm to the parent", "sigterm to the group",
                                 "sigterm to another thread of the parent",
                                 "ctrl-c in a terminal", "ctrl-c again and again"])
def test_stopping_the_parent_stops_every_seed_cleanly(tmp_path, training, how):
    proc, workers, log = training
    if how == "sigterm to the parent":  # kill <pid>, a queue, DVC
        proc.send_signal(signal.SIGTERM)
    elif how == "sigterm to another thread of the parent":
        # the kernel gives a process's signal to any thread that does not block it; Python
        # runs the handler in the main thread only, once that thread wakes from its wait
        _signal_a_thread_other_than_main(proc.pid, signal.SIGTERM)
    elif how == "sigterm to the group":  # pkill -f, a batch system
        os.killpg(proc.pid, signal.SIGTERM)
    elif how == "ctrl-c in a terminal":
        os.killpg(proc.pid, signal.SIGINT)
    else:  # `timeout -s INT` signals the process and then its group; an impatient user
        for pause in (0.0001, 0.0001, 0.05, 0.2):
            os.killpg(proc.pid, signal.SIGINT)
            time.sleep(pause)
    rc = proc.wait(timeout=60)
    assert rc in (-signal.SIGINT, -signal.SIGTERM, 1), rc  # stopped by the signal, not hung
    if how.startswith("ctrl-c"):  # a KeyboardInterrupt, not a lock or pipe broken by the repeat
        assert rc == -signal.SIGINT and "Error" not in log.read_text(), log.read_text()
    _assert_stopped_cleanly(tmp_path, workers, log)


def test_workers_stop_when_the_parent_is_killed(tmp_path, training):
    proc, workers, log = training
    proc.kill()  # SIGKILL: the parent can do nothing, so the workers must notice on their own
    proc.wait(timeout=10)
    _assert_stopped_cleanly(tmp_path, workers, log)


def test_a_worker_killed_from_outside_ends_every_run_and_says_so(tmp_path, training):
    """SIGKILL to one seed's worker (what the out-of-memory killer sends): it cannot end its
    own run, so the parent ends it KILLED, stops the other seed, and says what happened."""
    proc, workers, log = training
    workers[0].kill()
    rc = proc.wait(timeout=60)
    text = log.read_text()
    assert rc != 0 and "worker process died" in text and "compute.seed_workers=1" in text, text
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, text
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("nielsen-mnist").experiment_id])
    assert sorted(r.info.status for r in runs) == ["KILLED", "KILLED"], text
    dead = [r for r in runs if r.data.tags.get("pid") == str(workers[0].pid)]
    assert len(dead) == 1 and dead[0].data.tags["ended_by"].startswith("the parent of its seed's worker")
    # the other seed saved its weights; the killed one could not
    assert len([p for p in (tmp_path / "models/tiny").iterdir() if (p / "weights.npz").is_file()]) == 1
    assert "train tiny seed 3" not in text and not (tmp_path / "results/tiny/metrics.json").exists()


@pytest.mark.parametrize("training", [True], indirect=True)
def test_a_crashed_seed_stops_the_others_at_once(tmp_path, training):
    proc, workers, log = training
    # the other seed would train for 100,000 epochs: the run ends only if it is stopped
    rc = proc.wait(timeout=60)
    assert rc != 0
    assert "a seed crashed on purpose" in log.read_text()
    _assert_stopped_cleanly(tmp_path, workers, log, statuses=("FAILED", "KILLED"))


@pytest.mark.parametrize("first, second", [(signal.SIGTERM, signal.SIGTERM), (signal.SIGINT, signal.SIGINT),
                                           (signal.SIGINT, signal.SIGTERM), (signal.SIGTERM, signal.SIGINT)])
def test_the_first_stop_signal_raises_and_every_repeat_is_ignored_while_cleaning_up(first, second):
    """A second Ctrl-C or kill, or a signal sent to the whole process group after the first,
    raises nothing inside the clean-up the first one started, in nested blocks too (a run's
    inside its stage's); after the outermost block the handlers are the ones before it."""
    expected = interrupts.Terminated if first == signal.SIGTERM else KeyboardInterrupt
    previous = {s: signal.signal(s, signal.default_int_handler if s == signal.SIGINT else signal.SIG_DFL)
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        before = {s: signal.getsignal(s) for s in previous}
        with pytest.raises(expected) as stopped:
            with interrupts.stops_raise_once(), interrupts.stops_raise_once():
                try:
                    os.kill(os.getpid(), first)
                    time.sleep(5)
                    pytest.fail("the signal did not raise")
                except KeyboardInterrupt:
                    os.kill(os.getpid(), second)  # a second one during clean-up
                    time.sleep(0.2)
                    with interrupts.signals_held() as came:  # closing the MLflow run
                        os.kill(os.getpid(), second)
                    interrupts.raise_held(came)  # a repeat: nothing raised
                    raise
        assert type(stopped.value) is expected
        assert stopped.value.__context__ is None  # the repeats during clean-up raised nothing
        assert {s: signal.getsignal(s) for s in previous} == before
        with pytest.raises(KeyboardInterrupt):  # a later run is stopped by its first signal again
            with interrupts.stops_raise_once():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def test_a_repeat_after_the_inner_block_ended_is_still_ignored_by_the_outer_one():
    """A run's block inside its stage's: the run's block has ended on the first stop, and the
    stage's clean-up that follows is not cut short by a second one."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt) as stopped:
            with interrupts.stops_raise_once():  # the stage's
                try:
                    with interrupts.stops_raise_once():  # the run's
                        os.kill(os.getpid(), signal.SIGTERM)
                        time.sleep(5)
                        pytest.fail("the signal did not raise")
                except KeyboardInterrupt:
                    os.kill(os.getpid(), signal.SIGINT)  # a second one, while the stage cleans up
                    time.sleep(0.2)
                    raise
        assert type(stopped.value) is interrupts.Terminated
        assert stopped.value.__context__ is None  # the repeat raised nothing
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def test_a_stop_held_in_a_run_raises_once_and_its_repeats_are_ignored():
    """Held while a run was created or closed, the first stop raises after it, and a repeat
    during the clean-up it starts raises nothing; of several held, the first is delivered."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt) as stopped:
            with interrupts.stops_raise_once():
                try:
                    with interrupts.signals_held() as came:
                        os.kill(os.getpid(), signal.SIGTERM)
                    interrupts.raise_held(came)
                except KeyboardInterrupt:
                    os.kill(os.getpid(), signal.SIGINT)  # a second one, during clean-up
                    time.sleep(0.2)
                    raise
        assert type(stopped.value) is interrupts.Terminated and stopped.value.__context__ is None
        with pytest.raises(KeyboardInterrupt) as stopped:
            with interrupts.stops_raise_once(), interrupts.held_then_delivered():
                os.kill(os.getpid(), signal.SIGTERM)
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)
        assert type(stopped.value) is interrupts.Terminated
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def test_a_sweeps_worker_is_set_up_once_however_many_jobs_it_runs(monkeypatch):
    calls = []
    monkeypatch.setattr(interrupts, "_worker_set_up", False)
    monkeypatch.setattr(interrupts, "init_worker", calls.append)
    assert [interrupts.init_worker_once(7), interrupts.init_worker_once(7)] == [True, False]
    assert calls == [7]


@pytest.mark.skipif(interrupts.TIME_LIMIT_SIGNAL is None, reason="no SIGUSR2 here")
def test_slurms_time_limit_warning_stops_a_run_as_sigterm_does_and_a_seed_worker_ignores_it():
    """submitit asks SLURM for SIGUSR2 two minutes before a job's limit: the run stops there,
    its weights saved and its run KILLED (the process exits 140), instead of being cut off
    FAILED; a seed worker, which gets it too, leaves the stop to its parent."""
    usr2 = interrupts.TIME_LIMIT_SIGNAL
    previous = signal.getsignal(usr2)
    try:
        with pytest.raises(interrupts.Terminated) as stopped:
            with interrupts.stops_raise_once():
                os.kill(os.getpid(), usr2)
                time.sleep(5)
        assert stopped.value.signum == usr2 and interrupts.exit_status(stopped.value) == 128 + usr2
        assert signal.getsignal(usr2) == previous
        script = ("import os, signal, time\n"
                  "from pipeline import interrupts\n"
                  "interrupts.init_worker(os.getppid())\n"
                  "os.kill(os.getpid(), signal.SIGUSR2)\n"
                  "time.sleep(0.2)\n"
                  "ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN\n"
                  "print('still here', interrupts.stop_requested(), ignored)\n")
        worker = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert worker.stdout.strip() == "still here False True", worker.stderr  # Ctrl-C is its parent's too
    finally:
        signal.signal(usr2, previous)


def test_a_stop_that_ends_the_process_leaves_its_repeats_ignored():
    """A stage's block: after the first Ctrl-C its repeats stay ignored while the process
    leaves, so it exits with 130 and not by a second SIGINT; a block left without a stop
    gives the handlers back."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, *interrupts.TERMINATING)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with interrupts.stops_raise_once(process_ends_on_stop=True):
            pass
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):  # raised, not signalled: no signal to repeat
            with interrupts.stops_raise_once(process_ends_on_stop=True):
                raise KeyboardInterrupt
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):
            with interrupts.stops_raise_once(process_ends_on_stop=True):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
        assert signal.getsignal(signal.SIGINT) is interrupts.ignore_while_leaving
        assert signal.getsignal(signal.SIGTERM) is interrupts.ignore_while_leaving
        os.kill(os.getpid(), signal.SIGINT)  # a repeat while leaving: nothing happens
        time.sleep(0.1)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def test_signals_held_leave_an_ignored_sigint_alone():
    """A seed worker ignores SIGINT (its parent decides when it stops): closing a run there
    neither installs a handler for it nor raises afterwards, nor does a run's block."""
    from pipeline.interrupts import raise_held, signals_held

    inherited = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with signals_held() as came:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        raise_held(came)  # nothing came: nothing raised
        with interrupts.stops_raise_once():  # a seed's run: its Ctrl-C stays ignored too
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, inherited)


def test_stop_workers_signals_only_processes_that_are_still_its_children():
    """A sweep's registered worker that ended may have left its id to an unrelated process;
    that one is not sent SIGTERM (``/proc`` tells whose child a process is)."""
    if not Path("/proc/self/stat").is_file():
        pytest.skip("no /proc: stop_workers cannot tell, and signals every id")
    child = subprocess.Popen(["sleep", "60"])
    # a process that is not ours: a sleep whose shell exited, so that init (or a subreaper) adopted it
    stranger = int(subprocess.run(["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"], capture_output=True,
                                  text=True, check=True).stdout)
    try:
        if interrupts.parent_of(stranger) == os.getpid():  # pytest is PID 1 or a subreaper here
            pytest.skip("the orphaned sleep was adopted by this very process")
        assert interrupts.parent_of(child.pid) == os.getpid()
        interrupts.stop_workers([stranger, child.pid])
        assert child.wait(timeout=10) == -signal.SIGTERM
        time.sleep(0.2)
        assert psutil.Process(stranger).status() != psutil.STATUS_ZOMBIE  # alive (NoSuchProcess otherwise)
    finally:
        child.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(stranger, signal.SIGKILL)


def _a_job_that_is_stopped() -> int:
    with interrupts.worker_job():
        interrupts.request_stop()  # as a SIGTERM while the seed trained leaves it
    return os.getpid()


def test_a_stopped_worker_leaves_on_its_own_once_idle(monkeypatch):
    """Python 3.12+ ends a broken pool's workers (one killed from outside) with SIGTERM alone,
    sending no sentinel; a stopped worker ignores SIGTERM, so it must leave on its own once
    idle, or the pool's shutdown waits for ever (the test above, on Python 3.12 and 3.13)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    monkeypatch.setattr(interrupts, "IDLE_EXIT_SECONDS", 0.2)  # read in the forked worker
    monkeypatch.setattr(interrupts, "PARENT_POLL_SECONDS", 0.1)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"),
                             initializer=interrupts.init_worker, initargs=(os.getpid(),)) as pool:
        worker = psutil.Process(pool.submit(_a_job_that_is_stopped).result(timeout=60))

        def gone() -> bool:
            try:
                return worker.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True
        _wait_for(gone, 20, "the stopped worker to leave")


def test_a_worker_asked_to_stop_leaves_only_when_idle_for_long_enough(monkeypatch):
    """``_watch_parent`` asks this each poll; a new sweep forgets an earlier stop."""
    now = time.monotonic()
    monkeypatch.setattr(interrupts, "_job_running", False)
    monkeypatch.setattr(interrupts, "_idle_since", now - 2 * interrupts.IDLE_EXIT_SECONDS)
    monkeypatch.setattr(interrupts, "_stop_requested", False)
    assert not interrupts._stopped_and_idle()  # never asked to stop
    monkeypatch.setattr(interrupts, "_stop_requested_at", now - 2 * interrupts.IDLE_EXIT_SECONDS)
    monkeypatch.setattr(interrupts, "_stop_requested", True)
    assert interrupts._stopped_and_idle()
    monkeypatch.setattr(interrupts, "_job_running", True)
    assert not interrupts._stopped_and_idle()  # a seed still trains
    monkeypatch.setattr(interrupts, "_job_running", False)
    monkeypatch.setattr(interrupts, "_stop_requested_at", now)
    assert not interrupts._stopped_and_idle()  # asked just now
    interrupts.clear_stop()
    assert not interrupts.stop_requested()


def test_a_stage_watches_the_parent_it_has_when_none_is_named(monkeypatch):
    """A stage run by DVC stops once its ``dvc`` is gone: the process watched is this one's parent."""
    watched = []
    monkeypatch.setattr(interrupts, "_watch_parent", watched.append)
    interrupts.stop_when_parent_dies()
    _wait_for(lambda: watched, 10, "the watching thread to start")
    assert watched == [os.getppid()]
