"""The package runs from a clone (conf/ beside it): a copy installed without conf/ says so."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_a_copy_installed_without_conf_says_to_install_from_the_clone_and_its_engine_still_loads(tmp_path):
    """`pip install .` puts pipeline/ alone in site-packages; its commands would fail on a
    missing conf/ file with a traceback, while a model loaded by MLflow needs only the engine."""
    site = tmp_path / "site"
    shutil.copytree(REPO_ROOT / "pipeline", site / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    clone = tmp_path / "clone"  # a clone's scripts/, beside its pipeline/ (and its conf/, unread)
    (clone / "scripts").mkdir(parents=True)
    (clone / "pipeline").mkdir()
    (clone / "pipeline/__init__.py").write_text("")
    shutil.copy(REPO_ROOT / "scripts/vote_saved_nets.py", clone / "scripts")
    env = dict(os.environ, PYTHONPATH=str(site))  # before the editable install's path
    for command in ([sys.executable, "-m", "pipeline.train", "--help"],
                    [sys.executable, str(clone / "scripts/vote_saved_nets.py"), "--help"]):
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "`pip install -e .`" in result.stderr and "Traceback" not in result.stderr, result.stderr
    engine = subprocess.run([sys.executable, "-c", "import pipeline.nn, pipeline; print(pipeline.nn.__file__)"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert engine.returncode == 0 and engine.stdout.startswith(str(site)), engine.stdout + engine.stderr
    own = tmp_path / "project/scripts/serve.py"  # a user's own script, in a folder also named scripts
    own.parent.mkdir(parents=True)
    own.write_text("import pipeline.nn\nprint('loaded')\n")
    served = subprocess.run([sys.executable, str(own)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert served.returncode == 0 and served.stdout == "loaded\n", served.stdout + served.stderr
