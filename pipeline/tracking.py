"""MLflow tracking: the only module of the pipeline that talks to MLflow (``mlflow_model.py``
beside it is the code MLflow runs to load a model logged here; nothing imports it).

Where things go, chosen so that ``mlflow ui`` started in the repo root with no flags shows
every run and its artifacts:

- backend store: ``sqlite:///<root>/mlflow.db``. ``mlflow ui`` (an alias of ``mlflow server``)
  defaults to ``sqlite:///mlflow.db`` relative to its working directory (it only
  falls back to ``./mlruns`` when that folder holds an old file store, which we never write).
- artifacts: ``<root>/mlartifacts/<experiment>/<run_id>/artifacts``. ``mlflow ui`` serves
  artifacts from ``./mlartifacts`` by default; our experiment records an absolute ``file://``
  location there, which the server reads directly, so the UI lists them and a client with no
  server can write them. A run's model (``RunLogger.log_model``) is an MLflow model of its
  own: ``<root>/mlartifacts/<experiment>/models/<model_id>/artifacts``.

``<root>`` is ``$DVC_ROOT`` (DVC sets it for every stage, and points it at the main repo for
queued experiments that run in temporary copies), else the nearest folder at or above the
working directory holding ``dvc.yaml``, ``.dvc`` or ``.git``, else the working directory.
``$MLFLOW_TRACKING_URI`` overrides the store; with a sqlite URI, artifacts go next to its file.

Usage::

    with start_run("ch1-30", params=cfg, tags=standard_tags(...)) as run:
        fit(net, spec["training"], train, on_epoch=run.log_epoch)  # numbers only: see experiment.flat_record
        run.log_metrics({"best_validation_accuracy": 0.95})
        run.log_figure(figures.learning_curves(records, "ch1"), "learning_curves.png")
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import re
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import filelock
import numpy as np

from pipeline.atomic import process_alive
from pipeline.errors import InputError
from pipeline.interrupts import Terminated, held_then_delivered, raise_held, signals_held, stops_raise_once
from pipeline.machine import blas_summary, cpu_model

# No pooled connections: seeds train in forked processes, and a sqlite connection must not
# cross a fork. A run writes at most about once a second, so opening a connection each time
# is cheap.
os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")
# A progress bar per copy of a model's few small files (logged, downloaded) is noise in a log.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# Fresh sqlite stores run ~50 alembic migrations, each logged at INFO; keep runs quiet.
for _name in ("alembic", "mlflow.store.db.utils", "mlflow.store.db.db_types"):
    logging.getLogger(_name).setLevel(logging.WARNING)

from mlflow.entities import LoggedModelStatus, Metric, Param, Run, RunStatus, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow.tracking.context.registry import resolve_tags  # noqa: E402

EXPERIMENT = "nielsen-mnist"
PARAM_VALUE_MAX = 500  # the classic MLflow limit (3.x stores allow 6000): safe for any server
BATCH_MAX = 100  # params/tags per log_batch call
ROOT_MARKERS = ("dvc.yaml", ".dvc", ".git")
# engine record key -> metric name; any other numeric key (grad_norm_layer1, ...) keeps its name
EPOCH_METRIC_NAMES = {"seconds": "epoch_seconds"}


def project_root() -> Path:
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if any((folder / marker).exists() for marker in ROOT_MARKERS):
            return folder
    return cwd


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` store; None for a server or an in-memory store."""
    if uri.startswith("sqlite:///") and not uri.endswith(":memory:"):
        return Path(uri[len("sqlite:///") :])
    return None


def artifact_root(uri: str | None = None) -> Path | None:
    """Local folder for artifacts of ``uri``'s store; None for a remote server (it decides)."""
    database = sqlite_file(uri or tracking_uri())
    return database.resolve().parent / "mlartifacts" if database else None


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; values stringified and cut to PARAM_VALUE_MAX."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            text = str(value)
            flat[name] = text if len(text) <= PARAM_VALUE_MAX else text[: PARAM_VALUE_MAX - 3] + "..."
    return flat


HYDRA_OUTPUT_ENV = "PIPELINE_HYDRA_OUTPUT_DIR"
HYDRA_OVERRIDES_ENV = "PIPELINE_HYDRA_OVERRIDES"
# where every file is code or configuration: one that git does not track yet makes a run dirty
CODE_FOLDERS = ("conf", "pipeline")


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def environment_tags() -> dict:
    """Tags that say where a run is trained: the code's git commit (and whether the work tree
    differed from it), the DVC stage and experiment, Python, numpy, the CPU and its BLAS.
    Stages also write them into their outputs, so that ``pipeline.restore_runs`` can give a
    restored run the tags of the machine that trained it."""
    tags = {
        "python_version": platform.python_version(),
        "numpy_version": np.__version__,
        "cpu": cpu_model(),
        "blas": blas_summary() or None,  # None: the tag is left out
    }
    commit = _git("rev-parse", "HEAD")  # cwd: a queued experiment's temp copy has its own HEAD
    if commit:
        tags["mlflow.source.git.commit"] = commit
        # DVC rewrites dvc.lock after every stage (and .gitignore files for new outputs):
        # those are not the code, and would mark every run after the first dirty
        dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ".",
                     ":(exclude)dvc.lock", ":(exclude,glob)**/.gitignore")
        # a new file of code or config not yet added (a run file of one's own in conf/book/)
        # is not in the commit either; new files elsewhere are outputs and notes
        new = _git("status", "--porcelain", "--untracked-files=all", "--", *CODE_FOLDERS)
        if dirty is not None and new is not None:
            tags["git_dirty"] = str(bool(dirty or new)).lower()
    for env, tag in (
        ("DVC_STAGE", "dvc.stage"),
        ("DVC_EXP_NAME", "dvc.exp_name"),
        ("DVC_EXP_BASELINE_REV", "dvc.exp_baseline_rev"),
        # set by the Hydra app: which of its output folders holds the run, and what its command
        # line changed (the jobs of an eta sweep are otherwise told apart by their params alone)
        (HYDRA_OUTPUT_ENV, "hydra.output_dir"),
        (HYDRA_OVERRIDES_ENV, "hydra.overrides"),
    ):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return {k: v for k, v in tags.items() if v is not None}


