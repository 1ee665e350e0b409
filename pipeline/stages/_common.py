"""What every stage does around its work: a header line, a timer, clean exits."""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from pipeline.atomic import disk_error_message
from pipeline.console import say as log  # every stage's progress line: one write, whole
from pipeline.errors import EXIT_STATUS, InputError, SettingError
from pipeline.interrupts import exit_status, stop_when_parent_dies, stops_raise_once
from pipeline.params import profile_name


def stage_command(module: str, doc: str | None, name: str | None = None, name_help: str = "") -> str | None:
    """Read the command line of stage ``module`` (its ``__spec__.name``): none but ``--help``,
    which says what the stage does (``doc``'s first paragraph) and runs nothing; a ``foreach``
    stage's one ``name`` (``train@<id>`` → ``<id>``) as well. A wrong call prints the usage and
    exits 2, as every user's mistake does."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}", description=" ".join((doc or "").split("\n\n")[0].split()),
        epilog="dvc.yaml says how `dvc repro` runs it. Run by hand, it reads params.yaml and "
               "writes its outputs in place (`dvc repro` would delete them first); where they "
               "differ from dvc.lock's, `dvc status` lists the stage and `dvc commit <stage>` "
               "records them.")
    if name:
        parser.add_argument(name, help=name_help)
    args = parser.parse_args()
    return getattr(args, name) if name else None


_FOLDER_REMOVED = ("its working folder was removed while it ran (a queued DVC experiment stopped with "
                   "`dvc queue kill --force` or `dvc queue stop --kill`, say); nothing it made was kept")


def _cwd_exists() -> bool:
    """Whether the folder the stage runs in is still there (DVC removes a queued experiment's
    temporary copy when the experiment is killed outright)."""
    try:
        return Path(os.getcwd()).is_dir()
    except OSError:  # getcwd of a removed folder
        return False


def _is_input_error(error: BaseException) -> bool:
    """A mistake the user can fix (``InputError``: a bad config value, a damaged input file, a
    device that is not there) or a missing input file (the message says which command makes
    it): the message is the whole story, a traceback only hides it."""
    return isinstance(error, (FileNotFoundError, InputError))


@contextmanager
def stage(name: str):
    """Print the stage's start and total time; Ctrl-C exits with 130 (SIGTERM 143) and no traceback, a bad
    config, a missing input or a full disk with 2 and its message alone."""
    # the profile up front: a stage of the hour-long quick profile started by mistake (a
    # `dvc exp run -S` without `-S profile=...`) shows in its first line
    profile = profile_name()
    log(f"== stage {name}" + (f" (profile {profile})" if profile else "") + " ==")
    # A stage's process holds some 300,000 objects once MLflow, pandas and matplotlib are
    # imported; Python's exit collects them again, 1.2 s a stage here. Frozen (moved out of
    # the collector's reach, not freed) they are left to the OS at exit, and the collector's
    # passes while training (forked seed workers' too) walk only what the work itself made.
    gc.freeze()
    if os.environ.get("DVC_ROOT"):  # run by DVC (not by hand, where a closed shell may leave it
        stop_when_parent_dies()     # running on purpose): DVC gone, the stage stops too
    start = time.perf_counter()
    try:
        # SIGTERM (a `kill`, DVC stopping) raises as Ctrl-C does, so the stage's clean-up runs:
        # a half-written output's temporary file is removed, not left behind
        with stops_raise_once(process_ends_on_stop=True):
            yield
    except KeyboardInterrupt as stopped:
        if not _cwd_exists():
            log(f"{name}: {_FOLDER_REMOVED}")
        log(f"== stage {name} interrupted after {time.perf_counter() - start:.1f} s ==")
        sys.exit(exit_status(stopped))
    except Exception as error:
        if (disk := disk_error_message(error)) is not None:
            log(f"{name}: {disk}")
        elif isinstance(error, FileNotFoundError) and not _cwd_exists():
            log(f"{name}: {_FOLDER_REMOVED}")
        elif _is_input_error(error):
            log(f"{name}: {error}")
            if isinstance(error, SettingError) and not error.message.startswith("missing"):
                # a stage reads its settings from params.yaml alone, where a failed `dvc exp run -S`
                # leaves the value it set
                log(f"{name}: the value is params.yaml's: for `dvc repro`, set it right there or write "
                    f"params.yaml again from conf/ with `python -m pipeline.config` (add "
                    f"profile={profile or '<name>'} for this profile); for `dvc exp run`, give it a "
                    f"right `-S` (or fix it in conf/)")
        else:
            raise
        log(f"== stage {name} failed after {time.perf_counter() - start:.1f} s ==")
        sys.exit(EXIT_STATUS)
    log(f"== stage {name} done in {time.perf_counter() - start:.1f} s ==")
    gc.freeze()
