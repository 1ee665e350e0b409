"""What every stage does around its work: a header line, a timer, clean exits."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def stage(name: str):
    """Print the stage's start and total time; Ctrl-C exits with 130 and no traceback."""
    log(f"== stage {name} ==")
    start = time.perf_counter()
    try:
        yield
    except KeyboardInterrupt:
        log(f"== stage {name} interrupted after {time.perf_counter() - start:.1f} s ==")
        sys.exit(130)
    log(f"== stage {name} done in {time.perf_counter() - start:.1f} s ==")
