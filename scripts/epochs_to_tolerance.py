"""How many epochs each row needs to land inside its tolerance, read off book-profile runs.

A run of k epochs is, epoch by epoch, the first k epochs of the book-profile run with the same
seed: training is deterministic for a seed, and nothing in it looks ahead to how many epochs
follow. So the per-epoch histories of the book profile's runs
(``docs/measurements/2026-11-30-cpu-book``) say exactly what a profile that cuts epochs
(``quick``, ``fast``) would report with any number of epochs and any of the seeds trained.
This script applies the book's rule (``pipeline.results``) to the first k epochs of every set
of n seeds, n being the profile's number of seeds for the row, and reports for each row:

- the profile's own figure, recomputed from the first epochs of its seeds and, given a run of
  that profile (``--run``, its ``summary.json``), checked against it (a mismatch stops the
  script: the two would not be the same training);
- the fewest epochs at which every set of n seeds is inside the tolerance, and the fewest
  from which every set stays inside up to the book's epochs: choices of epochs that do not
  hang on which seeds happen to be drawn (k runs over the epochs after which the runs were
  evaluated: every epoch, or every N for chapter 3's small training sets);
- what those epochs would add to that run, at its own seconds per epoch (a projection from a
  measured wall, labelled so);
- the same two epoch counts for the profile's own seeds alone, and what they would change: the
  road not taken, since such a choice hangs on the seeds drawn (docs/book-profile.md).

conf/profile/quick.yaml's chapter 6 epochs are the "every set inside at epoch" column of

    python scripts/epochs_to_tolerance.py docs/measurements/2026-11-30-cpu-book \\
        --profile fast --run docs/measurements/2026-12-01-cpu-quick-2/summary.json
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import yaml

# scripts/ is on sys.path when this runs as a script
from book_profile_table import read_json, runs_by_id, seeds_of, write_outputs

from pipeline import results
from pipeline.config import compose
from pipeline.console import run_command
from pipeline.errors import InputError
from pipeline.nn.train import History, track_best


class Skip(Exception):
    """A row these runs cannot say anything about (the reason is the message)."""


class _NoWeights:
    """``track_best`` keeps the best epoch's weights; a history on disk has none."""

    def state_dict(self) -> None:
        return None


def first_epochs(seed: dict, k: int) -> dict:
    """One seed (``seed``, ``summary``, ``records``) as if it had trained ``k`` epochs."""
    records = [r for r in seed["records"] if int(r["epoch"]) < k]
    history = History(records=records)
    for record in records:
        track_best(history, record, _NoWeights())
    return {"seed": seed["seed"], "records": records, "summary": history.summary()}


def rule_at(seeds: list[dict], k: int, book: dict) -> float:
    """The book's rule over ``seeds`` trained ``k`` epochs."""
    cut = [first_epochs(s, k) for s in seeds]
    value = results.book_rule(cut, book["metric"], book["runs"])["value"]
    if value is None:
        raise InputError(f"no {book['metric']} in the first {k} epochs of seeds "
                         f"{[s['seed'] for s in seeds]}")
    return value


