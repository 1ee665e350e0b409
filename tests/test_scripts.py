"""The helper scripts: the GPU one run on the CPU (it must keep working where CI cannot reach
a GPU), the vote of saved nets, the book profile's table merged from runs in pieces, and the
epochs each row needs, read off those runs."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_book_gpu.py"
VOTE = SCRIPT.with_name("vote_saved_nets.py")


@pytest.mark.realdata
def test_train_book_gpu_trains_a_book_run_from_the_raw_files(mnist_raw_dir, tmp_path):
    out = tmp_path / "ch6-fc.json"
    subprocess.run([sys.executable, str(SCRIPT), "ch6-fc", "--seed", "1", "--device", "cpu", "--epochs", "2",
                    "--raw", str(mnist_raw_dir), "--out", str(out)], check=True, capture_output=True)
    result = json.loads(out.read_text())
    assert [r["epoch"] for r in result["records"]] == [0, 1]
    assert result["book"]["value"] == 0.978 and result["test_at_best_validation"] > 0.9


def test_train_book_gpu_trains_at_the_books_epochs_unless_told_fewer(load_script):
    """conf/book's ``epochs: ${..book.epochs}`` is not resolved by plain YAML: the script reads
    the book's epochs through ``conf_book_run`` (it once failed without --epochs: "expected an
    integer, got str")."""
    import yaml

    from pipeline.nn.spec import validate_spec
    from pipeline.params import conf_book_run, conf_data

    script = load_script("train_book_gpu.py")
    raw = yaml.safe_load((SCRIPT.parents[1] / "conf/book/ch6-relu.yaml").read_text())["ch6-relu"]
    assert raw["training"]["epochs"] == "${..book.epochs}"  # what plain YAML leaves
    cfg = conf_book_run("ch6-relu")
    assert {k: v for k, v in cfg.items() if k != "training"} == {k: v for k, v in raw.items() if k != "training"}
    training = script.book_training(cfg, seed=2, device="cpu")
    assert (training["epochs"], training["seed"], training["device"]) == (60, 2, "cpu")
    assert validate_spec({"model": cfg["model"], "training": training})["training"]["epochs"] == 60
    assert script.book_training(cfg, seed=2, device="cpu", epochs=3)["epochs"] == 3
    assert conf_data()["n_train"] == 50_000


@pytest.mark.parametrize("book_id, says", [("ch6-expanded", "trains on 'shifted';"),
                                           ("ch3-l2-1k", "trains on 'train' limited to 1000 images;")])
def test_train_book_gpu_refuses_a_run_on_another_training_set(tmp_path, book_id, says):
    done = subprocess.run([sys.executable, str(SCRIPT), book_id, "--raw", str(tmp_path),
                           "--out", str(tmp_path / "x.json")], capture_output=True, text=True)
    assert done.returncode == 2 and says in done.stderr, done.stderr


def test_vote_saved_nets_matches_a_vote_computed_here(tmp_path):
    import numpy as np

    from pipeline.data.mnist import load_dataset, save_images
    from pipeline.nn import build_network, plurality_vote, save_model

    rng = np.random.default_rng(0)
    for split in ("validation", "test"):
        labels = rng.integers(0, 10, 50).astype(np.uint8)
        save_images(tmp_path / "prepared" / f"{split}.npz",
                    (rng.random((50, 28, 28)) * 255).astype(np.uint8), labels)
    spec = {"model": {"input_shape": [784], "cost": "cross_entropy", "init": "large",
                      "layers": [{"type": "fc", "units": 5}, {"type": "fc", "units": 10}]},
            "training": {"epochs": 1, "batch_size": 10, "eta": 0.1}}
    dirs, nets = [], []
    for seed in (1, 2, 3, 4):
        net = build_network(dict(spec, training=dict(spec["training"], seed=seed)))
        dirs.append(tmp_path / f"seed{seed}")
        save_model(dirs[-1], net, spec)
        nets.append(net)
    out = tmp_path / "vote.json"
    subprocess.run([sys.executable, str(VOTE), *map(str, dirs), "--prepared",
                    str(tmp_path / "prepared"), "--out", str(out)], check=True, capture_output=True)
    result = json.loads(out.read_text())
    test = load_dataset(tmp_path / "prepared" / "test.npz")
    votes = [net.predict(test.x) for net in nets]
    assert result["test_errors"] == int(np.sum(plurality_vote(votes, 10) != test.y))
    assert result["test_errors_by_subset"]["1+3+4"] == int(
        np.sum(plurality_vote([votes[0], votes[2], votes[3]], 10) != test.y))
    assert sorted(result["test_errors_by_subset"]) == ["1+2+3", "1+2+3+4", "1+2+4", "1+3+4", "2+3+4"]


TABLE = SCRIPT.with_name("book_profile_table.py")
MEASURED = Path(__file__).resolve().parents[1] / "docs" / "measurements"


