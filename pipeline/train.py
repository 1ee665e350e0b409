"""Hydra app: train any run of the book outside DVC, with the same code and MLflow logging.

    python -m pipeline.train book=ch6-relu seed=2 eta=0.1
    python -m pipeline.train -m book=ch1-30 seed=1,2,3 hydra/launcher=joblib

Configuration: conf/train.yaml (the run is chosen from conf/book/, any key of it can be
overridden, e.g. ``book=ch6-relu book.ch6-relu.training.batch_size=20``). Data must exist
(``dvc repro expand`` or ``dvc pull``). Outputs land in Hydra's output folder.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import hydra
import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline import interrupts, tracking
from pipeline.atomic import disk_error_message, write_text
from pipeline.config import CONFIG_OPTIONS, bare_choice, check_book_files, compose, explain_absent
from pipeline.errors import EXIT_STATUS, InputError, SettingError
from pipeline.experiment import train_entry
from pipeline.interrupts import exit_status
from pipeline.machine import kernel_pin_note
from pipeline.params import MODELS, below_the_root, run_folders
from pipeline.settings import COUNT, POSITIVE, SECTIONS, SEED

# what conf/train.yaml composes: params.yaml's sections (a profile may set any) and the shortcuts
APP_KEYS = (*SECTIONS, "seed", "eta", "epochs")


def unknown_key(where: str, example_id: str) -> str:
    """What is said of a top-level key the app does not read: where a run's settings go."""
    return (f"unknown key; allowed at the top: {', '.join(APP_KEYS)}. A run's own settings go under "
            f"{where}, e.g. book.{example_id}.training.eta=0.1")


def run_config(cfg: dict, book_id: str) -> tuple[str, dict]:
    """The selected ``book.<id>`` with the ``seed``/``eta``/``epochs`` shortcuts applied.

    (``cfg["book"]`` may hold partial entries of other runs: a profile's per-run cuts.)
    """
    if unknown := [key for key in cfg if key not in APP_KEYS]:
        # `+lr=0.1`, as Hydra's own message for `lr=0.1` suggests, would add a key nothing reads
        raise SettingError(unknown[0], unknown_key(f"book.{book_id}", book_id))
    if book_id not in cfg["book"]:
        raise SettingError(f"book.{book_id}", f"conf/book/{book_id}.yaml must hold its run under the top "
                        f"key `{book_id}:` (the file's name); the runs composed are {sorted(cfg['book'])}")
    run_cfg = cfg["book"][book_id]
    if (seed := cfg.get("seed")) is not None:
        if not SEED[0](seed):  # named as typed, not as the run's seeds
            raise SettingError("seed", f"expected an integer >= 0 (seed=2), got {seed!r}")
        run_cfg["seeds"] = [seed]  # its range for the run's random streams is checked with the run
    for key, (ok, allowed), example in (("eta", POSITIVE, "0.1"), ("epochs", COUNT, "30")):
        if (value := cfg.get(key)) is not None:
            if not ok(value):  # named as typed, as the seed is
                raise SettingError(key, f"expected {allowed} ({key}={example}), got {value!r}")
            run_cfg["training"][key] = value
    return book_id, run_cfg


def without_replay(run_cfg: dict, profile: dict, overrides: list[str], book_id: str) -> str | None:
    """Drop the book's own run from ``run_cfg`` where it would not be the book's: a command
    line that changes the run (``seed=``, ``eta=``, ``epochs=``, a ``book.<id>.`` or ``data.``
    key) would train it changed yet label it "the book's run, replayed" and set it beside the
    book's figure. A profile without replays (``profile.replay=false``) drops it too, so that
    its seed is not checked. Returns the line that says so, where a replay was dropped that
    would have run. (``dvc exp run -S`` on such a row leaves no override to read: there the
    stage finds the change by the replay's ``settings_digest``, ``experiment.replay_problem``.)"""
    if "replay" not in run_cfg:
        return None
    changes = [o for o in overrides
               if o.split("=", 1)[0].lstrip("+~") in ("seed", "eta", "epochs")
               or o.lstrip("+~").startswith((f"book.{book_id}.", "data."))]
    if not changes and profile.get("replay"):
        return None
    script = run_cfg.pop("replay")["script"]
    if not profile.get("replay"):
        return None
    return (f"the book's own run ({script}) is not replayed beside it: {' '.join(changes)} "
            f"change{'s' if len(changes) == 1 else ''} the run")


