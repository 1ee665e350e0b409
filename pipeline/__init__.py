"""Nielsen's book on MNIST, reproduced: data -> engine (nn) -> tracking -> stages -> report."""

import sys as _sys
from pathlib import Path as _Path

# Every setting is read from conf/ beside this package, which a plain `pip install .` does not
# copy into site-packages: a command run from such an install would fail on a missing file.
# Said once, for a command (`python -m pipeline.<module>` or a script of scripts/); a model
# loaded by MLflow needs only the engine and is let through.
CHECKOUT_NEEDED = ("pipeline runs from a clone of its repository, whose conf/ holds every setting, "
                   "and this copy was installed without it (a `pip install .` copies pipeline/ "
                   "only): in the clone, `pip install -e .` (README: Set-up), and run the command there")
_script = _Path(_sys.argv[0] if _sys.argv else "").resolve()
_command = _sys.argv[:1] == ["-m"] or (_script.parent.name == "scripts"  # one of a clone's scripts/
                                       and (_script.parent.parent / "pipeline" / "__init__.py").is_file())
if _command and not (_Path(__file__).resolve().parents[1] / "conf").is_dir():
    print(CHECKOUT_NEEDED, file=_sys.stderr)
    raise SystemExit(2)  # as every setting the user can fix (pipeline.errors.EXIT_STATUS)

# Python sets argv[0] to "-m" while it imports the packages of a `python -m pipeline.<module>`
# (a test runner that imports the package keeps its own hook)
if _sys.argv[:1] == ["-m"]:
    from pipeline.console import ctrl_c_in_one_line

    ctrl_c_in_one_line()