def _split_run(metrics_path: Path, parts: list[list[int]], out: Path) -> None:
    """Write one measured run as if its seeds had been trained in several runs."""
    metrics = json.loads(metrics_path.read_text())
    header, *lines = metrics_path.with_name("history.csv").read_text().splitlines()
    for n, seeds in enumerate(parts):
        folder = out / f"run{n}"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(
            dict(metrics, seeds=[s for s in metrics["seeds"] if s["seed"] in seeds])))
        (folder / "history.csv").write_text("\n".join(
            [header, *[line for line in lines if int(line.split(",")[0]) in seeds]]) + "\n")


def _run_table(*args):
    return subprocess.run([sys.executable, str(TABLE), *map(str, args), "--params",
                           str(MEASURED.parents[1] / "params.yaml")], capture_output=True, text=True)


def _table(tmp_path, *args):
    done = _run_table(*args, "--json", tmp_path / "rows.json")
    assert done.returncode == 0, done.stderr
    return {row["id"]: row for row in json.loads((tmp_path / "rows.json").read_text())}, done.stdout


@pytest.mark.parametrize("measured, parts", [
    # chapter 6: best of the seeds by validation, the honest mean over them
    ("2026-11-30-cpu-book/ch6-2fc/metrics.json", [[2], [1]]),
    # chapter 3: the mean of each seed's peak test accuracy, read off the history
    ("2026-11-30-cpu-eight-seeds/ch3-overfit-1k/metrics.json", [[1, 2, 3], [4, 5, 6, 7, 8]]),
])
def test_book_profile_table_merges_runs_into_what_one_run_computed(tmp_path, measured, parts):
    original = json.loads((MEASURED / measured).read_text())
    _split_run(MEASURED / measured, parts, tmp_path / "runs")
    rows, text = _table(tmp_path, tmp_path / "runs")
    row = rows[original["id"]]
    assert row["seeds"] == sorted(s for p in parts for s in p)
    assert row["ours"]["value"] == pytest.approx(original["ours_book_metric"]["value"], abs=1e-12)
    assert row["ours"]["seed"] == original["ours_book_metric"]["seed"]
    assert row["honest"]["mean"] == pytest.approx(original["honest_test_at_best_validation"]["mean"])
    assert row["honest"]["std"] == pytest.approx(original["honest_test_at_best_validation"]["std"])
    assert row["difference_pp"] == round(100 * original["difference"], 2)
    assert len(row["walls"]) == len(parts) and f"| {original['id']} |" in text


def test_book_profile_table_refuses_a_seed_twice_and_runs_that_differ(tmp_path):
    measured = MEASURED / "2026-11-30-cpu-book" / "ch6-2fc" / "metrics.json"
    _split_run(measured, [[1], [1, 2]], tmp_path / "twice")
    done = _run_table(tmp_path / "twice")
    assert done.returncode == 2 and "seed 1 is in both" in done.stderr, done.stderr

    _split_run(measured, [[1], [2]], tmp_path / "differ")
    other = tmp_path / "differ" / "run1" / "metrics.json"
    other.write_text(json.dumps(dict(json.loads(other.read_text()), profile="quick")))
    done = _run_table(tmp_path / "differ")
    assert done.returncode == 2 and "profile differs" in done.stderr, done.stderr


def test_book_profile_table_adds_the_ensemble_row_from_a_vote(tmp_path):
    vote = MEASURED / "2026-11-30-cpu-book" / "ch6-ensemble" / "vote-of-4.json"
    rows, text = _table(tmp_path, MEASURED / "2026-11-30-cpu-book" / "ch6-2fc", "--vote", vote)
    assert rows["ch6-ensemble"]["test_errors"] == json.loads(vote.read_text())["test_errors"]
    assert rows["ch6-ensemble"]["difference_pp"] == round(
        100 * (json.loads(vote.read_text())["test_accuracy"] - 0.9967), 2)
    assert "vote of 4 nets" in text


def test_compare_with_book_figures_finds_the_first_epoch_that_differs(tmp_path):
    script = Path(__file__).resolve().parents[1] / "scripts" / "compare_with_book_figures.py"
    results, fig = tmp_path / "results", tmp_path / "fig"
    fig.mkdir()
    counts = {"default": [9270, 9414, 9470], "large": [8643, 9044, 9141]}
    for kind, seed_counts in counts.items():
        run = results / f"ch3-init-30-{kind}"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"replay": {"seed": 12345678}}))
        lines = ["seed,epoch,validation_accuracy"]
        lines += [f"1,{e},0.5" for e in range(3)]  # our own seed: not compared
        lines += [f"12345678,{e},{c / 10_000}" for e, c in enumerate(seed_counts)]
        (run / "history.csv").write_text("\n".join(lines) + "\n")
    book = {f"{k}_weight_initialization": [[], list(v), [], []] for k, v in counts.items()}

    def run_script():
        (fig / "weight_initialization_30.json").write_text(json.dumps(book))
        return subprocess.run([sys.executable, str(script), str(fig), "--results", str(results)],
                              capture_output=True, text=True)

    done = run_script()
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("the same at 3 epoch(s)") == 2 and "overfitting.json: not in" in done.stdout
    book["large_weight_initialization"][1][1] = 9045
    done = run_script()
    assert done.returncode == 1
    assert "ch3-init-30-large" in done.stdout and "DIFFERS: epoch 1: ours 9044, the book's 9045" in done.stdout


