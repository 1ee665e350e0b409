"""The report's document, summary and plots, assembled from runs' metrics and histories (the
row formatting itself is tested in test_results.py)."""

import json
from pathlib import Path

import pytest

from pipeline import report as rp
from pipeline import report_plots
from pipeline.errors import InputError

TOLERANCE = {"default": 0.5, "chapter6": 0.3}


@pytest.fixture(autouse=True)
def _close_figures():
    """Each test's figures are closed after it (pyplot keeps every figure it made open)."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _metrics(run_id, chapter, book_value, ours, epochs, book_epochs, replay=None, speeds=None):
    book = {"value": book_value, "metric": "peak_test", "runs": 3, "epochs": book_epochs, "note": ""}
    if speeds:
        book["speeds"] = speeds
    return {"chapter": chapter, "id": run_id, "title": run_id, "what_changed": "w", "book": book,
            "ours_book_metric": {"value": ours, "values": [ours], "n_seeds": 1, "rule": "best of 1"},
            "honest_test_at_best_validation": {"mean": ours, "std": None},
            "epochs": epochs, "wall_seconds": 1.0, "replay": replay}


def _history(seeds=(1,), epochs=2, norms=False):
    rows = []
    for seed in seeds:
        for epoch in range(epochs):
            row = {"seed": seed, "epoch": epoch, "validation_accuracy": 0.9 + 0.01 * epoch,
                   "test_accuracy": 0.9 + 0.01 * epoch, "training_accuracy": 0.95,
                   "training_cost": 0.1, "validation_cost": 0.2}
            if norms:
                row.update(grad_norm_layer1=0.01, grad_norm_layer2=0.1, grad_norm_layer3=0.5)
            rows.append(row)
    return rows


# the baselines stage's two files, as the report reads them
BASELINES = {"svm": {"train_size": 50000, "validation_accuracy": 0.9448, "test_accuracy": 0.9435}}
SVM_SWEEP = {"points": [{"n": 1000, "validation_accuracy": 0.8387}]}


def _write_run(out, metrics, history):
    folder = out / metrics["id"]
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    keys = sorted({k for row in history for k in row})
    lines = [",".join(keys)] + [",".join(str(row.get(k, "")) for k in keys) for row in history]
    (folder / "history.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def params():
    book = {
        "ch1-30": {"chapter": 1, "book": {"value": 0.9542}, "data": {"train_limit": None},
                   "training": {"monitor": {"gradient_norms": False}}},
        "ch3-overfit-1k": {"chapter": 3, "book": {"value": 0.8227}, "data": {"train_limit": 1000},
                           "training": {"monitor": {"gradient_norms": False}}},
        "ch5-speed-2": {"chapter": 5, "book": {"value": None, "speeds": [0.07, 0.31]},
                        "data": {"train_limit": 1000},
                        "training": {"monitor": {"gradient_norms": 1000}}},
        "ch6-relu": {"chapter": 6, "book": {"value": 0.9923}, "data": {"train_limit": None},
                     "training": {"monitor": {"gradient_norms": False}}},
    }
    report = {"out_dir": "results", "baselines": {},
              "progression": ["ch1-30", "ch6-relu"], "curves_in_words": ["ch1-30"],
              "figures": {"more_data": "ch3-more-data", "depth": "ch5-depth",
                          "overfitting": ["ch3-overfit-1k"], "every_seed": []},
              "tolerance_pp": TOLERANCE}
    return {"profile": {"name": "quick"}, "book": book, "report": report,
            "data": {"n_train": 50000}, "ensemble": {"id": "ch6-ensemble"}}


@pytest.fixture
def results(tmp_path):
    """Four runs on disk: a retraced replay, a cut chapter 6 run outside 0.3 pp, and chapter 5's
    speeds run."""
    out = tmp_path / "results"
    _write_run(out, _metrics("ch1-30", 1, 0.9542, 0.9530, 30, 30), _history(seeds=(1, 2)))
    _write_run(out, _metrics("ch3-overfit-1k", 3, 0.8227, 0.8315, 400, 400,
                             replay={"script": "overfitting.py", "seed": 7, "value": 0.8227}),
               _history(seeds=(1, 7)))
    _write_run(out, _metrics("ch5-speed-2", 5, None, None, 500, 500, speeds=[0.07, 0.31]),
               _history(norms=True))
    _write_run(out, _metrics("ch6-relu", 6, 0.9923, 0.9880, 25, 60), _history())
    return out


def test_the_document_counts_rows_and_labels_cut_epochs(params, results):
    runs, histories = rp.load_runs(results, {i: f"train@{i}" for i in params["book"]})
    rows = [rp.with_verdict(r, TOLERANCE) for r in runs]
    counts = rp.tally(rows)
    # ch1-30 inside; ch3-overfit-1k outside (+0.88) but its replay retraced the book; ch6-relu
    # outside (-0.43); ch5-speed-2 has no figure
    assert counts == {"with_figure": 3, "within": 1, "in_range": 0, "more_seeds": 0,
                      "more_seeds_all_within": 0, "replayed": 1, "retraced": 1}
    text = rp.document(params, rows, histories, "2026-12-02 15:00 UTC", "a test machine")
    assert "Profile `quick`, generated 2026-12-02 15:00 UTC on a test machine. 1 of 3 rows" in text
    assert "exactly in 1 of 1 rows: our engine, given the book's random draws, retraces" in text
    assert "the verdicts above count our seeds only" in text
    table = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| ")}
    assert table["ch6-relu"].endswith("| 25 of 60 | 1 |"), table["ch6-relu"]
    assert table["ch1-30"].endswith("| 30 | 1 |"), table["ch1-30"]
    assert "## The book's words beside our curves" in text
    assert "over the first 1,000 training images" in text  # chapter 5's section, from the config
    assert "\n> " not in text
    assert "more seeds than the book had runs" not in text  # no such row here
    # the profile's own words on how it was cut, under the title
    about = rp.document(dict(params, profile={"name": "quick", "about": "Cut at k epochs.\n"}),
                        rows, histories, "stamp", "machine")
    assert "on machine. Cut at k epochs.\n\n1 of 3 rows" in about
    noted = rp.document(params, rows, histories, "stamp", "machine", "note: a pinned BLAS")
    assert "could have missed by as much.\n\n> note: a pinned BLAS\n\n*what changed*" in noted
    summary = rp.summary(params, rows, histories, "stamp", "machine")
    assert [r["id"] for r in summary["rows"]] == list(params["book"])
    assert summary["initial_speeds"] == {"ch5-speed-2": {"book": [0.07, 0.31], "ours": {1: [0.01, 0.1]}}}


def test_the_report_draws_the_configured_plots(params, results):
    runs, histories = rp.load_runs(results, {i: f"train@{i}" for i in params["book"]})
    rows = [rp.with_verdict(r, TOLERANCE) for r in runs]
    figures = report_plots.figures(params, rows, histories, BASELINES, SVM_SWEEP)
    assert set(figures) == {"progression.png", "more_data.png", "learning_speed.png",
                            "overfitting_ch3-overfit-1k.png",
                            *(f"learning_curves_ch{c}.png" for c in (1, 3, 5, 6))}
    assert sorted(figures) == sorted(report_plots.plot_names(params["report"]))
    # the overfitting plot names the replayed book run apart from our seed
    labels = {t.get_text() for ax in figures["overfitting_ch3-overfit-1k.png"].axes
              if ax.get_legend() for t in ax.get_legend().get_texts()}
    assert labels == {"seed 1", "the book's run, replayed"}
    # the speed and overfitting runs, hundreds of epochs in plots of their own, are left out
    # of their chapters' learning curves; the others are drawn
    drawn = {c: [t.get_text() for t in figures[f"learning_curves_ch{c}.png"].axes[0].get_legend().get_texts()]
             for c in (1, 6)}
    assert drawn == {1: ["ch1-30 (seed 1)"], 6: ["ch6-relu (seed 1)"]}
    assert not figures["learning_curves_ch3.png"].axes[0].get_lines()
    assert not figures["learning_curves_ch5.png"].axes[0].get_lines()


def test_the_overfitting_plot_shows_the_test_cost_like_the_book_when_monitored():
    """The book's panel is the cost on the test data; a run that did not monitor it shows the
    validation cost instead, and says so."""
    def titles(rows):
        return [ax.get_title() for ax in report_plots.overfitting_plot("ch3-overfit-1k", rows).axes]

    rows = _history(epochs=3)
    assert titles(rows)[2] == "cost on the validation data"
    for row in rows:
        row["test_cost"] = 0.3
    assert titles(rows) == ["cost on the training data", "accuracy on the test data (%)",
                            "cost on the test data", "accuracy on the training data (%)"]
    ax = report_plots.overfitting_plot("ch3-overfit-1k", rows).axes[2]
    assert list(ax.get_lines()[0].get_ydata()) == [0.3, 0.3, 0.3]


def test_a_damaged_results_file_is_named_with_the_fix(results):

    metrics = results / "ch1-30" / "metrics.json"
    metrics.write_text(metrics.read_text()[:300])
    with pytest.raises(InputError, match=r"ch1-30/metrics.json: not readable JSON .*dvc repro -f <stage>"):
        rp.load_runs(results, {"ch1-30": "train@ch1-30"})
    metrics.write_text('{"id": "ch1-30", "chapter": 1, "book": {}}')  # valid JSON, not a run's
    with pytest.raises(InputError, match=r"ch1-30/metrics.json: no title, what_changed: rerun the stage"):
        rp.load_runs(results, {"ch1-30": "train@ch1-30"})
    history = results / "ch6-relu" / "history.csv"
    history.write_text("epoch,test_accuracy\n0,0.9\n")
    with pytest.raises(InputError, match="ch6-relu/history.csv: no seed and epoch columns"):
        rp.read_history(history)
    history.write_text("seed,epoch,test_accuracy\n1,0,ninety\n")
    with pytest.raises(InputError, match="not a history of numbers"):
        rp.read_history(history)
    history.write_text("seed,epoch,test_accuracy\n1,0,0.9\n1,1,0.91,0.92\n")  # a cell past the header
    with pytest.raises(InputError, match=r"not a history of numbers \(line 3 has 1 cell\(s\) more than"):
        rp.read_history(history)


def test_a_missing_run_names_the_command_that_makes_it(params, results):
    with pytest.raises(FileNotFoundError, match=r"ch6-ensemble/metrics\.json is missing: run "
                                                r"`dvc repro ensemble` first"):
        rp.load_runs(results, {"ch1-30": "train@ch1-30", "ch6-ensemble": "ensemble"})


def _committed_params() -> dict:
    from pipeline.params import load_params

    return load_params(Path(__file__).resolve().parents[1] / "params.yaml")


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["curves_in_words"].append("ch3-overfit-10k"),
     r"report\.curves_in_words: \['ch3-overfit-10k'\] are not runs in params.yaml's book"),
    (lambda r: r["figures"]["overfitting"].append("ch3-overfit-10k"),
     r"report\.figures\.overfitting: \['ch3-overfit-10k'\] are not runs in params.yaml's book"),
    (lambda r: r["progression"].append("ch6-dropuot"),
     r"report\.progression: \['ch6-dropuot'\] are not runs, baselines or the ensemble"),
    (lambda r: r["figures"].update(more_data="ch3-mored"),
     r"report\.figures\.more_data: no run of params.yaml's book starts with 'ch3-mored'"),
    (lambda r: r["tolerance_pp"].pop("chapter6"),
     r"report\.tolerance_pp: unknown keys \[\], missing keys \['chapter6'\]"),
    (lambda r: r["tolerance_pp"].update(default="0.5"),
     r"report\.tolerance_pp\.default: expected a number of percentage points > 0, got '0\.5'"),
    (lambda r: r["tolerance_pp"].update(chapter6=0),
     r"report\.tolerance_pp\.chapter6: expected a number of percentage points > 0, got 0;"),
    (lambda r: r.pop("progression"), r"report: unknown keys \[\], missing keys \['progression'\]"),
    (lambda r: r.update(figure={}), r"report: unknown keys \['figure'\]"),
])
def test_a_mistake_in_the_report_config_is_named_before_anything_is_drawn(edit, message):
    params = _committed_params()
    cfg = params["report"]
    rp.validate(cfg, list(params["book"]), params["ensemble"]["id"])
    edit(cfg)
    with pytest.raises(InputError, match=message):
        rp.validate(cfg, list(params["book"]), params["ensemble"]["id"])


def test_the_more_data_plot_puts_each_run_at_the_size_it_trained_on(params, results):
    """A profile's limits may train fewer images than the run's ``train_limit`` (smoke: 500)."""
    params["book"]["ch3-more-data-1000"] = {"chapter": 3, "book": {"value": 0.8885},
                                            "data": {"train_limit": 1000},
                                            "training": {"monitor": {"gradient_norms": False}},
                                            "model": {"input_shape": [784], "layers": [
                                                {"units": 30}, {"units": 10}]}}
    _write_run(results, dict(_metrics("ch3-more-data-1000", 3, 0.8885, 0.80, 1, 1), train_examples=500),
               _history())
    runs, histories = rp.load_runs(results, {i: f"train@{i}" for i in params["book"]})
    figure = report_plots.figures(params, runs, histories, BASELINES, SVM_SWEEP)["more_data.png"]
    ours = figure.axes[0].get_lines()[0]
    assert list(ours.get_xdata()) == [500] and list(ours.get_ydata()) == [80.0]


def test_missing_baselines_name_the_stage_that_writes_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"metrics\.json is missing: run `dvc repro baselines` first"):
        rp.load_baselines(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps(BASELINES))
    with pytest.raises(FileNotFoundError, match=r"svm_sweep\.json is missing"):
        rp.load_baselines(tmp_path)
    (tmp_path / "svm_sweep.json").write_text(json.dumps(SVM_SWEEP))
    assert rp.load_baselines(tmp_path) == (BASELINES, SVM_SWEEP)


def test_the_more_data_plot_names_the_network_its_runs_train():
    book = _committed_params()["book"]
    assert report_plots.architecture(book["ch3-more-data-100"]["model"]) == "784-30-10"
    assert report_plots.architecture(book["ch6-relu"]["model"]) == "conv-conv-fc-softmax"
    fig = report_plots.more_data_plot([(100, 0.69, 0.6909), (1000, 0.89, 0.8885)], [(1000, 0.85)],
                                      "784-30-10 network")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "ours: 784-30-10 network", "book: network", "ours: SVM"]


@pytest.mark.parametrize("metric, curve", [
    ("test_at_best_validation", "test | 90.00% (0) | 91.00% (1) | 91.00% (1)"),
    ("peak_test", "test | 90.00% (0) | 91.00% (1) | 91.00% (1)"),
    ("peak_validation", "validation | 50.00% (0) | 52.00% (1) | 52.00% (1)"),
    ("final_validation", "validation | 50.00% (0) | 52.00% (1) | 52.00% (1)"),
])
def test_the_curves_table_shows_the_set_the_books_metric_reports(metric, curve):
    """Test at best validation reports a test accuracy: its curve is the test set's; a
    validation metric's curve is the validation set's."""
    history = [{"seed": 1, "epoch": e, "validation_accuracy": 0.5 + 0.02 * e,
                "test_accuracy": 0.9 + 0.01 * e} for e in range(2)]
    row = {"id": "x", "book": {"metric": metric, "note": "n"}}
    table = rp.curves_table(["x"], [row], {"x": history})
    assert f"| x | n | seed 1 | {curve} |" in table


def test_the_progression_marks_a_value_below_its_axis_with_the_value():
    # ch1-100 by the book's count (78.38%) is far below the other rows: not left out silently
    rows = [{"id": "ch1-30", "book": {"value": 0.9542}, "ours": 0.9529},
            {"id": "ch1-100", "book": {"value": 0.9659}, "ours": 0.7838}]
    ax = report_plots.progression_plot(rows, ["ch1-30", "ch1-100"]).axes[0]
    assert ax.get_ylim()[0] == 90.0
    assert [t.get_text() for t in ax.texts] == ["78.38"]
    assert "below 90%" in ax.get_title()


def test_the_progression_follows_the_configured_order_and_draws_ours_by_the_books_metric():
    rows = [{"id": "ch6-relu", "book": {"value": 0.9923}, "ours": 0.9910, "honest_mean": 0.9890},
            {"id": "ch1-30", "book": {"value": 0.9542}, "ours": 0.9530, "honest_mean": 0.9500},
            {"id": "ch3-ce-30", "book": {"value": 0.9549}, "ours": 0.9521, "honest_mean": 0.9510}]
    ax = report_plots.progression_plot(rows, ["ch1-30", "ch3-ce-30", "ch6-relu"]).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ch1-30", "ch3-ce-30", "ch6-relu"]
    book, ours = ax.get_lines()[:2]
    assert (book.get_label(), ours.get_label()) == ("book", "ours (the book's metric)")
    assert list(book.get_ydata()) == pytest.approx([95.42, 95.49, 99.23])
    assert list(ours.get_ydata()) == pytest.approx([95.30, 95.21, 99.10])


def test_the_progression_marks_the_rows_the_book_read_on_validation_data():
    rows = [{"id": "ch3-ce-100", "book": {"value": 0.9682, "metric": "peak_test"}, "ours": 0.9672},
            {"id": "ch3-l2-100", "book": {"value": 0.9792, "metric": "peak_validation"}, "ours": 0.9780},
            {"id": "ch6-relu", "book": {"value": 0.9923, "metric": "test_at_best_validation"}, "ours": 0.9920}]
    ax = report_plots.progression_plot(rows, ["ch3-ce-100", "ch3-l2-100", "ch6-relu"]).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ch3-ce-100", "ch3-l2-100 (validation)", "ch6-relu"]
    assert ax.get_ylabel() == "accuracy (%), on the test data but where marked"


def test_the_overfitting_panels_draw_the_test_and_training_accuracy_they_are_titled_with():
    rows = _history(epochs=3)
    for row in rows:
        row.update(test_accuracy=0.8, training_accuracy=0.99)  # validation stays 0.90..0.92
    axes = report_plots.overfitting_plot("ch3-overfit-1k", rows).axes
    drawn = {ax.get_title(): list(ax.get_lines()[0].get_ydata()) for ax in axes}
    assert drawn["accuracy on the test data (%)"] == pytest.approx([80.0] * 3)
    assert drawn["accuracy on the training data (%)"] == pytest.approx([99.0] * 3)
    assert drawn["cost on the training data"] == pytest.approx([0.1] * 3)


def test_the_more_data_plot_sets_ours_by_the_books_metric_beside_the_svms_validation_accuracy(params, results):
    """Chapter 3's figure is validation accuracy: the SVM's too (94.48% at 50,000, not its
    94.35% test); ours is the row's book-metric figure, not the honest one. The sweep's runs
    have this plot and are left out of chapter 3's learning curves, as are the overfitting
    runs, which have theirs."""
    params["book"]["ch3-more-data-1000"] = {"chapter": 3, "book": {"value": 0.8885},
                                            "data": {"train_limit": 1000},
                                            "training": {"monitor": {"gradient_norms": False}},
                                            "model": {"input_shape": [784], "layers": [
                                                {"units": 30}, {"units": 10}]}}
    _write_run(results, dict(_metrics("ch3-more-data-1000", 3, 0.8885, 0.80, 1, 1),
                             honest_test_at_best_validation={"mean": 0.75, "std": None}), _history())
    runs, histories = rp.load_runs(results, {i: f"train@{i}" for i in params["book"]})
    plots = report_plots.figures(params, runs, histories, BASELINES, SVM_SWEEP)
    ours, book, svm = plots["more_data.png"].axes[0].get_lines()
    assert list(ours.get_ydata()) == pytest.approx([80.0]) and list(book.get_ydata()) == pytest.approx([88.85])
    assert list(svm.get_xdata()) == [1000, 50000] and list(svm.get_ydata()) == pytest.approx([83.87, 94.48])
    assert not plots["learning_curves_ch3.png"].axes[0].get_lines()


def test_a_chapters_learning_curves_draw_each_runs_smallest_seed():
    rows = [{"seed": seed, "epoch": e, "validation_accuracy": v + 0.01 * e}
            for seed, v in ((3, 0.5), (1, 0.9), (2, 0.7)) for e in range(2)]
    ax = report_plots.chapter_curves(1, {"ch1-30": rows}).axes[0]
    assert list(ax.get_lines()[0].get_ydata()) == pytest.approx([90.0, 91.0])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ch1-30 (seed 1)"]
    # history.csv's numbers are read as floats: a replay's seed of 12345678 is not 1.23457e+07
    rows = [{"seed": 12345678.0, "epoch": 0.0, "validation_accuracy": 0.9}]
    ax = report_plots.chapter_curves(3, {"ch3-ce-30": rows}).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ch3-ce-30 (seed 12345678)"]


def test_a_run_named_in_every_seed_draws_each_of_its_seeds():
    """ch1-100's seeds part ways (some stall near 78%): the curves show the lottery."""
    rows = [{"seed": seed, "epoch": e, "validation_accuracy": v} for seed, v in ((2, 0.78), (1, 0.96), (3, 0.85))
            for e in range(2)]
    ax = report_plots.chapter_curves(1, {"ch1-30": rows, "ch1-100": rows}, every_seed=["ch1-100"]).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "ch1-30 (seed 1)", "ch1-100 (seed 1)", "ch1-100 (seed 2)", "ch1-100 (seed 3)"]
    assert [list(line.get_ydata()) for line in ax.get_lines()][1:] == [[96.0, 96.0], [78.0, 78.0], [85.0, 85.0]]
    assert ax.get_title().endswith("each run's smallest seed (ch1-100: every seed)")


