"""Recompute each training run's book-rule figure in a quick run's ``results/`` with the
current book rule (``pipeline.experiment.ours_by_the_book``), from its seeds' summaries (``metrics.json``) and
per-epoch records (``history.csv``), in place; print the runs whose figure or rule changed.
``report-ba4831d.md`` was made so, in a copy of quick-27's clone:

    cp -r <quick-27 clone>/{results,params.yaml} <copy>/ && cd <copy>
    PYTHONPATH=<this repo> python <this repo>/docs/measurements/2026-12-05-cpu-quick-27/rebuild_metrics.py
    PYTHONPATH=<this repo> python -m pipeline.stages.report    # -> results/report.md
"""

import csv
import json
from pathlib import Path

from pipeline.experiment import ours_by_the_book


def seed_records(history: list[dict], seed: int) -> list[dict]:
    """One seed's rows of history.csv, as numbers (None where a row has no value)."""
    return [{k: float(v) if v else None for k, v in row.items()}
            for row in history if row["seed"] and float(row["seed"]) == seed]


def main() -> None:
    for path in sorted(Path("results").glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        if "seeds" not in metrics:  # the baselines and the ensemble: no seeds to recount
            continue
        with (path.parent / "history.csv").open() as fh:
            history = list(csv.DictReader(fh))
        seeds = [{"seed": s["seed"], "summary": s, "records": seed_records(history, s["seed"])}
                 for s in metrics["seeds"]]
        before = metrics["ours_book_metric"]
        metrics.update(ours_by_the_book(seeds, metrics["book"]))
        ours = metrics["ours_book_metric"]
        if (before.get("value"), before.get("rule")) != (ours["value"], ours["rule"]):
            print(path.parent.name, before.get("value"), before.get("rule"), "->",
                  ours["value"], ours["rule"], ours.get("all_seeds"))
        path.write_text(json.dumps(metrics, indent=2) + "\n")


if __name__ == "__main__":
    main()
