"""The book's rule and the honest rule for reading a number off training histories."""

import math

import pytest

from pipeline.results import book_rule, honest, mean_std, seed_value


def _seed(seed, val, test, summary=None):
    records = [{"epoch": i, "validation_accuracy": v, "test_accuracy": t}
               for i, (v, t) in enumerate(zip(val, test))]
    return {"seed": seed, "records": records, "summary": summary or {}}


def test_seed_values_by_metric():
    s = _seed(1, [0.90, 0.95, 0.93], [0.91, 0.92, 0.96])
    assert seed_value({}, s["records"], "peak_test") == 0.96
    assert seed_value({}, s["records"], "peak_validation") == 0.95
    assert seed_value({}, s["records"], "final_validation") == 0.93
    assert seed_value({"test_at_best_validation": 0.92}, s["records"],
                      "test_at_best_validation") == 0.92
    with pytest.raises(ValueError, match="book.metric"):
        seed_value({}, s["records"], "best_guess")


def test_seed_values_pass_over_epochs_without_an_accuracy():
    """An epoch with no accuracy (NaN, as history.csv reads an empty cell) is not a value:
    max() over a list with a NaN first would return the NaN."""
    nan = float("nan")
    assert seed_value({}, [{"test_accuracy": nan}, {"test_accuracy": 0.9}], "peak_test") == 0.9
    assert seed_value({}, [{"validation_accuracy": nan}, {"validation_accuracy": 0.8}],
                      "peak_validation") == 0.8
    assert seed_value({}, [{"validation_accuracy": 0.8}, {"validation_accuracy": nan}],
                      "final_validation") == 0.8
    assert seed_value({}, [{"validation_accuracy": nan}], "peak_validation") is None


def test_book_rule_is_best_of_seeds_and_chapter6_chooses_by_validation():
    a = _seed(1, [0.90], [0.97], {"best_validation_accuracy": 0.99, "test_at_best_validation": 0.97})
    b = _seed(2, [0.95], [0.98], {"best_validation_accuracy": 0.98, "test_at_best_validation": 0.98})
    assert book_rule([a, b], "peak_test", runs=3) == {"value": 0.98, "seed": 2, "rule": "best of 2"}
    # chapter 6: the run with the best *validation* accuracy, not the best test accuracy
    assert book_rule([a, b], "test_at_best_validation", runs=3) == {
        "value": 0.97, "seed": 1, "rule": "best of 2"}


def test_a_best_of_more_seeds_than_the_books_runs_counts_the_first_as_many_as_the_books():
    """ch1-100 in the quick profile trains six seeds where the book took the best of three:
    the book's rule is the best of the first three; the best of all six is given beside it."""
    seeds = [_seed(i, [0.90], [test], {"best_validation_accuracy": val, "test_at_best_validation": test})
             for i, (val, test) in enumerate([(0.97, 0.77), (0.96, 0.78), (0.95, 0.76), (0.99, 0.96)], 1)]
    assert book_rule(seeds, "peak_test", runs=3) == {
        "value": 0.78, "seed": 2, "rule": "best of 3", "all_seeds": {"value": 0.96, "seed": 4, "n": 4}}
    # chapter 6: among the first seeds, too, the run is chosen by validation accuracy
    assert book_rule(seeds, "test_at_best_validation", runs=3) == {
        "value": 0.77, "seed": 1, "rule": "best of 3", "all_seeds": {"value": 0.96, "seed": 4, "n": 4}}
    assert "all_seeds" not in book_rule(seeds[:3], "peak_test", runs=3)


def test_book_rule_for_a_one_run_figure_is_the_mean_over_seeds():
    """Chapters 3 and 5 report one run: several seeds estimate that run's expected value."""
    a = _seed(1, [0.90, 0.94], [0.91, 0.97])
    b = _seed(2, [0.95, 0.93], [0.96, 0.92])
    result = book_rule([a, b], "final_validation", runs=1)
    assert result["value"] == pytest.approx(0.935) and result["rule"] == "mean of 2"
    assert result["values"] == [0.94, 0.93]
    assert book_rule([a, b], "peak_test", runs=1)["value"] == pytest.approx(0.965)
    assert book_rule([b], "peak_test", runs=1) == {"value": 0.96, "seed": 2, "rule": "one run"}
    assert book_rule([b], "peak_test", runs=3) == {"value": 0.96, "seed": 2, "rule": "one run"}