def standard_tags(book_id: str, chapter: Any, profile: str, seed: Any, data_digest: str,
                  trained_with: Mapping[str, Any] | None = None) -> dict:
    """Tags every run carries: what it reproduces (the book's run, chapter, profile, seed and
    data), and where it was trained: ``trained_with``, the ``environment_tags`` its stage
    took (and records in its outputs), or this process's when None."""
    return {"book_id": book_id, "chapter": chapter, "profile": profile, "seed": seed,
            "data_digest": data_digest, **(environment_tags() if trained_with is None else trained_with)}


RESTORED_FROM_TAG = "restored_from"


def restored_tags(tags: Mapping[str, Any], restored_from: str) -> dict:
    """Tags of a run logged again from the outputs that DVC restored (``pipeline.restore_runs``):
    its first run's ``tags`` (``standard_tags`` with the ``trained_with`` its outputs record;
    none in outputs of older stages) and the id of the run it was first logged as. Nothing of
    the machine that restores it but the host and pid that ``start_run`` gives every run."""
    return {**tags, RESTORED_FROM_TAG: restored_from}


class StoreRuns(NamedTuple):
    """What ``pipeline.restore_runs`` needs to know of the store (see ``store_runs``)."""

    logged: set[str]  # run ids it need not log again
    cut_short: dict[str, list[str]]  # restored_from -> ids of its restored copies that did not finish


def store_runs(create: bool = True) -> StoreRuns:
    """The ids of the experiment's FINISHED runs in the store, and of the runs that its FINISHED
    restored runs were first logged as: what ``pipeline.restore_runs`` need not log again; and
    the restored copies that a stop or failure cut short (KILLED or FAILED), to be deleted when
    their run is logged whole (runs left RUNNING by a process that is gone are ended KILLED
    first, so they count among them). ``create=False`` (a dry run) writes nothing: a sqlite
    store that does not exist is not made, nor the experiment in a store without it."""
    database = sqlite_file(tracking_uri())
    found = StoreRuns(set(), {})
    if not create and database is not None and not database.exists():
        return found
    client, experiment_id = _client(create)
    if experiment_id is None:
        return found
    if create:
        end_orphaned_runs(client, experiment_id)
    token = None
    while True:
        page = _write(client.search_runs, [experiment_id], max_results=1000, page_token=token)
        for run in page:
            original = run.data.tags.get(RESTORED_FROM_TAG)
            if run.info.status == "FINISHED":
                found.logged.add(run.info.run_id)
                if original:
                    found.logged.add(original)
            elif original and run.info.status in ("KILLED", "FAILED"):  # not one being logged now
                found.cut_short.setdefault(original, []).append(run.info.run_id)
        token = page.token
        if not token:
            return found


def delete_runs(run_ids: list[str]) -> None:
    """Mark runs deleted (MLflow's soft delete: the UI hides them, ``mlflow gc`` removes them),
    and the models they logged with them (MLflow leaves those in the Models tab)."""
    client, experiment_id = _client()
    for run_id in run_ids:
        _write(client.delete_run, run_id)
        for model in _models_of(client, experiment_id, run_id):
            _write(client.delete_logged_model, model.model_id)


def _is_run_id(text: str) -> bool:
    """Whether ``text`` has the form of an MLflow run id (32 hex digits: safe in a filter string)."""
    return re.fullmatch(r"[0-9a-f]{32}", text) is not None


def _models_of(client: MlflowClient, experiment_id: str, run_id: str) -> list:
    """The MLflow models run ``run_id`` logged."""
    if not _is_run_id(run_id):
        return []
    return list(_write(client.search_logged_models, [experiment_id], filter_string=f"source_run_id = '{run_id}'",
                       max_results=100))


def end_stray_models(client: MlflowClient, experiment_id: str, run_ids: list[str], keep: str | None = None) -> None:
    """Mark FAILED every model of ``run_ids`` still PENDING (but ``keep``): its process was
    killed while it logged it, or a refused create had made it after all."""
    for run_id in run_ids:
        for model in _models_of(client, experiment_id, run_id):
            if model.model_id != keep and model.status == LoggedModelStatus.PENDING:
                _write(client.finalize_logged_model, model.model_id, LoggedModelStatus.FAILED)


