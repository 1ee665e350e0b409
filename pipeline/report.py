"""The report: every run beside the book's figure, as a table, a summary and plots.

Reads the runs' ``results/<id>/metrics.json`` and ``history.csv``, the baselines' metrics and
the SVM sweep; knows nothing of training. Each row gives the book's figure and how the book
measured it, ours by the same rule, ours by the honest rule (test accuracy at the epoch of best
validation accuracy, mean +- std over seeds), the difference and whether it is within the
tolerance.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

from pipeline import results
from pipeline.errors import InputError

METRIC_LABELS = {
    "peak_test": "peak test",
    "peak_validation": "peak validation",
    "final_validation": "final-epoch validation",
    "test_at_best_validation": "test at best validation",
    "ensemble_test": "ensemble test",
    "test": "test",
    "validation": "validation",
}


DAMAGED = "rerun the stage that writes it (`dvc repro -f <stage>`), or `dvc checkout` it"


def read_json(path: Path, fix: str = DAMAGED) -> dict | None:
    """A results file's JSON object (None if there is none); a damaged one is named, with
    ``fix``."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not readable JSON ({error}): {fix}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(data).__name__}: {fix}")
    return data


def read_history(path: Path) -> list[dict[str, Any]]:
    """history.csv rows with numbers parsed (empty cells dropped); every row has a seed and an
    epoch."""
    if not path.is_file():
        return []
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            reader = csv.DictReader(f)
            for row in reader:
                if None in row:  # csv's key for the cells past the header's columns
                    raise ValueError(f"line {reader.line_num} has {len(row[None])} cell(s) more than the header")
                rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    except (UnicodeDecodeError, ValueError, csv.Error) as error:
        raise InputError(f"{path}: not a history of numbers ({error}): {DAMAGED}") from None
    if rows and not {"seed", "epoch"} <= set(rows[0]):
        raise InputError(f"{path}: no seed and epoch columns: {DAMAGED}")
    return rows


BASELINE_KEYS = {"value": float, "metric": str, "split": str, "source": str, "title": str,
                 "note": str}


def validate_baselines(baselines: dict) -> None:
    """Check ``report.baselines``: each row has exactly BASELINE_KEYS, of those types.

    (An unquoted comma in a YAML flow mapping silently splits a title into extra keys.)
    """
    if not isinstance(baselines, dict):
        raise InputError(f"report.baselines: expected a mapping of rows, got {baselines!r}")
    for row_id, row in baselines.items():
        where = f"report.baselines.{row_id}"
        if not isinstance(row, dict):
            raise InputError(f"{where}: expected a mapping of {', '.join(BASELINE_KEYS)}")
        extra, missing = sorted(set(row) - set(BASELINE_KEYS)), sorted(set(BASELINE_KEYS) - set(row))
        if extra or missing:
            raise InputError(f"{where}: unknown keys {extra}, missing keys {missing}; allowed: "
                             f"{', '.join(BASELINE_KEYS)} (quote a value that holds a comma)")
        for key, kind in BASELINE_KEYS.items():
            if not isinstance(row[key], kind) and not (kind is float and isinstance(row[key], int)):
                raise InputError(f"{where}.{key}: expected {kind.__name__}, got {row[key]!r}")


REPORT_KEYS = ("out_dir", "baselines", "progression", "curves_in_words", "tolerance_pp", "figures")
FIGURE_KEYS = ("more_data", "depth", "overfitting", "every_seed")
FIX = "fix it in conf/report/default.yaml"