def test_honest_is_mean_and_sample_std():
    seeds = [{"summary": {"test_at_best_validation": v}} for v in (0.97, 0.98, 0.99)]
    result = honest(seeds)
    assert result["mean"] == pytest.approx(0.98)
    assert result["std"] == pytest.approx(0.01)
    assert mean_std([0.5]) == (0.5, None)
    assert mean_std([]) == (None, None)
    assert not math.isnan(result["std"])


def test_report_tolerance_is_inclusive_at_two_decimals():
    from pipeline.report import with_verdict

    row = {"chapter": 6, "book": {"value": 0.996}, "ours": 0.993}
    verdict = with_verdict(row, {"default": 0.5, "chapter6": 0.3})
    assert verdict["difference_pp"] == -0.3 and verdict["within"] is True
    assert with_verdict(dict(row, ours=0.9929), {"default": 0.5, "chapter6": 0.3})["within"] is False


@pytest.mark.parametrize("chapter", [1, 3, 5])
def test_every_chapter_but_6_takes_the_default_tolerance(chapter):
    from pipeline.report import with_verdict

    verdict = with_verdict({"chapter": chapter, "book": {"value": 0.9657}, "ours": 0.9617},
                           {"default": 0.5, "chapter6": 0.3})
    assert (verdict["difference_pp"], verdict["tolerance_pp"], verdict["within"]) == (-0.4, 0.5, True)


def test_report_marks_a_one_run_figure_inside_our_seed_range():
    """The book's 94.89% (one run) against our mean of 94.30% over seeds ranging 93.94-95.05%:
    -0.59 pp is outside the 0.5 pp tolerance, but the book's run lies inside our seeds' range."""
    from pipeline.report import markdown_table, with_verdict

    tol = {"default": 0.5, "chapter6": 0.3}
    row = {"chapter": 3, "id": "ch3-more-data-10000", "what_changed": "n = 10,000",
           "book": {"value": 0.9489, "metric": "final_validation", "runs": 1},
           "ours": 0.9430, "seed_values": [0.9394, 0.9505, 0.9400], "rule": "mean of 3",
           "honest_mean": None, "honest_std": None, "n_seeds": 3, "epochs": 150,
           "wall_seconds": 60.0}
    inside = with_verdict(row, tol)
    assert inside["within"] is False and inside["book_in_seed_range"] is True
    line = markdown_table([inside]).splitlines()[-1]
    assert "94.30% (93.94–95.05)" in line and "-0.59 ⚠ in range" in line

    outside = with_verdict(dict(row, seed_values=[0.9394, 0.9450, 0.9400]), tol)
    assert outside["book_in_seed_range"] is False
    assert "-0.59 ⚠ |" in markdown_table([outside]).splitlines()[-1]
    # best-of rows and single seeds carry no range
    best = with_verdict(dict(row, seed_values=None, rule="best of 2"), tol)
    assert best["book_in_seed_range"] is None
    # a best of fewer seeds than the book's runs says so
    book3 = {"value": 0.9659, "metric": "peak_test", "runs": 3}
    for n, label in ((2, "(best of 2 seeds; the book: best of 3)"), (3, "(best of 3 seeds)")):
        line = markdown_table([with_verdict(dict(row, book=book3, rule=f"best of {n}", n_seeds=n,
                                                 seed_values=None), tol)]).splitlines()[-1]
        assert f"| peak test {label} |" in line, line


def test_a_row_with_more_seeds_than_the_books_runs_is_judged_by_the_books_count():
    """ch1-100 in the quick profile: the best of the first three seeds (the book's count) is
    outside; the best of all six would be inside. The verdict is the first's; the row says
    both."""
    from pipeline.report import header, markdown_table, run_row, tally, with_verdict

    tol = {"default": 0.5, "chapter6": 0.3}
    metrics = {"chapter": 1, "id": "ch1-100", "title": "t", "what_changed": "w",
               "book": {"value": 0.9659, "metric": "peak_test", "runs": 3},
               "ours_book_metric": {"value": 0.7838, "seed": 3, "n_seeds": 6, "rule": "best of 3",
                                    "all_seeds": {"value": 0.9660, "seed": 5, "n": 6}},
               "honest_test_at_best_validation": {"mean": 0.85, "std": 0.09}, "epochs": 30,
               "wall_seconds": 60.0}
    row = with_verdict(run_row(metrics), tol)
    assert row["within"] is False and row["difference_pp"] == -18.21 and row["all_seeds_within"] is True
    line = markdown_table([row]).splitlines()[-1]
    assert "| peak test (best of 3 seeds, as the book; of all our 6: 96.60%) | 78.38% |" in line
    assert "| -18.21 ⚠ |" in line
    assert tally([row])["more_seeds"] == 1 and tally([row])["more_seeds_all_within"] == 1
    assert ("Rows where the book took the best of several runs and the profile trains more seeds than "
            "that: 1; their verdict takes "
            "the best of the first seeds, as many as the book's runs; by the best of all their seeds, "
            "1 of them would be within") in header("quick", "stamp", "machine", tol, tally([row]))
    unlucky = with_verdict(run_row(dict(metrics, ours_book_metric=dict(
        metrics["ours_book_metric"], all_seeds={"value": 0.7900, "seed": 6, "n": 6}))), tol)
    assert unlucky["all_seeds_within"] is False and tally([unlucky])["more_seeds_all_within"] == 0
    # as many seeds as the book's runs: nothing more to say
    plain = with_verdict(run_row(dict(metrics, ours_book_metric=dict(
        value=0.9660, seed=2, n_seeds=3, rule="best of 3"))), tol)
    assert plain["all_seeds_within"] is None and tally([plain])["more_seeds"] == 0


