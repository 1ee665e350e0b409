"""Log into this machine's MLflow store the runs whose outputs ``dvc repro --pull`` restored.

A stage that DVC restores from a remote's run-cache does not run, so its MLflow runs stay in the
store of the machine that trained it and ``mlflow ui`` here shows none of them. This reads what
the stages wrote and logs each run again from it, as its stage logged it: the same name,
params, per-epoch metrics (``step`` = epoch), summary metrics and artifacts (config,
``history.csv``, the model, and the learning curves, confusion matrix and misclassified digits,
drawn again from the model and the test set). Each is tagged ``restored_from`` with the id of
the run it was first logged as, and carries the code and machine tags of the machine that
trained it, which the stage wrote into its outputs (``trained_with``: the git commit, DVC
stage, CPU, BLAS, Python and numpy; outputs of older stages have none); of the machine that
restores it, only the host and process id that ``tracking.start_run`` gives every run. A run
that the store holds already, FINISHED (this is the machine that trained it, or it was restored
before), is left out, so a second call logs nothing; a copy that a stop or a failure cut short
is deleted when the run is logged whole.

    dvc repro --pull && python -m pipeline.restore_runs
    python -m pipeline.restore_runs --dry-run        # what it would log, logging nothing

What it reads: for every run in params.yaml's ``book``, ``results/<id>/metrics.json`` and
``history.csv`` and ``models/<id>/seed<k>/`` (each seed, and the book's run replayed where there
is one); the ensemble's ``metrics.json``; the baselines' ``metrics.json`` and ``svm_sweep.json``;
the test set. Outputs made with other settings than ``params.yaml``'s are left out, and the line
says which command makes them agree: another profile (each ``metrics.json``), another net
(``model.json``'s spec against the one ``params.yaml`` gives), other data or profile limits (a
run's ``metrics.json`` ``settings``), another baselines config (theirs, or for outputs of an
older stage the sizes they show); damaged ones, or ones missing beside a run's others, are
named, the other runs still logged, and the exit status is 2. A run with no outputs here at all
is named with ``dvc repro --pull`` (exit status 0; 1 when nothing was logged and the store held
none of the runs already: no outputs here, or every one left out).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
from pathlib import Path
from typing import Callable

from pipeline import baselines, experiment, tracking, vote
from pipeline.data.mnist import Dataset, digest, load_dataset, load_images, split_file
from pipeline.errors import EXIT_STATUS, InputError
from pipeline.interrupts import exit_status
from pipeline.nn import ModelFileError, load_model
from pipeline.nn.spec import validate_spec, validate_training
from pipeline.params import load_params, run_folders, seed_folder
from pipeline.settings import require_sections

RESTORE = "run `dvc repro --pull` to restore it"


def _cell(text: str) -> int | float:
    """A number of ``history.csv`` as the engine recorded it (``repr`` of a float reads back exactly)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def history_by_seed(path: Path) -> dict[int, list[dict]]:
    """``history.csv``'s rows by seed (``experiment.history_csv`` read back), each the engine's
    epoch record again: numbers only, and no key for a cell left empty (a value that epoch did
    not record). Kept here, not beside ``history_csv``: every training stage depends on
    ``experiment.py``, and an edit there would retrain the book."""
    if not path.is_file():
        raise InputError(f"{path} is missing: {RESTORE}")
    rows: dict[int, list[dict]] = {}
    for line in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))):
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


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _differing(found: dict, expected: dict, prefix: str = "") -> list[str]:
    """The keys (dotted) where two mappings of settings differ."""
    keys = []
    for key in sorted(set(found) | set(expected), key=str):
        a, b = found.get(key), expected.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _differing(a, b, f"{prefix}{key}.")
        elif _canonical(a) != _canonical(b):
            keys.append(f"{prefix}{key}")
    return keys


