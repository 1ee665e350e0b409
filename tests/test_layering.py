"""The rooms of the code and their one-way imports: data -> engine -> tracking -> stages ->
report. The data and the engine (pipeline/data, pipeline/nn) use only the small shared
modules and know nothing of each other, DVC, Hydra or MLflow; MLflow is spoken to in
pipeline/tracking.py alone (and in pipeline/mlflow_model.py, the code MLflow runs to load a
logged model); nothing outside pipeline/stages imports a stage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"
# leaf modules every room may use
SHARED = {"pipeline.atomic", "pipeline.console", "pipeline.errors", "pipeline.hashing"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PIPELINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_our_module(name: str) -> bool:
    path = PIPELINE.parent / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function; ``from pipeline import
    report`` counts as ``pipeline.report``, not as the package."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if _is_our_module(submodule) else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


MODULES = {module_name(p): imports(p) for p in sorted(PIPELINE.rglob("*.py"))}


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("room", ["pipeline.data", "pipeline.nn"])
def test_the_data_and_the_engine_use_only_their_own_room_and_the_shared_modules(room):
    for module, names in MODULES.items():
        if not _in(module, room):
            continue
        ours = {n for n in names if _in(n, "pipeline")}
        stray = sorted(n for n in ours if not _in(n, room) and n not in SHARED)
        assert not stray, f"{module} imports {stray}: {room} may use only itself and {sorted(SHARED)}"
        tools = sorted(n for n in names if any(_in(n, t) for t in ("mlflow", "dvc", "hydra", "omegaconf")))
        assert not tools, f"{module} imports {tools}: {room} knows nothing of DVC, Hydra or MLflow"


def test_mlflow_is_spoken_to_in_the_tracking_module_alone():
    """And in the code of the models it logs, which MLflow runs to load one and nothing imports."""
    speakers = sorted(m for m, names in MODULES.items() if any(_in(n, "mlflow") for n in names))
    assert speakers == ["pipeline.mlflow_model", "pipeline.tracking"]
    assert not [m for m, names in MODULES.items() if "pipeline.mlflow_model" in names]


def test_tracking_knows_no_data_engine_stage_or_report():
    ours = {n for n in MODULES["pipeline.tracking"] if _in(n, "pipeline")}
    assert not {n for n in ours if any(_in(n, p) for p in (
        "pipeline.data", "pipeline.nn", "pipeline.stages", "pipeline.experiment", "pipeline.report",
        "pipeline.report_plots"))}


def test_nothing_outside_the_stages_imports_a_stage():
    for module, names in MODULES.items():
        if not _in(module, "pipeline.stages"):
            assert not [n for n in names if _in(n, "pipeline.stages")], module


def test_the_checks_see_real_imports():
    """Guards the guard: the walker finds imports made inside functions too."""
    assert "pipeline.nn" in MODULES["pipeline.experiment"] or any(
        _in(n, "pipeline.nn") for n in MODULES["pipeline.experiment"])
    assert any(_in(n, "mlflow") for n in MODULES["pipeline.tracking"])
    assert "pipeline.settings" in MODULES["pipeline.config"]  # imported inside check()
    assert "pipeline.report" in MODULES["pipeline.stages.report"]  # from pipeline import report
    assert "pipeline.tracking" in MODULES["pipeline.experiment"]  # from pipeline import ..., tracking