def test_report_gives_the_replayed_book_run_its_own_column():
    """A replay that retraces the book's run shows +0.00 beside it; the verdict stays our seeds'."""
    from pipeline.report import markdown_table, run_row, with_verdict

    metrics = {"chapter": 3, "id": "ch3-overfit-1k", "title": "t", "what_changed": "w",
               "book": {"value": 0.8227, "metric": "peak_test", "runs": 1},
               "ours_book_metric": {"value": 0.8315, "values": [0.8315], "n_seeds": 1, "rule": "one run"},
               "honest_test_at_best_validation": {"mean": 0.827, "std": None},
               "epochs": 400, "wall_seconds": 30.0,
               "replay": {"script": "overfitting.py", "seed": 12345678, "value": 8227 / 10000}}
    row = with_verdict(run_row(metrics), {"default": 0.5, "chapter6": 0.3})
    assert row["replay_difference_pp"] == 0 and row["within"] is False
    header, _, line = markdown_table([row]).splitlines()
    assert "the book's run, replayed" in header
    assert "| 82.27% (+0.00) |" in line and "+0.88 ⚠" in line
    # rows without a replay keep a dash
    plain = with_verdict(run_row(dict(metrics, replay=None)), {"default": 0.5, "chapter6": 0.3})
    assert plain["replay_difference_pp"] is None and "| — |" in markdown_table([plain]).splitlines()[-1]


def test_report_says_how_many_nets_the_ensemble_voted():
    """The book's ensemble is five nets; a profile that votes fewer says so in the metric."""
    from pipeline.report import markdown_table, run_row, with_verdict

    metrics = {"chapter": 6, "id": "ch6-ensemble", "title": "t", "what_changed": "five nets vote",
               "book": {"value": 0.9967, "metric": "ensemble_test"},
               "ours_book_metric": {"value": 0.9943, "metric": "ensemble_test", "n_seeds": 4,
                                    "rule": "vote of 4"}}
    line = markdown_table([with_verdict(run_row(metrics), {"default": 0.5, "chapter6": 0.3})])
    assert "| ensemble test (vote of 4 nets) | 99.43% |" in line
    # with the ensemble stage's count of tied votes (a 2-2 split among four nets)
    metrics.update(test_ties=35, test_errors_on_ties=14)
    line = markdown_table([with_verdict(run_row(metrics), {"default": 0.5, "chapter6": 0.3})])
    assert "| ensemble test (vote of 4 nets; 35 tied votes, 14 of them wrong) | 99.43% |" in line


def test_speed_table_sets_the_books_starting_speeds_beside_our_seeds():
    """Epoch 0's norms of each seed (the output layer left out), their median and range."""
    from pipeline.report import initial_speeds, speed_table

    def row(seed, epoch, norms):
        return {"seed": seed, "epoch": epoch,
                **{f"grad_norm_layer{i}": v for i, v in enumerate(norms, start=1)}}

    history = [row(1, 0, [0.01, 0.2, 5.0]), row(1, 1, [0.001, 0.1, 4.0]),
               row(2, 0, [0.03, 0.3, 6.0]), row(3, 0, [0.02, 0.1, 7.0])]
    assert initial_speeds(history) == {1: [0.01, 0.2], 2: [0.03, 0.3], 3: [0.02, 0.1]}
    lines = speed_table({"ch5-speed-2": [0.066, 0.31]}, {"ch5-speed-2": history}).splitlines()
    assert lines[2] == "| ch5-speed-2 | 1 | 0.066 | 0.02 (0.01–0.03, n=3) |"
    assert lines[3] == "| ch5-speed-2 | 2 | 0.31 | 0.2 (0.1–0.3, n=3) |"
    assert lines[4] == "| ch5-speed-2 | last / first | 4.7x | 10x (5–20, n=3) |"
    # a run that has not trained yet keeps its book values and dashes
    assert speed_table({"ch5-speed-2": [0.066, 0.31]}, {}).splitlines()[2].endswith("| — |")


