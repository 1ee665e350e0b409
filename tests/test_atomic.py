"""Atomic writes: a reader sees the old file or the new one, never half; no temp file outlives
its writer for long."""

import os
import subprocess
import sys
import time

import pytest

from pipeline.atomic import atomic_path, write_json, write_text


def temps(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or ".tmp." in p.name)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"accuracy": 0.95})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"accur')  # half written, then the writer fails
            raise RuntimeError("disk full")
    assert target.read_text() == '{\n  "accuracy": 0.95\n}\n'
    assert temps(tmp_path) == []


def test_a_written_file_has_the_usual_mode_not_mkstemps_0600(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    write_text(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_the_temp_of_a_killed_writer_goes_at_the_next_write_a_live_writers_stays(tmp_path):
    target = tmp_path / "history.csv"
    # a writer killed by SIGKILL mid-write: its `finally` never runs
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom pipeline.atomic import atomic_path\n"
         "with atomic_path(sys.argv[1]) as tmp:\n"
         "    tmp.write_text('epoch,acc\\n0,0.9')\n    print(tmp, flush=True)\n    time.sleep(60)\n",
         str(target)], stdout=subprocess.PIPE, text=True)
    left_behind = writer.stdout.readline().strip()
    writer.kill()
    writer.wait()
    assert temps(tmp_path) == [os.path.basename(left_behind)]

    with atomic_path(target) as mine:  # a live writer (this process) mid-write...
        assert temps(tmp_path) == [mine.name]  # ...the dead one's temp is gone, its own is there
        write_text(target, "epoch,acc\n0,0.9\n")  # ...and another write of the same file keeps it
        assert temps(tmp_path) == [mine.name]
        mine.write_text("epoch,acc\n0,0.91\n")
    assert temps(tmp_path) == []
    assert target.read_text() == "epoch,acc\n0,0.91\n"


def test_a_temp_of_another_file_or_of_another_name_is_left_alone(tmp_path):
    other = tmp_path / ".history.csv.pid999999999.abc.tmp"  # no such pid, but another file's temp
    other.write_text("")
    stranger = tmp_path / ".metrics.json.somebody.tmp"  # not a name this module makes
    stranger.write_text("")
    time.sleep(0.01)
    write_text(tmp_path / "metrics.json", "{}")
    assert other.exists() and stranger.exists()