def test_compare_with_book_figures_reads_the_overfitting_runs_four_series(tmp_path):
    """overfitting.json holds test cost, test counts, training cost and training counts; a
    history without the test cost (monitor off) skips that series and says why."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "compare_with_book_figures.py"
    results, fig = tmp_path / "results", tmp_path / "fig"
    fig.mkdir()
    run = results / "ch3-overfit-1k"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"replay": {"seed": 12345678}}))
    book = [[2.25, 1.9], [5210, 6012], [1.97, 1.2], [604, 700]]
    (fig / "overfitting.json").write_text(json.dumps(book))

    def run_script(columns, values):
        lines = ["seed,epoch," + columns] + [f"12345678,{e}," + v for e, v in enumerate(values)]
        (run / "history.csv").write_text("\n".join(lines) + "\n")
        return subprocess.run([sys.executable, str(script), str(fig), "--results", str(results)],
                              capture_output=True, text=True)

    done = run_script("test_accuracy,training_accuracy,training_cost,test_cost",
                      ["0.521,0.604,1.97,2.25", "0.6012,0.7,1.2,1.9"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("the same at 2 epoch(s)") == 4 and "test_cost" in done.stdout
    done = run_script("test_accuracy,training_accuracy,training_cost", ["0.521,0.604,1.97", "0.6012,0.7,1.2"])
    assert done.returncode == 0 and done.stdout.count("the same at 2 epoch(s)") == 3
    assert "no test_cost in its history.csv (training.monitor.test_cost was off)" in done.stdout
    done = run_script("test_accuracy,training_accuracy,training_cost,test_cost",
                      ["0.521,0.604,1.97,2.25", "0.6012,0.7,1.2,1.8"])
    assert done.returncode == 1 and "DIFFERS: epoch 1: ours 1.8, the book's 1.9" in done.stdout


def test_book_profile_table_shows_the_replay_only_where_a_row_has_one(tmp_path):
    measured = MEASURED / "2026-12-01-cpu-book-ch1-5" / "ch3-l2-30" / "metrics.json"
    replay = json.loads(measured.read_text())["replay"]
    _split_run(measured, [[1], [2, 3]], tmp_path / "runs")
    rows, text = _table(tmp_path, tmp_path / "runs")
    assert rows["ch3-l2-30"]["replay"]["value"] == replay["value"]
    assert rows["ch3-l2-30"]["replay"]["difference_pp"] == round(100 * replay["difference"], 2)
    assert "the book's run, replayed" in text and f"| {100 * replay['value']:.2f} (+0.00) |" in text

    # each run logs its own replay: another MLflow run and wall time are the same result
    other = tmp_path / "runs" / "run1" / "metrics.json"
    other.write_text(json.dumps(dict(json.loads(other.read_text()),
                                     replay=dict(replay, mlflow_run_id="another", summary={}))))
    rows, _ = _table(tmp_path, tmp_path / "runs")
    assert rows["ch3-l2-30"]["replay"]["value"] == replay["value"]

    # runs that replayed the book's run differently are not one configuration
    other.write_text(json.dumps(dict(json.loads(other.read_text()),
                                     replay=dict(replay, value=replay["value"] - 0.01))))
    done = _run_table(tmp_path / "runs")
    assert done.returncode == 2 and "replayed the book's run with different" in done.stderr

    ch6 = _run_table(MEASURED / "2026-11-30-cpu-book" / "ch6-2fc")
    assert ch6.returncode == 0 and "replayed" not in ch6.stdout


FRONTIER = SCRIPT.with_name("epochs_to_tolerance.py")
FAST_RUN = MEASURED / "2026-12-01-cpu-quick-2" / "summary.json"  # profile fast, then called quick
QUICK_RUN = MEASURED / "2026-12-01-cpu-quick-3" / "summary.json"  # profile quick


def _frontier(tmp_path, *args):
    return subprocess.run([sys.executable, str(FRONTIER), *map(str, args),
                           "--json", tmp_path / "rows.json"], capture_output=True, text=True)


def _rows(tmp_path):
    return {r["id"]: r for r in json.loads((tmp_path / "rows.json").read_text())}


def _summary(path):
    return {r["id"]: r for r in json.loads(path.read_text())["rows"]}


def test_epochs_to_tolerance_recomputes_a_run_from_the_book_runs_first_epochs(tmp_path):
    book = MEASURED / "2026-11-30-cpu-book"
    done = _frontier(tmp_path, book / "ch6-2fc", book / "ch6-fc300", "--profile", "fast",
                     "--run", FAST_RUN)
    assert done.returncode == 0, done.stderr
    rows, fast = _rows(tmp_path), _summary(FAST_RUN)
    for run_id, row in rows.items():
        # the fast run's figure, from the first epochs of the book runs' seeds 1 and 2
        assert row["checked_against_run"] and row["profile_value"] == fast[run_id]["ours"]
        at = {e["epochs"]: e for e in row["by_epochs"]}
        assert at[row["profile_epochs"]]["profile_seeds"] == fast[run_id]["difference_pp"]
        # all epochs of seeds 1 and 2: what the book-profile run of those seeds computed itself
        full = json.loads((book / run_id / "metrics.json").read_text())
        assert [s["seed"] for s in full["seeds"]] == [1, 2]
        assert row["by_epochs"][-1]["profile_seeds"] == round(100 * full["difference"], 2)
        assert row["sets"] == 3 and len(row["by_epochs"]) == full["epochs"]
    # ch6-fc300: every pair is inside at 2 epochs, but leaves it again before epoch 6
    assert rows["ch6-fc300"]["first_inside"] == 2 and rows["ch6-fc300"]["stays_inside_from"] == 6
    assert rows["ch6-fc300"]["extra_seconds"]["first_inside"] == 0
    assert rows["ch6-2fc"]["first_inside"] == rows["ch6-2fc"]["stays_inside_from"] == 8
    assert rows["ch6-2fc"]["extra_seconds"]["stays_inside"] == round(7 * fast["ch6-2fc"]["wall_seconds"], 1)


def test_epochs_to_tolerance_foretold_the_quick_run(tmp_path):
    """The quick profile's chapter 6 epochs were read off the book runs before its run; the
    run then reported exactly the figures the first epochs of the book runs give."""
    done = _frontier(tmp_path, MEASURED / "2026-11-30-cpu-book", "--run", QUICK_RUN)
    assert done.returncode == 0, done.stderr
    rows, quick = _rows(tmp_path), _summary(QUICK_RUN)
    assert len(rows) == 10
    for run_id, row in rows.items():
        assert row["checked_against_run"] and row["profile_value"] == quick[run_id]["ours"]
        assert quick[run_id]["within"] and row["first_inside"] <= row["profile_epochs"]
        # every set inside means the profile's own seeds inside
        assert row["own_seeds"]["first_inside"] <= row["first_inside"]
    # ch6-relu's seeds 1 and 2 alone: inside at 13 epochs, out from 14 to 20 (-0.41 to -0.35
    # pp), inside from 21 on; every pair of seeds 1-3 first at 25
    relu = rows["ch6-relu"]
    assert (relu["own_seeds"]["first_inside"], relu["own_seeds"]["stays_inside_from"],
            relu["first_inside"]) == (13, 21, 25)
    assert [e["profile_seeds"] for e in relu["by_epochs"][12:21]] == \
        [-0.18, -0.41, -0.41, -0.35, -0.35, -0.35, -0.35, -0.35, -0.16]
    # what the own seeds' epochs would change, at the quick run's seconds per epoch
    assert relu["own_seeds"]["extra_seconds"]["first_inside"] == \
        round(-12 * quick["ch6-relu"]["wall_seconds"] / 25, 1)


def test_epochs_to_tolerance_reads_rows_evaluated_every_n_epochs_by_epoch_number(tmp_path):
    # ch3-more-data-200 trains 7,500 epochs of 200 images and is evaluated every 250
    done = _frontier(tmp_path, MEASURED / "2026-12-01-cpu-book-ch1-5" / "ch3-more-data-200",
                     "--run", QUICK_RUN)
    assert done.returncode == 0, done.stderr
    row = _rows(tmp_path)["ch3-more-data-200"]
    assert row["profile_value"] == _summary(QUICK_RUN)["ch3-more-data-200"]["ours"]
    assert row["profile_epochs"] == 7500
    assert [e["epochs"] for e in row["by_epochs"]] == list(range(250, 7501, 250))


def test_epochs_to_tolerance_refuses_a_run_that_is_not_the_same_training(tmp_path):
    book = MEASURED / "2026-11-30-cpu-book"
    summary = json.loads(FAST_RUN.read_text())
    for r in summary["rows"]:
        if r["id"] == "ch6-2fc":
            r["ours"] += 0.0001
    other = tmp_path / "summary.json"
    other.write_text(json.dumps(summary))
    done = _frontier(tmp_path, book / "ch6-2fc", "--profile", "fast", "--run", other)
    assert done.returncode == 2 and "not the same training" in done.stderr, done.stderr

    # a run of another profile: its epochs are not the profile's
    done = _frontier(tmp_path, book / "ch6-2fc", "--profile", "fast", "--run", QUICK_RUN)
    assert done.returncode == 2 and "trained 8 epochs of 2 seeds, the profile 1 of 2" in done.stderr

    done = _frontier(tmp_path, book, "--profile", "smoke")
    assert done.returncode == 2 and "limits the data" in done.stderr, done.stderr


STAGE_TIMES = SCRIPT.with_name("stage_times.py")


def _stage_times(*args):
    return subprocess.run([sys.executable, str(STAGE_TIMES), *map(str, args)], capture_output=True, text=True)


def test_stage_times_sums_the_parts_and_splits_the_install_from_dvcs_work(tmp_path):
    log = tmp_path / "repro.log"
    log.write_text(
        "commit abc; start ...\n"
        "23:59:30 Obtaining file:///tmp/repo\n"
        "00:00:37 Running stage 'download':\n"
        "00:00:39 == stage download done in 1.5 s ==\n"
        "== stage baselines done in 100.0 s ==\n"  # a line without a time is still read
        "00:03:00 == stage train@ch1-30 done in 20.0 s ==\n"
        "00:06:00 == stage train@ch6-relu done in 200.0 s ==\n"
        "00:06:20 == stage ensemble done in 10.0 s ==\n"
        "00:06:30 == stage report done in 4.0 s ==\n"
        "== stage my-plots done in 2.0 s ==\n"  # a stage of the user's own: counted under "other"
        "rc 0 wall 420 s\n")
    done = _stage_times(log)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "7 stages" in out
    # the install runs past midnight: 23:59:30 to 00:00:37
    for part, shown in [("data", "0 min 01.5 s"), ("baselines", "1 min 40.0 s"), ("chapters 1-5", "0 min 20.0 s"),
                        ("chapter 6 + ensemble", "3 min 30.0 s"), ("report", "0 min 04.0 s"),
                        ("other", "0 min 02.0 s"), ("stages in all", "5 min 37.5 s"), ("wall", "7 min 00.0 s"),
                        ("install", "1 min 07.0 s"), ("between stages (DVC)", "0 min 15.5 s  (2.2 s a stage)")]:
        assert any(line.split(shown)[0].strip() == part for line in out.splitlines() if shown in line), (part, out)


def test_stage_times_compares_the_stages_two_runs_share(tmp_path):
    first, second = tmp_path / "a.log", tmp_path / "b.log.gz"
    first.write_text("== stage train@ch1-30 done in 20.0 s ==\n== stage train@ch6-relu done in 200.0 s ==\n"
                     "== stage report done in 4.0 s ==\n== stage train@ch3-ce-30 done in 10.0 s ==\n"
                     "end ...; rc 0; total 300 s\n")
    with gzip.open(second, "wt") as f:
        f.write("== stage train@ch1-30 done in 30.0 s ==\n== stage train@ch6-relu done in 100.0 s ==\n"
                "== stage report done in 2.0 s ==\n== stage train@ch3-ce-30 done in 12.0 s ==\n")
    done = _stage_times(first, second)
    assert done.returncode == 0, done.stderr
    assert "3 stages over 5 s in both: second / first 0.50-1.50x, median 1.20x" in done.stdout, done.stdout
    assert "install + between        1 min 06.0 s" in done.stdout  # 300 s of wall, no clock


def test_stage_times_reads_a_measured_run_as_the_readme_quotes_it():
    done = _stage_times(MEASURED / "2026-12-03-cpu-quick-11" / "repro.log.gz")
    assert done.returncode == 0, done.stderr
    # docs/runs.md: quick-11's install 67 s, chapter 6 + ensemble 43 min 30 s,
    # 4.2 s a stage between the 50 stages
    assert "50 stages" in done.stdout
    for shown in ["chapter 6 + ensemble    43 min 30.2 s", "install                  1 min 07.0 s",
                  "(4.2 s a stage)"]:
        assert shown in done.stdout, done.stdout
    # quick-12's log starts with a header line giving the command's start, 5 s before pip's
    # first line: the install counts from there
    done = _stage_times(MEASURED / "2026-12-03-cpu-quick-12" / "repro.log.gz")
    assert "install                  1 min 09.0 s" in done.stdout, done.stdout


def test_stage_times_refuses_a_file_that_is_not_a_repro_log(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("nothing here\n")
    done = _stage_times(other)
    assert done.returncode == 2 and "no '== stage <name> done in <s> s ==' line" in done.stderr, done.stderr
    done = _stage_times(other, other, other)
    assert done.returncode == 2 and "give one log, or two" in done.stderr


DEAD_UNITS = SCRIPT.with_name("dead_output_units.py")


@pytest.mark.parametrize("cost, stays_dead", [("quadratic", True), ("cross_entropy", False)])
def test_an_output_unit_saturated_off_stays_dead_under_the_quadratic_cost_only(cost, stays_dead, load_script):
    """The mechanism behind ch1-100's stalls, on separable synthetic data: an output unit whose
    weighted input starts at about -40 gets (a - y) sigma'(z), about 1e-17, under the
    quadratic cost and never fires for its digit in 20 epochs; under cross-entropy it gets a - y
    and revives."""
    import numpy as np

    from pipeline.data.mnist import Dataset
    from pipeline.nn import build_network
    from pipeline.nn.spec import validate_spec

    script = load_script(DEAD_UNITS.name)
    centres = np.random.default_rng(99).uniform(0, 1, (10, 100))

    def data(n, seed):
        labels = np.arange(n) % 10
        x = np.clip(centres[labels] + 0.1 * np.random.default_rng(seed).normal(size=(n, 100)), 0, 1)
        return Dataset(x=x, y=labels)

    spec = validate_spec({"model": {"input_shape": [100], "cost": cost, "init": "default",
                                    "layers": [{"type": "fc", "units": 10, "activation": "sigmoid"}]},
                          "training": {"epochs": 20, "batch_size": 10, "eta": 0.5, "seed": 1,
                                       "dtype": "float64", "shuffle": True}})
    net = build_network(spec)
    net.layers[0].params["b"][3] = -40.0  # unit 3 starts saturated off for every input
    row = script.trace_run(net, spec["training"], data(500, 1), data(200, 2), data(200, 3))
    assert 3 in row["dead_at_start"]
    assert row["dead_at_end"] == ([3] if stays_dead else [])  # the other nine learn their digits
    recall = row["test_recall_at_end"]
    assert (recall[3] < 0.05) == stays_dead and min(recall[:3] + recall[4:]) > 0.9


def test_check_logged_models_scores_each_model_on_the_images_its_own_run_evaluated(workdir, capsys, load_script):
    """A store holding runs of two profiles (all 30 test images, and the first 10): each model is
    scored on its own run's images, where params.yaml's profile gave the other runs false
    DIFFERENT rows."""
    import yaml
    from test_experiment import DATA, PROFILE, RUN

    from pipeline import experiment

    run = dict(RUN, seeds=[1])
    experiment.train_entry("tiny", run, DATA, PROFILE, "models/all", "results/all", log=lambda _: None)
    capped = dict(PROFILE, name="capped", limits={"eval_examples": 10})
    experiment.train_entry("tiny", run, DATA, capped, "models/capped", "results/capped", log=lambda _: None)
    (workdir / "params.yaml").write_text(yaml.safe_dump({"data": DATA, "profile": capped}))
    check = load_script("check_logged_models.py")
    assert check.main([]) == 0
    out = capsys.readouterr().out
    assert out.count(" same") == 2 and "DIFFERENT" not in out
    assert "2 of 2 models give the test accuracy their run logged" in out


SCRIPTS = sorted(SCRIPT.parent.glob("*.py"))
COMMANDS = ["pipeline.bench", "pipeline.config", "pipeline.crosscheck", "pipeline.predict", "pipeline.restore_runs"]


def _help_of(main, argv_style: bool, monkeypatch, capsys) -> str:
    """What ``--help`` prints, from the command's own ``main`` in this process."""
    monkeypatch.setattr(sys, "argv", ["command", "--help"])
    with pytest.raises(SystemExit) as stopped:
        main(["--help"]) if argv_style else main()
    assert stopped.value.code == 0
    return capsys.readouterr().out