class Restorer:
    """Logs the restored runs one by one, leaving out those the store has; counts what it did.

    A run whose outputs cannot be logged (missing, damaged, or made with other settings than
    params.yaml's) is left out with a line saying why, and the others are still logged."""

    def __init__(self, params: dict, log: Callable[[str], None] = print, dry_run: bool = False):
        self.params, self.log, self.dry_run = params, log, dry_run
        self.profile = params["profile"]["name"]
        self.limits = params["profile"].get("limits") or {}
        store = tracking.store_runs(create=not dry_run)  # a dry run makes no store
        self.known, self.cut_short = store.logged, store.cut_short
        # copies cut short of runs that an earlier call logged whole after all (it was stopped
        # before it deleted them)
        leftover = [copy for original in self.known & set(self.cut_short) for copy in self.cut_short.pop(original)]
        if leftover and not dry_run:
            tracking.delete_runs(leftover)
        self.logged, self.present = 0, 0
        self.missing: list[str] = []  # runs with no outputs here
        self.left_out: list[str] = []  # runs whose outputs are not of params.yaml's settings
        self.damaged: list[str] = []  # runs whose outputs could not be read
        self._test_sets: dict[str, Dataset] = {}

    def _in_store(self, original: str) -> bool:
        """Whether the store holds run ``original`` already (counted)."""
        if original in self.known:
            self.present += 1
            return True
        return False

    def _log_now(self, what: str, original: str) -> bool:
        """Says that run ``original`` is logged now; False in a dry run, which counts it instead."""
        self.log(f"{'would log' if self.dry_run else 'log'} {what} (first logged as run {original})")
        if self.dry_run:
            self.logged += 1
        return not self.dry_run

    def _done(self, original: str) -> None:
        """Run ``original`` is logged whole: the copies of it that a stop or failure cut short
        in an earlier call are deleted, so that the UI shows it once."""
        self.known.add(original)
        self.logged += 1
        if self.cut_short.get(original):
            tracking.delete_runs(self.cut_short.pop(original))

    def _leave_out(self, what: str, why: str) -> None:
        self.log(f"left out {what}: {why}")
        self.left_out.append(what)

    def _guarded(self, what: str, log_it: Callable[..., None], *args) -> None:
        """``log_it(*args)``; a damaged or missing output is said and counted, and the next run goes on."""
        try:
            log_it(*args)
        except InputError as error:
            self.log(f"not logged: {what}: {error}")
            self.damaged.append(what)

    def _test_set(self, dtype: str) -> Dataset:
        if dtype not in self._test_sets:
            path = split_file(self.params["data"]["prepared_dir"], "test")
            if not Path(path).is_file():
                raise InputError(f"{path} is missing (the figures are drawn from it): {RESTORE}")
            self._test_sets[dtype] = load_dataset(path, dtype=dtype, cap=self.limits.get("eval_examples"))
        return self._test_sets[dtype]

    def _other_profile(self, what: str, profile) -> bool:
        if profile == self.profile:
            return False
        if not isinstance(profile, str):  # damaged, or hand-made: no profile to switch to
            raise InputError(f"{what}: its metrics.json names no profile (profile: {profile!r}); {RESTORE}")
        self._leave_out(what, f"its results are of profile {profile!r}, params.yaml is {self.profile!r} "
                              f"(`python -m pipeline.config profile={profile}` first)")
        return True

    # -- the runs of params.yaml's book -------------------------------------------------------
    def book_run(self, book_id: str) -> None:
        """Every seed of run ``book_id`` (and the book's run replayed) that the store lacks."""
        model_dir, results_dir = run_folders(book_id)
        if not (results_dir / "metrics.json").is_file():
            self.missing.append(book_id)
            return
        metrics = _json(results_dir / "metrics.json")
        if self._other_profile(book_id, metrics.get("profile")):
            return
        run_cfg = self.params["book"][book_id]
        made_with = metrics.get("settings")  # None in outputs of older stages
        differing = _differing(made_with, {"data": run_cfg["data"], "limits": self.limits}) if made_with else []
        if differing:
            self._leave_out(book_id, f"{results_dir / 'metrics.json'} was made with other settings than "
                                     f"params.yaml's ({', '.join(differing)}): `dvc repro train@{book_id}`, "
                                     "or `dvc repro --pull` if the remote has it")
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
            if self._in_store(original):
                continue
            histories = histories or history_by_seed(results_dir / "history.csv")
            summary = {k: v for k, v in summary.items() if k not in ("seed", "mlflow_run_id")}
            self._guarded(what, self._seed, what, book_id, seed, replay, summary, histories.get(seed),
                          seed_folder(model_dir, seed), original)

    def _seed(self, what: str, book_id: str, seed: int, replay: bool, summary: dict, rows: list[dict] | None,
              seed_dir: Path, original: str) -> None:
        if rows is None:
            raise InputError(f"{run_folders(book_id)[1] / 'history.csv'} has no rows of seed {seed}: {RESTORE}")
        try:
            loaded = load_model(seed_dir)
        except (FileNotFoundError, ModelFileError) as error:
            raise InputError(f"{seed_dir}: {error}; {RESTORE}") from None
        if loaded.metadata.get("mlflow_run_id", original) != original:
            self._leave_out(what, f"{seed_dir} holds the net of run {loaded.metadata['mlflow_run_id']}, "
                                  f"not of run {original} that {book_id}'s metrics.json names: {RESTORE}")
            return
        run_cfg = experiment.with_device(self.params["book"][book_id],
                                         loaded.spec["training"].get("device", "cpu"))
        spec = experiment.run_spec(run_cfg, seed, self.limits, replay)
        differing = _differing(loaded.spec, validate_spec(spec))
        if differing:  # params.yaml changed since: its params would not be this net's
            self._leave_out(what, f"{seed_dir} was trained with other settings than params.yaml's "
                                  f"book.{book_id} ({', '.join(differing)}): `dvc repro train@{book_id}`, "
                                  "or `dvc repro --pull` if the remote has it")
            return
        test = self._test_set(validate_training(run_cfg["training"])["dtype"])
        if not self._log_now(what, original):
            return
        tags = tracking.restored_tags(
            experiment.seed_tags(book_id, run_cfg, self.profile, seed, loaded.metadata.get("data_digest"),
                                 replay, loaded.metadata.get("trained_with") or {}), original)
        params = experiment.seed_params(book_id, run_cfg, self.profile, seed, spec, self.limits)
        with tracking.start_run(book_id, params=params, tags=tags, context_tags=False) as run:
            for row in rows:
                run.log_epoch(row)
            experiment.log_seed_outcome(run, book_id, run_cfg, params, summary, rows, loaded.network,
                                        test, seed_dir)
        self._done(original)

    # -- the ensemble and the baselines -------------------------------------------------------
    def ensemble(self) -> None:
        cfg = self.params["ensemble"]
        path = run_folders(cfg["id"])[1] / "metrics.json"
        if not path.is_file():
            self.missing.append(cfg["id"])
            return
        result = _json(path)
        if self._other_profile(cfg["id"], result.get("profile")):
            return
        try:
            original, first_member = result["mlflow_run_ids"][0], Path(result["members"][0])
        except (KeyError, TypeError, IndexError) as error:
            raise _lacking(path, error) from None
        if self._in_store(original):
            return
        recorded_limits = result.get("limits")  # recorded since 2026-12-06
        if recorded_limits is not None and recorded_limits != self.limits:
            self._leave_out(cfg["id"], f"its vote was scored under the profile limits {recorded_limits}, "
                                       f"params.yaml's are {self.limits} (set them back first)")
            return
        digest_of_data = (_json(first_member / "model.json").get("metadata") or {}).get("data_digest")
        if not self._log_now(cfg["id"], original):
            return
        tags = tracking.restored_tags(tracking.standard_tags(
            cfg["id"], cfg["chapter"], self.profile, None, digest_of_data, result.get("trained_with") or {}), original)
        members = [Path(m) for m in result["members"]]
        loaded = []
        for member in members:  # the vote's model holds every one: each checked before the run starts
            try:
                loaded.append(load_model(member))
            except (FileNotFoundError, ModelFileError) as error:
                raise InputError(f"{member}: {error}; {RESTORE}") from None
        nets = [m.network for m in loaded]
        # the test set capped by params.yaml's limits: the vote's own (checked above, or not
        # recorded by an older stage, whose profile is params.yaml's)
        test = self._test_set("float32")  # as the stage reads it, whatever the nets' dtype
        test_votes = [net.predict(test.x) for net in nets]
        # as the stage logged them; for outputs of older stages, the seeds their nets record
        seeds = result.get("member_seeds") or [m.metadata.get("seed") for m in loaded]
        config = vote.run_params(cfg, seeds, self.limits if recorded_limits is None else recorded_limits)
        with tracking.start_run(cfg["id"], params=config, tags=tags, context_tags=False) as run:
            run.log_metrics(vote.run_metrics(result))
            vote.log_vote(run, config, nets, members, test_votes, test)
        self._done(original)

    def baselines(self) -> None:
        cfg = self.params["baselines"]
        out = Path(cfg["out_dir"])
        if not (out / "metrics.json").is_file():
            self.missing.append("baselines")
            return
        metrics, sweep = _json(out / "metrics.json"), _json(out / "svm_sweep.json")
        train = split_file(self.params["data"]["prepared_dir"], "train")
        if not Path(train).is_file():
            raise InputError(f"{train} is missing (the baselines' runs are tagged with its digest): {RESTORE}")
        logged = {}
        for name in baselines.RUN_CHAPTERS:
            try:
                logged[name] = baselines.run_metrics(name, metrics, sweep)
            except (KeyError, TypeError) as error:
                raise _lacking(out / ("svm_sweep.json" if name == "svm-sweep" else "metrics.json"), error) from None
        if "settings" in metrics:  # the stage's config, as it records it
            differing = _differing(metrics["settings"], cfg)
        else:  # outputs of an older stage: what they show of it
            try:
                shown = baselines.settings_shown(metrics, sweep)
            except (KeyError, TypeError) as error:
                raise _lacking(out / "metrics.json", error) from None
            expected = baselines.settings_shown_by(cfg, len(load_images(train)[1]))
            differing = [key for key in shown if shown[key] != expected[key]]
        if differing:
            for name in baselines.RUN_CHAPTERS:
                self._leave_out(name, f"{out} was made with other settings than params.yaml's baselines "
                                      f"({', '.join(differing)}): `dvc repro baselines`, or "
                                      "`dvc repro --pull` if the remote has it")
            return
        train_digest = None
        for name, chapter in baselines.RUN_CHAPTERS.items():
            original = (metrics.get("mlflow_run_ids") or {}).get(name)
            if original is None:
                self._leave_out(name, f"{out / 'metrics.json'} does not name its MLflow run (an older "
                                      "baselines stage wrote it; `dvc repro baselines` makes it again)")
                continue
            if self._in_store(original) or not self._log_now(name, original):
                continue
            train_digest = train_digest or digest(train)
            tags = tracking.restored_tags(tracking.standard_tags(
                name, chapter, self.profile, None, train_digest, metrics.get("trained_with") or {}), original)
            with tracking.start_run(name, params=baselines.run_params(name, cfg), tags=tags,
                                    context_tags=False) as run:
                run.log_metrics(logged[name])
            self._done(original)


