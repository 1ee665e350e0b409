#!/usr/bin/env bash
# Writes constraints.txt: the exact version of every package that `pip install -e '.[dev]'`
# brings in, from a fresh virtual environment (so nothing installed by hand slips in).
# pyproject.toml keeps ranges; this file records one environment that is known to work.
# Use: pip install -c constraints.txt -e '.[dev]'
# Usage: bash scripts/freeze_constraints.sh   (from the repo root; takes a minute or two)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q -e '.[dev]'
{
    echo "# Exact versions of 'pip install -e .[dev]' on $("$tmp/venv/bin/python" -c 'import platform; print("Python", platform.python_version(), platform.system(), platform.machine())'), $(date -u +%Y-%m-%d)."
    echo "# Written by scripts/freeze_constraints.sh; use: pip install -c constraints.txt -e '.[dev]'"
    "$tmp/venv/bin/pip" freeze --exclude-editable
} > "$tmp/constraints.txt"
mv "$tmp/constraints.txt" constraints.txt   # whole or not at all
echo "constraints.txt: $(grep -vc '^#' constraints.txt) packages"