def test_the_speed_verdict_is_read_off_our_seeds_not_copied_from_the_book():
    from pipeline.report import speed_verdict

    def history(*seeds):
        return [{"seed": k, "epoch": 0, **{f"grad_norm_layer{i}": v for i, v in enumerate([*norms, 9.0], start=1)}}
                for k, norms in enumerate(seeds, start=1)]

    book = {"ch5-speed-2": [0.07, 0.3], "ch5-speed-3": [0.01, 0.06, 0.3]}
    as_the_book = {"ch5-speed-2": history([0.1, 0.5], [0.1, 0.4]), "ch5-speed-3": history([0.01, 0.1, 0.5])}
    assert speed_verdict(book, as_the_book) == (
        "in 3 of 3 seeds each hidden layer learns slower than the next; the last/first ratio (median "
        "over seeds) is 4.5x with 2, 50x with 3 hidden layers, growing with depth.")
    otherwise = {"ch5-speed-2": history([0.1, 0.5]), "ch5-speed-3": history([0.2, 0.1, 0.4])}
    assert speed_verdict(book, otherwise) == (
        "in 1 of 2 seeds each hidden layer learns slower than the next; the last/first ratio (median "
        "over seeds) is 5x with 2, 2x with 3 hidden layers, not growing with depth.")
    assert speed_verdict(book, {}) == "no run recorded its starting speeds."
    # a seed without norms, a first layer at 0, one depth only: no crash, and no trend claimed
    patchy = {"ch5-speed-2": history([0.1, 0.5], [0.0, 0.4]) + [{"seed": 3, "epoch": 0}]}
    assert speed_verdict(book, patchy) == (
        "in 2 of 2 seeds each hidden layer learns slower than the next; the last/first ratio "
        "(median over seeds) is 5x with 2 hidden layers, one depth only.")
    assert speed_verdict(book, {"ch5-speed-2": history([0.0, 0.4])}) == (
        "in 1 of 1 seeds each hidden layer learns slower than the next.")


def test_curves_table_sets_the_books_words_beside_each_seed_and_the_replay():
    from pipeline.report import curves_table

    row = {"id": "ch3-overfit-1k", "book": {"value": 0.8227, "metric": "peak_test",
                                            "note": "training accuracy reaches 100%"},
           "replay_seed": 12345678.0}
    history = [
        {"seed": 12345678.0, "epoch": 0.0, "test_accuracy": 0.70, "training_accuracy": 0.80},
        {"seed": 12345678.0, "epoch": 1.0, "test_accuracy": 0.8227, "training_accuracy": 1.0},
        {"seed": 1.0, "epoch": 0.0, "test_accuracy": 0.60, "training_accuracy": 0.7},
        {"seed": 1.0, "epoch": 1.0, "test_accuracy": 0.83, "training_accuracy": 0.9},
        {"seed": 1.0, "epoch": 2.0, "test_accuracy": 0.83, "training_accuracy": 1.0},
    ]
    lines = curves_table(["ch3-overfit-1k", "not-run"], [row], {"ch3-overfit-1k": history}).splitlines()
    assert len(lines) == 4  # header, rule, seed 1, then the replay
    assert lines[2] == ("| ch3-overfit-1k | training accuracy reaches 100% | seed 1 | test | 60.00% (0) | "
                        "83.00% (2) | 83.00% (1) | 100.00% |")  # the first epoch at the peak
    assert lines[3].startswith('| ch3-overfit-1k | " | the book\'s run, replayed | test | 70.00% (0) |')
    assert "82.27% (1)" in lines[3]


def test_the_difference_from_the_book_in_pp_is_rounded_and_none_without_a_figure():
    from pipeline.results import difference, difference_pp

    assert difference_pp(0.9930, 0.9960) == -0.30
    assert difference_pp(0.9542, 0.9529) == 0.13
    assert difference(0.98, 0.9) == pytest.approx(0.08)
    assert difference(0.4, 0.9983) == -0.5983  # no float noise in metrics.json (exactly, not approx)
    # ch3-ce-30: the mean of its seeds' 95.06% and 95.35% is 0.9520500000000001 in floats, -0.285 pp
    # from the book: an exact half, away from zero, as every half (reports up to quick-38 rounded
    # the binary float: -0.28 here, but ch3-ce-100's -0.095 to -0.10)
    assert difference_pp((0.9506 + 0.9535) / 2, 0.9549) == -0.29
    assert difference_pp((0.9664 + 0.9681) / 2, 0.9682) == -0.10
    assert difference_pp(0.96935, 0.9690) == 0.04 and difference_pp(0.96065, 0.9657) == -0.51
    assert difference_pp(None, 0.99) is None and difference_pp(0.99, None) is None
    assert difference(None, None) is None