def _number(value: Any) -> float | None:
    """A finite-or-NaN float for a metric, or None to skip (None, strings, arrays)."""
    if value is None or isinstance(value, str):
        return None
    try:
        number = float(value)  # also numpy / cupy 0-d scalars
    except (TypeError, ValueError):
        return None
    return number if not math.isinf(number) else None


STORE_RETRIES = 8  # attempts of one write that a busy sqlite store refused (waits 0.05 s .. 1 s)


def _write(call, *args, **kwargs):
    """``call(*args, **kwargs)``, retried while the store answers "temporarily unavailable".

    Two seeds' processes write to one sqlite store. When both open a transaction with a read
    and then want to write, sqlite refuses one at once with "database is locked" (waiting
    would deadlock; its busy timeout does not apply), and MLflow rolls that write back. Run
    again, it goes through; left alone, a run would crash, or stay RUNNING when the write was
    the one that ends it (seen with two workers logging epochs of a few milliseconds)."""
    for attempt in range(STORE_RETRIES - 1):
        try:
            with held_then_delivered():  # a stop waits for the write's transaction to end
                return call(*args, **kwargs)
        except MlflowException as error:
            if error.error_code != "TEMPORARILY_UNAVAILABLE":
                raise
            time.sleep(min(1.0, 0.05 * 2**attempt))
    with held_then_delivered():
        return call(*args, **kwargs)  # the last attempt: its error is the caller's


EPOCH_FLUSH_SECONDS = 1.0  # per-epoch metrics wait for an epoch that ends this long after the last write
METRICS_PER_BATCH = 1000  # MLflow's limit on the metrics of one log_batch call


