"""Stage ``report``: ``results/report.md``, ``results/summary.json`` and the report plots."""

from __future__ import annotations

import time
from pathlib import Path

from pipeline import report as rp
from pipeline.atomic import write_json, write_text
from pipeline.figures import save_figure
from pipeline.machine import describe
from pipeline.params import load_params
from pipeline.stages._common import log, stage


def main() -> None:
    params = load_params()
    cfg = params["report"]
    out = Path(cfg["out_dir"])
    with stage("report"):
        unknown = [i for i in cfg["curves_in_words"] if i not in params["book"]]
        if unknown:
            raise SystemExit(f"report.curves_in_words: {unknown} are not runs in params.yaml's book; "
                             "fix the ids in conf/report/default.yaml")
        rows = rp.baseline_rows(cfg, rp.read_json(out / "baselines" / "metrics.json"))
        histories: dict[str, list[dict]] = {}
        for run_id in [*params["book"], params["ensemble"]["id"]]:
            metrics = rp.read_json(out / run_id / "metrics.json")
            if metrics is None:
                raise SystemExit(f"report: results/{run_id}/metrics.json is missing: "
                                 f"run `dvc repro train@{run_id}` first")
            rows.append(rp.run_row(metrics))
            histories[run_id] = rp.read_history(out / run_id / "history.csv")
        rows = [rp.with_verdict(r, cfg["tolerance_pp"]) for r in rows]

        plots = out / "plots"
        save_figure(rp.progression_plot(rows, cfg["progression"]), plots / "progression.png")
        for chapter in (1, 3, 5, 6):
            ids = [r["id"] for r in rows if r["chapter"] == chapter and histories.get(r["id"])
                   and not r["id"].startswith("ch3-more-data")]
            save_figure(rp.chapter_curves(chapter, {i: histories[i] for i in ids}),
                        plots / f"learning_curves_ch{chapter}.png")
        sweep = rp.read_json(out / "baselines" / "svm_sweep.json") or {"points": []}
        svm = [(p["n"], p["validation_accuracy"]) for p in sweep["points"]]
        base = rp.read_json(out / "baselines" / "metrics.json")
        if base:
            svm.append((base["svm"]["train_size"], base["svm"]["validation_accuracy"]))
        by_id = {r["id"]: r for r in rows}
        points = sorted(
            (params["book"][i]["data"]["train_limit"] or params["data"]["n_train"],
             by_id[i]["ours"], by_id[i]["book"]["value"])
            for i in params["book"] if i.startswith("ch3-more-data"))
        save_figure(rp.more_data_plot(points, sorted(svm)), plots / "more_data.png")
        depth = {i: histories[i] for i in params["book"] if i.startswith("ch5-depth")}
        speeds = {i: run["book"]["speeds"] for i, run in params["book"].items()
                  if run["book"].get("speeds")}
        measured_on = sorted({params["book"][i]["training"]["monitor"]["gradient_norms"] for i in speeds})
        save_figure(rp.learning_speed_plot({i: histories[i] for i in speeds}, depth, speeds),
                    plots / "learning_speed.png")
        for run_id in ("ch3-overfit-1k", "ch3-l2-1k"):
            replay_seed = by_id.get(run_id, {}).get("replay_seed")
            save_figure(rp.overfitting_plot(run_id, histories.get(run_id, []), replay_seed),
                        plots / f"overfitting_{run_id}.png")

        within = [r for r in rows if r["within"] is not None]
        in_range = [r for r in within if not r["within"] and r["book_in_seed_range"]]
        replayed = [r for r in rows if r.get("replay_difference_pp") is not None]
        retraced = [r for r in replayed if r["replay_difference_pp"] == 0]
        either = [r for r in within if r["within"] or (r.get("replay_difference_pp") is not None and
                                                       abs(r["replay_difference_pp"]) <= r["tolerance_pp"])]
        replay_line = (f"The book's own run, replayed with its script's seed, gives the book's "
                       f"figure exactly in {len(retraced)} of {len(replayed)} rows; counting those "
                       f"replays, {len(either)} of {len(within)} rows are within tolerance.\n\n"
                       if replayed else "")
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        machine = describe()
        profile = params["profile"]["name"]
        header = (
            f"# The book's MNIST results, reproduced\n\n"
            f"Profile `{profile}`, generated {stamp} on {machine}. "
            f"{sum(r['within'] for r in within)} of {len(within)} rows with a book figure are "
            f"within tolerance ({cfg['tolerance_pp']['default']} pp; chapter 6: "
            f"{cfg['tolerance_pp']['chapter6']} pp); ⚠ marks the others, *in range* those of "
            f"them ({len(in_range)} here) where the book reports one run and that run lies "
            "inside the range of our seeds: one run of ours could have missed by as much.\n\n"
            "*book's metric*: how the book measured its figure (BOOK.md). *ours, same metric*: "
            "that rule applied to our seeds: the best of them where the book took the best of "
            "three runs, their mean (and range) where the book reports one run. *test at best "
            "val.*: the honest number — test accuracy at the epoch of best validation accuracy, "
            "mean ± std over seeds. *the book's run, replayed*: where the book's figure came "
            "from one of its seeded scripts, that very run trained again with the script's seed "
            "and random streams (our engine, the book's draws); a difference of +0.00 means it "
            "retraced the book's run.\n\n" + replay_line)
        speed_section = (
            "\n## Chapter 5: the speed of learning at the start\n\n"
            f"‖∂C/∂b^l‖ of each hidden layer over the first {' or '.join(f'{n:,}' for n in measured_on)} "
            "training images, before "
            "any training, in the book's figure runs (the book's from its one unseeded run). "
            "The first hidden layer learns slowest, and the gap grows with depth.\n\n"
            + rp.speed_table(speeds, histories) +
            "\n![speed of learning](plots/learning_speed.png)\n" if speeds else "")
        curves_section = (
            "\n## The book's words beside our curves\n\n"
            "Where the book describes a curve rather than (or as well as) giving a figure. "
            "Accuracy on the set the book's metric names; epochs count from 0, as the book's "
            "programs print them.\n\n" + rp.curves_table(cfg["curves_in_words"], rows, histories))
        write_text(out / "report.md", header + rp.markdown_table(rows) +
                   "\n![progression](plots/progression.png)\n" + curves_section + speed_section)
        write_json(out / "summary.json", {
            "profile": profile, "generated": stamp, "machine": machine, "rows": rows,
            "initial_speeds": {i: {"book": speeds[i], "ours": rp.initial_speeds(histories[i])}
                               for i in speeds}})
        log(f"report: {len(rows)} rows, {sum(r['within'] for r in within)}/{len(within)} "
            f"within tolerance -> {out / 'report.md'}")


if __name__ == "__main__":
    main()
