"""The Hydra tree in conf/ and the params.yaml that DVC reads must agree."""

import re
from pathlib import Path

import pytest
import yaml

from pipeline.config import compose, first_difference, sync_problem

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_params_yaml_in_sync_with_conf():
    """params.yaml is conf/ composed under the profile it names (the committed one: quick)."""
    problem = sync_problem(REPO_ROOT)
    assert problem is None, problem


def test_a_switched_profile_is_in_sync_and_an_override_is_named(tmp_path):
    import shutil

    shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    (tmp_path / "params.yaml").write_text(compose(REPO_ROOT, ["profile=smoke"]), encoding="utf-8")
    assert sync_problem(tmp_path) is None
    (tmp_path / "params.yaml").write_text(compose(REPO_ROOT, ["profile=smoke", "book.ch1-30.training.eta=0.5"]),
                                          encoding="utf-8")
    problem = sync_problem(tmp_path)
    assert "differs from conf/ composed with profile=smoke, first at book.ch1-30.training.eta" in problem
    assert "`python -m pipeline.config profile=smoke`" in problem
    params = yaml.safe_load(compose(REPO_ROOT, ["profile=smoke"]))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")  # the same, written otherwise
    assert "differs from conf/ composed with profile=smoke, first at its formatting" in sync_problem(tmp_path)
    del params["profile"]["name"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    assert "differs from conf/ composed with profile=quick, first at " in sync_problem(tmp_path)  # the default


def test_the_first_difference_is_a_key_either_side_lacks_or_the_whole_file():
    assert first_difference({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}}) == "a.c"
    assert first_difference({"a": {"b": 1}}, {"a": {"b": 1, "c": 3}}) == "a.c"  # only in the second
    assert first_difference({"a": {"b": 1, "c": 3}}, {"a": {"b": 1}}) == "a.c"
    assert first_difference({"a": 1}, {"a": 1}) is None
    assert first_difference([1], {"a": 1}) == "(the whole file)"


@pytest.mark.parametrize("overrides, message", [
    (["profile=smok"], "Could not find 'profile/smok'"),
    # Hydra would advise +key=value; the key's first absent part is named, with what is there
    (["book.ch1-30.training.etaa=0.5"], "book.ch1-30.training.etaa: unknown key; allowed keys: epochs, "
                                        "batch_size, eta, momentum, regularization"),
    # a setting the engine takes but the run's file leaves out: there Hydra's + is the fix
    (["book.ch1-30.training.momentum=0.5"], "book.ch1-30.training.momentum: not set in this run's config (it "
                                            "takes the engine's default); add it with "
                                            "+book.ch1-30.training.momentum=0.5"),
    (["book.ch1-30.training.regularization.lmbda=1"], "book.ch1-30.training.regularization.lmbda: "
                                                      "book.ch1-30.training.regularization is not set in this "
                                                      "run's config"),
    (["book.ch1-30.training.regularization.lmbdaa=5"], "book.ch1-30.training.regularization.lmbdaa: unknown "
                                                       "key; allowed keys: kind, lmbda, scaling"),
    (["book.ch1-30.model.layers.0.dropoutt=0.2"], "book.ch1-30.model.layers[0].dropoutt: unknown key; allowed "
                                                  "keys: type, units, activation, dropout"),
    (["book.ch1-31.training.eta=0.5"], "book.ch1-31.training.eta: there is no run 'ch1-31'; the runs are ch1-100, "
                                       "ch1-30, ch3-ce-100"),
    (["book.ch1-30.model.layers.5.units=3"], "book.ch1-30.model.layers is a list of 2; '5' is not one of its "
                                             "indices 0..1"),
    (["book.ch1-30.model.layers.2.units=3"], "book.ch1-30.model.layers is a list of 2; '2' is not one of its "
                                             "indices 0..1"),
    (["etaa=0.5"], "etaa: unknown key 'etaa'; allowed keys: data, download, expand"),
    (["smoke"], "smoke: a setting is key=value: profile=smoke"),  # Hydra: "missing EQUAL"
    (["+book.ch1-30.training.etaa=0.5"], "book.ch1-30.training.etaa: unknown key"),
    (["book.ch1-30.training.eta=-1"], "book.ch1-30.training.eta: must be > 0"),
    (["profile.limits.train_examples=-5"], "profile.limits.train_examples: expected an integer >= 1 or null"),
    (["compute.seed_workers=0"], "compute.seed_workers: expected an integer >= 1"),
    (["+foo=1"], "foo: unknown section; allowed: data, download"),
    (["profile.name=5"], "profile.name: expected one of book, fast, quick, smoke (conf/profile/), got 5"),
    (["profile.replay=abc"], "profile.replay: expected true or false, got 'abc'"),
    (["+profile.foo=1"], "profile.foo: unknown key"),
    (["profile.ensemble_seeds=[1]"], "profile.ensemble_seeds: expected a list of at least 2 integers"),
    (["report.out_dir=5"], "report.out_dir: expected a folder (a path), got 5"),
    (["report.progression=5"], "report.progression: expected a list of run ids"),
    (["report=null"], "Config group override must be a string or a list"),
])
def test_config_names_a_mistake_and_writes_nothing(tmp_path, monkeypatch, capsys, overrides, message):
    import shutil

    from pipeline.config import main

    shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    monkeypatch.chdir(tmp_path)
    assert main(overrides) == 2
    err = capsys.readouterr().err
    assert message in err and "params.yaml was not written" in err and "Traceback" not in err
    assert "To append to your config use" not in err and "Error merging override" not in err
    assert not (tmp_path / "params.yaml").exists()


