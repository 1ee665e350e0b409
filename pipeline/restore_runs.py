"""Log into this machine's MLflow store the runs whose outputs ``dvc repro --pull`` restored.

A stage that DVC restores from a remote's run-cache does not run, so its MLflow runs stay in the
store of the machine that trained it and ``mlflow ui`` here shows none of them. This reads what
the stages wrote and logs each run again from it, as its stage logged it: the same name,
params, per-epoch metrics (``step`` = epoch), summary metrics and artifacts (config,
``history.csv``, the model, and the learning curves, confusion matrix and misclassified digits,
drawn again from the model and the test set). Each is tagged ``restored_from`` with the id of
the run it was first logged as, and carries no code or machine tags: this machine did not train
it. A run that the store holds already (this is the machine that trained it) or that was
restored before is left out, so a second call logs nothing.

    dvc repro --pull && python -m pipeline.restore_runs
    python -m pipeline.restore_runs --dry-run        # what it would log, logging nothing

What it reads: for every run in params.yaml's ``book``, ``results/<id>/metrics.json`` and
``history.csv`` and ``models/<id>/seed<k>/`` (each seed, and the book's run replayed where there
is one); the ensemble's ``metrics.json``; the baselines' ``metrics.json`` and ``svm_sweep.json``;
the test set. ``params.yaml`` must be composed with the profile that made them (a run whose
``metrics.json`` names another profile is left out, and said so).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Callable

from pipeline import baselines, experiment, tracking
from pipeline.data.mnist import Dataset, digest, load_dataset, split_file
from pipeline.errors import EXIT_STATUS, InputError
from pipeline.interrupts import exit_status
from pipeline.nn import ModelFileError, load_model
from pipeline.nn.spec import validate_training
from pipeline.params import load_params, run_folders

RESTORE = "run `dvc repro --pull` to restore it"


def _cell(text: str) -> int | float:
    """A number of ``history.csv`` as the engine recorded it (``repr`` of a float reads back exactly)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def history_by_seed(path: Path) -> dict[int, list[dict]]:
    """``history.csv``'s rows by seed, each the engine's epoch record again: numbers only, and no
    key for a cell left empty (a value that epoch did not record)."""
    if not path.is_file():
        raise InputError(f"{path} is missing: {RESTORE}")
    rows: dict[int, list[dict]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for line in csv.DictReader(f):
            try:
                record = {k: _cell(v) for k, v in line.items() if k != "seed" and v not in ("", None)}
                seed = int(line["seed"])
            except (KeyError, TypeError, ValueError) as error:
                raise InputError(f"{path}: not a run's history ({error}): {RESTORE}") from None
            rows.setdefault(seed, []).append(record)
    return rows


def _json(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"{path} is missing: {RESTORE}")
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error}): {RESTORE}") from None
    if not isinstance(found, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(found).__name__}: {RESTORE}")
    return found


def _lacking(path: Path, error: Exception) -> InputError:
    """A stage's output without a field this reads: damaged, or not what the stage wrote."""
    return InputError(f"{path}: not as its stage writes it (no {error}): {RESTORE}")