class RunLogger:
    """Logs into one MLflow run; obtained from ``start_run``.

    Per-epoch metrics are written in batches, with the first epoch that ends
    ``EPOCH_FLUSH_SECONDS`` or more after the last write (at most that and one epoch after
    their own), and all of them before the run ends (whether it finishes, fails or is
    interrupted): an epoch of a small net takes milliseconds, and one store write per epoch
    (a sqlite transaction, 6.3 ms measured: docs/tracking.md) cost more than the training in
    some of the book's rows.
    """

    def __init__(self, client: MlflowClient, run_id: str):
        self.client = client
        self.run_id = run_id
        self._pending: list[Metric] = []
        self._last_flush = time.monotonic()
        self._epoch_metrics: set[str] = set()  # names logged per epoch: what a model is listed with

    def log_epoch(self, record: Mapping[str, Any]) -> None:
        """The engine's ``on_epoch`` callback: every metric of ``record`` at step=epoch,
        written with the epochs since the last write once a second has passed."""
        step = int(record["epoch"])
        now = int(time.time() * 1000)
        for key, value in record.items():
            number = _number(value)
            if key != "epoch" and number is not None:
                name = EPOCH_METRIC_NAMES.get(key, key)
                self._pending.append(Metric(name, number, now, step))
                self._epoch_metrics.add(name)
        if time.monotonic() - self._last_flush >= EPOCH_FLUSH_SECONDS:
            self.flush()

    @property
    def pending(self) -> int:
        """How many per-epoch metrics wait to be written."""
        return len(self._pending)

    def flush(self) -> None:
        """Write the per-epoch metrics not written yet (a batch that fails stays pending)."""
        while self._pending:
            batch = self._pending[:METRICS_PER_BATCH]
            _write(self.client.log_batch, self.run_id, metrics=batch)
            del self._pending[: len(batch)]
        self._last_flush = time.monotonic()

    def _log_in_batches(self, kind: str, items: list, size: int) -> None:
        """``log_batch`` of ``items`` as ``kind`` (metrics, params, tags), ``size`` a call."""
        for i in range(0, len(items), size):
            _write(self.client.log_batch, self.run_id, **{kind: items[i : i + size]})

    def log_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Summary metrics (no step); None / non-numeric values are skipped."""
        now = int(time.time() * 1000)
        self._log_in_batches("metrics", [Metric(k, n, now, 0) for k, v in metrics.items()
                                         if (n := _number(v)) is not None], METRICS_PER_BATCH)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._log_in_batches("params", [Param(k, v) for k, v in flatten(params).items()], BATCH_MAX)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._log_in_batches("tags", [RunTag(k, str(v)) for k, v in tags.items() if v is not None],
                             BATCH_MAX)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, os.fspath(path), artifact_path)

    def log_artifacts(self, directory: str | os.PathLike, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, os.fspath(directory), artifact_path)

    def log_figure(self, fig, name: str) -> None:
        """Save a matplotlib figure as artifact ``name`` (e.g. "figures/curves.png"), then close it."""
        import matplotlib.pyplot as plt

        try:
            self.client.log_figure(self.run_id, fig, name)
        finally:
            plt.close(fig)

    def log_text(self, text: str, name: str) -> None:
        """Save ``text`` as artifact ``name`` (e.g. "history.csv")."""
        self.client.log_text(self.run_id, text, name)

    def log_dict(self, d: Mapping[str, Any], name: str) -> None:
        """Save ``d`` as artifact ``name``: JSON, or YAML for a .yaml/.yml name."""
        self.client.log_dict(self.run_id, dict(d), name)

    def log_model(self, network_folders: list[Path], net, *, step: int) -> str:
        """Log the networks in ``network_folders`` (model folders of ``pipeline.nn.io``) as this
        run's MLflow model ``MODEL_NAME``: one network, or the plurality vote of several
        (``pipeline/mlflow_model.py``, which ``mlflow.pyfunc.load_model("runs:/<run id>/model")``
        runs), taking rows of as many numbers as ``net`` (one of them) has inputs, in its dtype.
        The model gets the
        run's params, its tags of ``MODEL_TAGS``, and its metrics at ``step``: the per-epoch
        ones of the epoch whose weights the folders hold, or, in a run that logged no epochs
        (the ensemble's), all of them; so the UI's Models tab compares models by them. Returns
        the model's id.

        What ``mlflow.pyfunc.log_model`` does, written out: each write to the store goes
        through ``_write``, as two seeds' processes may write at the same moment, and the model
        ends READY, or FAILED (an error, a stop), never left PENDING."""
        import mlflow.pyfunc
        from mlflow.entities import LoggedModelOutput
        from mlflow.models import Model

        self.flush()  # the epoch's metrics are linked to the model below: all of them in the store
        run = _write(self.client.get_run, self.run_id)
        listed = self._epoch_metrics or set(run.data.metrics)
        with signals_held() as came_while_creating:  # a stop now would leave the model PENDING
            model = _write(self.client.create_logged_model, run.info.experiment_id, name=MODEL_NAME,
                           source_run_id=self.run_id, params=dict(run.data.params),
                           tags={k: v for k, v in run.data.tags.items() if k in MODEL_TAGS})
        try:
            raise_held(came_while_creating)
            _write(self.client.log_outputs, self.run_id, [LoggedModelOutput(model.model_id, step)])
            linked = [Metric(m.key, m.value, m.timestamp, m.step, model_id=model.model_id)
                      for key in sorted(listed & set(run.data.metrics))
                      for m in _write(self.client.get_metric_history, self.run_id, key) if m.step == step]
            self._log_in_batches("metrics", linked, METRICS_PER_BATCH)
            with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
                # MLflow's advice to add an input example: the signature says what goes in
                warnings.simplefilter("ignore", UserWarning)
                local = Path(tmp) / MODEL_NAME
                description = Model(artifact_path=model.artifact_location, model_uuid=model.model_id,
                                    run_id=self.run_id, model_id=model.model_id)
                mlflow.pyfunc.save_model(
                    local, python_model=os.fspath(MODEL_CODE), mlflow_model=description,
                    artifacts=network_artifacts(network_folders), signature=_model_signature(net),
                    # the engine is this repo's package, which no package index has: the model
                    # loads where the project is installed (``mlflow models serve --env-manager local``)
                    pip_requirements=[f"numpy=={np.__version__}"])
                _write(self.client.log_model_artifacts, model.model_id, os.fspath(local))
            with signals_held() as came_while_finishing:
                _write(self.client.finalize_logged_model, model.model_id, LoggedModelStatus.READY)
        except BaseException:
            with contextlib.suppress(Exception):
                _write(self.client.finalize_logged_model, model.model_id, LoggedModelStatus.FAILED)
            raise
        # a create that the store refused late may have left a first model behind: not this run's
        end_stray_models(self.client, run.info.experiment_id, [self.run_id], keep=model.model_id)
        raise_held(came_while_finishing)
        return model.model_id


MODEL_NAME = "model"  # each run's logged model: ``runs:/<run id>/model``
MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
# the run's tags its model carries too: which book run, seed and code it is
MODEL_TAGS = ("book_id", "chapter", "profile", "seed", "data_digest", "mlflow.source.git.commit", "git_dirty")


NETWORK_ARTIFACT = "network"  # a model's one network; a vote's are network_0, network_1, ...


def network_artifacts(folders: list[Path]) -> dict[str, str]:
    """A model's artifacts for the networks in ``folders``: their names, in vote order."""
    if len(folders) == 1:
        return {NETWORK_ARTIFACT: os.fspath(folders[0])}
    return {f"{NETWORK_ARTIFACT}_{i}": os.fspath(folder) for i, folder in enumerate(folders)}


def network_names(artifacts: Mapping[str, Any]) -> list[str]:
    """The network names among a model's ``artifacts``, in vote order (network_2 before network_10)."""
    numbered = {name: name[len(NETWORK_ARTIFACT) + 1 :] for name in artifacts
                if name.startswith(f"{NETWORK_ARTIFACT}_")}
    return ([NETWORK_ARTIFACT] if NETWORK_ARTIFACT in artifacts else []) + sorted(
        (name for name, number in numbered.items() if number.isdigit()), key=lambda name: int(numbered[name]))


def _model_signature(net):
    """What a logged model takes and gives: rows of as many numbers in [0, 1] as ``net`` has
    inputs, in its dtype (MLflow checks it exactly: float32 or float64), a digit for each row."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(net.dtype), (-1, int(np.prod(net.input_shape))))]),
                          outputs=Schema([TensorSpec(np.dtype(np.int64), (-1,))]))


def _experiment_id(client: MlflowClient, uri: str, experiment=None) -> str:
    """The experiment's id (``experiment``: the one the store holds, already looked up),
    made where the store has none."""
    if experiment is not None:
        return experiment.experiment_id
    root = artifact_root(uri)
    location = (root / EXPERIMENT).as_uri() if root else None
    try:
        return client.create_experiment(EXPERIMENT, artifact_location=location)
    except MlflowException:  # another process created it first
        experiment = client.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            raise
        return experiment.experiment_id


def _check_writable_store(uri: str) -> None:
    """Refuse a sqlite store this process cannot write (sqlite writes the file and a journal
    beside it): MLflow's own error is hundreds of lines from its first write."""
    database = sqlite_file(uri)
    if database is None or not database.exists():
        return
    for path in (database, database.parent):
        if not os.access(path, os.W_OK):
            raise InputError(f"the tracking store {uri} cannot be written here: {path} is read-only "
                             "for this user; make it writable, or set MLFLOW_TRACKING_URI to a store "
                             "you can write")


def _check_location(experiment, uri: str) -> None:
    """Refuse a store of ours whose experiment keeps its artifacts in another folder than the
    one beside it: the repository was moved or copied with its ``mlflow.db``, and MLflow
    records each location whole (a run would list no artifacts, or write into the old folder)."""
    root = artifact_root(uri)
    if experiment is None or root is None:
        return
    recorded, expected = experiment.artifact_location, (root / EXPERIMENT).as_uri()
    ours = recorded.startswith("file://") and recorded.endswith(f"/mlartifacts/{EXPERIMENT}")
    if ours and recorded != expected:
        raise InputError(
            f"the tracking store {uri} keeps its runs' artifacts in {recorded}, not beside it in {expected}: "
            "the folder was moved or copied with its mlflow.db (MLflow records artifact locations "
            "whole). Move the folder back; or move mlflow.db and mlartifacts/ aside and run "
            "`python -m pipeline.restore_runs`, which logs the runs again from the outputs DVC keeps")


# how long a process waits for another one to finish opening the store (a new store's
# migrations take seconds): past that, the lock is held by a process that hangs
STORE_LOCK_SECONDS = 120.0


def _store_lock(uri: str, reading: bool = False) -> contextlib.AbstractContextManager:
    """An inter-process lock around opening a sqlite store: a new store runs its schema
    migrations on first open, and two processes migrating at once fail ("duplicate column").
    That happens with the joblib launcher's parallel runs, queued DVC experiments, or two
    ad-hoc runs started together. Other stores (servers, ``:memory:``) need no lock."""
    database = sqlite_file(uri)
    if database is None:
        return contextlib.nullcontext()
    if database.is_dir():
        raise IsADirectoryError(f"{database} is a folder, not a database file")
    if not database.parent.exists() and os.environ.get("MLFLOW_TRACKING_URI"):
        # a misspelt path would quietly start a second store there, splitting the runs
        raise InputError(f"MLFLOW_TRACKING_URI names a store in {database.parent}, a folder that does not "
                         "exist: fix the path, or make the folder first (a new store starts there)")
    database.parent.mkdir(parents=True, exist_ok=True)
    lock = Path(f"{database}.lock")
    if reading and database.is_file() and not (os.access(database.parent, os.W_OK)
                                               and (not lock.exists() or os.access(lock, os.W_OK))):
        return contextlib.nullcontext()  # a store it may not write is read as it is: only migrations need the lock
    # made here first: where it cannot be made (a path under /proc), filelock would retry for ever
    lock.touch()
    return filelock.FileLock(lock, timeout=STORE_LOCK_SECONDS)


@contextlib.contextmanager
def one_at_a_time(task: str, on_wait: Callable[[str], None]) -> Iterator[None]:
    """Hold this store's lock for ``task`` (a sqlite store's ``<db>.<task>.lock``) through the
    block: a second process doing the same task on the same store says so with ``on_wait``
    and waits for the first to end. For ``restore_runs``: two at once would each log every run
    the store lacked when they began. A server's store (or a folder this user cannot write,
    which the store's own checks name) gets no lock."""
    database = sqlite_file(tracking_uri())
    lock_file = Path(f"{database}.{task}.lock") if database else None
    if lock_file is not None:
        try:
            lock_file.touch()  # made here first: where it cannot be, filelock would retry for ever
        except OSError:
            lock_file = None
    if lock_file is None:
        yield
        return
    lock = filelock.FileLock(lock_file)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        on_wait(f"another {task} is logging into {database}: waiting for it to end (Ctrl-C to stop)")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


SERVER_CONNECT_SECONDS = 5.0


def _check_server_answers(uri: str) -> None:
    """Fail at once when nothing listens at an ``http(s)://`` tracking server's address:
    MLflow's own retries (7, with growing waits) would hold a run for minutes before saying so.
    Skipped where a proxy carries the requests (MLflow's ``requests`` honours it; a direct
    connection could fail where the proxy gets through). A server that accepts the connection
    but does not answer still goes through MLflow's retries."""
    import urllib.request

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    if not parts.hostname:
        raise ConnectionError("the URI names no host")
    if parts.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(parts.hostname):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=SERVER_CONNECT_SECONDS).close()
    except OSError as error:
        raise ConnectionError(f"no server answers at {parts.hostname}:{port}: {error}") from error