def test_check_and_out_mistakes_are_named_not_raised(tmp_path, monkeypatch, capsys, lock_folders):
    import shutil

    from pipeline.config import main

    shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(compose(tmp_path), encoding="utf-8")
    assert main(["--check"]) == 0
    assert capsys.readouterr().out == "params.yaml is in sync with conf/.\n"
    (tmp_path / "params.yaml").write_text("- a list, not settings\n")
    assert main(["--check"]) == 1
    assert "params.yaml is not a mapping of settings with a profile" in capsys.readouterr().err
    (tmp_path / "params.yaml").write_text("profile: {name: nope}\n")
    assert main(["--check"]) == 2
    err = capsys.readouterr().err
    assert "Could not find 'profile/nope'" in err and "was not written" not in err  # --check writes nothing
    (tmp_path / "folder").mkdir()
    assert main(["--out", "folder"]) == 2
    assert "--out folder is a folder" in capsys.readouterr().err

    lock_folders()
    assert main(["--out", "p.yaml"]) == 2
    err = capsys.readouterr().err
    assert "pipeline.config: no permission for p.yaml: Permission denied." in err and "Traceback" not in err
    assert not (tmp_path / "p.yaml").exists()


def test_a_gpu_this_machine_lacks_is_noted_and_the_file_still_written(tmp_path, monkeypatch, capsys):
    """params.yaml for a GPU may be written here and run elsewhere: a note, not an error."""
    import shutil

    import pipeline.nn.backend as backend
    from pipeline.config import main

    def no_gpu(device="cpu"):
        raise backend.BackendError("device 'gpu' needs CuPy, which is not installed: ...")

    monkeypatch.setattr(backend, "get_xp", no_gpu)
    shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    monkeypatch.chdir(tmp_path)
    assert main(["--out", "gpu.yaml", "compute.device=gpu"]) == 0
    assert yaml.safe_load((tmp_path / "gpu.yaml").read_text())["compute"]["device"] == "gpu"
    assert capsys.readouterr().err == ("note: device 'gpu' needs CuPy, which is not installed: ...\n`dvc repro` "
                                       "on this machine will stop at the first training stage; on a machine "
                                       "with a GPU it trains there.\n")
    assert main(["--out", "cpu.yaml"]) == 0
    assert capsys.readouterr().err == ""


