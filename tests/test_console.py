"""Progress lines from processes that share stderr stay whole (pipeline.console)."""

from __future__ import annotations

import os
import subprocess
import sys

from pipeline.console import say

WRITER = """
import sys
from pipeline.console import say
for i in range({lines}):
    say("[seed {seed}] epoch %d " % i + "{seed}" * 120)
"""


def test_a_line_and_its_newline_go_out_in_one_write(monkeypatch):
    writes = []

    class Recorder:
        def write(self, text):
            writes.append(text)

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stderr", Recorder())
    say("[seed 1] epoch 3/29  val acc 94.05%")
    assert writes == ["[seed 1] epoch 3/29  val acc 94.05%\n"]


def test_two_processes_writing_to_one_pipe_never_run_their_lines_together():
    """The way two seeds share a stage's stderr under `dvc repro` (print's two writes ran
    lines together in quick-26's log)."""
    lines = 3000
    read, write = os.pipe()
    writers = [subprocess.Popen([sys.executable, "-c", WRITER.format(lines=lines, seed=seed)],
                                stdout=subprocess.DEVNULL, stderr=write) for seed in (1, 2)]
    os.close(write)
    with open(read, encoding="utf-8") as pipe:
        out = pipe.read().splitlines()
    assert [w.wait() for w in writers] == [0, 0]
    assert len(out) == 2 * lines
    for line in out:
        seed = line[len("[seed "):len("[seed ") + 1]
        assert line.startswith(f"[seed {seed}] epoch ") and line.endswith(" " + seed * 120), line