CONF = Path(__file__).resolve().parents[1] / "conf"  # the app's config_path
GROUPS = ("book", "profile", "data", "compute")  # chosen by file name: book=ch6-relu


def override_problem(args: list[str], conf: Path = CONF) -> str | None:
    """A command-line key the app does not read, a run or profile with no file, or a setting
    of a run the command does not train (``another_runs_setting``), said in a line (exit 2)
    before Hydra's own message (exit 1), which for ``etaa=0.1`` advises ``+etaa=0.1``: a key
    that nothing reads."""
    if problem := bare_choice(args, conf):
        return problem
    # other config folders (hydra.searchpath, --config-dir) may hold further runs and profiles
    elsewhere = any(a.lstrip("+~").startswith("hydra.searchpath")
                    or a.split("=", 1)[0] in CONFIG_OPTIONS
                    for a in args)
    for key, value in _settings(args):
        top = key.split(".", 1)[0].split("/", 1)[0]
        if top == "hydra":
            continue
        if top not in APP_KEYS:
            return f"{key}: {unknown_key('book.<id>', 'ch6-relu')}"
        if key in GROUPS and not elsewhere and not _picks_by_pattern(value):
            for name in _names(value):
                if not (conf / key / f"{name}.yaml").is_file():
                    have = sorted(p.stem for p in (conf / key).glob("*.yaml"))
                    return f"{key}={name}: there is no conf/{key}/{name}.yaml; the choices are {', '.join(have)}"
    return another_runs_setting(args, conf, default_known=not elsewhere) or (
        None if elsewhere else absent_setting(args, conf))


def absent_setting(args: list[str], conf: Path = CONF) -> str | None:
    """A nested ``key=value`` (``book.ch1-30.training.etaa=0.5``) whose key is not in the
    config, said as ``pipeline.config.explain_absent`` says it, where Hydra would advise
    ``+key=value``. Read from ``conf/`` composed with the command line's group choices and its
    ``+``/``++``/``~`` overrides (a key a ``+`` makes is there for the settings after it); left
    to Hydra where a choice or an added value is a sweep or a pattern (which keys apply is then
    not one answer)."""
    nested = [arg.partition("=")[::2] for arg in args if "=" in arg and not arg.startswith(("-", "+", "~"))
              and "." in arg.partition("=")[0] and arg.split(".", 1)[0] in GROUPS]
    if not nested:
        return None
    choices = [(key, value) for key, value in _settings(args) if key in GROUPS]  # book=: a run of one's own too
    if any("," in value or _picks_by_pattern(value) for _, value in choices):
        return None
    # what the command line adds or removes comes first, as Hydra applies it in order: a key
    # that +book.….regularization.kind=l2 makes is there for the setting after it
    changes = [arg for arg in args if arg.startswith(("+", "~")) and not arg.lstrip("+~").startswith("hydra")]
    if any("," in arg.partition("=")[2] for arg in changes):
        return None  # a sweep over what is added
    try:
        params = yaml.safe_load(compose(conf.parent, [f"{key}={value}" for key, value in choices] + changes))
    except Exception:  # a choice Hydra refuses: its own message says so
        return None
    return next((problem for key, value in nested if (problem := explain_absent(key, value, params or {}))), None)


def _settings(args: list[str]) -> list[tuple[str, str]]:
    """The ``key=value`` settings of a command line, each key without Hydra's ``+``/``++``/``~``
    (options such as ``-m`` and ``--cfg`` left out)."""
    return [(arg.partition("=")[0].lstrip("+~"), arg.partition("=")[2]) for arg in args
            if not arg.startswith("-") and "=" in arg]


def _names(value: str) -> list[str]:
    """The names of a group choice, ``book=a,b``; Hydra takes them quoted too (``book='a'``)."""
    return [name.strip().strip("'\"") for name in value.split(",")]


