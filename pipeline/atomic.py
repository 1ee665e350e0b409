"""Write files so that neither a reader nor a crash ever leaves half of one in place: a temp
file in the same folder, flushed to disk, renamed onto the name, and the rename flushed."""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)


STALE_SECONDS = 600  # a temp untouched this long, whose writer is gone, is a leftover
# a disk that is full, over its quota or read-only, or a file or folder this user may not
# write: the machine's state, not the code's fault
FULL = (errno.ENOSPC, errno.EDQUOT)
DENIED = (errno.EACCES, errno.EPERM)
DISK_ERRORS = (*FULL, errno.EROFS, *DENIED)


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one of another user counts). On
    Windows always true: ``os.kill(pid, 0)`` there would end the process."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temps(path: Path, suffix: str = "") -> list[Path]:
    """Delete the temp files of ``path`` left by writers that died mid-write (SIGKILL, power
    loss: no ``finally`` ran). A temp's name carries its writer's pid; one is removed only when
    no process has that pid here and the file is older than ``STALE_SECONDS`` (a writer in
    another container or on another host sharing the folder has a pid this machine does not
    know). Not on Windows, where ``os.kill(pid, 0)`` would end the process."""
    if os.name == "nt":
        return []
    pattern = re.compile(rf"\.{re.escape(path.name)}\.pid(\d+)\.[A-Za-z0-9_]+\.tmp{re.escape(suffix)}")
    removed = []
    now = time.time()
    with os.scandir(path.parent) as entries:
        for entry in entries:
            found = pattern.fullmatch(entry.name)
            if not found or process_alive(int(found.group(1))):
                continue
            try:
                if now - entry.stat().st_mtime > STALE_SECONDS:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
            except FileNotFoundError:  # removed meanwhile by another writer's cleanup
                pass
    return removed


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file, or a folder's entries) to disk; POSIX only (Windows cannot open
    a folder to flush it, and its renames are not the concern here)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success flush it to disk and rename it onto
    ``path`` (a power cut then leaves the old file or the new one, never an empty one), else
    delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path, suffix)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.pid{os.getpid()}.", suffix=f".tmp{suffix}",
                                   dir=path.parent)
    except OSError as error:
        if error.errno in DISK_ERRORS:  # named by the output, not by the temporary file's name
            raise OutputNotWritten(error.errno, error.strerror, str(path)) from error
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual mode
        _fsync(tmp_path)
        os.replace(tmp_path, path)
        _fsync(path.parent)
    except OSError as error:
        if error.errno in DISK_ERRORS and not isinstance(error, OutputNotWritten):
            # a write's error names no file: name the output that could not be written
            raise OutputNotWritten(error.errno, error.strerror, str(path)) from error
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


class OutputNotWritten(OSError):
    """The disk refused an output written through ``atomic_path`` (its ``filename``): its
    temporary file is gone, and the output is as it was before."""


def disk_error_message(error: BaseException) -> str | None:
    """What to tell the user when the disk refused a write (full, over quota, read-only, or
    no permission); None for any other error. Only an output of ours is known to be left
    whole; a copy made by a library (MLflow's artifacts) may be half-written."""
    if not isinstance(error, OSError) or error.errno not in DISK_ERRORS:
        return None
    if error.errno in DENIED:  # reading or writing: say which file, not "could not write"
        what = f"no permission for {error.filename}" if error.filename else "no permission for a file"
        fix = ("Give this user access to it (read access to an input; write access to an output and "
               "its folder), or run where it has, then run it again")
    else:
        what = f"could not write {error.filename}" if error.filename else "could not write a file"
        fix = ("Make room, then run it again" if error.errno in FULL else
               "The file system is read-only: run it where it can write, then run it again")
    whole = (" Nothing half-written is left: the output is written to a temporary file first."
             if isinstance(error, OutputNotWritten) else "")
    return f"{what}: {error.strerror}.{whole} {fix}"


def check_writable(folder: str | Path) -> None:
    """Make ``folder`` (and those above it) if needed and write a file in it, so that a stage
    that cannot write its outputs says so before its work, not after it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".write-check.pid{os.getpid()}.", dir=folder)
    except OSError as error:
        if error.errno in DISK_ERRORS:  # named by the folder; nothing was being written yet
            raise OSError(error.errno, error.strerror, str(folder)) from error
        raise
    try:
        os.close(fd)
    finally:
        os.unlink(probe)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_npz(path: str | Path, **arrays) -> None:
    """``numpy.savez`` (uncompressed: loads fast), atomically."""
    import numpy as np

    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
