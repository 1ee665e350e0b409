"""How a number is read off training histories: the book's own rule, and an honest one.

The book reports, per chapter (see shared BOOK.md, "How the book reports a number"):

- ``peak_test``: the highest test accuracy over the epochs (chapter 1, best of three runs;
  chapter 3 on test);
- ``peak_validation``: the highest validation accuracy over the epochs (chapters 3 and 5);
- ``final_validation``: the validation accuracy after the last epoch (chapter 3's
  training-set-size sweep, and the two initialisations at 30 hidden units, whose runs the
  book describes by where they end);
- ``test_at_best_validation``: the test accuracy at the epoch of best validation accuracy
  (ties to the later epoch), the run chosen among seeds by its validation accuracy (chapter 6).

Peaks over test epochs select on the test set, so next to the book's figure we always give
the honest number: test accuracy at the best-validation epoch, mean and spread over seeds.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Sequence

# each metric, and the set whose accuracy it reports
METRIC_SETS = {"peak_test": "test", "peak_validation": "validation", "final_validation": "validation",
               "test_at_best_validation": "test"}
METRICS = tuple(METRIC_SETS)


def _column(records: Sequence[dict], key: str) -> list[float]:
    return [r[key] for r in records if r.get(key) is not None and not math.isnan(r[key])]


def seed_value(summary: dict, records: Sequence[dict], metric: str) -> float | None:
    """One seed's value of ``metric`` from its history summary and per-epoch records."""
    if metric == "peak_test":
        values = _column(records, "test_accuracy")
        return max(values) if values else None
    if metric == "peak_validation":
        values = _column(records, "validation_accuracy")
        return max(values) if values else None
    if metric == "final_validation":
        values = _column(records, "validation_accuracy")
        return values[-1] if values else None
    if metric == "test_at_best_validation":
        return summary.get("test_at_best_validation")
    raise ValueError(f"book.metric: unknown {metric!r}; allowed: {', '.join(METRICS)}")


def book_rule(seeds: Sequence[dict], metric: str, runs: int) -> dict[str, Any]:
    """The book's figure over our seeds, ``runs`` being how many runs the book's figure is from.

    - ``runs`` > 1 (chapters 1 and 6, best of three): the best seed (chosen by validation
      accuracy for chapter 6's ``test_at_best_validation``) of our first ``runs`` seeds: as
      many chances as the book had, or fewer where the profile trains fewer seeds. A profile
      that trains more (``ch1-100``'s lottery) gets the best of them all too, as ``all_seeds``
      (value, seed and n), but not in place of the book's count;
    - ``runs`` == 1 (chapters 3 and 5: one run): the mean over the seeds, the expected value of
      the book's one-run measurement (with a single seed, that seed's value).

    ``seeds``: one dict per seed with ``seed``, ``summary`` and ``records``. The result names
    the rule it applied (``"best of 3"``, ``"mean of 2"``, ``"one run"``); a mean also gives
    the seeds' own values (``values``), whose range says how far one run, like the book's,
    can fall from that mean.
    """
    if not seeds:
        return {"value": None, "seed": None, "rule": None}
    if len(seeds) == 1:
        value = seed_value(seeds[0]["summary"], seeds[0]["records"], metric)
        return {"value": value, "seed": seeds[0]["seed"], "rule": "one run"}
    if runs == 1:
        values = [seed_value(s["summary"], s["records"], metric) for s in seeds]
        mean, _ = mean_std(values)
        return {"value": mean, "seed": None, "rule": f"mean of {len(seeds)}", "values": values}
    counted = seeds[:runs]
    best = dict(_best(counted, metric), rule=f"best of {len(counted)}")
    if len(seeds) > runs:
        best["all_seeds"] = dict(_best(seeds, metric), n=len(seeds))
    return best


def _best(seeds: Sequence[dict], metric: str) -> dict[str, Any]:
    if metric == "test_at_best_validation":
        # chapter 6: the run with the best validation accuracy (ties: the later seed)
        best = max(enumerate(seeds),
                   key=lambda p: (p[1]["summary"].get("best_validation_accuracy") or -1, p[0]))[1]
        return {"value": best["summary"].get("test_at_best_validation"), "seed": best["seed"]}
    scored = [(seed_value(s["summary"], s["records"], metric), s["seed"]) for s in seeds]
    scored = [p for p in scored if p[0] is not None]
    if not scored:
        return {"value": None, "seed": None}
    value, seed = max(scored)
    return {"value": value, "seed": seed}


def difference(value: float | None, book_value: float | None) -> float | None:
    """Ours minus the book's figure, both fractions; None where either is missing. Rounded to
    10 decimals: 0.4 - 0.9983 is -0.5983, not -0.5982999999999999 (metrics.json, dvc exp diff)."""
    return None if value is None or book_value is None else round(value - book_value, 10)


def to_places(number: float, digits: int = 2) -> Decimal:
    """``number`` to ``digits`` decimals, an exact half away from zero (96.725 -> 96.73,
    -0.125 -> -0.13). Accuracies are counts over 10,000, and their means over seeds and their
    differences often end in a half: rounding the binary float (96.72499999...) would send such
    halves up or down by accident."""
    exact = Decimal(f"{number:.9f}")  # the float's noise cleared first
    return exact.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)


def difference_pp(value: float | None, book_value: float | None) -> float | None:
    """The difference in percentage points, to 0.01 pp (99.30 - 99.60 is -0.30, not
    -0.3000001; an exact half away from zero, ``to_places``): what the report prints and the
    tolerance is checked on."""
    if value is None or book_value is None:
        return None
    return float(to_places(100 * (value - book_value)))


def tolerance_pp(chapter: int, tolerance: dict) -> float:
    """How far (percentage points) a row may land from the book's figure: ``report.tolerance_pp``
    gives chapter 6 its own, tighter, bound and every other chapter the default."""
    return tolerance["chapter6"] if chapter == 6 else tolerance["default"]


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the values that are not None: (None, None) for
    none, the std None for one."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def honest(seeds: Sequence[dict]) -> dict[str, Any]:
    """Test accuracy at the best-validation epoch: mean and spread over the seeds."""
    values = [s["summary"].get("test_at_best_validation") for s in seeds]
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "n": len([v for v in values if v is not None]),
            "values": values}
