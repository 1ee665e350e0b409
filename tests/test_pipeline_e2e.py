"""End to end: a fresh copy of the repo, real git, real DVC, the pipeline on a small config."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def run(cmd, cwd, env):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def test_dvc_repro_data_stages_and_baselines(repo_copy, stage_env, mnist_raw_dir):
    overrides = ["download.sources=[mirrors,local]", f"download.local_dir={mnist_raw_dir}",
                 "download.timeout_s=5", "baselines.svm.train_limit=1000",
                 "baselines.sweep.sizes=[100,200]", "expand.rotated.angles=[-10,10]"]
    run([sys.executable, "-m", "pipeline.config", *overrides], repo_copy, stage_env)
    out = run(["dvc", "repro", "baselines", "expand"], repo_copy, stage_env)
    assert "stage download" in out and "<- local" in out

    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert (repo_copy / "data/raw" / name).is_file()
    metrics = json.loads((repo_copy / "results/baselines/metrics.json").read_text())
    assert metrics["darkness"]["test_correct"] == 2225
    assert metrics["svm"]["train_size"] == 1000 and metrics["svm"]["test_accuracy"] > 0.8
    assert sorted(metrics["mlflow_run_ids"]) == ["B-darkness", "B-svm", "svm-sweep"]  # pipeline.restore_runs reads them
    # the sweep's SVMs are fitted in the same pool as the main one
    sweep = json.loads((repo_copy / "results/baselines/svm_sweep.json").read_text())
    assert [p["n"] for p in sweep["points"]] == [100, 200]
    assert sweep["points"][1]["validation_accuracy"] > sweep["points"][0]["validation_accuracy"]
    from pipeline.data.mnist import load_images

    shifted, _ = load_images(repo_copy / "data/expanded/shifted.npz")
    rotated, _ = load_images(repo_copy / "data/expanded/rotated.npz")
    assert len(shifted) == 250_000 and len(rotated) == 150_000
    assert (repo_copy / "results/expand/rotated_preview.png").stat().st_size > 1000

    status = run(["dvc", "status", "baselines", "expand", "--with-deps"], repo_copy, stage_env)
    assert "up to date" in status
    again = run(["dvc", "repro", "baselines", "expand"], repo_copy, stage_env)
    assert "Running stage" not in again
    _the_damaged_cache_copy_hint_works(repo_copy, stage_env)


def _the_damaged_cache_copy_hint_works(repo_copy, stage_env):
    """A set whose copy in DVC's cache is damaged, its date kept (a disk's damage): DVC checks
    it out again as it is, unchecked; the loader's message gives the command that finds and
    deletes that copy, and with it gone the stage builds the right file again."""
    import hashlib
    import os
    import re

    from pipeline.data.mnist import load_images
    from pipeline.errors import InputError

    workspace = Path("data/prepared/validation.npz")
    right = hashlib.md5((repo_copy / workspace).read_bytes()).hexdigest()
    cache = Path(run(["dvc", "cache", "dir"], repo_copy, stage_env).strip().splitlines()[-1])
    copy = (repo_copy / cache) / "files" / "md5" / right[:2] / right[2:]
    dates = os.stat(copy)
    copy.chmod(0o644)
    with copy.open("r+b") as f:
        f.write(b"damaged!")
    os.utime(copy, ns=(dates.st_atime_ns, dates.st_mtime_ns))
    copy.chmod(0o444)
    (repo_copy / workspace).unlink()
    run(["dvc", "repro", "prepare"], repo_copy, stage_env)  # as the message's first sentence says
    with pytest.raises(InputError, match="delete it, then build it with `dvc repro prepare`") as info:
        load_images(repo_copy / workspace)
    command = re.search(r"\(`(find .*?)`\)", str(info.value)).group(1)
    found = run(["bash", "-c", command], repo_copy, stage_env)
    assert found.strip() == str(copy), found
    (repo_copy / workspace).unlink()
    run(["dvc", "repro", "prepare"], repo_copy, stage_env)
    assert hashlib.md5((repo_copy / workspace).read_bytes()).hexdigest() == right
    assert hashlib.md5(copy.read_bytes()).hexdigest() == right


def test_smoke_profile_whole_pipeline_tracked_and_cached(repo_copy, stage_env, mnist_raw_dir,
                                                          tmp_path):
    """Every stage on the smoke profile; MLflow holds the runs; reruns are exact and minimal."""
    import yaml
    from mlflow.tracking import MlflowClient

    db = tmp_path / "mlflow.db"
    env = dict(stage_env, MLFLOW_TRACKING_URI=f"sqlite:///{db}")
    overrides = ["profile=smoke", "download.sources=[local]", f"download.local_dir={mnist_raw_dir}"]
    run([sys.executable, "-m", "pipeline.config", *overrides], repo_copy, env)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qam", "smoke"],
        repo_copy, env)
    run(["dvc", "repro"], repo_copy, env)

    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    book_ids = list(params["book"])
    summary = json.loads((repo_copy / "results/summary.json").read_text())
    assert {r["id"] for r in summary["rows"]} >= {*book_ids, "ch6-ensemble", "B-darkness", "B-svm"}
    assert (repo_copy / "results/report.md").read_text().count("\n| ") >= len(book_ids)
    ensemble = json.loads((repo_copy / "results/ch6-ensemble/metrics.json").read_text())
    n_voters = len(params["book"]["ch6-dropout"]["seeds"])
    assert ensemble["ours_book_metric"]["rule"] == f"vote of {n_voters}"
    assert len(ensemble["members"]) == n_voters
    members = json.loads((repo_copy / "results/ch6-dropout/metrics.json").read_text())
    assert (ensemble["epochs"], ensemble["book"]["epochs"]) == (members["epochs"], members["book"]["epochs"])
    speeds = summary["initial_speeds"]  # chapter 5's speed of learning at the start, per seed
    assert set(speeds) == {"ch5-speed-2", "ch5-speed-3", "ch5-speed-4"}
    assert all(len(speeds[i]["ours"]["1"]) == len(speeds[i]["book"]) for i in speeds)
    assert "## Chapter 5: the speed of learning" in (repo_copy / "results/report.md").read_text()
    for plot in ("progression", "more_data", "learning_speed", "learning_curves_ch6"):
        assert (repo_copy / f"results/plots/{plot}.png").stat().st_size > 5000

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("nielsen-mnist")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    by_name: dict[str, list] = {}
    for r in runs:
        by_name.setdefault(r.info.run_name, []).append(r)
    for run_id in book_ids:
        seeds = params["book"][run_id]["seeds"]
        assert len(by_name.get(run_id, [])) == len(seeds), run_id
        assert all(r.info.status == "FINISHED" for r in by_name[run_id]), run_id
    # and one run each of the other stages: the ensemble's vote and the baselines
    for name in ("ch6-ensemble", "B-darkness", "B-svm", "svm-sweep"):
        assert len(by_name.get(name, [])) == 1, name
    assert set(by_name) == {*book_ids, "ch6-ensemble", "B-darkness", "B-svm", "svm-sweep"}
    assert {r.info.status for r in runs} == {"FINISHED"}
    one = by_name["ch1-30"][0]
    epochs = params["book"]["ch1-30"]["training"]["epochs"]
    steps = [m.step for m in client.get_metric_history(one.info.run_id, "validation_accuracy")]
    assert steps == list(range(min(epochs, params["profile"]["limits"]["epochs"])))
    artifacts = {a.path for a in client.list_artifacts(one.info.run_id)}
    assert {"config.json", "history.csv", "learning_curves.png", "confusion_matrix.png",
            "misclassified.png"} <= artifacts
    vote = by_name["ch6-ensemble"][0]
    assert {"config.json", "confusion_matrix.png", "misclassified.png"} <= {
        a.path for a in client.list_artifacts(vote.info.run_id)}
    assert {"book_value", "difference_vs_book"} <= set(vote.data.metrics)
    # every training run and the ensemble's hold their net as a READY MLflow model
    models = client.search_logged_models([one.info.experiment_id], max_results=1000)
    with_model = {m.source_run_id for m in models if m.name == "model" and str(m.status) == "READY"}
    trained = [r for r in runs if r.info.run_name.startswith("ch")]
    assert len(with_model) == len(models) and {r.info.run_id for r in trained} <= with_model
    assert one.data.tags["book_id"] == "ch1-30" and one.data.tags["profile"] == "smoke"
    metrics = json.loads((repo_copy / "results/ch1-30/metrics.json").read_text())
    assert metrics["mlflow_run_ids"] == [one.info.run_id]

    again = run(["dvc", "repro"], repo_copy, env)
    assert "Running stage" not in again

    shown = subprocess.run(["dvc", "plots", "show", "--show-vega", "ch1"], cwd=repo_copy, env=env,
                           capture_output=True, text=True, check=True)
    vega = json.loads(shown.stdout)
    assert vega["encoding"]["detail"] == {"field": "seed", "type": "nominal"}
    rows = [v for v in vega["data"]["values"] if v["filename"] == "ch1-30/history.csv"]
    assert len(rows) == len(params["book"]["ch1-30"]["seeds"]) * len(steps)

    # Sharing through the default remote, a folder beside the repo: a collaborator's clone of
    # the commit before this run (its dvc.lock records the data stages only, as main's does)
    # restores every stage from the remote's run-cache and trains nothing.
    run(["dvc", "push", "--run-cache"], repo_copy, env)
    assert (tmp_path / "nielsen-mnist-dvc-storage" / "runs").is_dir()
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo_copy), str(clone)], tmp_path, env)
    restored = run(["dvc", "repro", "--pull"], clone, env)
    assert "Running stage" not in restored, restored
    for stage in ["baselines", "ensemble", "report", *(f"train@{i}" for i in book_ids)]:
        assert f"Stage '{stage}' is cached - skipping run" in restored, stage
    for path in ("results/summary.json", "results/ch1-30/metrics.json"):
        assert (clone / path).read_bytes() == (repo_copy / path).read_bytes(), path
    # The runs restored there are logged into the collaborator's own MLflow store, once.
    elsewhere = tmp_path / "collaborator.db"
    clone_env = dict(env, MLFLOW_TRACKING_URI=f"sqlite:///{elsewhere}")
    logged = run([sys.executable, "-m", "pipeline.restore_runs"], clone, clone_env)
    assert f"logged {len(runs)} run(s)" in logged, logged
    theirs = MlflowClient(tracking_uri=f"sqlite:///{elsewhere}")
    copies = theirs.search_runs([theirs.get_experiment_by_name("nielsen-mnist").experiment_id], max_results=1000)
    assert sorted(r.data.tags["restored_from"] for r in copies) == sorted(r.info.run_id for r in runs)
    assert sorted(r.info.run_name for r in copies) == sorted(r.info.run_name for r in runs)
    # each copy names the code and stage that trained it, as its first run does, and nothing of
    # the process that restored it (MLflow would tag that with the clone's own commit)
    first_runs = {r.info.run_id: r for r in runs}
    for copy in copies:
        first = first_runs[copy.data.tags["restored_from"]].data.tags
        for tag in ("mlflow.source.git.commit", "git_dirty", "dvc.stage", "cpu", "numpy_version"):
            assert copy.data.tags.get(tag) == first.get(tag) and first.get(tag), (copy.info.run_name, tag)
        assert "mlflow.source.name" not in copy.data.tags
        # the stage's script by its path in the repo: the same in every clone
        assert first["mlflow.source.name"] == {"ch6-ensemble": "pipeline/stages/ensemble.py", "B-darkness":
                                               "pipeline/stages/baselines.py", "B-svm": "pipeline/stages/baselines.py",
                                               "svm-sweep": "pipeline/stages/baselines.py"}.get(
            copy.info.run_name, "pipeline/stages/train.py"), (copy.info.run_name, first["mlflow.source.name"])
    again = run([sys.executable, "-m", "pipeline.restore_runs"], clone, clone_env)
    assert f"logged 0 run(s) into sqlite:///{elsewhere}; {len(runs)} in the store already" in again, again

    # Comparing experiments, as the README does it: the workspace's run saved as the baseline
    # (main's dvc.lock records no training run), one changed, `dvc exp diff` shows only that.
    run(["dvc", "exp", "save", "-n", "baseline"], repo_copy, env)
    changed = run(["dvc", "exp", "run", "-n", "eta-1", *[f"-S{o}" for o in overrides],
                   "-S", "book.ch1-30.training.eta=1.0"], repo_copy, env)
    reran = sorted(line.split("'")[1] for line in changed.splitlines()
                   if line.startswith("Running stage"))
    assert reran == ["report", "train@ch1-30"], changed
    diff = json.loads(run(["dvc", "exp", "diff", "baseline", "eta-1", "--json"], repo_copy, env))
    assert list(diff["params"]["params.yaml"]) == ["book.ch1-30.training.eta"], diff["params"]
    assert set(diff["metrics"]) == {"results/ch1-30/metrics.json"}, diff["metrics"]
    assert "ours_book_metric.value" in diff["metrics"]["results/ch1-30/metrics.json"]
    headline = run(["dvc", "exp", "show", "--csv", "--drop", ".*",
                    "--keep", r"Experiment|.*ours_book_metric\.value"], repo_copy, env)
    columns = headline.splitlines()[0].split(",")
    assert columns[0] == "Experiment"
    assert sorted(columns[1:]) == sorted(f"results/{i}/metrics.json:ours_book_metric.value"
                                         for i in [*book_ids, "ch6-ensemble"]), columns