def test_a_row_changed_from_the_books_settings_is_noted_as_not_replayed(tmp_path, monkeypatch, capsys):
    """Composed with an override that changes a row with a replay, the file is written and the
    note says the book's run will not be replayed (the stage would say so only when it runs)."""
    import shutil

    from pipeline.config import main

    shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    monkeypatch.chdir(tmp_path)
    assert main(["--out", "eta.yaml", "book.ch3-l2-30.training.eta=0.1"]) == 0
    notes = capsys.readouterr().err.splitlines()
    assert len(notes) == 1 and notes[0].startswith("note: the book's own run of ch3-l2-30 will not be replayed: "
                                                    "book.ch3-l2-30 is not at the book's settings")
    assert main(["--out", "split.yaml", "data.n_train=55000"]) == 0  # every replay's split
    assert len(capsys.readouterr().err.splitlines()) == 16
    assert main(["--out", "off.yaml", "book.ch3-l2-30.training.eta=0.1", "profile.replay=false"]) == 0
    assert capsys.readouterr().err == ""


def _checkout(tmp_path, monkeypatch):
    """conf/ and dvc.yaml in a folder of their own, where pipeline.config runs."""
    import shutil

    shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    shutil.copy(REPO_ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _add_run(root, run_id, text):
    (root / "conf/book" / f"{run_id}.yaml").write_text(text)
    config = root / "conf/config.yaml"
    config.write_text(config.read_text().replace("      - ch6-dropout\n", f"      - ch6-dropout\n      - {run_id}\n"))


def test_a_copied_run_file_whose_top_key_was_not_renamed_is_named(tmp_path, monkeypatch, capsys):
    """Hydra merges the file into `book:` under its top key: ch3-ce-30 would be silently replaced."""
    from pipeline.config import main

    root = _checkout(tmp_path, monkeypatch)
    _add_run(root, "my-l2-60", (REPO_ROOT / "conf/book/ch3-ce-30.yaml").read_text())
    assert main(["--out", "p.yaml", "profile=smoke"]) == 2
    assert capsys.readouterr().err == (
        "pipeline.config: conf/book/my-l2-60.yaml holds its run under the top key `ch3-ce-30:`: a file holds "
        "one run, under its file's name `my-l2-60:` (as it is, it would replace the run ch3-ce-30)\n"
        "p.yaml was not written.\n")
    assert not (root / "p.yaml").exists()


@pytest.mark.parametrize("name, text, said", [
    ("my-run", "my-run:\n  chapter: 3\n  seeds: [1, 2\n",
     "conf/book/my-run.yaml: not valid YAML: while parsing a flow sequence: expected ',' or ']', but got "
     "'<stream end>' (line 4, column 1)"),
    # PyYAML would keep the second; Hydra refuses it with a traceback
    ("my-run", "my-run:\n  chapter: 3\n  chapter: 5\n",
     "conf/book/my-run.yaml: not valid YAML: the key 'chapter' is given twice (line 3, column 3)"),
    ("my-run", "- chapter: 3\n", "conf/book/my-run.yaml: expected a mapping `my-run: {...}`, got list"),
    ("my-run", "my-run:\n  [1, 2]: 3\n",
     "conf/book/my-run.yaml: not valid YAML: while constructing a mapping: found unhashable key (line 2, column 3)"),
    ("my-run", "my-run:\n  chapter: 3\nother:\n  chapter: 5\n",
     "conf/book/my-run.yaml holds runs under the top keys `my-run:`, `other:`: a file holds one run, under its "
     "file's name `my-run:`"),
    ("_my-run", "_my-run:\n  chapter: 3\n", "conf/book/_my-run.yaml: a run's id (its file's name) is letters, "
                                            "digits, - and _, starting with a letter or digit: rename it"),
    # book.my.run.… would read as a setting of a run `my`
    ("my.run", "my.run:\n  chapter: 3\n", "conf/book/my.run.yaml: a run's id (its file's name) is letters, "
                                          "digits, - and _, starting with a letter or digit: rename it"),
])
def test_a_run_file_hydra_could_not_read_is_named_in_a_line(tmp_path, monkeypatch, capsys, name, text, said):
    from pipeline.config import main
    from pipeline.train import book_files_problem

    root = _checkout(tmp_path, monkeypatch)
    (root / "conf/book" / f"{name}.yaml").write_text(text)
    # the Hydra app's check, before Hydra reads the file: of the run it trains only
    assert book_files_problem([f"book={name}", "profile=smoke"], root) == said
    assert book_files_problem(["book=ch1-30"], root) is None  # a draft beside it is not read
    assert main(["--out", "p.yaml", "profile=smoke"]) == 2  # params.yaml holds every run
    assert capsys.readouterr().err == f"pipeline.config: {said}\np.yaml was not written.\n"
    assert book_files_problem([], REPO_ROOT) is None


@pytest.mark.parametrize("key", ["training.seed", "training.device"])
def test_a_key_a_run_does_not_set_is_refused_in_its_own_words_not_offered_with_a_plus(key):
    from pipeline.config import explain_absent
    from pipeline.params import load_params

    said = explain_absent(f"book.ch1-30.{key}", "3", load_params(REPO_ROOT / "params.yaml"))
    assert said.startswith(f"book.ch1-30.{key}: not a setting of a run: ") and "+book" not in said, said


def test_a_run_of_ones_own_that_kept_the_books_figure_is_named(tmp_path, monkeypatch, capsys):
    """The report would set the copied row's figure beside the new run and count it."""
    from pipeline.config import main

    root = _checkout(tmp_path, monkeypatch)
    _add_run(root, "my-l2-60", (REPO_ROOT / "conf/book/ch3-ce-30.yaml").read_text().replace("ch3-ce-30:", "my-l2-60:"))
    assert main(["--out", "p.yaml"]) == 2
    assert capsys.readouterr().err.startswith(
        "pipeline.config: book.my-l2-60.book.value: my-l2-60 is not a row of the book (BOOK.md)")
    assert not (root / "p.yaml").exists()


def test_a_new_run_missing_from_dvc_yaml_is_named_before_anything_trains(tmp_path, monkeypatch, capsys):
    """Without the report's deps, DVC may run the report before the new run, or never again."""
    from pipeline.config import main

    root = _checkout(tmp_path, monkeypatch)
    text = (REPO_ROOT / "conf/book/ch3-ce-30.yaml").read_text().replace("ch3-ce-30:", "my-l2-60:")
    text = text.replace("value: 0.9549", "value: null")  # not a row of the book: no figure of its own
    _add_run(root, "my-l2-60", text)
    assert main(["--out", "p.yaml"]) == 2
    assert ("dvc.yaml: the report stage does not wait for train@my-l2-60: add results/my-l2-60/metrics.json "
            "and results/my-l2-60/history.csv to its deps") in capsys.readouterr().err
    dvc = root / "dvc.yaml"
    dvc.write_text(dvc.read_text().replace(
        "      - results/ch1-30/metrics.json\n",
        "      - results/ch1-30/metrics.json\n      - results/my-l2-60/metrics.json\n"
        "      - results/my-l2-60/history.csv\n"))
    assert main(["--out", "p.yaml"]) == 2
    assert ("dvc.yaml: train@my-l2-60 is in no plot: add `results/my-l2-60/history.csv: validation_accuracy` "
            "to one group under `plots`") in capsys.readouterr().err
    dvc.write_text(dvc.read_text().replace(
        "        results/ch1-100/history.csv: validation_accuracy\n",
        "        results/ch1-100/history.csv: validation_accuracy\n"
        "        results/my-l2-60/history.csv: validation_accuracy\n"))
    assert main(["--out", "p.yaml"]) == 0
    assert "my-l2-60" in yaml.safe_load((root / "p.yaml").read_text())["book"]


def test_a_plot_of_a_file_outside_results_is_no_run_of_the_book(tmp_path):
    from pipeline.config import check_dvc_yaml

    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({
        "stages": {"report": {"deps": ["results/r1/metrics.json", "results/r1/history.csv"]}},
        "plots": [{"speeds": {"y": {"bench.csv": "seconds"}}},
                  {"accuracy": {"y": {"results/r1/history.csv": "validation_accuracy"}}}]}))
    check_dvc_yaml(tmp_path, ["r1"])