def test_chapter_curves_say_each_runs_epoch_size_where_they_differ():
    """Chapter 6's expanded-data runs' epochs are five times the others': the legend says so."""
    rows = [{"seed": 1, "epoch": e, "validation_accuracy": 0.99} for e in range(2)]
    sizes = {"ch6-relu": 50000, "ch6-expanded": 250000}
    ax = report_plots.chapter_curves(6, {"ch6-relu": rows, "ch6-expanded": rows}, epoch_sizes=sizes).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "ch6-relu (seed 1, 50,000 images an epoch)", "ch6-expanded (seed 1, 250,000 images an epoch)"]
    same = report_plots.chapter_curves(6, {"ch6-relu": rows}, epoch_sizes={**sizes, "ch6-conv1": 50000}).axes[0]
    assert [t.get_text() for t in same.get_legend().get_texts()] == ["ch6-relu (seed 1)"]


def test_the_l2_runs_panels_name_its_cost_and_term_and_the_replay_is_dashed():
    rows = [dict(r, seed=seed) for seed in (1, 12345678) for r in _history(epochs=4)]
    run = {"model": {"cost": "cross_entropy"},
           "training": {"regularization": {"kind": "l2", "lmbda": 0.1, "scaling": "network2"}}}
    fig = report_plots.overfitting_plot("ch3-l2-1k", rows, 12345678, run)
    assert fig._suptitle.get_text() == "chapter 3: L2 regularisation (λ = 0.1) (ch3-l2-1k)"
    assert fig.axes[0].get_title() == "cross-entropy cost + the L2 term on the training data"
    assert [line.get_linestyle() for line in fig.axes[0].get_lines()] == ["-", "--"]
    plain = report_plots.overfitting_plot("ch3-overfit-1k", rows, 12345678, {"model": {"cost": "cross_entropy"},
                                                                             "training": {}})
    assert plain._suptitle.get_text() == "chapter 3: overfitting (ch3-overfit-1k)"


