"""The book profile's table from runs that trained a row's seeds in pieces.

On two cores a 60-epoch chapter 6 row is trained a run at a time, e.g. seeds 1-2 one night
(``python -m pipeline.train book=<id> profile=book 'book.<id>.seeds=[1,2]'``) and seed 3 the
next (``'book.<id>.seeds=[3]'``). Each run writes its own ``metrics.json`` and ``history.csv``.
This script finds every ``metrics.json`` under the folders it is given, merges the seeds of
each id, and computes the book's rule and the honest mean ± std over all of them, exactly as
one run of every seed would (``pipeline.results``). Runs of one id must agree on profile,
training data, the book's figure and, where they replay the book's own run, its result; no
seed may appear twice. Rows with a replay get a column for it. ``metrics.json`` does not
hold the run's config, so the rest is the caller's care: override nothing but the seeds.

``--vote`` adds the ensemble's row from a ``scripts/vote_saved_nets.py`` file, against the
book's figure in ``params.yaml`` (``ensemble.book``).

    python scripts/book_profile_table.py docs/measurements/2026-11-30-cpu-book \\
        --vote docs/measurements/2026-11-30-cpu-book/ch6-ensemble/vote-of-5.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline import report, results
from pipeline.atomic import write_text
from pipeline.console import run_command
from pipeline.errors import InputError
from pipeline.params import load_params
from pipeline.report import fixed, read_history

# what must be the same in every run of one id for their seeds to be one row
SAME_IN_EVERY_RUN = ("profile", "train_set", "train_examples", "book")


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; a file that is none, or no file, is named."""
    data = report.read_json(path, fix="give a file that a run or scripts/vote_saved_nets.py wrote")
    if data is None:
        raise InputError(f"{path}: not found")
    return data


def read_run(metrics_path: Path) -> dict:
    """One run's ``metrics.json`` with each seed's per-epoch records from ``history.csv``."""
    metrics = read_json(metrics_path)
    if "seeds" not in metrics or "id" not in metrics:
        raise InputError(f"{metrics_path}: not a training run's metrics.json (it names no seeds); "
                         "give folders that hold training runs only")
    history = metrics_path.with_name("history.csv")
    if not history.is_file():
        raise InputError(f"{history}: missing; a run writes it beside {metrics_path.name}")
    rows = read_history(history)
    metrics["path"] = str(metrics_path)
    metrics["records"] = {s["seed"]: [r for r in rows if r["seed"] == s["seed"]]
                          for s in metrics["seeds"]}
    return metrics


def merge(runs: list[dict]) -> dict:
    """The row of one id over the seeds of all its runs (see the module docstring)."""
    first = runs[0]
    for run in runs[1:]:
        for key in SAME_IN_EVERY_RUN:
            if run.get(key) != first.get(key):
                raise InputError(f"{first['id']}: {key} differs between {first['path']} "
                                 f"({first.get(key)!r}) and {run['path']} ({run.get(key)!r}); "
                                 "only runs of the same configuration can be merged")
    seeds = seeds_of(runs)
    # one replay per result: each run logs its own replay (MLflow id, wall), all must agree
    replays = {(run["replay"]["script"], run["replay"]["seed"], run["replay"]["value"]):
               run["replay"] for run in runs if run.get("replay")}
    if len(replays) > 1:
        raise InputError(f"{first['id']}: the runs replayed the book's run with different "
                         "results; only runs of the same configuration can be merged")
    book = first["book"]
    ours = results.book_rule(seeds, book["metric"], book["runs"])
    honest = results.honest(seeds)
    return {
        "id": first["id"], "chapter": first["chapter"], "book": book,
        "seeds": [s["seed"] for s in seeds], "ours": ours, "honest": honest,
        "difference_pp": results.difference_pp(ours["value"], book.get("value")),
        "epochs": max(run["epochs"] for run in runs),
        "best_epochs": [s["summary"]["best_epoch"] for s in seeds],
        "walls": [run["wall_seconds"] for run in sorted(runs, key=_first_seed)],
        "replay": _replay(next(iter(replays.values()), None), book.get("value")),
    }


def seeds_of(runs: list[dict]) -> list[dict]:
    """Every seed of one id's runs (``seed``, ``summary``, ``records``), in seed order; a seed
    in two runs is refused."""
    seeds, where = [], {}
    for run in runs:
        for summary in run["seeds"]:
            seed = summary["seed"]
            if seed in where:
                raise InputError(f"{run['id']}: seed {seed} is in both {where[seed]} and "
                                 f"{run['path']}; keep one of them")
            where[seed] = run["path"]
            seeds.append({"seed": seed, "summary": summary, "records": run["records"][seed]})
    return sorted(seeds, key=lambda s: s["seed"])


def _replay(replay: dict | None, book: float | None) -> dict | None:
    """The book's own run, replayed with its script's seed (the row's ``replay`` block)."""
    if replay is None:
        return None
    return {"script": replay["script"], "seed": replay["seed"], "value": replay["value"],
            "difference_pp": results.difference_pp(replay["value"], book)}