class Restorer:
    """Logs the restored runs one by one, leaving out those the store has; counts what it did."""

    def __init__(self, params: dict, log: Callable[[str], None] = print, dry_run: bool = False):
        self.params, self.log, self.dry_run = params, log, dry_run
        self.profile = params["profile"]["name"]
        self.limits = params["profile"].get("limits") or {}
        self.known = tracking.logged_run_ids()
        self.logged, self.present = 0, 0
        self.missing: list[str] = []  # runs with no outputs here
        self.left_out: list[str] = []  # runs whose outputs cannot be logged, each said why
        self._test_sets: dict[str, Dataset] = {}

    def _new(self, what: str, original: str) -> bool:
        """Whether run ``original`` is to be logged now: it is not in the store, and this is not a
        dry run (which counts it instead). Says which runs it logs."""
        if original in self.known:
            self.present += 1
            return False
        self.log(f"{'would log' if self.dry_run else 'log'} {what} (first logged as run {original})")
        if self.dry_run:
            self.logged += 1
        return not self.dry_run

    def _done(self, original: str) -> None:
        self.known.add(original)
        self.logged += 1

    def _test_set(self, dtype: str) -> Dataset:
        if dtype not in self._test_sets:
            path = split_file(self.params["data"]["prepared_dir"], "test")
            if not Path(path).is_file():
                raise InputError(f"{path} is missing (the figures are drawn from it): {RESTORE}")
            self._test_sets[dtype] = load_dataset(path, dtype=dtype, cap=self.limits.get("eval_examples"))
        return self._test_sets[dtype]

    # -- the runs of params.yaml's book -------------------------------------------------------
    def book_run(self, book_id: str) -> None:
        """Every seed of run ``book_id`` (and the book's run replayed) that the store lacks."""
        model_dir, results_dir = run_folders(book_id)
        if not (results_dir / "metrics.json").is_file():
            self.missing.append(book_id)
            return
        metrics = _json(results_dir / "metrics.json")
        if metrics.get("profile") != self.profile:
            self.log(f"left out {book_id}: its results are of profile {metrics.get('profile')!r}, params.yaml "
                     f"is {self.profile!r} (`python -m pipeline.config profile={metrics.get('profile')}` first)")
            self.left_out.append(book_id)
            return
        try:
            jobs = [(s["seed"], False, s, s["mlflow_run_id"]) for s in metrics["seeds"]]
            if metrics.get("replay"):
                replay = metrics["replay"]
                jobs.append((replay["seed"], True, replay["summary"], replay["mlflow_run_id"]))
        except (KeyError, TypeError) as error:
            raise _lacking(results_dir / "metrics.json", error) from None
        histories = None
        for seed, replay, summary, original in jobs:
            what = f"{book_id} " + ("the book's run replayed" if replay else f"seed {seed}")
            if not self._new(what, original):
                continue
            histories = histories or history_by_seed(results_dir / "history.csv")
            if seed not in histories:
                raise InputError(f"{results_dir / 'history.csv'} has no rows of seed {seed}: {RESTORE}")
            summary = {k: v for k, v in summary.items() if k not in ("seed", "mlflow_run_id")}
            self._seed(book_id, seed, replay, summary, histories[seed], model_dir / f"seed{seed}", original)
            self._done(original)

    def _seed(self, book_id: str, seed: int, replay: bool, summary: dict, rows: list[dict],
              seed_dir: Path, original: str) -> None:
        run_cfg = self.params["book"][book_id]
        try:
            loaded = load_model(seed_dir)
        except (FileNotFoundError, ModelFileError) as error:
            raise InputError(f"{seed_dir}: {error}; {RESTORE}") from None
        spec = experiment.run_spec(run_cfg, seed, self.limits, replay)
        device = loaded.spec["training"].get("device", "cpu")
        if run_cfg["training"].get("device", "cpu") != device:  # as train_entry records the machine's choice
            spec["training"] = dict(spec["training"], device=device)
        tags = tracking.restored_tags(book_id, run_cfg["chapter"], self.profile, seed,
                                      loaded.metadata.get("data_digest"), original)
        if replay:
            tags["replay"] = run_cfg["replay"]["script"]
        test = self._test_set(validate_training(run_cfg["training"])["dtype"])
        params = experiment.seed_params(book_id, run_cfg, self.profile, seed, spec)
        with tracking.start_run(book_id, params=params, tags=tags) as run:
            for row in rows:
                run.log_epoch(row)
            experiment.log_seed_outcome(run, book_id, run_cfg, spec, summary, rows, loaded.network,
                                        test, seed_dir)

    # -- the ensemble and the baselines -------------------------------------------------------
    def ensemble(self) -> None:
        cfg = self.params["ensemble"]
        path = run_folders(cfg["id"])[1] / "metrics.json"
        if not path.is_file():
            self.missing.append(cfg["id"])
            return
        result = _json(path)
        try:
            original, first_member = result["mlflow_run_ids"][0], Path(result["members"][0])
        except (KeyError, TypeError, IndexError) as error:
            raise _lacking(path, error) from None
        if not self._new(cfg["id"], original):
            return
        digest_of_data = (_json(first_member / "model.json").get("metadata") or {}).get("data_digest")
        tags = tracking.restored_tags(cfg["id"], cfg["chapter"], self.profile, None, digest_of_data, original)
        with tracking.start_run(cfg["id"], params=cfg, tags=tags) as run:
            run.log_metrics(result)  # its numbers, as the stage logged them
        self._done(original)

    def baselines(self) -> None:
        cfg = self.params["baselines"]
        out = Path(cfg["out_dir"])
        if not (out / "metrics.json").is_file():
            self.missing.append("baselines")
            return
        metrics, sweep = _json(out / "metrics.json"), _json(out / "svm_sweep.json")
        train = split_file(self.params["data"]["prepared_dir"], "train")
        train_digest = None
        for name, chapter in baselines.RUN_CHAPTERS.items():
            original = (metrics.get("mlflow_run_ids") or {}).get(name)
            if original is None:
                self.log(f"left out {name}: {out / 'metrics.json'} does not name its MLflow run (an older "
                         "baselines stage wrote it; `dvc repro baselines` makes it again)")
                self.left_out.append(name)
                continue
            if not self._new(name, original):
                continue
            train_digest = train_digest or digest(train)
            tags = tracking.restored_tags(name, chapter, self.profile, None, train_digest, original)
            with tracking.start_run(name, params=baselines.run_params(name, cfg), tags=tags) as run:
                run.log_metrics(baselines.run_metrics(name, metrics, sweep))
            self._done(original)


def restore(params: dict, log: Callable[[str], None] = print, dry_run: bool = False) -> Restorer:
    """Log every restored run that the store lacks; the ``Restorer`` holds the counts."""
    restorer = Restorer(params, log, dry_run)
    restorer.baselines()
    for book_id in params["book"]:
        restorer.book_run(book_id)
    restorer.ensemble()
    return restorer


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.restore_runs",
        description="Log into this machine's MLflow store the runs whose outputs `dvc repro --pull` "
                    "restored (run from the repository root).")
    parser.add_argument("--dry-run", action="store_true", help="say what would be logged, log nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        done = restore(load_params(), dry_run=args.dry_run)
    except (InputError, FileNotFoundError) as error:
        print(f"restore_runs: {error}", file=sys.stderr)
        return EXIT_STATUS
    except KeyboardInterrupt as stopped:  # Ctrl-C, or SIGTERM while a run was open
        print("restore_runs: stopped; the run it was logging ended KILLED, and the next call logs "
              "it again with the runs not logged yet", file=sys.stderr)
        return exit_status(stopped)
    verb = "would log" if args.dry_run else "logged"
    left_out = f"; {len(done.left_out)} left out (see above)" if done.left_out else ""
    print(f"restore_runs: {verb} {done.logged} run(s) into {tracking.tracking_uri()}; "
          f"{done.present} in the store already{left_out}")
    if done.missing:
        print(f"restore_runs: no outputs here for {', '.join(done.missing)}: "
              "run `dvc repro --pull` to restore them")
    if not done.logged and not done.present:  # nothing here to log
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