def _without_spaces(text: str) -> str:
    """``text`` with no white space: argparse wraps lines anew, also after a hyphen."""
    return "".join(text.split())


@pytest.mark.parametrize("name", [*COMMANDS, *(path.name for path in SCRIPTS)])
def test_every_commands_help_opens_with_its_docstrings_whole_first_paragraph(name, monkeypatch, capsys, load_script):
    """A description cut at the end of the docstring's first line stops mid-sentence."""
    import importlib
    import inspect

    module = load_script(name) if name.endswith(".py") else importlib.import_module(name)
    printed = _help_of(module.main, bool(inspect.signature(module.main).parameters), monkeypatch, capsys)
    assert _without_spaces(module.__doc__.split("\n\n")[0]) in _without_spaces(printed)
    if not name.endswith(".py"):  # run as ``python -m``, not as the file argparse would name
        assert printed.startswith(f"usage: python -m {name} ")


# The scripts' refusals: a mistake the user can fix is one line and status 2 (pipeline.console's
# run_command), found before any training, not a traceback after it.

def _script(name: str, *args, cwd=None):
    return subprocess.run([sys.executable, str(SCRIPT.with_name(name)), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd or SCRIPT.parents[1])


def _one_line_refusal(done, *said):
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and all(s in done.stderr for s in said), done.stderr


def test_train_book_gpu_names_each_mistake_before_it_reads_or_trains(tmp_path):
    import importlib.util

    out = tmp_path / "out.json"
    common = ("--raw", tmp_path, "--device", "cpu")
    _one_line_refusal(_script("train_book_gpu.py", "ch6-relux", *common, "--out", out),
                      "no run 'ch6-relux' in conf/book/; the runs: ch1-100, ch1-30,")
    _one_line_refusal(_script("train_book_gpu.py", "ch6-relu", *common, "--epochs", "0", "--out", out),
                      "argument --epochs: '0' is not a whole number of 1 or more")
    _one_line_refusal(_script("train_book_gpu.py", "ch6-relu", *common, "--out", tmp_path),
                      f"--out {tmp_path} is a folder; give the JSON file's name")
    _one_line_refusal(_script("train_book_gpu.py", "ch6-relu", *common, "--out", out),
                      f"train_book_gpu: --raw {tmp_path}: it must hold the four MNIST files (train-images-idx3-ubyte")
    if importlib.util.find_spec("cupy") is None:  # the GPU is checked first: the empty --raw is not reached
        _one_line_refusal(_script("train_book_gpu.py", "ch6-relu", "--raw", tmp_path, "--out", out),
                          "train_book_gpu: device 'gpu' needs CuPy, which is not installed")
    assert not out.exists()


def test_train_book_gpu_keeps_the_epochs_before_a_divergence(load_script, tmp_path, monkeypatch):
    """Weights gone NaN stop the run with one line (status 2), and the epochs recorded before
    it are written to --out with the reason: a GPU hour is not thrown away unexplained."""
    from pipeline.errors import InputError
    from pipeline.nn.train import TrainingDiverged

    script = load_script("train_book_gpu.py")
    message = "training diverged in epoch 1: fc layer 0's w holds NaN or infinite values at eta 3; lower training.eta"

    def diverging_fit(net, spec, *data, log, on_epoch):
        on_epoch({"epoch": 0, "validation_accuracy": 0.9})
        raise TrainingDiverged(message)

    monkeypatch.setattr(script, "read_book_split", lambda raw: {"train": None, "validation": None, "test": None})
    monkeypatch.setattr(script, "fit", diverging_fit)
    out = tmp_path / "ch1-30.json"
    with pytest.raises(InputError, match=f"; the 1 epoch\\(s\\) recorded before it are in {out}"):
        script.main(["ch1-30", "--raw", str(tmp_path), "--device", "cpu", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["diverged"] == message and result["records"] == [{"epoch": 0, "validation_accuracy": 0.9}]
    assert (result["book_id"], result["seed"], result["book"]["value"]) == ("ch1-30", 1, 0.9542)


def test_train_book_gpu_takes_an_epochs_count_as_given(load_script):
    script = load_script("train_book_gpu.py")
    cfg = {"training": {"epochs": 60, "eta": 0.03}}
    assert script.book_training(cfg, seed=1, device="cpu", epochs=None)["epochs"] == 60
    assert script.book_training(cfg, seed=1, device="cpu", epochs=1)["epochs"] == 1
    assert script.at_least_one("3") == 3
    for text in ("0", "-2", "1.5", "x"):
        with pytest.raises(Exception, match="not a whole number of 1 or more"):
            script.at_least_one(text)


def test_dead_output_units_refuses_a_softmax_run_and_an_out_file_before_reading_data(tmp_path):
    _one_line_refusal(_script("dead_output_units.py", "ch6-relu", "--seeds", "1"),
                      "dead_output_units: ch6-relu: its output layer is not sigmoid")
    (tmp_path / "taken").write_text("")
    _one_line_refusal(_script("dead_output_units.py", "ch1-100", "--out", tmp_path / "taken"),
                      f"--out {tmp_path / 'taken'} is a file; give a folder for dead_units.json")
    _one_line_refusal(_script("dead_output_units.py", "ch1-1000"), "no run 'ch1-1000' in params.yaml's book")


def test_dead_output_units_keeps_the_runs_finished_before_a_ctrl_c(tmp_path, monkeypatch, load_script):
    from pipeline.console import run_command

    script = load_script("dead_output_units.py")
    monkeypatch.setattr(script, "load_run_data", lambda *args: (None, None, None, None))
    traced = []

    def trace_run(net, training, *data):
        if traced:
            raise KeyboardInterrupt  # the second seed stopped mid-way
        traced.append(training["seed"])
        return {"peak_test_accuracy": 0.9, "dead_at_start": [], "dead_after_epoch": {}, "dead_at_end": [3]}

    monkeypatch.setattr(script, "trace_run", trace_run)
    monkeypatch.chdir(SCRIPT.parents[1])
    status = run_command("dead_output_units", lambda: script.main(
        ["ch1-100", "--seeds", "1", "2", "--costs", "quadratic", "--out", str(tmp_path)]))
    assert status == 130
    rows = json.loads((tmp_path / "dead_units.json").read_text())
    assert [(r["seed"], r["dead_at_end"]) for r in rows] == [(1, [3])]


def test_vote_saved_nets_names_a_missing_net_and_an_out_folder(tmp_path):
    _one_line_refusal(_script("vote_saved_nets.py", "--out", tmp_path, tmp_path / "a", tmp_path / "b"),
                      f"--out {tmp_path} is a folder; give the JSON file's name")
    _one_line_refusal(_script("vote_saved_nets.py", "--out", tmp_path / "v.json", tmp_path / "a", tmp_path / "b"),
                      "vote_saved_nets: ", "model.json")


def test_check_logged_models_outside_the_checkout_and_a_damaged_model_json(tmp_path, load_script):
    from pipeline.errors import InputError

    _one_line_refusal(_script("check_logged_models.py", cwd=tmp_path),
                      "check_logged_models: params.yaml not found: run stages from the repository root")
    check = load_script("check_logged_models.py")
    meta = tmp_path / "artifacts" / "net1" / "model.json"
    meta.parent.mkdir(parents=True)
    for text in ("{", '{"spec": {}}'):
        meta.write_text(text)
        with pytest.raises(InputError, match="its net1/model.json is not one this project writes"):
            check.evaluated_on(tmp_path)


def test_book_profile_table_rounds_as_the_report_and_names_files_that_are_not_runs(tmp_path, load_script):
    table = load_script("book_profile_table.py")
    # 96.035 - 96.59 = -0.555 exactly: the report's rule (an exact half away from zero) gives
    # -0.56; Python's round() of the binary float gave -0.55
    row = table.vote_row({"members": ["a", "b"], "test_accuracy": 0.96035, "test_errors": 397},
                         {"id": "ens", "chapter": 6, "book": {"value": 0.9659}})
    assert row["difference_pp"] == -0.56 and "| -0.56 |" in table.markdown([row])
    assert "| 96.04 (397 errors) |" in table.markdown([row])  # 96.035 to 2 places, as the report

    (tmp_path / "ensemble").mkdir()
    (tmp_path / "ensemble" / "metrics.json").write_text(json.dumps({"id": "ch6-ensemble", "test_accuracy": 0.99}))
    _one_line_refusal(_run_table(tmp_path), "not a training run's metrics.json (it names no seeds)")
    measured = MEASURED / "2026-11-30-cpu-book" / "ch6-2fc"
    (tmp_path / "vote.json").write_text("<html>")
    _one_line_refusal(_run_table(measured, "--vote", tmp_path / "vote.json"), "vote.json: not readable JSON")
    (tmp_path / "vote.json").write_text("{}")
    _one_line_refusal(_run_table(measured, "--vote", tmp_path / "vote.json"),
                      "not a result of scripts/vote_saved_nets.py")


def test_epochs_to_tolerance_names_an_unknown_profile_and_a_run_that_is_not_a_summary(tmp_path):
    book = MEASURED / "2026-11-30-cpu-book"
    _one_line_refusal(_frontier(tmp_path, book, "--profile", "qiuck"),
                      "--profile qiuck: no such profile in conf/profile/; the profiles: book, fast, quick, smoke")
    _one_line_refusal(_frontier(tmp_path, book, "--run", book / "ch6-2fc" / "metrics.json"),
                      "not a report's summary.json (no rows)")


def test_compare_with_book_figures_names_a_saved_web_page_and_a_missing_sweep(tmp_path):
    fig = tmp_path / "fig"
    fig.mkdir()
    done = _script("compare_with_book_figures.py", fig, "--results", tmp_path)
    assert done.returncode == 1 and "more_data.json: not in" in done.stdout, done.stdout
    (fig / "overfitting.json").write_text("<!DOCTYPE html><html>")
    _one_line_refusal(_script("compare_with_book_figures.py", fig, "--results", tmp_path),
                      "overfitting.json: not the book's overfitting.json (JSONDecodeError",
                      "save the raw JSON file from the book's repository")
    (fig / "overfitting.json").unlink()
    (fig / "more_data.json").write_text("[69.09, 76.37]")  # two sizes of nine
    _one_line_refusal(_script("compare_with_book_figures.py", fig, "--results", tmp_path),
                      "more_data.json: not the book's more_data.json")


def test_stage_times_names_a_log_cut_short(tmp_path):
    log = tmp_path / "repro.log.gz"
    log.write_bytes(gzip.compress(b"00:00:39 == stage download done in 1.5 s ==\n" * 200)[:-20])
    done = _stage_times(log)
    assert done.returncode == 2 and f"{log}: Compressed file ended" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_typed_digits_refuses_a_file_for_its_folder(tmp_path):
    (tmp_path / "typed.png").write_bytes(b"")
    _one_line_refusal(_script("typed_digits.py", tmp_path / "typed.png"),
                      f"{tmp_path / 'typed.png'} is a file; give a folder")


@pytest.mark.parametrize("folder", ["2026-11-30-cpu-book", "2026-12-01-cpu-book-ch1-5"])
def test_the_archived_tables_are_what_the_scripts_print_now(folder, tmp_path):
    """docs/book-profile.md quotes these files and gives the commands that wrote them: a
    change to the report's rules (the rounding of halves, the reading of a row) must write them
    again, or the commands print other figures than the docs."""
    book = MEASURED / folder
    vote = ["--vote", book / "ch6-ensemble" / "vote-of-5.json"] if (book / "ch6-ensemble").is_dir() else []
    done = _run_table(book, *vote)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (book / "table.md").read_text()
    done = _frontier(tmp_path, book, "--profile", "fast", "--run", FAST_RUN)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (book / "epochs-to-tolerance.md").read_text()
    archived = json.loads((book / "epochs-to-tolerance.json").read_text())
    assert json.loads((tmp_path / "rows.json").read_text()) == archived
