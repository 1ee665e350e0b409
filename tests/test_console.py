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


def test_a_scripts_mistakes_and_its_stop_are_one_line_each(capsys):
    import errno
    import signal

    import pytest

    from pipeline.console import run_command
    from pipeline.errors import InputError
    from pipeline.interrupts import Terminated

    def raising(error):
        def main():
            raise error
        return main

    cases = [(InputError("--raw x: it must hold the four MNIST files"), 2,
              "tool: --raw x: it must hold the four MNIST files\n"),
             (FileNotFoundError("params.yaml not found: run it from the repository root"), 2,
              "tool: params.yaml not found: run it from the repository root\n"),
             (PermissionError(errno.EACCES, "Permission denied", "out.json"), 2,
              "tool: no permission for out.json: Permission denied."),
             (KeyboardInterrupt(), 130, "tool: interrupted\n"),
             (Terminated("stopped", signal.SIGTERM), 143, "tool: interrupted\n")]
    for error, status, line in cases:
        assert run_command("tool", raising(error)) == status
        assert capsys.readouterr().err.startswith(line)
    assert run_command("tool", lambda: 1) == 1 and run_command("tool", lambda: None) == 0
    for bug in (KeyError("seeds"), IsADirectoryError(errno.EISDIR, "Is a directory", "x")):
        with pytest.raises(type(bug)):  # ours to fix: a traceback
            run_command("tool", raising(bug))


def test_a_ctrl_c_nothing_caught_is_one_line_naming_the_module_and_a_bug_keeps_its_traceback(monkeypatch, capsys):
    """``python -m pipeline.<module>``'s hook (pipeline/__init__.py): a Ctrl-C or SIGTERM during
    the imports, before the module's own handling, is one line; any other error is passed on."""
    import signal

    from pipeline.console import ctrl_c_in_one_line
    from pipeline.interrupts import Terminated

    passed_on = []
    monkeypatch.setattr(sys, "orig_argv", [sys.executable, "-m", "pipeline.report", "--help"])
    monkeypatch.setattr(sys, "excepthook", lambda kind, value, traceback: passed_on.append(kind))
    ctrl_c_in_one_line()
    sys.excepthook(KeyboardInterrupt, KeyboardInterrupt(), None)
    sys.excepthook(Terminated, Terminated("stopped", signal.SIGTERM), None)
    assert capsys.readouterr().err == "pipeline.report: interrupted\n" * 2
    assert passed_on == []
    sys.excepthook(ValueError, ValueError("a bug"), None)
    assert passed_on == [ValueError]
