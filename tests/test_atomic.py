"""Atomic writes: a reader sees the old file or the new one, never half; no temp file outlives
its writer for long."""

import os
import subprocess
import sys
import time

import pytest

from pipeline.atomic import STALE_SECONDS, OutputNotWritten, atomic_path, write_json, write_text


def temps(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or ".tmp." in p.name)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"seed": 1, "accuracy": 0.95})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"accur')  # half written, then the writer fails
            raise RuntimeError("disk full")
    assert target.read_text() == '{\n  "seed": 1,\n  "accuracy": 0.95\n}\n'  # the keys in their order
    assert temps(tmp_path) == []


@pytest.mark.skipif(os.name == "nt", reason="POSIX: a folder is flushed through a descriptor")
def test_the_new_file_and_its_rename_are_flushed_to_disk_before_the_write_returns(tmp_path, monkeypatch):
    """A power cut after a write must find the new file whole, not a renamed empty one: its
    bytes are flushed before the rename, and the folder's entry after it."""
    import pipeline.atomic as atomic

    flushed, real_fsync = [], os.fsync

    def fsync(fd):
        flushed.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else fd)
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    target = tmp_path / "history.csv"
    write_text(target, "seed,epoch\n")
    assert len(flushed) == 2
    if isinstance(flushed[0], str):  # where /proc names the descriptors: the temp, then the folder
        assert ".history.csv.pid" in flushed[0] and flushed[1] == str(tmp_path)


def test_a_written_file_has_the_usual_mode_not_mkstemps_0600(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    write_text(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def writer_holding(target, sleep=60):
    """A process that starts an atomic write of ``target`` and holds it; its temp's path."""
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom pipeline.atomic import atomic_path\n"
         "with atomic_path(sys.argv[1]) as tmp:\n"
         f"    tmp.write_text('epoch,acc\\n0,0.9')\n    print(tmp, flush=True)\n    time.sleep({sleep})\n",
         str(target)], stdout=subprocess.PIPE, text=True)
    return writer, writer.stdout.readline().strip()