def _client(create: bool = True) -> tuple[MlflowClient, str | None]:
    """A client of the tracking store and the experiment's id (created on first use; with
    ``create=False`` not created, and the id None where there is no such experiment)."""
    uri = tracking_uri()
    try:
        _check_server_answers(uri)
        if create:  # before the lock, which a read-only store would refuse with a vaguer error
            _check_writable_store(uri)
        with warnings.catch_warnings(), _store_lock(uri, reading=not create):
            warnings.simplefilter("ignore")  # deprecation noise from the store's SQLAlchemy setup
            client = MlflowClient(tracking_uri=uri)
            experiment = client.get_experiment_by_name(EXPERIMENT)
            _check_location(experiment, uri)
            if not create:
                return client, experiment.experiment_id if experiment else None
            return client, _experiment_id(client, uri, experiment)
    except InputError:
        raise
    except Exception as error:  # no server, a path that cannot be made, not a database, an unknown scheme
        if "database is locked" in str(error) or isinstance(error, filelock.Timeout):
            where = ("a store another process holds locked (a sqlite shell or database browser open "
                     "on it, a run that hangs, or many processes opening it at once): close that "
                     "process, or start fewer at once, and run again; the store itself is fine")
        elif os.environ.get("MLFLOW_TRACKING_URI"):
            where = "MLFLOW_TRACKING_URI: fix it, or unset it to use the repo's mlflow.db"
        else:
            where = "the repo's own store: move a damaged mlflow.db aside and run again"
        raise InputError(f"MLflow cannot use the tracking store {uri} "
                         f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
                         f"it comes from {where}") from error