def restore(params: dict, log: Callable[[str], None] = print, dry_run: bool = False) -> Restorer:
    """Log every restored run that the store lacks; the ``Restorer`` holds the counts. One call
    at a time per store: a second waits, then finds the first one's runs there."""
    require_sections(params, ("profile", "data", "baselines", "book", "ensemble"))
    with contextlib.nullcontext() if dry_run else tracking.one_at_a_time("restore_runs", log):
        restorer = Restorer(params, log, dry_run)
        restorer._guarded("baselines", restorer.baselines)
        for book_id in params["book"]:
            restorer._guarded(book_id, restorer.book_run, book_id)
        restorer._guarded(params["ensemble"]["id"], restorer.ensemble)
    return restorer


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.restore_runs",
        description=__doc__.split("\n\n")[0], epilog="Run it from the repository root.")
    parser.add_argument("--dry-run", action="store_true", help="say what would be logged, log nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        done = restore(load_params(), dry_run=args.dry_run)
    except (InputError, FileNotFoundError) as error:
        print(f"restore_runs: {error}", file=sys.stderr)
        return EXIT_STATUS
    except KeyboardInterrupt as stopped:  # Ctrl-C, or SIGTERM
        print("restore_runs: stopped; the runs it logged before stay, a run it was logging ended KILLED, "
              "and the next call logs it again with the runs not logged yet", file=sys.stderr)
        return exit_status(stopped)
    verb = "would log" if args.dry_run else "logged"
    left_out = f"; {len(done.left_out)} left out (see above)" if done.left_out else ""
    print(f"restore_runs: {verb} {done.logged} run(s) into {tracking.tracking_uri()}; "
          f"{done.present} in the store already{left_out}")
    if done.missing:
        print(f"restore_runs: no outputs here for {', '.join(done.missing)}: "
              "run `dvc repro --pull` to restore them")
    if done.damaged:
        print(f"restore_runs: not logged, their outputs damaged or missing (see above): "
              f"{', '.join(done.damaged)}", file=sys.stderr)
        return EXIT_STATUS
    if not done.logged and not done.present:  # nothing here to log
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