def _picks_by_pattern(value: str) -> bool:
    """A group choice given as a range, a glob or an interpolation, not by names."""
    return any(c in value for c in "()[]{}*$")


def chosen_runs(args: list[str], conf: Path = CONF) -> set[str] | None:
    """The runs a command line trains: its ``book=`` names, else conf/train.yaml's default;
    None where it picks them by a pattern."""
    chosen = [value for key, value in _settings(args) if key == "book"]
    if any(_picks_by_pattern(v) for v in chosen):
        return None
    if chosen:
        return {name for value in chosen for name in _names(value)}
    defaults = yaml.safe_load((conf / "train.yaml").read_text(encoding="utf-8")).get("defaults") or []
    return {d["book"] for d in defaults if isinstance(d, dict) and "book" in d}


def another_runs_setting(args: list[str], conf: Path = CONF, default_known: bool = True) -> str | None:
    """A ``book.<id>.`` key of a run the command does not train: the app trains only the
    ``book=`` run (or the default one, ``conf/train.yaml``'s unless ``default_known`` is false:
    another config folder or name), and a profile's cuts make such a key exist, so Hydra would
    take it and the wrong run would train without a word."""
    chosen = [value for key, value in _settings(args) if key == "book"]
    if (runs := chosen_runs(args, conf)) is None or not (chosen or default_known):
        return None
    for key, _ in _settings(args):
        if not key.startswith("book."):
            continue
        run_id = key.split(".")[1]
        if run_id not in runs:
            which = (f"{'runs trained are' if len(runs) > 1 else 'run trained is'} book={','.join(sorted(runs))}"
                     if chosen else f"run trained is {', '.join(sorted(runs))}, conf/train.yaml's default")
            return f"{key}: a setting of {run_id}, but the {which}: add book={run_id}"
    return None


# conf/hydra/launcher/<name>.yaml (ours, or the plugin's own) -> the plugin package it needs
LAUNCHER_PLUGINS = {
    "joblib": "hydra_plugins.hydra_joblib_launcher",
    "slurm": "hydra_plugins.hydra_submitit_launcher",
    "submitit_slurm": "hydra_plugins.hydra_submitit_launcher",
    "submitit_local": "hydra_plugins.hydra_submitit_launcher",
}
SLURM_LAUNCHERS = {"slurm", "submitit_slurm"}


def launcher_problem(args: list[str], which=shutil.which) -> str | None:
    """Why the launcher the command line picks cannot start, or None when it can.

    Hydra's own message for an absent plugin ("Could not load 'hydra/launcher/submitit_slurm'")
    names neither the package nor the extra that brings it, and submitit off a cluster ends in a
    traceback; both are said here in a line, before anything starts."""
    for arg in args:
        key, _, name = arg.partition("=")
        if key.lstrip("+~") != "hydra/launcher" or name not in LAUNCHER_PLUGINS:
            continue
        plugin = LAUNCHER_PLUGINS[name]
        try:
            found = importlib.util.find_spec(plugin) is not None
        except ModuleNotFoundError:  # hydra_plugins itself absent
            found = False
        if not found:
            package = plugin.split(".")[-1].replace("_", "-")
            return (f"hydra/launcher={name} needs the {package} package, which is not installed: "
                    f"pip install -e '.[launchers]'")
        showing = any(a in ("--cfg", "-c", "--info", "-i") or a.startswith(("--cfg=", "--info=")) for a in args)
        if name in SLURM_LAUNCHERS and which("srun") is None and not showing:  # what submitit looks for
            return (f"hydra/launcher={name} submits the runs to SLURM, but this machine has no `srun`: "
                    f"run the command on the cluster, or use hydra/launcher=joblib to run them here")
    return None


OUTPUT_DIR_KEYS = ("hydra.run.dir", "hydra.sweep.dir")