def _exactly(node, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(node, dict):
        raise InputError(f"{where}: expected a mapping of {', '.join(keys)}; {FIX}")
    extra, missing = sorted(set(node) - set(keys)), [k for k in keys if k not in node]
    if extra or missing:
        raise InputError(f"{where}: unknown keys {extra}, missing keys {missing}; allowed: "
                         f"{', '.join(keys)}; {FIX}")


def validate(cfg: dict, book_ids: list[str], ensemble_id: str) -> None:
    """Check the ``report`` config against the runs it names, before any table is drawn: its
    keys; the baselines' rows; every id in ``curves_in_words``, ``figures.overfitting`` and ``figures.every_seed`` a
    run of params.yaml's ``book``, every id in ``progression`` a run, a baseline or the
    ensemble; each ``figures`` prefix the start of some run's id; both tolerances numbers > 0."""
    _exactly(cfg, REPORT_KEYS, "report")
    if not isinstance(cfg["out_dir"], str) or not cfg["out_dir"]:
        raise InputError(f"report.out_dir: expected a folder (a path), got {cfg['out_dir']!r}; {FIX}")
    validate_baselines(cfg["baselines"])
    _exactly(cfg["figures"], FIGURE_KEYS, "report.figures")
    figures = cfg["figures"]
    for key, ids in (("progression", cfg["progression"]), ("curves_in_words", cfg["curves_in_words"]),
                     ("figures.overfitting", figures["overfitting"]), ("figures.every_seed", figures["every_seed"])):
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise InputError(f"report.{key}: expected a list of run ids, got {ids!r}; {FIX}")
    for key in ("more_data", "depth"):
        if not isinstance(figures[key], str):
            raise InputError(f"report.figures.{key}: expected the start of run ids, got {figures[key]!r}; {FIX}")
    _exactly(cfg["tolerance_pp"], ("default", "chapter6"), "report.tolerance_pp")
    for key, tolerance in cfg["tolerance_pp"].items():
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance <= 0:
            raise InputError(f"report.tolerance_pp.{key}: expected a number of percentage points > 0, "
                             f"got {tolerance!r}; {FIX}")
    runs, rows = "runs in params.yaml's book", "runs, baselines or the ensemble"
    row_ids = [*book_ids, *cfg["baselines"], ensemble_id]
    for key, ids, allowed, kind in (("curves_in_words", cfg["curves_in_words"], book_ids, runs),
                                    ("figures.overfitting", cfg["figures"]["overfitting"], book_ids, runs),
                                    ("figures.every_seed", cfg["figures"]["every_seed"], book_ids, runs),
                                    ("progression", cfg["progression"], row_ids, rows)):
        unknown = [i for i in ids if i not in allowed]
        if unknown:
            raise InputError(f"report.{key}: {unknown} are not {kind}; fix the ids in conf/report/default.yaml")
    for key in ("more_data", "depth"):
        prefix = cfg["figures"][key]
        if not any(i.startswith(prefix) for i in book_ids):
            raise InputError(f"report.figures.{key}: no run of params.yaml's book starts with "
                             f"{prefix!r}; {FIX}")


def _required_json(path: Path, stage: str) -> dict:
    data = read_json(path)
    if data is None:
        raise FileNotFoundError(f"{path} is missing: run `dvc repro {stage}` first")
    return data


def load_runs(out: Path, stages: dict[str, str]) -> tuple[list[dict], dict[str, list[dict]]]:
    """Each run's row (from ``<out>/<id>/metrics.json``) and its per-epoch history, for the
    runs ``stages`` maps to the DVC stage that writes them (named when a run is missing)."""
    rows, histories = [], {}
    for run_id, stage in stages.items():
        path = out / run_id / "metrics.json"
        metrics = _required_json(path, stage)
        if absent := [key for key in RUN_KEYS if key not in metrics]:
            raise InputError(f"{path}: no {', '.join(absent)}: {DAMAGED}")
        rows.append(run_row(metrics))
        histories[run_id] = read_history(out / run_id / "history.csv")
    return rows, histories


def load_baselines(out: Path) -> tuple[dict, dict]:
    """The ``baselines`` stage's ``metrics.json`` and ``svm_sweep.json`` in ``out`` (its
    ``out_dir``), named when missing."""
    return (_required_json(out / "metrics.json", "baselines"),
            _required_json(out / "svm_sweep.json", "baselines"))


def baseline_rows(cfg: dict, metrics: dict) -> list[dict]:
    """Chapter 1's baselines (``cfg`` checked by :func:`validate`) beside the baselines stage's
    ``metrics``."""
    rows = []
    for row_id, b in cfg["baselines"].items():
        ours = None
        if b["source"] in metrics:
            ours = metrics[b["source"]].get(f"{b['split']}_accuracy")
        rows.append({"chapter": 1, "id": row_id, "title": b["title"], "what_changed": "baseline",
                     "book": {"value": b["value"], "metric": b["metric"], "note": b.get("note", "")},
                     "ours": ours, "honest_mean": None, "honest_std": None, "n_seeds": 1,
                     "epochs": None, "wall_seconds": metrics.get(b["source"], {}).get("seconds")})
    return rows


# what every run's row is named and set beside the book by (the rest may be absent)
RUN_KEYS = ("chapter", "id", "title", "what_changed", "book")


def run_row(metrics: dict) -> dict:
    honest = metrics.get("honest_test_at_best_validation") or {}
    ours = metrics.get("ours_book_metric") or {}
    return {"chapter": metrics["chapter"], "id": metrics["id"], "title": metrics["title"],
            "what_changed": metrics["what_changed"], "book": metrics["book"],
            "ours": ours.get("value"), "seed_values": ours.get("values"),
            "all_seeds": ours.get("all_seeds"),
            "honest_mean": honest.get("mean"), "honest_std": honest.get("std"),
            # the seeds the mean is over (a seed stopped before its first evaluation has none)
            "honest_n": honest.get("n"),
            "n_seeds": ours.get("n_seeds"), "rule": ours.get("rule"),
            "epochs": metrics.get("epochs"), "wall_seconds": metrics.get("wall_seconds"),
            "profile": metrics.get("profile"), "train_examples": metrics.get("train_examples"),
            # an ensemble's: test images whose vote tied, and the errors those ties made
            "ties": metrics.get("test_ties"), "errors_on_ties": metrics.get("test_errors_on_ties"),
            "replay": (metrics.get("replay") or {}).get("value"),
            "replay_script": (metrics.get("replay") or {}).get("script"),
            "replay_seed": (metrics.get("replay") or {}).get("seed"),
            # a row whose replay was not trained: "settings" (changed since) or "limits"
            "replay_not_run": (metrics.get("replay_not_run") or {}).get("cause")}


def _seed_values(row: dict) -> list[float]:
    """Our seeds' own values of the book's metric (kept where ours is a mean over seeds)."""
    return [v for v in row.get("seed_values") or [] if v is not None]


def with_verdict(row: dict, tolerance: dict) -> dict:
    """The difference from the book in pp, whether it is within tolerance and, where ours is a
    mean over seeds of a one-run figure, whether the book's run lies inside our seeds' range
    (a gap that one run of ours could show as well). Where the profile trains more seeds than
    the book's runs, whether the best of all of them would be within too."""
    book = row["book"].get("value")
    row = dict(row, difference_pp=None, tolerance_pp=None, within=None, book_in_seed_range=None,
               replay_difference_pp=None, all_seeds_within=None)
    row["replay_difference_pp"] = results.difference_pp(row.get("replay"), book)
    diff = results.difference_pp(row["ours"], book)
    if diff is not None:
        tol = results.tolerance_pp(row["chapter"], tolerance)
        row.update(difference_pp=diff, tolerance_pp=tol, within=abs(diff) <= tol)
        all_diff = results.difference_pp((row.get("all_seeds") or {}).get("value"), book)
        if all_diff is not None:
            row["all_seeds_within"] = abs(all_diff) <= tol
        values = _seed_values(row)
        if len(values) > 1:
            row["book_in_seed_range"] = min(values) <= book <= max(values)
    return row


def fixed(number: float, digits: int = 2, sign: bool = False) -> str:
    """``number`` as text to ``digits`` decimals, an exact half away from zero
    (``results.to_places``), with a sign if asked; never -0.00."""
    text = str(results.to_places(number, digits))
    if text.startswith("-") and not text.strip("-0."):  # -0.00: no sign for a zero
        text = text[1:]
    return f"+{text}" if sign and not text.startswith("-") else text


def _pct(value, digits=2) -> str:
    return "—" if value is None else f"{fixed(100 * value, digits)}%"


def _honest(r: dict) -> str:
    if r["honest_mean"] is None:
        return "—"
    text = _pct(r["honest_mean"])
    if r["honest_std"] is not None:
        text += f" ± {fixed(100 * r['honest_std'])}"
    return text + f" (n={r.get('honest_n') or r['n_seeds']})"


def _book(r: dict) -> str:
    if r["book"].get("value") is None:
        return f"none ({r['book'].get('note') or 'no figure in the book'})"
    return _pct(r["book"]["value"])


def _ours(r: dict) -> str:
    values = _seed_values(r)
    if r["ours"] is None or len(values) < 2:
        return _pct(r["ours"])
    return f"{_pct(r['ours'])} ({fixed(100 * min(values))}–{fixed(100 * max(values))})"


def _diff(r: dict) -> str:
    if r["difference_pp"] is None:
        return "—"
    text = fixed(r["difference_pp"], sign=True) + ("" if r["within"] else " ⚠")
    if not r["within"] and r.get("book_in_seed_range"):
        text += " in range"
    return text


REPLAY_NOT_RUN = {"settings": "not run: the row's settings are not the book's",
                  "limits": "not run: profile.limits set"}


def _replay(r: dict) -> str:
    if r.get("replay") is None:
        return REPLAY_NOT_RUN.get(r.get("replay_not_run"), "—")
    diff = r.get("replay_difference_pp")
    return _pct(r["replay"]) + ("" if diff is None else f" ({fixed(diff, sign=True)})")


def _number(value, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _epochs(r: dict) -> str:
    """Our epochs, and the book's where they differ: "25 of 60"."""
    book = r["book"].get("epochs")
    if r["epochs"] is None or book is None or r["epochs"] == book:
        return _number(r["epochs"], "d")
    return f"{r['epochs']} of {book}"


def _what(r: dict) -> str:
    """The run's network (its title) and what the book changed to get it."""
    title = r.get("title")
    if not title:
        return r["what_changed"]
    return title if r["what_changed"] == "baseline" else f"{title}: {r['what_changed']}"


def markdown_table(rows: list[dict]) -> str:
    """One line per run: the book's figure, ours by its rule and by the honest rule."""
    lines = [
        "| ch. | id | what changed | book | book's metric | ours, same metric | "
        "ours, test at best val. (mean ± std) | diff (pp) | the book's run, replayed (diff) | "
        "epochs | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        metric = METRIC_LABELS.get(r["book"]["metric"], r["book"]["metric"])
        if r["book"].get("metric_reading"):
            metric += ", our reading"
        if r.get("rule") and r["rule"] != "one run":
            counted = "nets" if r["book"]["metric"] == "ensemble_test" else "seeds"
            runs = r["book"].get("runs")
            # fewer seeds than the book's runs give the best fewer chances; more are not
            # counted (the verdict takes the first as many as the book's runs)
            fewer = r["rule"].startswith("best of") and runs and r["n_seeds"] < runs
            metric += f" ({r['rule']} {counted}" + (f"; the book: best of {runs}" if fewer else "")
            every = r.get("all_seeds")
            if every and every.get("value") is not None:
                metric += f", as the book; of all our {every['n']}: {_pct(every['value'])}"
            if r.get("ties"):
                metric += f"; {r['ties']} tied votes, {r['errors_on_ties']} of them wrong"
            metric += ")"
        lines.append(
            f"| {r['chapter']} | {r['id']} | {_what(r)} | {_book(r)} | {metric} | "
            f"{_ours(r)} | {_honest(r)} | {_diff(r)} | {_replay(r)} | "
            f"{_epochs(r)} | {_number(r['wall_seconds'], '.0f')} |")
    return "\n".join(lines) + "\n"


def wall_in_all(runs: list[dict], baselines: dict) -> str:
    """The time the runs and the baselines took, one stage after another, as "69 min 12 s":
    each training run's *wall* (``runs``: :func:`load_runs`'s rows) and the baselines stage's
    SVMs (``baselines``: its ``metrics.json``; the darkness baseline takes no time worth
    counting), timed when they ran, by this ``dvc repro`` or one whose outputs it restored."""
    seconds = sum(r["wall_seconds"] or 0 for r in runs) + (baselines.get("svm", {}).get("seconds") or 0)
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s"


def curves_table(ids: list[str], rows: list[dict], histories: dict[str, list[dict]]) -> str:
    """The book's words about a run's curves ("training accuracy reaches 100%", "after epoch 1
    about 93%", "peak at epoch 28") beside each seed's curve, and the replayed book run's: the
    accuracy on the set the book's metric names at the first and last epoch and at its peak,
    and the training accuracy at the last epoch where it was monitored. Epochs count from 0,
    as the book's programs print them."""
    by_id = {r["id"]: r for r in rows}
    lines = ["| id | the book says | run | set | first epoch | last epoch | peak (epoch) | "
             "training acc., last epoch |", "|---|---|---|---|---|---|---|---|"]
    for run_id in ids:
        row, history = by_id.get(run_id), histories.get(run_id) or []
        if row is None or not history:
            continue
        split = results.METRIC_SETS[row["book"]["metric"]]
        key, words = f"{split}_accuracy", row["book"].get("note") or "—"
        replay_seed = row.get("replay_seed")
        for seed in sorted({h["seed"] for h in history}, key=lambda s: (s == replay_seed, s)):
            curve = [h for h in history if h["seed"] == seed and key in h]
            if not curve:
                continue
            first, last = curve[0], curve[-1]
            peak = max(curve, key=lambda h: (h[key], -h["epoch"]))  # the first epoch at the peak
            run = "the book's run, replayed" if seed == replay_seed else f"seed {seed:g}"
            lines.append(f"| {run_id} | {words} | {run} | {split} | {_pct(first[key])} ({first['epoch']:g}) | "
                         f"{_pct(last[key])} ({last['epoch']:g}) | {_pct(peak[key])} ({peak['epoch']:g}) | "
                         f"{_pct(last.get('training_accuracy'))} |")
            words = '"'  # the book's words once per run
    return "\n".join(lines) + "\n"


def tally(rows: list[dict]) -> dict[str, int]:
    """How many rows have a book figure, are within tolerance, are outside it but with the
    book's one run inside our seeds' range, have a replay, a replay that retraced the book's
    run exactly; and how many train more seeds than the book's runs, and of those how many
    would be within by the best of all."""
    within = [r for r in rows if r["within"] is not None]
    replayed = [r for r in rows if r.get("replay_difference_pp") is not None]
    return {"with_figure": len(within),
            "within": sum(r["within"] for r in within),
            "in_range": sum(1 for r in within if not r["within"] and r["book_in_seed_range"]),
            "more_seeds": sum(1 for r in within if r.get("all_seeds_within") is not None),
            "more_seeds_all_within": sum(1 for r in within if r.get("all_seeds_within")),
            "replayed": len(replayed),
            "retraced": sum(1 for r in replayed if r["replay_difference_pp"] == 0)}


def evaluated_every(book: dict) -> dict[str, int]:
    """The runs that evaluate only every k-th epoch (``training.eval_every`` > 1), with k."""
    every = {i: run["training"].get("eval_every", 1) for i, run in book.items()}
    return {i: k for i, k in every.items() if k and k > 1}


def _sparse_note(sparse: dict[str, int]) -> str:
    """Which runs' best validation is over every k-th epoch only, grouped by k."""
    if not sparse:
        return ""
    groups = {}
    for run_id, k in sparse.items():
        groups.setdefault(k, []).append(f"`{run_id}`")
    return (" (over the epochs a run evaluates: every k-th only in " + "; ".join(
        f"{', '.join(ids)} every {k}" for k, ids in sorted(groups.items(), reverse=True)) + ")")


def header(profile: str, stamp: str, machine: str, tolerance: dict, counts: dict[str, int],
           machine_note: str = "", about: str = "", sparse: dict[str, int] | None = None) -> str:
    """The report's title, provenance, what the profile runs (``about``: how its cuts were
    chosen, which a verdict may depend on), ``machine_note`` (a warning about the machine's
    settings, as a quote), verdict count and a key to its columns (``sparse``: the runs that
    evaluate every k-th epoch only, ``evaluated_every``)."""
    replay_line = (f"The book's own run, replayed with its script's seed, gives the book's "
                   f"figure exactly in {counts['retraced']} of {counts['replayed']} rows: our engine, "
                   "given the book's random draws, retraces the book's run. That checks the set-up "
                   "(data, initialisation, update rule, metric), not the result: a replay cannot "
                   "miss by chance, so the verdicts above count our seeds only.\n\n"
                   if counts["replayed"] else "")
    return (
        f"# The book's MNIST results, reproduced\n\n"
        f"Profile `{profile}`, generated {stamp} on {machine}. "
        + (f"{about.strip()}\n\n" if about.strip() else "")
        + f"{counts['within']} of {counts['with_figure']} rows with a book figure are "
        f"within tolerance ({tolerance['default']} pp; chapter 6: "
        f"{tolerance['chapter6']} pp); ⚠ marks the others, *in range* those of "
        f"them ({counts['in_range']} here) where the book reports one run and that run lies "
        "inside the range of our seeds: one run of ours could have missed by as much.\n\n"
        + (f"Rows where the book took the best of several runs and the profile trains more seeds "
           f"than that: {counts['more_seeds']}; their verdict takes the best of the first seeds, as "
           f"many as the book's runs; by the best of all their seeds, {counts['more_seeds_all_within']} "
           "of them would be within (the *book's metric* column gives that figure).\n\n"
           if counts.get("more_seeds") else "")
        + (f"> {machine_note}\n\n" if machine_note else "")
        + "*what changed*: the run's network, then what the book changed to get it, told from "
        "the step before it in the book (the row above may differ in more: each run's config "
        "in `conf/book/` holds every setting). "
        "*book's metric*: how the book measured its figure (BOOK.md; *our reading* where "
        "BOOK.md names the set but not the rule: the run's `book.metric_reading` says which rule "
        "we read it by and why). *ours, same metric*: "
        "that rule applied to our seeds: the best of the first three (or of as many as the "
        "profile trains, if fewer) where the book took the best of three runs, their mean (and "
        "range) where the book reports one run. *test at best "
        "val.*: the honest number — test accuracy at the epoch of best validation accuracy"
        + _sparse_note(sparse or {}) + ", mean ± std (the sample standard deviation) over seeds; "
        "where the book's metric is *peak test* (its epoch, and its best of three runs, picked "
        "by test accuracy) it chooses with the test set itself, which lifts a figure by luck; "
        "validation accuracy chooses here. *diff (pp)*: ours by the book's metric minus the "
        "book's figure, in percentage points. *the book's run, replayed*: where "
        "the book's figure came from one of its seeded scripts, that very run trained again with the script's seed "
        "and random streams (our engine, the book's draws); a difference of +0.00 means it "
        "retraced the book's run; *not run* where the row was changed since (its settings "
        "are then not the book's) or the profile's limits were set. *epochs*: the most any of "
        "our seeds trained; *k of n* where that is fewer than the run's length n (the book's "
        "epochs; ours for a run the book describes without one), cut by the profile or ended "
        "early by the run's η schedule. *wall (s)*: the run's wall time, its seeds (and replay) "
        "trained side by side; both SVM rows show one time, that of the book's SVM and every size "
        "of the sweep, fitted in one pool.\n\n" + replay_line)


def curves_section(ids: list[str], rows: list[dict], histories: dict[str, list[dict]]) -> str:
    return ("\n## The book's words beside our curves\n\n"
            "Where the book describes a curve rather than (or as well as) giving a figure. "
            "Accuracy on the set the book's metric names; epochs count from 0, as the book's "
            "programs print them.\n\n" + curves_table(ids, rows, histories))


def speed_section(speeds: dict[str, list[float]], histories: dict[str, list[dict]],
                  measured_on: list[int]) -> str:
    """Chapter 5's starting speeds of learning (empty when no run has the book's)."""
    if not speeds:
        return ""
    return ("\n## Chapter 5: the speed of learning at the start\n\n"
            f"‖∂C/∂b^l‖ of each hidden layer over the first "
            f"{' or '.join(f'{n:,}' for n in measured_on)} training images, before any training, "
            "in the book's figure runs (the book's from its one unseeded run). The book: the first "
            f"hidden layer learns slowest, and the gap grows with depth. Ours: {speed_verdict(speeds, histories)}\n\n"
            + speed_table(speeds, histories) + "\n![speed of learning](plots/learning_speed.png)\n")


def last_over_first(seeds: list[list[float]]) -> list[float]:
    """How many times faster the last hidden layer learns than the first, per seed (seeds
    without norms, or with a first norm of 0, left out)."""
    return [s[-1] / s[0] for s in seeds if s and s[0] > 0]


def speed_verdict(book: dict[str, list[float]], histories: dict[str, list[dict]]) -> str:
    """Whether our seeds show what the book says of chapter 5's starting speeds, read off them:
    in every seed each hidden layer slower than the next, and the median last/first ratio
    growing with the number of hidden layers."""
    ours = {run_id: [s for s in initial_speeds(histories.get(run_id, [])).values() if s] for run_id in book}
    seeds = [s for speeds in ours.values() for s in speeds]
    if not seeds:
        return "no run recorded its starting speeds."
    ordered = sum(all(a < b for a, b in zip(s, s[1:])) for s in seeds)
    ratios = {}  # hidden layers -> median over seeds of last / first
    for run_id in sorted(ours, key=lambda i: len(book[i])):
        values = last_over_first(ours[run_id])
        if values:
            ratios[len(book[run_id])] = statistics.median(values)
    shown = ", ".join(f"{r:.3g}x with {depth}" for depth, r in ratios.items())
    verdict = f"in {ordered} of {len(seeds)} seeds each hidden layer learns slower than the next"
    if len(ratios) < 2:
        return verdict + (f"; the last/first ratio (median over seeds) is {shown} hidden layers, one depth only."
                          if ratios else ".")
    growing = all(a < b for a, b in zip(list(ratios.values()), list(ratios.values())[1:]))
    return (verdict + f"; the last/first ratio (median over seeds) is {shown} hidden layers"
            + (", growing with depth." if growing else ", not growing with depth."))


def book_speeds(book: dict) -> dict[str, list[float]]:
    """The runs with the book's starting speeds of learning (chapter 5's figure runs)."""
    return {i: run["book"]["speeds"] for i, run in book.items() if run["book"].get("speeds")}


def document(params: dict, rows: list[dict], histories: dict[str, list[dict]], stamp: str,
             machine: str, machine_note: str = "") -> str:
    """``report.md``: header, the table, the progression plot and the report's sections."""
    cfg, book = params["report"], params["book"]
    speeds = book_speeds(book)
    measured_on = sorted({book[i]["training"]["monitor"]["gradient_norms"] for i in speeds})
    return (header(params["profile"]["name"], stamp, machine, cfg["tolerance_pp"], tally(rows),
                   machine_note, params["profile"].get("about") or "", evaluated_every(book))
            + markdown_table(rows) + "\n![progression](plots/progression.png)\n"
            + curves_section(cfg["curves_in_words"], rows, histories)
            + speed_section(speeds, histories, measured_on))


def summary(params: dict, rows: list[dict], histories: dict[str, list[dict]], stamp: str,
            machine: str) -> dict:
    """``summary.json``: every row, and chapter 5's starting speeds, the book's beside ours."""
    speeds = book_speeds(params["book"])
    return {"profile": params["profile"]["name"], "generated": stamp, "machine": machine,
            "rows": rows,
            "initial_speeds": {i: {"book": speeds[i], "ours": initial_speeds(histories[i])}
                               for i in speeds}}


def hidden_norm_keys(rows: list[dict]) -> list[str]:
    """history.csv's ``grad_norm_layer<i>`` columns in layer order, the output layer left out."""
    keys = sorted({k for r in rows for k in r if k.startswith("grad_norm_layer")},
                  key=lambda k: int(k.removeprefix("grad_norm_layer")))
    return keys[:-1]


def initial_speeds(rows: list[dict]) -> dict[int, list[float]]:
    """Each seed's ||dC/db^l|| of the hidden layers at the start of training (epoch 0)."""
    return {int(r.get("seed", 1)): [r[k] for k in hidden_norm_keys([r])]
            for r in rows if r.get("epoch") == 0}


def speed_table(book: dict[str, list[float]], histories: dict[str, list[dict]]) -> str:
    """Chapter 5's speed of learning at the start: the book's ||dC/db^l|| per hidden layer
    beside ours (median and range over seeds), and how many times slower the first hidden
    layer learns than the last."""
    lines = ["| id | hidden layer | book | ours: median (range over seeds) |",
             "|---|---|---|---|"]
    for run_id, book_speeds in book.items():
        ours = list(initial_speeds(histories.get(run_id, [])).values())
        ratios = last_over_first(ours)
        for layer, value in enumerate(book_speeds):
            values = sorted(s[layer] for s in ours if layer < len(s))
            lines.append(f"| {run_id} | {layer + 1} | {value:.3g} | {_median_range(values)} |")
        lines.append(f"| {run_id} | last / first | {book_speeds[-1] / book_speeds[0]:.3g}x | "
                     f"{_median_range(sorted(ratios), 'x')} |")
    return "\n".join(lines) + "\n"


def _median_range(values: list[float], unit: str = "") -> str:
    if not values:
        return "—"
    n = len(values)
    text = f"{statistics.median(values):.3g}{unit}"
    return text + (f" ({values[0]:.3g}–{values[-1]:.3g}, n={n})" if n > 1 else " (n=1)")
