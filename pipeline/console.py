"""One line of progress to stderr, written whole; a Ctrl-C nothing caught, in one line.

Two seeds train side by side in two processes that share the stage's stderr. ``print`` writes a
line and its newline in two system calls, so the other process's line could land between them
and two lines run together in `dvc repro`'s log; one ``write`` of the whole line (well under a
pipe's atomic 4 KiB) keeps every line intact.
"""

from __future__ import annotations

import sys


def say(line: str) -> None:
    """Write ``line`` and its newline to stderr in one call, then flush."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def ctrl_c_in_one_line() -> None:
    """Make a Ctrl-C that nothing caught print one line, not a traceback.

    For ``python -m pipeline.<module>``: the module's imports (MLflow, pandas: a second or two)
    run before its own handling of Ctrl-C begins, and a Ctrl-C there would print a traceback
    of the import machinery. The process still ends by SIGINT (status 130), as Python makes an
    uncaught KeyboardInterrupt do after the hook.
    """
    argv = getattr(sys, "orig_argv", [])
    name = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else "pipeline"
    default = sys.excepthook

    def hook(kind, value, traceback):
        if issubclass(kind, KeyboardInterrupt):
            print(f"{name}: interrupted", file=sys.stderr)
            return
        default(kind, value, traceback)

    sys.excepthook = hook
