"""Stopping long work cleanly: SIGTERM handled like Ctrl-C, and seed workers that stop with
their parent.

A training run must end with its weights saved and its MLflow run marked KILLED, whether it
is stopped by Ctrl-C (SIGINT, once or again and again), by ``kill``/DVC/a queue (SIGTERM) or
by its parent dying.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

PARENT_POLL_SECONDS = 1.0  # how often a seed worker checks that its parent is still alive
ORPHAN_GRACE_SECONDS = 60.0  # time an orphaned worker gets to save its weights and close its run


# SLURM's warning that a job's time is nearly up (submitit asks for it two minutes before the
# limit): a stop like SIGTERM, so the run saves its weights and ends KILLED, not cut off FAILED
TIME_LIMIT_SIGNAL = getattr(signal, "SIGUSR2", None)
# the signals that stop a run as ``kill`` does (Ctrl-C's SIGINT is the other stop)
TERMINATING = tuple(s for s in (signal.SIGTERM, TIME_LIMIT_SIGNAL) if s is not None)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM (or SLURM's time-limit
    warning) inside ``stops_raise_once``; ``Terminated(message, signum)``.

    A KeyboardInterrupt subclass, so code that stops cleanly on Ctrl-C stops cleanly on SIGTERM
    too, and ``except Exception`` cannot swallow it.
    """

    @property
    def signum(self) -> int:
        return self.args[1] if len(self.args) > 1 else signal.SIGTERM

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


_stopping = False  # a stop signal came inside ``stops_raise_once``: its repeats are ignored
_depth = 0  # how many ``stops_raise_once`` blocks are open (they nest: a run inside a stage)


def _stop_once(signum, frame) -> None:
    global _stopping
    if _stopping:
        return
    _stopping = True
    if signum in TERMINATING:
        raise Terminated(f"signal {signum}", signum)
    raise KeyboardInterrupt


@contextlib.contextmanager
def stops_raise_once(process_ends_on_stop: bool = False) -> Iterator[None]:
    """Turn the first stop signal into an exception while the block runs: SIGTERM (and SLURM's
    time-limit warning, SIGUSR2) into ``Terminated``, Ctrl-C (SIGINT) into
    ``KeyboardInterrupt``; ignore every signal after it.

    The repeats are ignored so that the clean-up the first one started (saving weights,
    closing the run, stopping the seed workers) is not cut short by a second ``kill``, a second
    Ctrl-C or a signal forwarded to the whole process group (``timeout -s INT`` sends two): a
    second KeyboardInterrupt inside the pool's shutdown can break it and hang the process.
    Blocks nest; the first signal counts for all of them, until the outermost ends. A SIGINT
    the process ignores (a seed worker's) stays ignored. Outside the main thread (where Python
    cannot set handlers) the block runs unchanged.

    ``process_ends_on_stop``: for a block whose stop ends the process (a stage's): after a
    stop, its repeats stay ignored past the block (``ignore_while_leaving``), so that the exit
    status is the first signal's and not that of a repeat that came while the process was
    leaving.
    """
    global _stopping, _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # a signal the process ignores stays ignored: SIGINT in a seed worker, whose parent decides
    handled = [s for s in (signal.SIGINT, *TERMINATING) if signal.getsignal(s) is not signal.SIG_IGN]
    previous = {s: signal.signal(s, _stop_once) for s in handled}
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        leaving = process_ends_on_stop and _stopping
        if _depth == 0:
            _stopping = False
        if leaving:
            global _left_at
            _left_at = time.monotonic()
        for s, handler in previous.items():
            signal.signal(s, ignore_while_leaving if leaving else handler)


LEAVING_GRACE_SECONDS = 10.0  # how long a process that was stopped ignores repeats as it leaves
_left_at = 0.0


