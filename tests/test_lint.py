"""The code passes the linter configured in pyproject.toml ([tool.ruff]): pyflakes, pycodestyle,
bugbear and import order over pipeline/, scripts/ and tests/."""

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_finds_nothing():
    try:
        import ruff  # noqa: F401
    except ImportError:
        raise AssertionError("ruff is missing: install the dev extra, pip install -e '.[dev]'") from None
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise"],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"ruff check (fix, or run `ruff check --fix`):\n{done.stdout}{done.stderr}"