def test_an_accuracy_axis_starts_below_where_the_lines_end_not_at_their_first_epochs():
    """A first epoch at chance would stretch the axis over 90 points and flatten the late
    differences the figure is for; the axis then says what it leaves out."""
    rows = [{"epoch": e, "validation_accuracy": v} for e, v in enumerate([0.10, 0.90, 0.955, 0.96, 0.962])]
    ax = report_plots.chapter_curves(5, {"ch5-depth-4": rows}).axes[0]
    assert ax.get_ylim()[0] == 94.0 and "earlier points below 94% are off the axis" in ax.get_ylabel()
    steady = [dict(r, validation_accuracy=0.95 + 0.001 * r["epoch"]) for r in rows]
    ax = report_plots.chapter_curves(5, {"ch5-depth-4": steady}).axes[0]
    assert ax.get_ylim()[0] < 95.0 and "off the axis" not in ax.get_ylabel()


def test_a_chapters_learning_curves_tell_a_dozen_runs_apart():
    """Chapter 3 draws about a dozen runs: more than matplotlib's ten colours."""
    rows = [{"epoch": e, "validation_accuracy": 0.9} for e in range(2)]
    lines = report_plots.chapter_curves(3, {f"run-{n}": rows for n in range(14)}).axes[0].get_lines()
    assert len({(line.get_color(), line.get_linestyle()) for line in lines}) == 14


