"""The frame around every stage: how it ends on Ctrl-C, on bad input and on a bug."""

import pytest

from pipeline.nn.spec import SpecError
from pipeline.stages._common import stage


@pytest.mark.parametrize("error, message", [
    (SpecError("book.x.training.eta", "expected a number, got str 'fast'"),
     "train@x: book.x.training.eta: expected a number, got str 'fast'"),
    (FileNotFoundError("data/prepared/train.npz is missing: run `dvc repro` to build it"),
     "train@x: data/prepared/train.npz is missing: run `dvc repro` to build it"),
])
def test_bad_input_ends_with_its_message_alone_and_status_2(capsys, error, message):
    with pytest.raises(SystemExit) as info:
        with stage("train@x"):
            raise error
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "== stage train@x failed after" in err and "Traceback" not in err


def test_a_bug_keeps_its_traceback():
    with pytest.raises(RuntimeError, match="a bug"):
        with stage("report"):
            raise RuntimeError("a bug")


def test_ctrl_c_exits_130_and_sigterm_143():
    from pipeline.interrupts import Terminated

    with pytest.raises(SystemExit) as info:
        with stage("report"):
            raise KeyboardInterrupt
    assert info.value.code == 130
    with pytest.raises(SystemExit) as info:
        with stage("report"):
            raise Terminated("signal 15")
    assert info.value.code == 143


def test_a_users_mistake_exits_2_with_its_message_alone(capsys):
    from pipeline.nn import BackendError

    with pytest.raises(SystemExit) as info:
        with stage("train@x"):
            raise BackendError("device 'gpu' needs CuPy: pip install -e '.[gpu]'")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "train@x: device 'gpu' needs CuPy" in err and "Traceback" not in err


def test_a_finished_stage_leaves_its_objects_to_the_os_not_to_the_exits_collector():
    """What exists when a stage ends is frozen (``gc.freeze``), so the interpreter's exit does
    not walk it again; the objects themselves stay alive and usable."""
    import gc

    gc.unfreeze()
    kept = [[] for _ in range(1000)]
    try:
        with stage("report"):
            made_inside = {"still": "here"}
        assert gc.get_freeze_count() >= len(kept)
        assert made_inside["still"] == "here" and len(kept) == 1000
    finally:
        gc.unfreeze()  # give the test session's objects back to the collector