# the machine and process a run was started by: a later run on that machine can tell when that
# process is gone without having ended it (SIGKILL, the out-of-memory killer) and end it KILLED
HOST_TAG, PID_TAG = "host", "pid"
ENDED_BY_TAG = "ended_by"


def end_orphaned_runs(client: MlflowClient, experiment_id: str, by: str = "a later run") -> list[str]:
    """Mark KILLED each RUNNING run of the experiment that a process of this machine started and
    that process is gone: killed with a signal no code can catch, it could not end its run, and
    nothing else would. Runs of other machines, and of processes still alive, are left alone.
    Returns the ids of the runs it ended."""
    host = socket.gethostname()
    running = _write(client.search_runs, [experiment_id], filter_string="attributes.status = 'RUNNING'",
                     max_results=1000)
    ended = []
    for run in running:
        tags = run.data.tags
        pid = tags.get(PID_TAG, "")
        if tags.get(HOST_TAG) != host or not pid.isdigit() or process_alive(int(pid)):
            continue
        _write(client.set_tag, run.info.run_id, ENDED_BY_TAG,
               f"{by}: process {pid} that started it was gone, killed without a chance to end it")
        _write(client.set_terminated, run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
        ended.append(run.info.run_id)
    end_stray_models(client, experiment_id, ended)
    return ended


def end_runs_of_dead_processes() -> list[str]:
    """``end_orphaned_runs`` now, for a process that saw one of its workers die (SIGKILL, the
    out-of-memory killer): the dead worker's run is ended KILLED at once, not by a later run."""
    client, experiment_id = _client()
    return end_orphaned_runs(client, experiment_id, by="the parent of its seed's worker")


def init_store() -> None:
    """Create the store and the experiment now, before the seeds' processes are forked."""
    _client()


SOURCE_TAG = "mlflow.source.name"  # MLflow's: the script that started the run


def _within_the_code(script: str) -> str:
    """``script``'s path from the folder that holds the package ``pipeline``
    (``pipeline/stages/train.py``) when it is one of ours: the same on every machine, where
    the whole path names a folder of one machine, or a queued experiment's temporary copy
    that DVC removes once it is done. Any other script keeps its path."""
    code_root = Path(__file__).resolve().parent.parent
    try:
        return Path(script).resolve().relative_to(code_root).as_posix()
    except (ValueError, OSError):
        return script


@contextlib.contextmanager
def start_run(
    run_name: str,
    *,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    context_tags: bool = True,
) -> Iterator[RunLogger]:
    """Open a run in experiment ``EXPERIMENT``; it ends FINISHED, FAILED (exception) or
    KILLED (KeyboardInterrupt / SIGTERM), never left RUNNING. Exceptions are re-raised.

    ``context_tags``: add MLflow's tags of this process (``mlflow.source.name``, ``mlflow.user``,
    the git commit of the script it runs); False for a run this process did not train."""
    client, experiment_id = _client()
    all_tags = {k: str(v) for k, v in (tags or {}).items() if v is not None}
    if context_tags:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            all_tags = resolve_tags(all_tags)
        if SOURCE_TAG in all_tags:
            all_tags[SOURCE_TAG] = _within_the_code(all_tags[SOURCE_TAG])
    all_tags.update({HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())})
    end_orphaned_runs(client, experiment_id)
    status = RunStatus.FAILED
    # SIGTERM (DVC, a queue, ``kill``) stops the run like Ctrl-C, and a second stop does not
    # cut the first one's clean-up short. A stop while the run is created or closed would
    # leave it RUNNING: both wait for it, held back
    with stops_raise_once():
        run = logger = None
        try:  # entered before the run exists: no stop can come between its creation and the try
            with signals_held() as came_while_creating:
                run = _write(client.create_run, experiment_id, run_name=run_name, tags=all_tags)
                logger = RunLogger(client, run.info.run_id)
            raise_held(came_while_creating)  # the run exists now: it ends KILLED
            if params:
                logger.log_params(params)
            yield logger
            logger.flush()
            status = RunStatus.FINISHED
        except KeyboardInterrupt:  # includes Terminated
            status = RunStatus.KILLED
            raise
        except Exception as error:
            stop = _stop_among_causes(error)
            if stop is None:
                raise
            # a stop that a library turned into its own error (an import cut short raises
            # ImportError "initialization failed"): a stop all the same, of the same kind
            status = RunStatus.KILLED
            raise type(stop)(*stop.args) from error
        finally:
            if run is not None:  # else MLflow made no run (its error goes on up): none to end
                _end_run(client, run.info.run_id, logger, status)