def test_a_mean_that_ends_in_a_half_is_rounded_one_way_in_every_cell():
    """Means of two seeds' counts end in a half (96.725); the binary float rounded some halves
    down and some up (quick-38's table: 95.205 -> 95.21 but 96.725 -> 96.72)."""
    assert [rp.fixed(x) for x in (95.205, 96.725, 96.065, 99.205, 96.535)] == [
        "95.21", "96.73", "96.07", "99.21", "96.54"]
    assert [rp.fixed(x, sign=True) for x in (96.065 - 96.57, -0.125, 0.155, 0.0, -1e-12)] == [
        "-0.51", "-0.13", "+0.16", "+0.00", "+0.00"]
    metrics = dict(_metrics("ch3-ce-100", 3, 0.9682, 0.96725, 60, 60),
                   honest_test_at_best_validation={"mean": 0.96725, "std": 0.00025, "n": 2})
    line = rp.markdown_table([rp.with_verdict(rp.run_row(metrics), TOLERANCE)]).splitlines()[-1]
    assert "| 96.73% | 96.73% ± 0.03 (n=2) | -0.10 |" in line


def test_the_honest_column_gives_the_mean_and_the_std_over_the_seeds():
    metrics = dict(_metrics("ch1-30", 1, 0.9542, 0.9560, 30, 30),
                   honest_test_at_best_validation={"mean": 0.9530, "std": 0.0012, "n": 3})
    metrics["ours_book_metric"] = {"value": 0.9560, "seed": 2, "rule": "best of 3", "n_seeds": 3}
    line = rp.markdown_table([rp.with_verdict(rp.run_row(metrics), TOLERANCE)]).splitlines()[-1]
    assert "| 95.60% | 95.30% ± 0.12 (n=3) | +0.18 |" in line
    # a seed stopped before its first evaluation has no test at best validation: n counts the others
    metrics["honest_test_at_best_validation"] = {"mean": 0.9530, "std": None, "n": 1}
    line = rp.markdown_table([rp.with_verdict(rp.run_row(metrics), TOLERANCE)]).splitlines()[-1]
    assert "| 95.60% | 95.30% (n=1) | +0.18 |" in line