def age(path, seconds):
    """Set ``path``'s times ``seconds`` into the past."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_an_old_temp_of_a_killed_writer_goes_at_the_next_write_a_live_or_young_one_stays(tmp_path):
    target = tmp_path / "history.csv"
    killed, left_behind = writer_holding(target)  # killed by SIGKILL mid-write: no `finally` runs
    killed.kill()
    killed.wait()
    live, held = writer_holding(target)  # another process, still writing
    try:
        age(held, 2 * STALE_SECONDS)
        write_text(target, "epoch,acc\n0,0.9\n")
        # the dead writer's temp is young (a writer on another host would look the same): kept
        assert temps(tmp_path) == sorted(os.path.basename(p) for p in (left_behind, held))
        age(left_behind, 2 * STALE_SECONDS)
        with atomic_path(target) as mine:
            assert temps(tmp_path) == sorted([os.path.basename(held), mine.name])  # the old dead one went
            mine.write_text("epoch,acc\n0,0.91\n")
        assert temps(tmp_path) == [os.path.basename(held)]  # the live writer's stays, however old
        assert target.read_text() == "epoch,acc\n0,0.91\n"
    finally:
        live.kill()
        live.wait()


def test_temps_of_other_files_are_left_alone_even_when_their_names_look_alike(tmp_path):
    strangers = [
        tmp_path / ".history.csv.pid999999999.abc.tmp",  # another file's temp
        tmp_path / ".metrics.json.pid7.json.pid999999999.abc.tmp",  # the temp of "metrics.json.pid7.json"
        tmp_path / ".metrics.json.somebody.tmp",  # not a name this module makes
    ]
    for stranger in strangers:
        stranger.write_text("")
        age(stranger, 2 * STALE_SECONDS)
    write_text(tmp_path / "metrics.json", "{}")
    assert all(stranger.exists() for stranger in strangers)


def test_a_stale_temp_removed_by_another_writer_meanwhile_is_no_error(tmp_path, monkeypatch):
    """Two writers of one file both clean up: the temp one lists may be gone when it looks."""
    from pipeline import atomic

    stale = tmp_path / ".metrics.json.pid999999999.abc.tmp"
    stale.write_text("")
    age(stale, 2 * STALE_SECONDS)

    def dead_and_cleaned_up_meanwhile(pid):
        stale.unlink()  # the other writer's cleanup, between the listing and the look at its age
        return False

    monkeypatch.setattr(atomic, "process_alive", dead_and_cleaned_up_meanwhile)
    write_text(tmp_path / "metrics.json", "{}")
    assert (tmp_path / "metrics.json").read_text() == "{}" and temps(tmp_path) == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full, a device that is always full")
def test_a_full_disk_names_the_file_being_written_and_leaves_no_temporary_file(tmp_path):
    """The kernel's ENOSPC on a write names no file; the error that leaves names the output."""
    import errno

    from pipeline.atomic import disk_error_message

    out = tmp_path / "metrics.json"
    with pytest.raises(OSError) as info:
        with atomic_path(out), open("/dev/full", "w") as full:
            full.write("{}")
            full.flush()
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(out)
    assert list(tmp_path.iterdir()) == []
    assert disk_error_message(info.value) == (
        f"could not write {out}: No space left on device. Nothing half-written is left: the output "
        f"is written to a temporary file first. Make room, then run it again")
    # a write of someone else's (a library's copy) is not known to be whole
    assert disk_error_message(OSError(errno.EDQUOT, "Disk quota exceeded")).endswith("Make room, then run it again")
    assert disk_error_message(OSError(errno.EROFS, "Read-only file system")) == (
        "could not write a file: Read-only file system. The file system is read-only: run it where "
        "it can write, then run it again")
    # no permission, reading or writing: the file named, with the fix
    assert disk_error_message(PermissionError(errno.EACCES, "Permission denied", "results/x/metrics.json")) == (
        "no permission for results/x/metrics.json: Permission denied. Give this user access to it (read "
        "access to an input; write access to an output and its folder), or run where it has, then run it again")
    assert disk_error_message(OSError(errno.EPERM, "Operation not permitted")).startswith(
        "no permission for a file: Operation not permitted. Give this user")
    assert disk_error_message(OSError(errno.ENETUNREACH, "Network is unreachable")) is None
    assert disk_error_message(ValueError("not a disk")) is None


def test_a_folder_that_cannot_be_written_is_named_before_any_work(tmp_path, lock_folders):
    import errno

    from pipeline.atomic import check_writable, disk_error_message

    check_writable(tmp_path / "made" / "here")  # made, written, and left empty
    assert list((tmp_path / "made" / "here").iterdir()) == []

    lock_folders()
    with pytest.raises(PermissionError) as info:
        check_writable(tmp_path / "locked")
    assert (info.value.errno, info.value.filename) == (errno.EACCES, str(tmp_path / "locked"))
    assert "Nothing half-written" not in disk_error_message(info.value)  # nothing was being written

    # a write there fails at its temporary file, yet names the output
    with pytest.raises(OutputNotWritten) as info:
        write_text(tmp_path / "locked" / "metrics.json", "{}")
    assert (info.value.errno, info.value.filename) == (errno.EACCES, str(tmp_path / "locked" / "metrics.json"))


def test_whether_a_process_is_alive_is_never_asked_of_windows_by_os_kill(monkeypatch):
    """On Windows os.kill(pid, 0) ends the process: every pid counts as alive there, so no
    run is taken for an orphan and nothing is killed."""
    from pipeline import atomic

    def kill(pid, sig):
        raise AssertionError("os.kill called")

    assert atomic.process_alive(os.getpid())
    monkeypatch.setattr(atomic.os, "kill", kill)
    monkeypatch.setattr(atomic.os, "name", "nt")
    assert atomic.process_alive(2**22 + 12345)


def test_a_process_of_another_user_counts_as_alive(monkeypatch):
    """``os.kill(pid, 0)`` on another user's process is refused, not failed: its temps stay."""
    from pipeline import atomic

    def kill(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(atomic.os, "kill", kill)
    assert atomic.process_alive(1)
