"""Where a `dvc repro` spent its time, from its log, and how two runs' stages compare.

Every stage prints ``== stage <name> done in <s> s ==`` (``pipeline/stages/_common.py``); the
measured runs' logs in ``docs/measurements/<date>-cpu-quick-<n>/repro.log.gz`` keep those
lines, and end with the run's whole wall time (``total <s> s`` or ``wall <s> s``). This prints
the stage times summed by part of the pipeline (data, baselines, chapters 1-5, chapter 6 with
the ensemble, report), and what the wall time adds to them: the install and DVC's work between
stages (split apart when the log's lines carry an ``HH:MM:SS`` time). Given a second log, it
compares the stages both ran for longer than ``--min-seconds``: the ratio of each stage's time
(second / first), their minimum, median and maximum. The "the time is the machine's"
figures of docs/runs.md come from it:

    python scripts/stage_times.py docs/measurements/2026-12-02-cpu-quick-10/repro.log.gz \\
        docs/measurements/2026-12-03-cpu-quick-11/repro.log.gz
"""

from __future__ import annotations

import argparse
import gzip
import re
import statistics
import zlib
from dataclasses import dataclass, field
from pathlib import Path

STAGE_DONE = re.compile(r"== stage (\S+) done in ([0-9.]+) s ==")
WALL = re.compile(r"(?:total|wall) ([0-9]+) s\s*$")
CLOCK = re.compile(r"^(\d\d):(\d\d):(\d\d) ")
# the header line of the measured runs' logs: "commit <sha>; start Thu Dec  3 08:26:58 UTC 2026; ..."
HEADER_START = re.compile(r"; start \w+ \w+ +\d+ (\d\d):(\d\d):(\d\d) ")
PARTS = ("data", "baselines", "chapters 1-5", "chapter 6 + ensemble", "report", "other")


@dataclass
class RunLog:
    """The stage times of one `dvc repro` log, in the order the stages finished."""

    stages: dict[str, float] = field(default_factory=dict)
    wall: float | None = None  # the whole command, install included, when the log says
    install: float | None = None  # start (the header's, else the first line's) to DVC's first stage


def part(stage: str) -> str:
    """Which part of the pipeline a stage belongs to (see ``PARTS``)."""
    if stage.startswith(("download", "prepare", "expand")):
        return "data"
    if stage == "baselines":
        return "baselines"
    if stage.startswith("train@ch6-") or stage == "ensemble":
        return "chapter 6 + ensemble"
    if stage.startswith("train@"):
        return "chapters 1-5"
    if stage == "report":
        return "report"
    return "other"  # a stage a user added to dvc.yaml


def _seconds(match: re.Match) -> int:
    h, m, s = (int(g) for g in match.groups())
    return 3600 * h + 60 * m + s


def read_log(path: Path) -> RunLog:
    """Parse a log (plain or gzip): stage times, the wall time, the install time."""
    opener = gzip.open if path.suffix == ".gz" else open
    run = RunLog()
    first_clock = None
    with opener(path, "rt", encoding="utf-8", errors="replace") as lines:
        for line in lines:
            clock = CLOCK.match(line) or (HEADER_START.search(line) if first_clock is None else None)
            if clock and first_clock is None:
                first_clock = _seconds(clock)
            if clock and run.install is None and "Running stage" in line:
                run.install = (_seconds(clock) - first_clock) % 86400
            if done := STAGE_DONE.search(line):
                run.stages[done.group(1)] = float(done.group(2))
            elif wall := WALL.search(line):
                run.wall = float(wall.group(1))
    if not run.stages:
        raise ValueError(f"{path}: no '== stage <name> done in <s> s ==' line; is it a `dvc repro` log?")
    return run


def minutes(seconds: float) -> str:
    """``59 min 14.5 s``: stage times are logged to a tenth of a second."""
    seconds = round(seconds, 1)
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


def summary_lines(name: str, run: RunLog) -> list[str]:
    """The stage times summed by part, and what the wall time adds to them."""
    totals = dict.fromkeys(PARTS, 0.0)
    for stage, seconds in run.stages.items():
        totals[part(stage)] += seconds
    stage_sum = round(sum(totals.values()), 1)
    lines = [f"{name}: {len(run.stages)} stages"]
    lines += [f"  {p:<22} {minutes(s):>14}" for p, s in totals.items() if s or p != "other"]
    lines.append(f"  {'stages in all':<22} {minutes(stage_sum):>14}")
    if run.wall is not None:
        rest = run.wall - stage_sum
        lines.append(f"  {'wall':<22} {minutes(run.wall):>14}")
        if run.install is not None:
            between = round(rest - run.install, 1)
            lines.append(f"  {'install':<22} {minutes(run.install):>14}")
            lines.append(f"  {'between stages (DVC)':<22} {minutes(between):>14}"
                         f"  ({between / len(run.stages):.1f} s a stage)")
        else:
            lines.append(f"  {'install + between':<22} {minutes(rest):>14}")
    return lines


def compare_lines(first: RunLog, second: RunLog, min_seconds: float) -> list[str]:
    """Each common stage's time ratio (second / first) over stages above ``min_seconds``."""
    common = [s for s in first.stages if s in second.stages
              and min(first.stages[s], second.stages[s]) > min_seconds]
    if not common:
        return [f"no stage ran longer than {min_seconds:g} s in both logs"]
    ratios = {s: second.stages[s] / first.stages[s] for s in common}
    lines = [f"{len(common)} stages over {min_seconds:g} s in both: second / first "
             f"{min(ratios.values()):.2f}-{max(ratios.values()):.2f}x, "
             f"median {statistics.median(ratios.values()):.2f}x"]
    for s in sorted(common, key=ratios.get):
        lines.append(f"  {s:<32} {first.stages[s]:8.1f} s {second.stages[s]:8.1f} s  {ratios[s]:.2f}x")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", nargs="+", type=Path, help="one or two `dvc repro` logs (.gz or plain)")
    parser.add_argument("--min-seconds", type=float, default=5.0,
                        help="compare only stages longer than this in both logs (default 5)")
    args = parser.parse_args()
    if len(args.logs) > 2:
        parser.error("give one log, or two to compare")
    runs = []
    for path in args.logs:
        try:
            runs.append(read_log(path))
        except (OSError, ValueError, EOFError, zlib.error) as exc:  # EOFError: a .gz cut short
            parser.error(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
    for path, run in zip(args.logs, runs):
        print("\n".join(summary_lines(str(path), run)))
    if len(runs) == 2:
        print("\n".join(compare_lines(runs[0], runs[1], args.min_seconds)))


if __name__ == "__main__":
    main()
