"""dvc.yaml keeps the rules that make the run-cache work across machines and covers every run."""

import ast
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


def test_the_report_reruns_when_a_run_is_taken_out_of_the_book():
    # DVC does not notice a dep that was removed, so a run taken out would stay in the report
    # while `dvc status` says all is up to date; the report reads its rows from params' book
    assert "book" in _load("dvc.yaml")["stages"]["report"]["params"]


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


# Modules a stage imports that do not decide what it writes: reading params, writing files
# atomically, hashing, the error class of user mistakes and the checks of settings, stopping
# cleanly, printing progress lines, describing the machine, logging to MLflow (and the figures that go only to MLflow).
# Editing them must not make DVC retrain the book.
INFRASTRUCTURE = {
    "pipeline/__init__.py", "pipeline/data/__init__.py", "pipeline/atomic.py", "pipeline/errors.py",
    "pipeline/hashing.py", "pipeline/settings.py", "pipeline/console.py",
    "pipeline/interrupts.py", "pipeline/machine.py", "pipeline/params.py", "pipeline/tracking.py",
    "pipeline/stages/_common.py",
    # reading the raw files: download and prepare list them, the later stages read .npz files
    "pipeline/data/fetch.py", "pipeline/data/idx.py",
}
INFRASTRUCTURE_BY_STAGE = {
    # figures.py draws the report's plots (outputs of `report`) but, in training, only MLflow's
    "train": {"pipeline/figures.py",
              # the vote: imported with pipeline.nn, never called in training (the ensemble stage's)
              "pipeline/nn/ensemble.py"},
    # the vote's confusion matrix and misclassified digits go to MLflow alone, as training's
    "ensemble": {"pipeline/figures.py"},
}


def _module_path(module: str) -> Path | None:
    path = REPO_ROOT / Path(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _pipeline_imports(path: Path) -> set[str]:
    """The pipeline modules that ``path`` imports (absolute imports, as the project writes them)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            # a relative import would slip past this reading: the project writes absolute ones
            assert not node.level, f"{path}:{node.lineno}: a relative import; write it absolute"
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found |= {name for name in names if name.split(".")[0] == "pipeline" and _module_path(name)}
    return found


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


def test_every_stage_depends_on_the_code_that_decides_its_outputs():
    for name, stage in _load("dvc.yaml")["stages"].items():
        body = stage.get("do", stage)
        module = body["cmd"].split()[2]  # python -m pipeline.stages.<name> ...
        seen, todo = set(), [module]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo += _pipeline_imports(_module_path(current))
        paths = {str(_module_path(m).relative_to(REPO_ROOT)) for m in seen}
        ignored = INFRASTRUCTURE | INFRASTRUCTURE_BY_STAGE.get(name, set())
        missing = sorted(p for p in paths - ignored if not _covered(p, body["deps"]))
        assert not missing, f"dvc.yaml: stage {name} runs {missing} but does not list it in its deps"


def test_the_report_stage_declares_exactly_the_plots_the_report_draws():
    from pipeline.report_plots import plot_names

    params = _load("params.yaml")
    declared = _load("dvc.yaml")["stages"]["report"]["plots"]
    prefix = "${report.out_dir}/plots/"
    assert all(p.startswith(prefix) for p in declared), declared
    assert sorted(p[len(prefix):] for p in declared) == sorted(plot_names(params["report"])), (
        "dvc.yaml: the report stage's plots must name every file report_plots.figures draws")


def test_the_committed_lock_holds_the_data_stages_as_the_code_now_makes_them():
    """The README promises that a fresh clone restores the data stages from dvc.lock (`dvc repro
    --pull`) and reruns nothing there: each code file and param they depend on must be what the
    lock recorded. A stale entry reruns the stage in every clone (and dirties dvc.lock)."""
    import hashlib

    lock, params = _load("dvc.lock")["stages"], _load("params.yaml")
    assert {"download", "prepare"} <= set(lock)
    # after a `dvc repro` the workspace's lock holds the trainings too (a folder among their deps)
    data_stages = {name: stage for name, stage in lock.items()
                   if name in ("download", "prepare") or name.startswith("expand@")}
    for name, stage in data_stages.items():
        for dep in stage["deps"]:
            if dep["path"].startswith("data/"):  # the stage before's output, checked there
                continue
            now = hashlib.md5((REPO_ROOT / dep["path"]).read_bytes()).hexdigest()
            assert now == dep["md5"], (
                f"dvc.lock is behind the code: {name} depends on {dep['path']}, changed since the lock "
                "was written; run `dvc repro download prepare expand` and commit dvc.lock")
        for key, value in stage.get("params", {}).get("params.yaml", {}).items():
            node = params
            for part in key.split("."):
                node = node[part]
            assert node == value, f"dvc.lock is behind params.yaml: {name}'s {key}; rerun the data stages"
