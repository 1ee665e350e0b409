"""The data stages' and the ensemble's settings are checked by key before a stage starts."""

import copy
import re
from pathlib import Path

import pytest
import yaml

from pipeline.settings import SettingError, check_settings

PARAMS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text(encoding="utf-8"))


def _copy_at(path: str) -> tuple[dict, dict, str]:
    """A copy of PARAMS, the mapping that holds ``path``'s last key in it, and that key."""
    params = copy.deepcopy(PARAMS)
    *parents, last = path.split(".")
    node = params
    for key in parents:
        node = node[key]
    return params, node, last


def edited(path: str, value) -> dict:
    params, node, last = _copy_at(path)
    node[last] = value
    return params


def test_the_committed_settings_pass():
    check_settings(PARAMS)


@pytest.mark.parametrize("path, value, message", [
    ("data.n_train", 0, "data.n_train: expected an integer in 1..59999"),
    ("data.n_train", "abc", "data.n_train: expected an integer in 1..59999"),
    ("data.n_train", 60_000, "data.n_train: expected an integer in 1..59999"),  # no validation set
    ("data.n_train", True, "data.n_train: expected an integer in 1..59999"),
    ("expand.shifted.seed", True, "expand.shifted.seed: expected an integer >= 0"),
    ("download.sources", ["foo"], "download.sources: expected a non-empty list of mirrors, npm, local"),
    ("download.timeout_s", -1, "download.timeout_s: expected a number > 0"),
    ("expand.rotated.order", 9, "expand.rotated.order: expected a spline order 0..5"),
    ("expand.rotated.angles", "abc", "expand.rotated.angles: expected a list of distinct degrees"),
    ("expand.rotated.angles", [0, 5], "expand.rotated.angles: expected a list of distinct degrees, each non-zero"),
    ("expand.rotated.angles", [5, 90], "expand.rotated.angles: expected a list of distinct degrees, each non-zero"),
    ("expand.rotated.angles", [5, 5], "expand.rotated.angles: expected a list of distinct degrees"),
    ("expand.shifted.seed", -1, "expand.shifted.seed: expected an integer >= 0"),
    ("expand.shifted.shifts", "maybe", "expand.shifted.shifts: expected true or false"),
    ("expand.shifted.shift", True, "expand.shifted.shift: unknown key; allowed: shifts, angles, order, seed"),
    ("baselines.sweep.sizes", [0], "baselines.sweep.sizes: expected a non-empty list of integers >= 1"),
    ("baselines.svm.C", -1, "baselines.svm.C: expected a number > 0"),
    ("baselines.svm.kernel", "linear", "baselines.svm.kernel: expected rbf (the book's SVM)"),
    ("baselines.svm.train_limit", -100, "baselines.svm.train_limit: expected an integer >= 1 or null"),
    ("baselines.bogus", 1, "baselines.bogus: unknown key; allowed: out_dir, svm, sweep"),
    ("ensemble.members", "ch6-dropuot", "ensemble.members: 'ch6-dropuot' is not a run in params.yaml's book"),
    ("ensemble.book", {"value": 99.67, "metric": "ensemble_test"},
     "ensemble.book: expected a mapping of value (a fraction in (0, 1]), metric and an optional note"),
    ("ensemble.chapter", "6", "ensemble.chapter: expected a chapter number 1..6"),
])
def test_a_setting_out_of_range_is_named_with_what_is_allowed(path, value, message):
    with pytest.raises(SettingError, match="^" + re.escape(message)):
        check_settings(edited(path, value))


def test_a_stage_checks_only_its_own_sections():
    bad_expand = edited("expand.rotated.order", 9)
    check_settings(bad_expand, ("data", "baselines"))
    with pytest.raises(SettingError):
        check_settings(bad_expand, ("expand",))


def removed(path: str) -> dict:
    params, node, last = _copy_at(path)
    del node[last]
    return params


@pytest.mark.parametrize("path", ["expand.shifted.seed", "baselines.svm.C", "baselines.sweep",
                                  "download.sources", "data.prepared_dir", "ensemble.members", "ensemble"])
def test_a_missing_setting_is_named(path):
    with pytest.raises(SettingError, match="^" + re.escape(path) + ": missing"):
        check_settings(removed(path))


def test_a_profile_name_must_be_one_of_conf_profiles():
    """A misspelt name was recorded on every run and output (predict's warnings and
    restore_runs' advice go by it)."""
    with pytest.raises(SettingError, match=r"^profile\.name: expected one of book, fast, quick, smoke "
                                           r"\(conf/profile/\), got 'smok'"):
        check_settings(edited("profile.name", "smok"), ("profile",))
    check_settings(edited("profile.name", "smoke"), ("profile",))


def test_a_rotation_order_is_needed_only_with_angles():
    with pytest.raises(SettingError, match=r"^expand\.rotated\.order: missing"):
        check_settings(removed("expand.rotated.order"), ("expand",))
    assert "order" not in edited("expand.shifted.angles", [])["expand"]["shifted"]
    check_settings(edited("expand.shifted.angles", []), ("expand",))


