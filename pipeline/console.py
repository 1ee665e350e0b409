"""One line of progress to stderr, written whole.

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