def output_dir_problem(args: list[str]) -> str | None:
    """Why a folder named by ``hydra.run.dir=`` or ``hydra.sweep.dir=`` cannot be made, or None.

    Hydra makes it before the run starts and, when it cannot, shows a traceback; said here in a
    line instead. Checked up to the first ``${...}`` (the rest is Hydra's to fill in)."""
    for arg in args:
        key, _, value = arg.partition("=")
        if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":  # quoted for Hydra
            value = value[1:-1]
        if key.lstrip("+~") not in OUTPUT_DIR_KEYS or not value.split("${")[0].strip():
            continue
        folder = Path(value.split("${")[0]).expanduser().absolute()
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not existing.is_dir():
            return (f"{key.lstrip('+~')}={value}: {existing} is a file, not a folder, so the run's "
                    f"folder cannot be made there; name another folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            return (f"{key.lstrip('+~')}={value}: {existing} is not writable by you, so the run's "
                    f"folder cannot be made there; name a folder you can write in")
    return None


def remove_if_nothing_ran(out: Path, named_by_user: bool) -> None:
    """Take away the output folder Hydra made for a run refused before it started (a bad
    setting, data not built): its config copy and empty log would stand among real runs' folders.
    Only a folder Hydra named itself (not one a ``hydra.run.dir=`` gave, which may be the user's
    own), only what Hydra put there, and the folder only if that leaves it empty; then the
    folder above it (``outputs/<date>/``; a sweep's, which holds more, stays) if now empty."""
    log = out / "train.log"
    if named_by_user or out.resolve() == Path.cwd().resolve():
        return
    if any(p.name not in (".hydra", "train.log") for p in out.iterdir()) or (log.exists() and log.stat().st_size):
        return
    with contextlib.suppress(OSError):  # on Windows the open log cannot go: the folder then stays
        shutil.rmtree(out / ".hydra")
        log.unlink(missing_ok=True)
        out.rmdir()
        out.parent.rmdir()  # fails, and stays, if another run's folder is there


def interrupted_message(models: Path, since: float) -> str:
    """What a stopped run says: where the weights its seeds saved when they stopped are, or
    that it was stopped before any training began (while loading data) and saved none. Only
    weights written ``since`` (this run's start) count: a fixed ``hydra.run.dir`` may hold an
    earlier run's."""
    if models.is_dir() and any(p.stat().st_mtime >= since for p in models.rglob("*.npz")):
        return f"interrupted: the weights so far are in {models}"
    return "interrupted before any weights were saved"


# A sweep's jobs end each on its own: a job that fails or is stopped records why in the sweep's
# folder and returns, and the sweep ends with one line a job and the status of the worst. A
# job that called sys.exit instead would kill its joblib worker, and joblib every other job
# with it, their runs left RUNNING and their weights unsaved.
SWEEP_JOBS_ENV = "PIPELINE_SWEEP_JOBS"  # the folder of the records, set by the sweep's process
SWEEP_PARENT_ENV = "PIPELINE_SWEEP_PARENT"  # "<host>:<pid>" of that process
STOP_MARK = "stopped"  # in that folder once the sweep was stopped: no further job starts
WORKER_PREFIX = "worker-"  # + pid: a worker process of this machine set up to be stopped
_sweep_signal: list[int] = []  # in the sweep's process: the first stop signal that came
_sweep_handlers: dict = {}


def _jobs_folder() -> Path | None:
    """The sweep's folder of job records (None outside a sweep)."""
    folder = os.environ.get(SWEEP_JOBS_ENV)
    return Path(folder) if folder else None


def _sweep_parent() -> tuple[str, int] | None:
    """(host, pid) of the sweep's process, or None outside a sweep."""
    host, _, pid = os.environ.get(SWEEP_PARENT_ENV, "").rpartition(":")
    return (host, int(pid)) if pid.isdigit() else None


def _in_sweeps_process() -> bool:
    return _sweep_parent() == (socket.gethostname(), os.getpid())