@pytest.mark.parametrize("text, message", [
    ("book: [\n", "params.yaml: not valid YAML"),
    ("", "params.yaml: expected a mapping of settings, got NoneType"),
    ("- a\n- b\n", "params.yaml: expected a mapping of settings, got list"),
    # a key given twice: YAML would keep the last silently, where DVC refuses the file
    ("book:\n  ch1-30: {seeds: [1]}\n  ch1-30: {seeds: [2]}\n",
     'params.yaml: not valid YAML (found the key \'ch1-30\' twice in "{path}", line 3, column 3)'),
    # past the first chunk a text reader decodes: the line is the file's
    ("".join(f"k{i}: 1\n" for i in range(5000)) + "title: caf\xe9\n",
     "params.yaml: not UTF-8 text (byte 0xe9 on line 5001): save it as UTF-8, or"),
    ("? [1, 2]\n: 3\n", "params.yaml: not valid YAML (while constructing a mapping in"),
    # read with the safe loader: a tag naming Python code is refused, never resolved
    ("profile: !!python/name:os.system\n",
     "params.yaml: not valid YAML (could not determine a constructor for the tag 'tag:yaml.org,2002:python/name"),
])
def test_a_params_file_that_is_not_settings_is_named_with_the_fix(tmp_path, text, message):
    """A hand-edited params.yaml read by a stage run by hand (under DVC, DVC reads it first)."""
    from pipeline.errors import InputError
    from pipeline.params import load_params

    (tmp_path / "params.yaml").write_bytes(text.encode("latin-1"))
    message = message.replace("{path}", str(tmp_path / "params.yaml"))  # YAML's errors name the file, with the line
    with pytest.raises(InputError, match=re.escape(message) + ".*python -m pipeline.config"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize("text, name", [
    ("profile: {name: smoke}\n", "smoke"),
    (None, None),  # no params.yaml
    ("profile: [smoke]\n", None),
    ("profile: {name: 3}\n", None),
    ("book: [\n", None),
])
def test_a_stages_profile_is_none_when_params_yaml_cannot_say(tmp_path, text, name):
    """A stage's first line names the profile; a file that cannot say is named by the stage itself."""
    from pipeline.params import profile_name

    if text is not None:
        (tmp_path / "params.yaml").write_text(text)
    assert profile_name(tmp_path / "params.yaml") == name


def test_a_run_not_in_the_book_is_named_even_when_there_is_no_book():
    from pipeline.errors import InputError
    from pipeline.params import book_run

    assert book_run({"book": {"ch1-30": {"seeds": [1]}}}, "ch1-30") == {"seeds": [1]}
    with pytest.raises(InputError, match=r"^no run 'ch9' in params.yaml's book \(have: ch1-30\)$"):
        book_run({"book": {"ch1-30": {}}}, "ch9")
    with pytest.raises(InputError, match=r"^no run 'ch9' in params.yaml's book \(it has none: run python -m "
                                          r"pipeline.config\)$"):
        book_run({"profile": {}}, "ch9")


def test_the_devices_allowed_are_the_engines():
    from pipeline.nn.spec import DEVICES
    from pipeline.settings import DEVICES as SETTINGS_DEVICES

    assert SETTINGS_DEVICES == DEVICES


def test_compute_given_as_a_word_is_named():
    from pipeline.settings import check_compute

    with pytest.raises(SettingError, match=r"^compute: expected a mapping, got str$"):
        check_compute("cpu")
    with pytest.raises(SettingError, match="profile.seeds: missing"):
        params = copy.deepcopy(PARAMS)
        del params["profile"]["seeds"]
        check_settings(params, ("profile",))


def test_a_set_that_expands_nothing_is_refused():
    params = edited("expand.rotated.angles", [])
    with pytest.raises(SettingError, match=r"^expand\.rotated: expands nothing .*set shifts: true or give angles"):
        check_settings(params, ("expand",))


@pytest.mark.parametrize("path, value, message", [
    ("baselines.svm.C", 0, "baselines.svm.C: expected a number > 0"),  # scikit-learn refuses C=0
    ("baselines.svm.gamma", -0.5, "baselines.svm.gamma: expected auto, scale or a number > 0"),
    ("baselines.sweep.sizes", [], "baselines.sweep.sizes: expected a non-empty list of integers >= 1"),
    ("profile.seeds", [], "profile.seeds: expected a non-empty list of integers >= 0"),
    ("profile.ensemble_seeds", [1], "profile.ensemble_seeds: expected a list of at least 2 integers"),
    ("ensemble.chapter", 7, "ensemble.chapter: expected a chapter number 1..6"),
    ("ensemble.book", {"value": 0.9967}, "ensemble.book: expected a mapping of value (a fraction in (0, 1]), metric"),
])
def test_a_setting_just_past_its_bound_is_refused(path, value, message):
    """The first value past a bound is refused, named with what is allowed."""
    with pytest.raises(SettingError, match="^" + re.escape(message)):
        check_settings(edited(path, value))


@pytest.mark.parametrize("path, value", [
    ("expand.shifted.seed", 0),  # a seed may be 0
    ("expand.rotated.angles", [-45, 45]),  # the widest small rotation
    ("expand.rotated.order", 5),  # scipy's highest spline order
    ("baselines.svm.gamma", 0.01),
    ("baselines.svm.gamma", "scale"),
])
def test_a_setting_at_its_bound_is_allowed(path, value):
    """The last value within a bound is allowed: the checks refuse nothing the stages take."""
    check_settings(edited(path, value))


def test_the_optional_keys_may_be_left_out():
    """A profile's about is for the report; a limit or a compute key left out means none, or the default."""
    from pipeline.settings import check_compute, check_limits

    check_settings(removed("profile.about"), ("profile",))
    check_limits({})
    check_limits({"epochs": 2})
    check_compute({})
    check_compute({"device": "cpu"})


def test_an_index_just_past_a_lists_end_is_named_not_raised():
    """A command line's index one past a list's end is named with the indices there are, not
    met as an IndexError."""
    from pipeline.settings import absent_key

    params = {"book": {"r": {"model": {"layers": [{"units": 8}, {"units": 10}]}}}}
    assert absent_key("book.r.model.layers.1.units", params) is None
    assert absent_key("book.r.model.layers.2.units", params) == (
        "book.r.model.layers.2.units: book.r.model.layers is a list of 2; '2' is not one of its indices 0..1")
