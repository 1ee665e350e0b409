"""dvc.yaml keeps the rules that make the run-cache work across machines and covers every run."""

import json
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    return yaml.safe_load((REPO_ROOT / name).read_text(encoding="utf-8"))


def test_report_depends_on_every_run():
    dvc, params = _load("dvc.yaml"), _load("params.yaml")
    deps = set(dvc["stages"]["report"]["deps"])
    for run_id in params["book"]:
        for name in ("metrics.json", "history.csv"):
            assert f"results/{run_id}/{name}" in deps, (
                f"dvc.yaml: the report stage misses train@{run_id}; add "
                f"results/{run_id}/{name} to its deps")


def test_no_persist_no_uncached_outputs_no_absolute_paths():
    text = (REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8")
    assert "persist" not in text and "cache: false" not in text
    for name, stage in _load("dvc.yaml")["stages"].items():
        body = stage.get("do", stage)
        assert not body["cmd"].split()[-1].startswith("/"), name
        for dep in body.get("deps", []):
            assert not str(dep).startswith("/"), f"{name}: absolute dep {dep}"


def test_every_book_run_names_an_existing_training_set_kind():
    params = _load("params.yaml")
    for run_id, run in params["book"].items():
        assert run["data"]["train"] in ("train", "shifted", "rotated"), run_id
        assert run["data"]["train_file"].endswith(f"/{run['data']['train']}.npz"), run_id


def test_every_run_is_plotted_once_with_a_line_per_seed():
    dvc, params = _load("dvc.yaml"), _load("params.yaml")
    plotted = []
    for plot in dvc["plots"]:
        ((plot_id, props),) = plot.items()
        template = REPO_ROOT / ".dvc" / "plots" / f"{props['template']}.json"
        spec = json.loads(template.read_text(encoding="utf-8"))
        assert spec["data"]["values"] == "<DVC_METRIC_DATA>", template
        # history.csv holds every seed's epochs: one line each, not one zigzag through them all
        assert spec["encoding"]["detail"]["field"] == "seed", template
        assert props["x"] == "epoch", plot_id
        plotted += [path.split("/")[1] for path in props["y"]]
    assert len(plotted) == len(set(plotted)), f"dvc.yaml plots: a run drawn twice: {sorted(plotted)}"
    unplotted = sorted(set(params["book"]) - set(plotted))
    assert not unplotted, (f"dvc.yaml plots: add results/<id>/history.csv: validation_accuracy "
                           f"to one group's y for {unplotted}")
    assert set(plotted) <= set(params["book"]), f"dvc.yaml plots: not runs: {set(plotted) - set(params['book'])}"
