"""One line of progress to stderr, written whole; a Ctrl-C nothing caught, or a script's
mistake the user can fix, in one line.

Two seeds train side by side in two processes that share the stage's stderr. ``print`` writes a
line and its newline in two system calls, so the other process's line could land between them
and two lines run together in `dvc repro`'s log; one ``write`` of the whole line (well under a
pipe's atomic 4 KiB) keeps every line intact.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

from pipeline.atomic import disk_error_message
from pipeline.errors import EXIT_STATUS, InputError


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


def run_command(name: str, main: Callable[[], int | None]) -> int:
    """Run a command's ``main`` and give its exit status: a mistake the user can fix (an
    ``InputError``, a missing file) or a disk that refuses an output in one line, status 2;
    a Ctrl-C in one line, 130 (143 for a SIGTERM raised as one). For the scripts of
    ``scripts/``, which the stages' own handling (``pipeline.stages._common.stage``) does not
    reach; a bug of ours stays a traceback."""
    try:
        return main() or 0
    except KeyboardInterrupt as stopped:
        say(f"{name}: interrupted")
        return 128 + getattr(stopped, "signum", signal.SIGINT)
    except (InputError, OSError) as error:
        message = disk_error_message(error)
        if message is None and isinstance(error, (InputError, FileNotFoundError)):
            message = str(error)
        if message is None:
            raise
        say(f"{name}: {message}")
        return EXIT_STATUS