def _end_run(client, run_id: str, logger: RunLogger | None, status) -> None:
    """Write what ``logger`` still holds and end the run with ``status``, stops held back
    meanwhile; one that came while a FINISHED run was closed is raised after."""
    with signals_held() as came_while_closing:
        if logger is not None and logger.pending:  # stopped or failed: its completed epochs go in
            try:
                logger.flush()
            except Exception as error:  # the run's own error is the one to report
                warnings.warn(f"MLflow: the last epochs of run {run_id} were not written: {error}",
                              stacklevel=3)
        _write(client.set_terminated, run_id, RunStatus.to_string(status))
    if status == RunStatus.FINISHED:  # else the run is being stopped already
        raise_held(came_while_closing)


def _stop_among_causes(error: BaseException | None) -> KeyboardInterrupt | None:
    """The Ctrl-C (``KeyboardInterrupt``) or SIGTERM (``Terminated``) among the causes of
    ``error``, if there is one."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


class LoggedModel(NamedTuple):
    folders: list[Path]  # the downloaded networks' folders (weights.npz, model.json); several: a vote
    run_id: str  # the run it came from: the id asked for, or that run's restored copy here
    run_name: str
    test_accuracy: dict[int, float]  # the run's test accuracy per epoch, as it logged it


def _restored_copy(client: MlflowClient, experiment_id: str, first_id: str) -> Run | None:
    """The latest FINISHED run that ``pipeline.restore_runs`` logged from run ``first_id`` of
    another store (the id a ``results/<id>/metrics.json`` restored by DVC records), or None."""
    if not _is_run_id(first_id):  # anything else cannot match
        return None
    found = _write(client.search_runs, [experiment_id],
                   filter_string=f"tags.{RESTORED_FROM_TAG} = '{first_id}' and attributes.status = 'FINISHED'",
                   order_by=["attributes.start_time DESC"], max_results=1)
    return found[0] if found else None


def download_model(run_id: str, dst: str | os.PathLike) -> LoggedModel:
    """The network folders of the MLflow model a run logged (``RunLogger.log_model``: one net,
    or the ensemble's several; for a run logged before runs logged MLflow models, its artifact
    folder ``model``), downloaded into ``dst``, with the run's name and, for one net, its
    logged test accuracy per epoch. ``run_id`` may also be the id
    a run had in the store that trained it, where ``pipeline.restore_runs`` logged it here
    again. A clear ``LookupError`` when the store has no such run, or the run no model."""
    client, experiment_id = _client()
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise  # the store failed: not a question of which run
        run = _restored_copy(client, experiment_id, run_id)
        if run is None:
            raise LookupError(f"MLflow run {run_id!r}: not in the tracking store {tracking_uri()}, nor a "
                              "run restored from it (copy the run id from the UI's run page, or set "
                              "MLFLOW_TRACKING_URI; in a clone whose results DVC restored, log their "
                              "runs first: python -m pipeline.restore_runs)") from None
    local_id = run.info.run_id  # run_id's restored copy, where it is one
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    models = [m for m in _models_of(client, run.info.experiment_id, local_id)
              if m.name == MODEL_NAME and m.status == LoggedModelStatus.READY]
    names = set() if models else {a.path for a in client.list_artifacts(local_id)}
    if models:
        from mlflow.artifacts import download_artifacts

        latest = max(models, key=lambda m: m.creation_timestamp)  # one a run, as runs log them
        folder = Path(download_artifacts(f"models:/{latest.model_id}", dst_path=os.fspath(dst),
                                         tracking_uri=tracking_uri()))
        folders = _network_folders(folder)
    elif MODEL_NAME in names:  # a run logged before runs logged MLflow models: the bare folder
        folders = [Path(client.download_artifacts(local_id, MODEL_NAME, dst_path=os.fspath(dst)))]
    else:
        status = run.info.status
        why = ("training runs that finish do" if status == "FINISHED" else
               "it is still running (or its process was killed and no later run has ended it yet): "
               "a run logs its model when it finishes" if status in ("RUNNING", "SCHEDULED") else
               f"it ended {status}: a stopped or failed run logs none (a stopped one saved its "
               "weights in its model folder, models/<id>/seed<N>/ or the Hydra output folder)")
        raise LookupError(f"MLflow run {run_id!r} ({run.info.run_name}) logged no model "
                          f"(its artifacts: {', '.join(sorted(names)) or 'none'}); {why}")
    test = {m.step: m.value for m in client.get_metric_history(local_id, "test_accuracy")} if len(folders) == 1 else {}
    return LoggedModel(folders, local_id, run.info.run_name, test)


class StoredModel(NamedTuple):
    """An MLflow model of the experiment, with the run that logged it (``stored_models``)."""

    model_id: str
    status: str  # READY, or PENDING / FAILED for a model whose logging did not finish
    run_id: str
    run_name: str
    tags: dict[str, str]  # its run's
    test_accuracy: float | None  # its run's logged test accuracy at its last step


def stored_models() -> list[StoredModel]:
    """Every MLflow model of the experiment in the store, oldest first (none where the store
    has no such experiment)."""
    client, experiment_id = _client(create=False)
    if experiment_id is None:
        return []
    stored = []
    for model in sorted(client.search_logged_models([experiment_id], max_results=1000),
                        key=lambda m: m.creation_timestamp):
        run = client.get_run(model.source_run_id)
        history = client.get_metric_history(model.source_run_id, "test_accuracy")
        last = max(history, key=lambda m: m.step).value if history else None
        stored.append(StoredModel(model.model_id, str(model.status), model.source_run_id, run.info.run_name,
                                  dict(run.data.tags), last))
    return stored


def download_stored_model(model_id: str, dst: str | os.PathLike) -> Path:
    """The folder of MLflow model ``model_id`` (its ``MLmodel`` file, the networks), downloaded into ``dst``."""
    from mlflow.artifacts import download_artifacts

    return Path(download_artifacts(f"models:/{model_id}", dst_path=os.fspath(dst), tracking_uri=tracking_uri()))


CODE_MODEL_LOADER = "mlflow.pyfunc.loaders.code_model"  # MLflow's loader of a model from code


def check_model_code(model_folder: str | os.PathLike) -> None:
    """Refuse a downloaded MLflow model unless loading it runs this checkout's own
    ``mlflow_model.py`` and nothing else: MLflow executes the code file stored in the model (any
    one who can write the store can change it), imports its ``loader_module`` and puts its
    ``code`` folders first on ``sys.path``."""
    from mlflow.models import Model

    model_folder = Path(model_folder)
    try:
        flavor = Model.load(os.fspath(model_folder)).flavors["python_function"]
    except (KeyError, TypeError, OSError, MlflowException) as error:
        raise InputError(f"{model_folder}: not a model this pipeline logged ({error})") from None
    code = flavor.get("model_code_path")
    stored = model_folder / os.path.basename(str(code)) if code else None
    why = ("it loads through " + repr(flavor.get("loader_module")) if flavor.get("loader_module") != CODE_MODEL_LOADER
           else "it puts code folders of its own on sys.path" if flavor.get("code")
           else "it names no code file" if stored is None or not stored.is_file()
           else f"its code {stored.name} differs from this checkout's {MODEL_CODE.name}"
           if stored.read_bytes() != MODEL_CODE.read_bytes() else None)
    if why:
        raise InputError(f"{model_folder}: not loaded, as loading it would run code other than this checkout's "
                         f"{MODEL_CODE.name}: {why} (a model logged at another commit loads where that "
                         f"commit is checked out, its tag mlflow.source.git.commit, if you trust its code)")


def load_as_pyfunc(model_folder: str | os.PathLike):
    """A downloaded MLflow model loaded through MLflow's generic interface, as a user of
    MLflow loads it: ``predict(images)`` and the input schema in ``metadata``. Only a model
    whose code is this checkout's (``check_model_code``): loading runs it."""
    from mlflow.pyfunc import load_model

    check_model_code(model_folder)
    return load_model(os.fspath(model_folder))