def row(run_id: str, runs: list[dict], cfg: dict, run_row: dict | None,
        tolerance_pp: float) -> dict:
    """One row's frontier: the book's rule over every n-seed set, epoch by epoch."""
    book = runs[0]["book"]
    if book.get("value") is None:
        raise Skip(f"{run_id}: the book gives no figure for it")
    seeds = {s["seed"]: s for s in seeds_of(runs)}
    cut_seeds, cut_epochs = list(cfg["seeds"]), cfg["training"]["epochs"]
    missing = sorted(set(cut_seeds) - set(seeds))
    if missing:
        raise Skip(f"{run_id}: the profile's seeds {missing} are not in the book-profile runs "
                   "given")
    if run_row is not None and (run_row["epochs"], run_row["n_seeds"]) != (cut_epochs, len(cut_seeds)):
        raise InputError(f"{run_id}: --run trained {run_row['epochs']} epochs of "
                         f"{run_row['n_seeds']} seeds, the profile {cut_epochs} of "
                         f"{len(cut_seeds)}; give the summary.json of a run of this profile")
    n = len(cut_seeds)
    # the epoch counts after which every seed was evaluated (some rows evaluate every N epochs)
    ks = sorted(set.intersection(*({int(r["epoch"]) + 1 for r in s["records"]}
                                   for s in seeds.values())))
    if cut_epochs not in ks:
        raise Skip(f"{run_id}: the book-profile runs have no evaluation after the profile's "
                   f"{cut_epochs} epochs")
    sets = list(itertools.combinations(sorted(seeds), n))

    def diff_pp(value: float) -> float:
        return results.difference_pp(value, book["value"])

    by_k = []
    for k in ks:
        diffs = [diff_pp(rule_at([seeds[s] for s in chosen], k, book)) for chosen in sets]
        by_k.append({"epochs": k, "low": min(diffs), "high": max(diffs),
                     "profile_seeds": diff_pp(rule_at([seeds[s] for s in cut_seeds], k, book))})
    value = rule_at([seeds[s] for s in cut_seeds], cut_epochs, book)
    if run_row is not None and abs(value - run_row["ours"]) > 1e-9:
        raise InputError(f"{run_id}: the first {cut_epochs} epochs of seeds {cut_seeds} give "
                         f"{value}, the run reported {run_row['ours']}; the runs are not the "
                         "same training")
    inside = [abs(r["low"]) <= tolerance_pp and abs(r["high"]) <= tolerance_pp for r in by_k]
    first, stays = _first_and_stays(ks, inside)
    # the same for the profile's own seeds alone: a choice that hangs on the seeds it uses
    own_first, own_stays = _first_and_stays(
        ks, [abs(r["profile_seeds"]) <= tolerance_pp for r in by_k])
    per_epoch = (run_row["wall_seconds"] / cut_epochs
                 if run_row and run_row.get("wall_seconds") else None)
    return {
        "id": run_id, "book": book["value"], "metric": book["metric"],
        "tolerance_pp": tolerance_pp, "book_seeds": sorted(seeds), "n": n, "sets": len(sets),
        "epochs_trained": ks[-1], "profile_epochs": cut_epochs, "profile_seeds": cut_seeds,
        "profile_value": value, "checked_against_run": run_row is not None,
        "run_seconds_per_epoch": per_epoch, "first_inside": first, "stays_inside_from": stays,
        "extra_seconds": {"first_inside": _extra(first, cut_epochs, per_epoch),
                          "stays_inside": _extra(stays, cut_epochs, per_epoch)},
        "own_seeds": {"first_inside": own_first, "stays_inside_from": own_stays,
                      "extra_seconds": {"first_inside": _extra(own_first, cut_epochs, per_epoch),
                                        "stays_inside": _extra(own_stays, cut_epochs, per_epoch)}},
        "by_epochs": by_k,
    }


def _first_and_stays(ks: list[int], inside: list[bool]) -> tuple[int | None, int | None]:
    """The first epoch count at which ``inside`` holds, and the first from which it holds to
    the last."""
    first = next((ks[i] for i in range(len(ks)) if inside[i]), None)
    stays = next((ks[i] for i in range(len(ks)) if all(inside[i:])), None)
    return first, stays


def _extra(epochs: int | None, cut_epochs: int, per_epoch: float | None) -> float | None:
    """Seconds that ``epochs`` instead of the profile's would add (negative: save)."""
    if epochs is None or per_epoch is None:
        return None
    return round((epochs - cut_epochs) * per_epoch, 1)


def _range(low: float, high: float) -> str:
    return f"{low:+.2f}" if low == high else f"{low:+.2f} to {high:+.2f}"