def ignore_while_leaving(signum, frame) -> None:
    """A repeat of a stop while the process leaves: ignored for ``LEAVING_GRACE_SECONDS``, then
    the signal's own default action, so that a leaving that hangs (an exit hook waiting on a
    tracking server that is gone) can still be stopped without SIGKILL."""
    if time.monotonic() - _left_at < LEAVING_GRACE_SECONDS:
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def exit_status(stopped: KeyboardInterrupt) -> int:
    """The shell's status for a process stopped by a signal: 128 + its number (SIGTERM 143,
    SIGINT 130, SLURM's SIGUSR2 140)."""
    return 128 + (stopped.signum if isinstance(stopped, Terminated) else signal.SIGINT)


@contextlib.contextmanager
def signals_held() -> Iterator[list[int]]:
    """Hold back Ctrl-C (SIGINT) and SIGTERM while the block runs, so that work that must not be
    cut short (creating or closing an MLflow run) finishes; the block gets the list of the
    signals that came, for :func:`raise_held`. Outside the main thread the block runs
    unchanged, and a signal a process ignores (SIGINT in a seed worker, whose parent decides
    when it stops) stays ignored."""
    came: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield came
        return
    held = [s for s in (signal.SIGINT, *TERMINATING) if signal.getsignal(s) is not signal.SIG_IGN]
    previous = {s: signal.signal(s, lambda signum, frame: came.append(signum)) for s in held}
    try:
        yield came
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def held_then_delivered() -> Iterator[None]:
    """Hold back Ctrl-C and SIGTERM while the block runs, then deliver the first that came to
    whatever handles it after the block (raising there, or held by an enclosing
    :func:`signals_held`). For one write to the tracking store: a stop raised inside a sqlite
    transaction can leave it open, and the process's next write, its run's closing included,
    then waits on its own lock for ever."""
    came: list[int] = []
    try:
        with signals_held() as came:
            yield
    finally:
        if came:
            signal.raise_signal(came[0])


def raise_held(came: list[int]) -> None:
    """Raise what the first held signal would have raised: ``Terminated`` for SIGTERM,
    ``KeyboardInterrupt`` for Ctrl-C; nothing if the process is being stopped already (inside
    ``stops_raise_once``, after its first signal), as a repeat then raises nothing."""
    global _stopping
    if _stopping or not came:
        return
    if _depth:
        _stopping = True
    if came[0] in TERMINATING:
        raise Terminated(f"signal {came[0]} while an MLflow run was being created or closed", came[0])
    raise KeyboardInterrupt("Ctrl-C while an MLflow run was being created or closed")


_stop_requested = False  # in a seed worker: a SIGTERM came, start no further seed
_stop_requested_at = 0.0  # when (time.monotonic()) the last stop was requested
# A seed worker (``worker_job``) that was asked to stop and has been idle this long leaves on
# its own. Python 3.12+ no longer sends a broken pool's workers the sentinel that ends their
# wait for work (a worker killed from outside breaks it): it sends SIGTERM and joins them, and
# a stopped worker ignores SIGTERM, so without this the pool's shutdown waited for ever.
IDLE_EXIT_SECONDS = 5.0
_job_running = False
_idle_since: float | None = None  # None: this process runs no ``worker_job``s