def _sweep_stop(signum, frame) -> None:
    """The sweep's process on its first Ctrl-C or SIGTERM: no job starts after it, and each
    job training in a worker process set up for it (``_join_sweep``) is sent one SIGTERM (it
    saves its weights and ends its run KILLED); this process waits for them instead of tearing
    their pool down. A worker still starting up is left alone (a SIGTERM would kill it and
    joblib the pool): it reads the mark before its job starts. A job that trains in this
    process (the basic launcher) is stopped by its own handler. A second signal is the
    first's to finish: it is ignored."""
    if _sweep_signal:
        return
    _sweep_signal.append(signum)
    _note_sweep_stopped(signum)
    if (folder := _jobs_folder()) is not None:
        pids = [int(p.name[len(WORKER_PREFIX):]) for p in folder.glob(WORKER_PREFIX + "*")]
        interrupts.stop_workers(pids)


def _note_sweep_stopped(signum: int) -> None:
    """In the sweep's own process: no job of this sweep starts from now on (here, or in any
    process that reads the mark), and the sweep ends with ``signum``'s status. A job elsewhere
    (a worker stopped on its own, a SLURM job preempted or at its time limit) stops alone."""
    if not _in_sweeps_process():
        return
    interrupts.request_stop()
    if (folder := _jobs_folder()) is not None and not (folder / STOP_MARK).exists():
        with contextlib.suppress(OSError):
            write_text(folder / STOP_MARK, f"{signum}\n")


def _with_sigint_blocked(fork_exec):
    """loky's ``fork_exec`` (how joblib starts a worker), starting the worker with SIGINT
    blocked. A terminal's Ctrl-C reaches the whole process group: a worker still starting up
    died of it unpacking its job, and joblib's pool broke with a traceback. Blocked, it waits
    until ``_join_sweep`` makes the worker ignore SIGINT, and is dropped; the sweep's process
    takes the Ctrl-C and stops the sweep (``_sweep_stop``)."""
    def fork_exec_sigint_blocked(*args, **kwargs):
        before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return fork_exec(*args, **kwargs)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)

    fork_exec_sigint_blocked.blocks_sigint = True
    return fork_exec_sigint_blocked


def block_sigint_in_joblib_workers() -> None:
    """Start joblib's (loky's) workers with SIGINT blocked from now on (``_with_sigint_blocked``)."""
    from joblib.externals.loky.backend import fork_exec  # popen_loky_posix imports it at each start

    if not getattr(fork_exec.fork_exec, "blocks_sigint", False):
        fork_exec.fork_exec = _with_sigint_blocked(fork_exec.fork_exec)


class SweepOutcome(Callback):
    """Hydra callback (conf/train.yaml) for ``-m`` sweeps: see the comment above. With a
    launcher that runs the jobs on other machines (SLURM), a stop is left to the launcher."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        folder = Path(str(config.hydra.sweep.dir)).resolve() / ".jobs"
        shutil.rmtree(folder, ignore_errors=True)  # an earlier sweep's, left by a process killed outright
        folder.mkdir(parents=True, exist_ok=True)
        os.environ[SWEEP_JOBS_ENV] = str(folder)
        os.environ[SWEEP_PARENT_ENV] = f"{socket.gethostname()}:{os.getpid()}"
        _sweep_signal.clear()
        interrupts.clear_stop()
        target = str(config.hydra.launcher.get("_target_", "")).lower()
        if "slurm" in target:
            return
        if "joblib" in target:
            block_sigint_in_joblib_workers()
        for s in (signal.SIGINT, *interrupts.TERMINATING):
            if signal.getsignal(s) is not signal.SIG_IGN:
                _sweep_handlers[s] = signal.signal(s, _sweep_stop)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        for s, handler in _sweep_handlers.items():
            signal.signal(s, handler)
        _sweep_handlers.clear()
        folder = _jobs_folder()
        for name in (SWEEP_JOBS_ENV, SWEEP_PARENT_ENV):
            os.environ.pop(name, None)
        if folder is None or not folder.is_dir():
            return
        stop = folder / STOP_MARK
        signum = int(stop.read_text()) if stop.is_file() else None
        records = sorted((p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        lines = [p.read_text().rstrip("\n") for p in records]
        shutil.rmtree(folder, ignore_errors=True)
        if not lines and signum is None:
            return
        if lines:
            print(f"sweep: {len(lines)} job(s) did not finish:", file=sys.stderr)
        else:
            print(f"sweep: stopped by signal {signum} after every job had ended", file=sys.stderr)
        for line in lines:
            print(f"  {line}", file=sys.stderr)
        sys.exit(128 + signum if signum is not None else EXIT_STATUS)


def _record_job(job, what: str) -> None:
    """Note in the sweep's folder why job ``job`` did not finish (``what``); a disk that
    refuses the note must not hide the job's own message with a traceback."""
    if (folder := _jobs_folder()) is not None:
        with contextlib.suppress(OSError):
            write_text(folder / str(job.num), f"job {job.num} ({job.override_dirname}): {what}\n")