@pytest.mark.parametrize("override, message", [
    ("book.ch1-30.model.layers.1.units=12",
     "book.ch1-30.model.layers[1].units: the output layer has 12 units, MNIST has 10 digits: use 10"),
    ("book.ch1-30.model.input_shape=[785]",
     "book.ch1-30.model.input_shape: [785] is not the shape of the data's 28 × 28 pictures: use [784] "
     "(fully connected) or [1, 28, 28] (conv)"),
    # as many values, but the picture cut into strips stacked as channels
    ("book.ch1-30.model.input_shape=[2,14,28]",
     "book.ch1-30.model.input_shape: [2, 14, 28] is not the shape of the data's 28 × 28 pictures"),
])
def test_a_network_that_does_not_fit_mnist_is_named_before_anything_trains(override, message, tmp_path,
                                                                              monkeypatch, capsys):
    from pipeline.config import main

    _checkout(tmp_path, monkeypatch)
    assert main(["--out", "p.yaml", override]) == 2
    assert message in capsys.readouterr().err


def test_overrides_compose_like_dvc_exp_run_set_param():
    params = yaml.safe_load(compose(REPO_ROOT, ["baselines.svm.train_limit=1000"]))
    assert params["baselines"]["svm"]["train_limit"] == 1000


def _strings(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def test_conf_has_no_machine_specific_interpolations_or_absolute_paths():
    forbidden = re.compile(r"\$\{(now|oc\.env|hydra):")
    for path in (REPO_ROOT / "conf").rglob("*.yaml"):
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        if path == REPO_ROOT / "conf" / "train.yaml":
            # the ad-hoc app's own output folders (relative, ${now:}): never composed into params.yaml
            for folder in (config["hydra"]["run"], config["hydra"]["sweep"]):
                assert not folder["dir"].startswith(("/", "~")), folder
                folder.pop("dir")
        for value in _strings(config):
            assert not forbidden.search(value), f"{path}: machine-specific interpolation {value}"
            assert not value.startswith(("/", "~")), f"{path}: absolute path {value}"


def test_dvc_hydra_composition_enabled():
    config = (REPO_ROOT / ".dvc" / "config").read_text(encoding="utf-8")
    assert re.search(r"\[hydra\]\s*\n\s*enabled = true", config)


def test_report_baselines_validate_and_a_split_title_is_rejected():
    from pipeline.report import validate_baselines

    baselines = yaml.safe_load(compose(REPO_ROOT))["report"]["baselines"]
    validate_baselines(baselines)
    assert baselines["B-svm"]["title"] == "SVM (RBF, C=1, gamma=1/784)"
    broken = yaml.safe_load("B-svm: {value: 0.9435, metric: test, split: test, source: svm, "
                            "title: SVM (RBF, C=1), note: ''}")
    with pytest.raises(ValueError, match=r"report\.baselines\.B-svm: unknown keys \['C=1\)'\]"):
        validate_baselines(broken)


def test_params_load_the_same_with_libyaml_as_with_pure_python():
    from pipeline.params import load_params

    with open(REPO_ROOT / "params.yaml", encoding="utf-8") as f:
        assert load_params(REPO_ROOT / "params.yaml") == yaml.safe_load(f)
