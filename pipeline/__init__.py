"""Nielsen's book on MNIST, reproduced: data -> engine (nn) -> tracking -> stages -> report."""

import sys as _sys

# Python sets argv[0] to "-m" while it imports the packages of a `python -m pipeline.<module>`
# (a test runner that imports the package keeps its own hook)
if _sys.argv[:1] == ["-m"]:
    from pipeline.console import ctrl_c_in_one_line

    ctrl_c_in_one_line()
