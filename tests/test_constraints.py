"""constraints.txt: the exact versions of one known-good environment agree with pyproject.toml.

pyproject.toml declares ranges; constraints.txt (scripts/freeze_constraints.sh) pins what one
fresh ``pip install -e '.[dev]'`` resolved to. If a range moves and the pins are not written
again, ``pip install -c constraints.txt`` fails to resolve; these tests say which package.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def read_constraints(path: Path) -> dict[str, str]:
    """``name==version`` lines (comments skipped) as {canonical name: version}."""
    pins: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"{path.name}:{number}: {line!r} is not name==version"
        key = canonicalize_name(name)
        assert key not in pins, f"{path.name}:{number}: {name} is pinned twice"
        pins[key] = version
    return pins


def declared_requirements() -> list[Requirement]:
    """The project's own dependencies and the ``dev`` extra: what the freeze installed."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]


def test_every_declared_dependency_is_pinned_inside_its_range():
    pins = read_constraints(ROOT / "constraints.txt")
    problems = []
    for requirement in declared_requirements():
        version = pins.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{requirement.name}: not in constraints.txt")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement.name}=={version} is outside {requirement.specifier}")
    assert not problems, ("constraints.txt disagrees with pyproject.toml; run "
                          "`bash scripts/freeze_constraints.sh`: " + "; ".join(problems))


def test_constraints_pin_nothing_but_exact_versions(tmp_path):
    bad = tmp_path / "constraints.txt"
    bad.write_text("# header\nnumpy==2.4.6\nscipy>=1.11\n")
    with pytest.raises(AssertionError, match="scipy>=1.11"):
        read_constraints(bad)
    bad.write_text("numpy==2.4.6\nNumPy==2.4.7\n")
    with pytest.raises(AssertionError, match="pinned twice"):
        read_constraints(bad)
