"""Compare the replayed runs, epoch by epoch, with the numbers the book saved with its figures.

The book's repository keeps, beside the chapter 3 figures, the JSON files its scripts wrote
(``fig/overfitting.json``: test cost, test counts, training cost, training counts per epoch;
``fig/weight_initialization_<n>.json``: validation counts per epoch of the default and the
large initialisation; ``fig/regularized.json``: the same four series as overfitting.json, for
the L2 run, ch3-l2-1k; ``fig/more_data.json``: the final validation accuracy, in %, per
training-set size). Get them from there, then, after ``dvc repro`` has trained the replays::

    python scripts/compare_with_book_figures.py <the book's fig folder> [--results results]

For every series it prints whether our replay (the run with the replay's seed in
``results/<id>/history.csv``) gives the same numbers at every epoch, or the first epoch where
it does not. Counts must be equal; costs must agree to ``--cost-rtol``. Exit status 1 if any
series differs or nothing could be compared; 2 if a file is not what it should be. Files that
are missing are skipped and named.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.console import run_command
from pipeline.errors import InputError
from pipeline.report import read_history, read_json

SWEEP_SIZES = (100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)  # more_data.py's order


def _overfitting(data, book_id):
    test_cost, test_counts, training_cost, training_counts = data
    return [(book_id, "test_accuracy", 10_000, test_counts), (book_id, "training_accuracy", 1_000, training_counts),
            (book_id, "training_cost", None, training_cost), (book_id, "test_cost", None, test_cost)]


def _initialisation(hidden):
    def series(data, _):
        return [(f"ch3-init-{hidden}-{kind}", "validation_accuracy", 10_000, data[f"{kind}_weight_initialization"][1])
                for kind in ("default", "large")]
    return series


# the book's file -> (the row it belongs to, how to read its series)
FIGURE_FILES = {
    "overfitting.json": ("ch3-overfit-1k", _overfitting),
    "regularized.json": ("ch3-l2-1k", _overfitting),
    "weight_initialization_30.json": (None, _initialisation(30)),
    "weight_initialization_100.json": (None, _initialisation(100)),
}


def replay_rows(results: Path, book_id: str) -> list[dict]:
    """The replay's per-epoch rows of one run (empty if it has none)."""
    metrics_path = results / book_id / "metrics.json"
    if not metrics_path.is_file():
        return []
    replay = (read_json(metrics_path) or {}).get("replay")
    if not replay:
        return []
    return [r for r in read_history(results / book_id / "history.csv") if int(r["seed"]) == replay["seed"]]


def compare_series(ours: list[float], book: list[float], scale: int | None, cost_rtol: float) -> str | None:
    """None if equal at every epoch, else a description of the first difference."""
    if len(ours) != len(book):
        return f"{len(ours)} epochs here, {len(book)} in the book's file"
    for epoch, (a, b) in enumerate(zip(ours, book)):
        same = round(scale * a) == b if scale else math.isclose(a, b, rel_tol=cost_rtol)
        if not same:
            mine = round(scale * a) if scale else a
            return f"epoch {epoch}: ours {mine}, the book's {b}"
    return None


def read_book_file(path: Path, read, *args) -> list:
    """``read``'s series from one of the book's JSON files; a file of another shape is named
    (a saved web page instead of the raw file, most often)."""
    try:
        return read(json.loads(path.read_text(encoding="utf-8")), *args)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as error:
        raise InputError(f"{path}: not the book's {path.name} ({type(error).__name__}: {error}); "
                         "save the raw JSON file from the book's repository, not its web page") from None


def compare(fig_dir: Path, results: Path, cost_rtol: float = 1e-9) -> list[tuple[str, str, int, str | None]]:
    """(id, series, epochs compared, None or the first difference) for every series found on both sides."""
    out = []
    for name, (book_id, read) in FIGURE_FILES.items():
        path = fig_dir / name
        if not path.is_file():
            print(f"{name}: not in {fig_dir}; skipped")
            continue
        for run_id, key, scale, book in read_book_file(path, read, book_id):
            if not book:
                continue  # a series the book's script did not monitor
            rows = replay_rows(results, run_id)
            if not rows:
                print(f"{run_id}: no replay in {results}; skipped")
                continue
            if key not in rows[0]:
                print(f"{run_id}: no {key} in its history.csv (training.monitor.{key} was off); skipped")
                continue
            out.append((run_id, key, len(book), compare_series([r[key] for r in rows], book, scale, cost_rtol)))
    sweep = fig_dir / "more_data.json"
    if not sweep.is_file():
        print(f"{sweep.name}: not in {fig_dir}; skipped")
        return out
    for size, book in read_book_file(sweep, lambda data: list(zip(SWEEP_SIZES, map(float, data), strict=True))):
        rows = replay_rows(results, f"ch3-more-data-{size}")
        if not rows:
            print(f"ch3-more-data-{size}: no replay in {results}; skipped")
            continue
        ours = round(100 * rows[-1]["validation_accuracy"], 2)
        out.append((f"ch3-more-data-{size}", "final validation_accuracy", 1,
                    None if ours == round(book, 2) else f"ours {ours}%, the book's {book}%"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fig_dir", type=Path, help="the book repository's fig/ folder")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--cost-rtol", type=float, default=1e-9)
    args = parser.parse_args(argv)
    found = compare(args.fig_dir, args.results, args.cost_rtol)
    for run_id, key, epochs, difference in found:
        verdict = f"the same at {epochs} epoch(s)" if difference is None else "DIFFERS: " + difference
        print(f"{run_id:22} {key:28} {verdict}")
    if not found:
        print("nothing to compare")
        return 1
    return 1 if any(d is not None for *_, d in found) else 0


if __name__ == "__main__":
    sys.exit(run_command("compare_with_book_figures", main))