def _join_sweep(job) -> bool:
    """At a sweep job's start: set up a worker process of the sweep (SIGINT ignored, SIGTERM
    noted between jobs, stopped if the sweep's process dies), once, and register it to be
    stopped; say whether the job may start (False once the sweep was stopped)."""
    parent, folder = _sweep_parent(), _jobs_folder()
    # a joblib or submitit-local worker of the sweep's process (on this machine: a SLURM job's
    # parent is SLURM's)
    if parent == (socket.gethostname(), os.getppid()) and interrupts.init_worker_once(parent[1]):
        if folder is not None:
            with contextlib.suppress(OSError):
                (folder / f"{WORKER_PREFIX}{os.getpid()}").touch()
    return not (interrupts.stop_requested() or (folder is not None and (folder / STOP_MARK).exists()))


@hydra.main(version_base=None, config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    # Progress through logging, so it also lands in Hydra's <output dir>/train.log, timestamped
    # (on the terminal through Hydra's console handler, on stdout); notes and errors on stderr
    started = time.time()
    log = logging.getLogger("pipeline.train")
    out = Path(HydraConfig.get().runtime.output_dir)
    if note := kernel_pin_note("python -m pipeline.train ..."):
        print(note, file=sys.stderr)
    say = log.info
    # read unresolved: a ${...} given on the command line is a setting, to resolve (and name if
    # it resolves to nothing) with the rest of the config in `resolved`
    raw = OmegaConf.to_container(HydraConfig.get(), resolve=False)
    job = SimpleNamespace(num=raw["job"]["num"], override_dirname=raw["job"]["override_dirname"])
    task = list(raw["overrides"]["task"])
    sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    if sweep:  # a sweep's jobs side by side: whose line is whose
        say = lambda line, tag=f"[job {job.num}: {job.override_dirname}] ": log.info(tag + line)  # noqa: E731
        if not _join_sweep(job):
            _record_job(job, "not started: the sweep was stopped")
            remove_if_nothing_ran(out, named_by_user=False)
            return
    # the runs' tags (tracking.environment_tags): where their outputs are, what the command changed
    os.environ[tracking.HYDRA_OUTPUT_ENV] = str(out.resolve())
    os.environ[tracking.HYDRA_OVERRIDES_ENV] = " ".join(task)
    try:
        plain = resolved(cfg)
        book_id, run_cfg = run_config(plain, HydraConfig.get().runtime.choices["book"])
        if note := without_replay(run_cfg, plain["profile"], task, book_id):
            say(note)
        model_dir, results_dir = run_folders(book_id, out)
        metrics = train_entry(book_id, run_cfg, plain["data"], plain["profile"], model_dir=model_dir,
                              results_dir=results_dir, log=say, compute=plain.get("compute"))
    except (InputError, FileNotFoundError) as error:  # names the key or file, and the fix
        named = any(o.startswith(("hydra.run.dir=", "hydra.sweep.dir=", "hydra.sweep.subdir="))
                    for o in HydraConfig.get().overrides.hydra)
        _end(job, sweep, str(error))
        remove_if_nothing_ran(out, named_by_user=named)
        _leave(sweep, EXIT_STATUS)  # as the DVC stages: a mistake the user can fix
    except KeyboardInterrupt as stopped:  # Ctrl-C or SIGTERM: each seed saved its weights, its run KILLED
        message = interrupted_message(out / MODELS, started)
        if isinstance(stopped, interrupts.Terminated) and stopped.signum == interrupts.TIME_LIMIT_SIGNAL:
            message = f"SLURM's warning that the job's time limit is near (SIGUSR2): {message}"
        _end(job, sweep, message)
        if sweep:  # in the sweep's own process, the jobs after it do not start
            _note_sweep_stopped(exit_status(stopped) - 128)
        _leave(sweep, exit_status(stopped))
    except Exception as error:
        if (disk := disk_error_message(error)) is not None:  # a full or read-only disk: which file, what to do
            _end(job, sweep, disk)
            _leave(sweep, EXIT_STATUS)
        elif not sweep:
            raise
        else:  # a bug: its traceback, and the sweep's other jobs go on
            logging.getLogger("pipeline.train").exception("job %s failed", job.num)
            _end(job, sweep, f"failed: {type(error).__name__}: {error} (traceback above)")
    else:  # where to look next: the folder, and the runs in MLflow (the replay's too)
        ids = metrics["mlflow_run_ids"] + ([metrics["replay"]["mlflow_run_id"]] if metrics.get("replay") else [])
        say(f"train {book_id}: models and results in {_shown(out)}; MLflow run{'s' if len(ids) > 1 else ''} "
            f"{', '.join(ids)}")


def resolved(cfg: DictConfig) -> dict:
    """The composed config as plain data, every ``${...}`` resolved; one that names a key
    there is not (in a run file, or on the command line) is an ``InputError`` naming where."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as error:
        where = f"{error.full_key}: " if getattr(error, "full_key", None) else ""
        raise InputError(where + str(error).splitlines()[0]) from None


def _shown(path: Path) -> str:
    """``path`` relative to the working folder where it lies below it, else whole (not
    ``../../tmp/x``)."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:  # outside it
        return str(path)


def _end(job, sweep: bool, message: str) -> None:
    """Say why the run ended; in a sweep, also record it for the sweep's last word."""
    print(f"[job {job.num}: {job.override_dirname}] {message}" if sweep else message, file=sys.stderr)
    if sweep:
        _record_job(job, message)


def _leave(sweep: bool, status: int) -> None:
    """A single run exits with ``status``; a sweep's job returns, so that the others go on."""
    if not sweep:
        sys.exit(status)


def book_files_problem(args: list[str], root: Path = CONF.parent) -> str | None:
    """The file of a run the command trains, in conf/book/, that Hydra could not read, or
    would read as another run's, said in a line (``pipeline.config.check_book_files``) before
    Hydra's traceback. Other files are not the app's to read (a draft stays a draft)."""
    try:
        check_book_files(root, only=chosen_runs(args, root / "conf"))
    except InputError as error:
        return str(error)
    return None


@contextlib.contextmanager
def hydra_parser_allowed() -> Iterator[None]:
    """Let Hydra 1.3 build its command-line parser on Python 3.14 and later.

    Hydra 1.3 gives its ``--shell-completion`` flag a help that is an object rendering itself
    when printed, not a string. From 3.14, argparse checks each help as the argument is added
    (``ArgumentParser._check_help``) and refuses that one, so every Hydra 1.3 app stops before
    reading its command line (hydra#3121, open for Hydra 1.3.8). Inside this block such
    a help is let through; a string help is still checked. Before 3.14 nothing is checked, and
    nothing is changed.
    """
    parser_class = argparse.ArgumentParser
    check = getattr(parser_class, "_check_help", None)
    if check is None:
        yield
        return
    own = vars(parser_class).get("_check_help")  # 3.14 defines it on a base class

    def check_strings_only(parser, action):
        if action.help is None or isinstance(action.help, str):
            check(parser, action)

    parser_class._check_help = check_strings_only
    try:
        yield
    finally:
        if own is None:
            del parser_class._check_help
        else:
            parser_class._check_help = own


if __name__ == "__main__":
    if (problem := below_the_root("python -m pipeline.train") or book_files_problem(sys.argv[1:])
            or override_problem(sys.argv[1:]) or launcher_problem(sys.argv[1:])
            or output_dir_problem(sys.argv[1:])) is not None:
        print(problem, file=sys.stderr)
        sys.exit(EXIT_STATUS)
    with hydra_parser_allowed():
        main()