def test_a_metric_that_is_our_reading_of_the_book_says_so():
    """Chapter 5: BOOK.md names the set (validation) but not the rule; the row says the rule
    is ours, and the book's metric column of the chapter 3 rows does not."""
    from pipeline.report import markdown_table, with_verdict

    tol = {"default": 0.5, "chapter6": 0.3}
    row = {"chapter": 5, "id": "ch5-depth-3", "what_changed": "3 hidden layers",
           "book": {"value": 0.9657, "metric": "peak_validation", "runs": 1,
                    "metric_reading": "BOOK.md names the set but not the rule"},
           "ours": 0.9678, "seed_values": [0.9670, 0.9686], "rule": "mean of 2",
           "honest_mean": None, "honest_std": None, "n_seeds": 2, "epochs": 30, "wall_seconds": 9.0}
    line = markdown_table([with_verdict(row, tol)]).splitlines()[-1]
    assert "| peak validation, our reading (mean of 2 seeds) |" in line
    book = {k: v for k, v in row["book"].items() if k != "metric_reading"}
    line = markdown_table([with_verdict(dict(row, book=book), tol)]).splitlines()[-1]
    assert "| peak validation (mean of 2 seeds) |" in line


def test_chapter6_seeds_that_tie_on_validation_go_to_the_later_seed():
    tied = [_seed(k, [0.99], [test], {"best_validation_accuracy": 0.9916, "test_at_best_validation": test})
            for k, test in ((1, 0.9921), (2, 0.9930), (3, 0.9925))]
    assert book_rule(tied, "test_at_best_validation", runs=3) == {
        "value": 0.9925, "seed": 3, "rule": "best of 3"}
    # the first `runs` seeds only: seed 3 is not among the book's two
    assert book_rule(tied, "test_at_best_validation", runs=2)["value"] == 0.9930


def test_a_one_run_figure_is_the_mean_over_every_seed():
    seeds = [_seed(k, [v], [v]) for k, v in ((1, 0.90), (2, 0.93), (3, 0.99))]
    result = book_rule(seeds, "final_validation", runs=1)
    assert result["value"] == pytest.approx(0.94) and result["rule"] == "mean of 3"
    assert result["values"] == [0.90, 0.93, 0.99]


def test_in_range_counts_only_rows_outside_tolerance_and_the_range_includes_its_ends():
    from pipeline.report import tally, with_verdict

    tol = {"default": 0.5, "chapter6": 0.3}
    row = {"chapter": 3, "book": {"value": 0.9489}, "ours": 0.9420, "seed_values": [0.9380, 0.9489]}
    outside = with_verdict(row, tol)
    assert outside["within"] is False and outside["book_in_seed_range"] is True  # a seed at the book's value
    inside = with_verdict(dict(row, ours=0.9470, seed_values=[0.9450, 0.9495]), tol)
    assert inside["within"] is True and inside["book_in_seed_range"] is True
    counts = tally([outside, inside])
    assert (counts["with_figure"], counts["within"], counts["in_range"]) == (2, 1, 1)


def test_each_baseline_row_reads_its_own_split():
    """B-svm-val is the SVM's validation accuracy (the book's 94.48%), B-svm its test accuracy."""
    from pipeline.report import baseline_rows

    cfg = {"baselines": {
        "B-svm": {"value": 0.9435, "metric": "test", "split": "test", "source": "svm", "title": "t", "note": ""},
        "B-svm-val": {"value": 0.9448, "metric": "validation", "split": "validation", "source": "svm",
                      "title": "v", "note": ""}}}
    metrics = {"svm": {"test_accuracy": 0.9436, "validation_accuracy": 0.9451, "seconds": 12.0}}
    rows = {r["id"]: r for r in baseline_rows(cfg, metrics)}
    assert (rows["B-svm"]["ours"], rows["B-svm-val"]["ours"]) == (0.9436, 0.9451)
    assert rows["B-svm-val"]["book"]["value"] == 0.9448 and rows["B-svm"]["wall_seconds"] == 12.0
