"""Stage ``report``: ``results/report.md``, ``results/summary.json`` and the report plots."""

from __future__ import annotations

import time
from pathlib import Path

from pipeline import report as rp
from pipeline import report_plots
from pipeline.atomic import write_json, write_text
from pipeline.figures import save_figure
from pipeline.machine import describe, kernel_pin_note
from pipeline.params import RESULTS, load_params
from pipeline.settings import require_sections
from pipeline.stages._common import log, stage, stage_command


def main() -> None:
    with stage("report"):
        params = load_params()
        require_sections(params, ("report", "book", "baselines", "ensemble"))  # report's keys: rp.validate
        cfg = params["report"]
        out = Path(cfg["out_dir"])
        rp.validate(cfg, list(params["book"]), params["ensemble"]["id"])  # a mistake is named, exit 2
        baselines, svm_sweep = rp.load_baselines(Path(params["baselines"]["out_dir"]))
        stages = {**{i: f"train@{i}" for i in params["book"]}, params["ensemble"]["id"]: "ensemble"}
        runs, histories = rp.load_runs(Path(RESULTS), stages)
        rows = [rp.with_verdict(r, cfg["tolerance_pp"]) for r in rp.baseline_rows(cfg, baselines) + runs]
        for name, figure in report_plots.figures(params, rows, histories, baselines, svm_sweep).items():
            save_figure(figure, out / "plots" / name)
        stamp, machine = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), describe()
        write_text(out / "report.md", rp.document(params, rows, histories, stamp, machine,
                                                     kernel_pin_note()))
        write_json(out / "summary.json", rp.summary(params, rows, histories, stamp, machine))
        counts = rp.tally(rows)
        log(f"report: {len(rows)} rows, {counts['within']}/{counts['with_figure']} within tolerance, "
            f"training runs and SVM fits {rp.wall_in_all(runs, baselines)} as timed when they ran "
            f"-> {out / 'report.md'}")


if __name__ == "__main__":
    stage_command(__spec__.name, __doc__)
    main()