def markdown(rows: list[dict], profile: str) -> str:
    """The rows as a markdown table, with the projected totals at the foot."""
    lines = [f"| id | book | {profile}: epochs, diff (pp) | every n-seed set at its epochs | "
             "every set inside at epoch | and stays inside from epoch | every set, from there | "
             "extra wall, projected: first / stays |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        at = {e["epochs"]: e for e in r["by_epochs"]}
        at_cut = at[r["profile_epochs"]]
        first, stays = r["first_inside"], r["stays_inside_from"]
        there = "—" if stays is None else _range(at[stays]["low"], at[stays]["high"])
        extra = " / ".join("—" if v is None else f"{v:+.0f} s" for v in r["extra_seconds"].values())
        lines.append(
            f"| {r['id']} | {100 * r['book']:.2f} | {r['profile_epochs']}, "
            f"{at_cut['profile_seeds']:+.2f} | {_range(at_cut['low'], at_cut['high'])} "
            f"({r['sets']} set{'s' if r['sets'] != 1 else ''} of {r['n']} of seeds "
            f"{', '.join(map(str, r['book_seeds']))}) | "
            f"{first or 'never'} | {stays or 'never'} (of {r['epochs_trained']}) | {there} | "
            f"{extra} |")
    lines.append("")
    for key, what in (("first_inside", "every set inside at that epoch"),
                      ("stays_inside", "every set inside from that epoch on")):
        extra = [r["extra_seconds"][key] for r in rows
                 if r["extra_seconds"][key] is not None and r["extra_seconds"][key] > 0]
        lines.append(f"- Extra wall, {what}: {sum(extra) / 60:.1f} min over the {len(extra)} "
                     f"rows that need more epochs than profile {profile} gives them (projected "
                     "at each row's seconds per epoch in the run given; what rows needing fewer "
                     "would save is not subtracted).")
    # the same for the profile's own seeds alone
    seeds = " / ".join(sorted({", ".join(map(str, r["profile_seeds"])) for r in rows}))
    for key, epochs_key, what in (("first_inside", "first_inside", "first inside"),
                                  ("stays_inside", "stays_inside_from", "inside from then on")):
        extra = [r["own_seeds"]["extra_seconds"][key] for r in rows]
        if any(r["run_seconds_per_epoch"] is None for r in rows):
            total = "no wall to project from (--run)"
        elif None in extra:
            total = "no total: some rows are never inside"
        else:
            total = (f"{sum(extra) / 60:+.1f} min in all, projected the same way, rows needing "
                     "fewer epochs counted too")
        epochs = ", ".join(f"{r['id']} {r['own_seeds'][epochs_key] or 'never'}" for r in rows)
        lines.append(f"- The profile's own seeds alone ({seeds}), {what} at: {epochs}; {total}. "
                     "A choice that hangs on the seeds drawn.")
    return "\n".join(lines) + "\n"


def frontier(folders: list[Path], params: dict,
             run: dict | None) -> tuple[list[dict], list[str]]:
    """Every id under ``folders`` that ``params`` (a profile's) trains, in its order, and why
    the ids it had to skip were skipped."""
    by_id = runs_by_id(folders)
    limits = params["profile"].get("limits") or {}
    if any(v is not None for v in limits.values()):
        raise InputError(f"profile {params['profile']['name']} limits the data ({limits}); its "
                         "runs are not the first epochs of the book-profile runs")
    run_rows = {r["id"]: r for r in run["rows"]} if run else {}
    tolerance = params["report"]["tolerance_pp"]
    out, skipped = [], []
    for run_id, cfg in params["book"].items():
        if run_id not in by_id:
            continue
        tol = results.tolerance_pp(cfg["chapter"], tolerance)
        try:
            out.append(row(run_id, by_id[run_id], cfg, run_rows.get(run_id), tol))
        except Skip as skip:
            skipped.append(str(skip))
    if not out:
        raise InputError("none of the runs found is a row of the profile that they can say "
                         "anything about" + "".join(f"\n  {s}" for s in skipped))
    return out, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders searched for metrics.json")
    parser.add_argument("--profile", default="quick",
                        help="the profile whose cuts are read (composed from conf/)")
    parser.add_argument("--run", type=Path, help="a run of that profile (its summary.json): "
                        "checks the recomputed figures and gives each row's seconds per epoch")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    parser.add_argument("--json", type=Path, help="also write the rows (JSON) here")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    profiles = sorted(path.stem for path in (root / "conf" / "profile").glob("*.yaml"))
    if args.profile not in profiles:
        parser.error(f"--profile {args.profile}: no such profile in conf/profile/; the profiles: "
                     f"{', '.join(profiles)}")
    run = read_json(args.run) if args.run else None
    if run is not None and not isinstance(run.get("rows"), list):
        raise InputError(f"--run {args.run}: not a report's summary.json (no rows); give a run's "
                         "results/summary.json")
    params = yaml.safe_load(compose(root, [f"profile={args.profile}"]))
    rows, skipped = frontier(args.folders, params, run)
    text = markdown(rows, args.profile) + "".join(f"- Skipped {s}.\n" for s in skipped)
    write_outputs(text, rows, args.out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(run_command("epochs_to_tolerance", main))
