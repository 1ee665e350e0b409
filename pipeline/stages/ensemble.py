"""Stage ``ensemble``: the plurality vote of the trained ch6-dropout nets (chapter 6)."""

from __future__ import annotations

from pipeline import results, tracking
from pipeline.atomic import check_writable, write_json
from pipeline.params import load_params, run_folders, seed_folder
from pipeline.settings import check_settings, require_sections
from pipeline.stages._common import log, stage, stage_command
from pipeline.vote import load_members, log_vote, predictions, run_metrics, run_params, vote_scores


def main() -> None:
    with stage("ensemble"):
        params = load_params()
        require_sections(params, ("data", "profile", "book", "ensemble"))
        check_settings(params, ("ensemble",))
        cfg, data = params["ensemble"], params["data"]
        check_writable(run_folders(cfg["id"])[1])  # named now, not after its MLflow run has FINISHED
        limit = (params["profile"].get("limits") or {}).get("eval_examples")
        # exactly the seeds that train@<members> trained, each to its last epoch
        seeds = params["book"][cfg["members"]]["seeds"]
        member_dirs = [seed_folder(run_folders(cfg["members"])[0], seed) for seed in seeds]
        loaded = load_members(cfg["members"], seeds, member_dirs)
        nets = [m.network for m in loaded]
        # the report's epochs column: the members' epochs, beside the book's for its members
        book = dict(cfg["book"], epochs=params["book"][cfg["members"]]["book"]["epochs"])
        result = {"id": cfg["id"], "chapter": cfg["chapter"], "title": cfg["title"],
                  "what_changed": cfg["what_changed"], "profile": params["profile"]["name"],
                  "book": book, "members": [str(d) for d in member_dirs],
                  "epochs": max(m.metadata["metrics"]["epochs_run"] for m in loaded)}
        predicted = predictions(nets, data["prepared_dir"], limit)
        result.update(vote_scores(predicted, nets[0].classes), member_seeds=seeds,
                      limits=params["profile"].get("limits") or {})
        result["ours_book_metric"] = {"value": result["test_accuracy"], "metric": "ensemble_test",
                                      "n_seeds": len(nets), "rule": f"vote of {len(nets)}",
                                      "seed": None}
        result["difference"] = results.difference(result["test_accuracy"], cfg["book"]["value"])
        result["trained_with"] = tracking.environment_tags()  # for pipeline.restore_runs
        tags = tracking.standard_tags(cfg["id"], cfg["chapter"], params["profile"]["name"], None,
                                      loaded[0].metadata.get("data_digest", ""), result["trained_with"])
        config = run_params(cfg, seeds, result["limits"])
        with tracking.start_run(cfg["id"], params=config, tags=tags) as run:
            run.log_metrics(run_metrics(result))  # pipeline.restore_runs logs them again from metrics.json
            log_vote(run, config, nets, member_dirs, *predicted["test"])
            result["mlflow_run_ids"] = [run.run_id]
        write_json(run_folders(cfg["id"])[1] / "metrics.json", result)
        log(f"ensemble of {len(nets)}: test {result['test_accuracy']:.2%} "
            f"({result['test_errors']} errors, {result['test_errors_on_ties']} of them on the "
            f"{result['test_ties']} tied votes; book {cfg['book']['value']:.2%})")


if __name__ == "__main__":
    stage_command(__spec__.name, __doc__)
    main()