def init_worker(parent_pid: int) -> None:
    """Set up a forked worker process so that its parent decides when it stops.

    - SIGINT is ignored: a terminal's Ctrl-C reaches every process of the group, and the parent
      forwards exactly one SIGTERM to each worker (``stop_workers``) instead; so is SLURM's
      time-limit warning (SIGUSR2), which reaches every process of the job step;
    - SIGTERM between seeds only notes the request (``request_stop``): the worker then starts
      no further seed, and leaves when the pool shuts down, instead of dying and breaking the
      pool. While a seed trains, ``tracking.start_run`` turns SIGTERM into ``Terminated``;
    - a daemon thread stops the worker when the parent is gone (killed with SIGKILL, say), so
      no worker trains on for hours with nobody to report to.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # a sweep's joblib worker starts with SIGINT blocked (pipeline.train): a Ctrl-C that came
    # while it started waits, and, ignored now, is dropped
    if hasattr(signal, "pthread_sigmask"):  # POSIX: not on Windows
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if TIME_LIMIT_SIGNAL is not None:
        signal.signal(TIME_LIMIT_SIGNAL, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: request_stop())
    stop_when_parent_dies(parent_pid)


_worker_set_up = False


def init_worker_once(parent_pid: int) -> bool:
    """``init_worker`` the first time a process calls it (a Hydra sweep's worker runs many
    jobs); True the first time."""
    global _worker_set_up
    if _worker_set_up:
        return False
    init_worker(parent_pid)
    _worker_set_up = True
    return True


def clear_stop() -> None:
    """Forget a stop requested earlier (a new sweep in the same process starts afresh)."""
    global _stop_requested
    _stop_requested = False


def request_stop() -> None:
    """Note that this worker must start no further seed."""
    global _stop_requested, _stop_requested_at
    _stop_requested = True
    _stop_requested_at = time.monotonic()


@contextlib.contextmanager
def worker_job() -> Iterator[None]:
    """Mark the block as one job of a pool's worker (a seed): a worker asked to stop leaves on
    its own once it has been idle ``IDLE_EXIT_SECONDS`` (``_watch_parent``)."""
    global _job_running, _idle_since
    _job_running = True
    try:
        yield
    finally:
        _job_running = False
        _idle_since = time.monotonic()


def _stopped_and_idle() -> bool:
    """A worker that runs ``worker_job``s, was asked to stop, and has run none for a while."""
    if not _stop_requested or _job_running or _idle_since is None:
        return False
    return time.monotonic() - max(_idle_since, _stop_requested_at) >= IDLE_EXIT_SECONDS


def stop_requested() -> bool:
    return _stop_requested


def parent_gone(parent_pid: int) -> bool:
    """True once ``parent_pid`` is no longer this process's parent (it died; we were adopted)."""
    return os.getppid() != parent_pid


def _watch_parent(parent_pid: int) -> None:
    """Once the parent is gone: SIGTERM this process, so a training seed stops as after
    Ctrl-C (its worker then exits, see ``experiment``); exit anyway after a grace period, for
    a worker that was waiting for work. A worker asked to stop leaves once idle (``worker_job``)."""
    while not parent_gone(parent_pid):
        if _stopped_and_idle():
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        time.sleep(PARENT_POLL_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(ORPHAN_GRACE_SECONDS)
    os._exit(1)


def stop_when_parent_dies(parent_pid: int | None = None) -> None:
    """Start a daemon thread that stops this process (SIGTERM, so its clean-up runs) once its
    parent (``parent_pid``, by default the one it has now) is gone: a DVC stage whose ``dvc``
    was killed outright (``dvc queue kill --force`` kills DVC's runner alone) must not train on
    for hours with nobody to record its outputs, nor a worker whose parent was killed."""
    parent_pid = os.getppid() if parent_pid is None else parent_pid
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="watch-parent", daemon=True).start()


def parent_of(pid: int) -> int | None:
    """The parent process id of ``pid`` from ``/proc`` (Linux); None where it cannot be read:
    the process is gone, or the system has no ``/proc``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # "pid (command) state ppid ...": the command may hold spaces and parentheses
    fields = stat.rpartition(")")[2].split()
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None


def stop_workers(pids: list[int]) -> None:
    """Send SIGTERM to each worker still alive (each ends its run as after Ctrl-C). Where
    ``/proc`` tells, only to a process that is still this one's child: a worker that ended
    may have left its id to an unrelated process. (Our workers are direct children: forked
    seeds, and joblib's loky workers, which the sweep's process starts itself.)"""
    has_proc = Path("/proc/self/stat").is_file()
    for pid in pids:
        if has_proc and parent_of(pid) != os.getpid():
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


__all__ = ["LEAVING_GRACE_SECONDS", "ORPHAN_GRACE_SECONDS", "PARENT_POLL_SECONDS", "TERMINATING",
           "TIME_LIMIT_SIGNAL", "Terminated", "clear_stop", "exit_status", "ignore_while_leaving",
           "init_worker", "init_worker_once", "parent_gone", "parent_of", "raise_held", "request_stop", "signals_held",
           "stop_requested", "stop_when_parent_dies", "stop_workers", "stops_raise_once", "worker_job"]

