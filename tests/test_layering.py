"""The rooms of the code and their one-way imports: data -> engine -> tracking -> stages ->
report. The data and the engine (pipeline/data, pipeline/nn) use only the small shared
modules and know nothing of each other, DVC, Hydra or MLflow; MLflow is spoken to in
pipeline/tracking.py alone (and in pipeline/mlflow_model.py, the code MLflow runs to load a
logged model), in the package and in scripts/ alike; nothing outside pipeline/stages imports a
stage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"
SCRIPTS = PIPELINE.parent / "scripts"
# leaf modules every room may use
SHARED = {"pipeline.atomic", "pipeline.console", "pipeline.errors", "pipeline.hashing"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PIPELINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_our_module(name: str) -> bool:
    path = PIPELINE.parent / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(path: Path, package: str = "") -> set[str]:
    """Every module a file imports, at the top or inside a function, or names to
    ``importlib.import_module``; ``from pipeline import report`` counts as
    ``pipeline.report``, not as the package; ``from . import x`` is read in ``package``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1 folders
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if _is_our_module(submodule) else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)):
            found.add(str(node.args[0].value))
    return found


def _package(path: Path) -> str:
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


MODULES = {module_name(p): imports(p, _package(p)) for p in sorted(PIPELINE.rglob("*.py"))}
SCRIPT_IMPORTS = {f"scripts/{p.name}": imports(p) for p in sorted(SCRIPTS.glob("*.py"))}


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
    """And in the code of the models it logs, which MLflow runs to load one and nothing
    imports; the scripts too go through the tracking module."""
    speakers = sorted(m for m, names in {**MODULES, **SCRIPT_IMPORTS}.items() if any(_in(n, "mlflow") for n in names))
    assert speakers == ["pipeline.mlflow_model", "pipeline.tracking"]
    assert not [m for m, names in MODULES.items() if "pipeline.mlflow_model" in names]


# what the tracking room may use besides the shared modules: signals and the machine's description
TRACKING_USES = SHARED | {"pipeline.interrupts", "pipeline.machine"}


def test_tracking_uses_only_the_shared_modules_signals_and_the_machine():
    ours = {n for n in MODULES["pipeline.tracking"] if _in(n, "pipeline")}
    assert ours <= TRACKING_USES, f"pipeline.tracking imports {sorted(ours - TRACKING_USES)}"


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
    assert "pipeline.tracking" in SCRIPT_IMPORTS["scripts/check_logged_models.py"]


def test_the_walker_reads_relative_and_dynamic_imports(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("from . import tracking\nfrom .stages import train\n"
                      "import importlib\nimportlib.import_module('mlflow')\n")
    assert {"pipeline.tracking", "pipeline.stages.train", "mlflow"} <= imports(source, "pipeline")
    source.write_text("from ..nn import network\nfrom .. import tracking\nfrom . import idx\n")
    assert imports(source, "pipeline.data") == {"pipeline.nn.network", "pipeline.tracking", "pipeline.data.idx"}