def _first_seed(run: dict) -> int:
    return min(s["seed"] for s in run["seeds"])


def vote_row(vote: dict, ensemble_cfg: dict) -> dict:
    """The ensemble's row from a ``vote_saved_nets.py`` result."""
    book = ensemble_cfg["book"]
    return {"id": ensemble_cfg["id"], "chapter": ensemble_cfg["chapter"], "book": book,
            "members": len(vote["members"]), "test_accuracy": vote["test_accuracy"],
            "test_errors": vote["test_errors"],
            "difference_pp": results.difference_pp(vote["test_accuracy"], book.get("value"))}


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours} h {minutes} min {secs} s" if hours else f"{minutes} min {secs} s")


def _seeds(seeds: list[int]) -> str:
    if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2:
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds))


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table; a replay column only where some row has a replay."""
    with_replay = any(r.get("replay") for r in rows)
    lines = ["| id | seeds | epochs | wall, run by run | ours, book's rule | book | diff (pp) "
             + ("| the book's run, replayed " if with_replay else "")
             + "| test at best val., mean ± std | best-val. epochs |",
             "|---|---|---|---|---|---|---|---|---|" + ("---|" if with_replay else "")]
    for r in rows:
        book = fixed(100 * r['book']['value']) if r["book"].get("value") is not None else "—"
        diff = "—" if r["difference_pp"] is None else fixed(r["difference_pp"], sign=True)
        if with_replay:
            diff += f" | {_replay_cell(r.get('replay'))}"
        if "members" in r:
            lines.append(f"| {r['id']} | vote of {r['members']} nets | — | — | "
                         f"{fixed(100 * r['test_accuracy'])} ({r['test_errors']} errors) | {book} "
                         f"| {diff} | — | — |")
            continue
        ours = "—" if r["ours"]["value"] is None else fixed(100 * r["ours"]["value"])
        if r["ours"].get("seed") is not None:
            ours += f" (seed {r['ours']['seed']})"
        honest = r["honest"]
        spread = "" if honest["std"] is None else f" ± {fixed(100 * honest['std'])}"
        mean = "—" if honest["mean"] is None else f"{fixed(100 * honest['mean'])}{spread}"
        lines.append(f"| {r['id']} | {_seeds(r['seeds'])} | {r['epochs']} | "
                     f"{' + '.join(_duration(w) for w in r['walls'])} | {ours} | {book} | {diff} "
                     f"| {mean} | {', '.join(map(str, r['best_epochs']))} |")
    return "\n".join(lines) + "\n"


def _replay_cell(replay: dict | None) -> str:
    if not replay:
        return "—"
    diff = "" if replay["difference_pp"] is None else f" ({fixed(replay['difference_pp'], sign=True)})"
    return f"{fixed(100 * replay['value'])}{diff}"


def runs_by_id(folders: list[Path]) -> dict[str, list[dict]]:
    """Every run (``read_run``) whose ``metrics.json`` is below ``folders``, by id."""
    by_id: dict[str, list[dict]] = {}
    for folder in folders:
        paths = sorted(folder.rglob("metrics.json"))
        if not paths:
            raise InputError(f"{folder}: no metrics.json below it")
        for path in paths:
            run = read_run(path)
            by_id.setdefault(run["id"], []).append(run)
    return by_id


def write_outputs(text: str, rows: list[dict], out: Path | None, json_path: Path | None) -> None:
    """Print the markdown ``text``; also write it to ``out`` and ``rows`` to ``json_path``."""
    print(text, end="")
    if out:
        write_text(out, text)
    if json_path:
        write_text(json_path, json.dumps(rows, indent=2) + "\n")


def table(folders: list[Path], votes: list[Path], params: dict) -> list[dict]:
    """Every id's merged row, in ``params.yaml``'s order, then the ensembles' rows."""
    by_id = runs_by_id(folders)
    order = list(params.get("book", {}))
    ids = sorted(by_id, key=lambda i: (order.index(i) if i in order else len(order), i))
    rows = [merge(by_id[i]) for i in ids]
    for path in votes:
        vote = read_json(path)
        if not {"members", "test_accuracy", "test_errors"} <= set(vote):
            raise InputError(f"--vote {path}: not a result of scripts/vote_saved_nets.py (no members, "
                             "test_accuracy, test_errors)")
        rows.append(vote_row(vote, params["ensemble"]))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders searched for metrics.json")
    parser.add_argument("--vote", action="append", type=Path, default=[],
                        help="a vote_saved_nets.py result to add as the ensemble's row")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"),
                        help="for the rows' order and the ensemble's book figure")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    parser.add_argument("--json", type=Path, help="also write the merged rows (JSON) here")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    rows = table(args.folders, args.vote, params)
    write_outputs(markdown(rows), rows, args.out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(run_command("book_profile_table", main))