@pytest.mark.parametrize("cause, cell", [("settings", "not run: the row's settings are not the book's"),
                                         ("limits", "not run: profile.limits set"), (None, "—")])
def test_a_replay_not_run_says_why_in_its_column(cause, cell):
    metrics = _metrics("ch3-l2-30", 3, 0.9649, 0.9585, 30, 30)
    if cause:
        metrics["replay_not_run"] = {"cause": cause, "why": "…", "script": "overfitting.py"}
    line = rp.markdown_table([rp.with_verdict(rp.run_row(metrics), TOLERANCE)]).splitlines()[-1]
    assert f"| -0.64 ⚠ | {cell} | 30 |" in line


def test_the_header_gives_each_tolerance_its_own_value():
    text = rp.header("quick", "stamp", "machine", {"default": 0.5, "chapter6": 0.3}, rp.tally([]))
    assert "within tolerance (0.5 pp; chapter 6: 0.3 pp)" in text
    assert "every k-th" not in text


def test_the_header_names_the_runs_whose_best_validation_is_over_every_kth_epoch():
    book = {"ch3-more-data-100": {"training": {"eval_every": 500}}, "ch1-30": {"training": {}},
            "ch5-speed-2": {"training": {"eval_every": 10}}, "ch5-speed-3": {"training": {"eval_every": 10}},
            "ch3-more-data-50000": {"training": {"eval_every": 1}}}
    sparse = rp.evaluated_every(book)
    assert sparse == {"ch3-more-data-100": 500, "ch5-speed-2": 10, "ch5-speed-3": 10}
    text = rp.header("quick", "stamp", "machine", {"default": 0.5, "chapter6": 0.3}, rp.tally([]), sparse=sparse)
    assert ("test accuracy at the epoch of best validation accuracy (over the epochs a run evaluates: "
            "every k-th only in `ch3-more-data-100` every 500; `ch5-speed-2`, `ch5-speed-3` every 10), "
            "mean ± std (the sample standard deviation) over seeds;") in text