def _network_folders(model_folder: Path) -> list[Path]:
    """The network folders inside a downloaded MLflow model, in vote order (its ``MLmodel``
    file names them)."""
    from mlflow.models import Model

    try:
        artifacts = Model.load(os.fspath(model_folder)).flavors["python_function"]["artifacts"]
        folders = [model_folder / artifacts[name]["path"] for name in network_names(artifacts)]
    except (KeyError, TypeError, OSError, MlflowException) as error:
        raise LookupError(f"{model_folder}: not a model this pipeline logged ({error})") from None
    inside = model_folder.resolve()
    for folder in folders:  # the MLmodel file is the store's: its paths may name any folder here
        if not folder.resolve().is_relative_to(inside):
            raise LookupError(f"{model_folder}: its MLmodel file names the network folder {folder}, outside "
                              "the downloaded model: not a model this pipeline logged")
    if not folders:
        raise LookupError(f"{model_folder}: the model names no network among its artifacts {sorted(artifacts)}")
    return folders


__all__ = [
    "EXPERIMENT",
    "MODEL_NAME",
    "MODEL_TAGS",
    "RunLogger",
    "Terminated",
    "artifact_root",
    "LoggedModel",
    "download_model",
    "download_stored_model",
    "check_model_code",
    "load_as_pyfunc",
    "StoredModel",
    "stored_models",
    "end_stray_models",
    "flatten",
    "init_store",
    "network_artifacts",
    "network_names",
    "project_root",
    "delete_runs",
    "environment_tags",
    "restored_tags",
    "standard_tags",
    "store_runs",
    "start_run",
    "tracking_uri",
]