def test_the_report_stage_writes_the_baselines_runs_and_ensemble_rows_and_every_plot(params, results, tmp_path,
                                                                                      monkeypatch, capsys):
    import yaml

    from pipeline.stages import report as report_stage

    params["report"]["baselines"] = {"B-svm": {"value": 0.9435, "metric": "test", "split": "test",
                                               "source": "svm", "title": "SVM", "note": ""}}
    params["report"]["figures"]["depth"] = "ch5-speed"
    params["book"]["ch3-more-data-1000"] = {"chapter": 3, "book": {"value": 0.8885},
                                            "data": {"train_limit": 1000},
                                            "training": {"monitor": {"gradient_norms": False}},
                                            "model": {"input_shape": [784], "layers": [
                                                {"units": 30}, {"units": 10}]}}
    params["baselines"] = {"out_dir": "results/baselines"}
    _write_run(results, _metrics("ch3-more-data-1000", 3, 0.8885, 0.80, 1, 1), _history())
    _write_run(results, _metrics("ch6-ensemble", 6, 0.9967, 0.9950, 40, 40), _history())
    (results / "baselines").mkdir()
    (results / "baselines" / "metrics.json").write_text(json.dumps(BASELINES))
    (results / "baselines" / "svm_sweep.json").write_text(json.dumps(SVM_SWEEP))
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    report_stage.main()
    summary = json.loads((results / "summary.json").read_text())
    assert [r["id"] for r in summary["rows"]] == ["B-svm", *params["book"], "ch6-ensemble"]
    said = capsys.readouterr().err
    # every run here took 1 s (_metrics), the baselines' metrics record no time
    assert f"training runs and SVM fits 0 min {len(params['book']) + 1} s as timed" in said, said
    assert summary["rows"][0]["ours"] == 0.9435
    report = (results / "report.md").read_text()
    assert "| 1 | B-svm | SVM | 94.35% |" in report  # a baseline: its name, no change to tell
    assert "| ch1-30 | ch1-30: w |" in report  # a run: its network (title), then what changed
    assert sorted(p.name for p in (results / "plots").iterdir()) == sorted(report_plots.plot_names(params["report"]))


def test_the_total_time_counts_every_run_and_the_svm_fits_once():
    runs = [{"wall_seconds": 1000.4}, {"wall_seconds": None}, {"wall_seconds": 3000.0}]
    # B-svm and B-svm-val are two rows of one fit: the baselines' metrics count it once
    assert rp.wall_in_all(runs, {"darkness": {"test_accuracy": 0.22}, "svm": {"seconds": 138.4}}) == "68 min 59 s"
    assert rp.wall_in_all(runs, {}) == "66 min 40 s"


def test_the_curves_section_lists_the_configured_runs_only(params, results):
    runs, histories = rp.load_runs(results, {i: f"train@{i}" for i in params["book"]})
    rows = [rp.with_verdict(r, TOLERANCE) for r in runs]
    text = rp.document(params, rows, histories, "stamp", "machine")
    section = text.split("## The book's words beside our curves")[1].split("\n## ")[0]
    assert {line.split(" | ")[0] for line in section.splitlines() if line.startswith("| ch")} == {"| ch1-30"}
