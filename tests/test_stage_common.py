"""The frame around every stage: how it ends on Ctrl-C, on bad input and on a bug."""

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

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
    # a bad setting stays in params.yaml after a failed `dvc exp run -S`: where, and how to reset it
    assert ("the value is params.yaml's" in err and "python -m pipeline.config" in err) == \
        isinstance(error, SpecError)


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


def test_a_stage_killed_mid_write_exits_143_and_leaves_no_temporary_file(tmp_path):
    """A real SIGTERM (what `kill` and DVC send): the stage's clean-up runs, so the output's
    temporary file is removed and the stage says it was interrupted."""
    import signal

    script = (
        "import sys, time\n"
        "from pipeline.atomic import atomic_path\n"
        "from pipeline.stages._common import stage\n"
        "with stage('download'):\n"
        "    with atomic_path(sys.argv[1]) as tmp:\n"
        "        tmp.write_bytes(b'half')\n"
        "        print('writing', flush=True)\n"
        "        time.sleep(120)\n"
    )
    out = tmp_path / "out" / "train-images-idx3-ubyte"
    process = subprocess.Popen([sys.executable, "-c", script, str(out)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    assert process.stdout.readline().strip() == "writing"
    # which signals the child blocks and ignores: a SIGTERM that never lands (seen once in CI,
    # 2026-12-05; the child has one thread, so the kernel cannot have handed it to another) is
    # then told apart from a handler that does not run
    status = [line for line in Path(f"/proc/{process.pid}/status").read_text().splitlines()
              if line.startswith(("Threads", "SigBlk", "SigIgn", "SigCgt"))] if sys.platform == "linux" else []
    process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"SIGTERM did not stop the stage within 60 s; the child's signal masks: {status}")
    assert process.returncode == 143, err
    assert "== stage download interrupted after" in err and "Traceback" not in err
    assert list(out.parent.iterdir()) == []


@pytest.mark.skipif(sys.platform != "linux", reason="process ancestry read from /proc (psutil)")
def test_a_stage_whose_dvc_was_killed_outright_stops_cleanly(tmp_path):
    """`dvc queue kill --force` kills DVC's runner with SIGKILL, not the stage it started: the
    stage (run by DVC: DVC_ROOT set) notices its parent is gone and stops as on SIGTERM."""
    import signal

    import psutil

    stage_script = (
        "import time\n"
        "from pipeline.stages._common import stage\n"
        "with stage('train@x'):\n"
        "    print('training', flush=True)\n"
        "    time.sleep(120)\n"
    )
    runner_script = (  # stands for `dvc exp exec-run`: starts the stage, then waits on it
        "import subprocess, sys\n"
        f"log = open({str(tmp_path / 'stage.log')!r}, 'w')\n"
        f"child = subprocess.Popen([sys.executable, '-c', {stage_script!r}], stdout=log, stderr=log)\n"
        "print(child.pid, flush=True)\n"
        "child.wait()\n"
    )
    env = dict(os.environ, DVC_ROOT=str(tmp_path))
    runner = subprocess.Popen([sys.executable, "-c", runner_script], stdout=subprocess.PIPE, text=True,
                              env=env, cwd=Path(__file__).resolve().parents[1])
    stage_process = psutil.Process(int(runner.stdout.readline()))
    try:
        log = tmp_path / "stage.log"
        for _ in range(300):
            if "training" in log.read_text():
                break
            time.sleep(0.1)
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=10)
        stage_process.wait(timeout=30)  # not our child: its status is not ours to read
        assert "== stage train@x interrupted after" in log.read_text(), log.read_text()
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            stage_process.kill()


def test_a_stage_whose_working_folder_was_removed_says_so(tmp_path, monkeypatch, capsys):
    gone = tmp_path / "exp-copy"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()  # as DVC removes a queued experiment's temporary copy
    with pytest.raises(SystemExit) as info:
        with stage("train@x"):
            Path("models").mkdir()
    assert info.value.code == 2
    assert "train@x: its working folder was removed while it ran" in capsys.readouterr().err


def test_a_stage_stopped_after_its_working_folder_was_removed_says_so_and_exits_130(tmp_path, monkeypatch,
                                                                                  capsys):
    gone = tmp_path / "exp-copy"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()  # `dvc queue stop --kill`: DVC removes the copy, and the stage is stopped
    with pytest.raises(SystemExit) as info:
        with stage("train@x"):
            raise KeyboardInterrupt
    assert info.value.code == 130
    err = capsys.readouterr().err
    assert "train@x: its working folder was removed while it ran" in err
    assert "== stage train@x interrupted after" in err


def test_a_ctrl_c_while_a_stage_loads_its_modules_prints_one_line():
    """Before ``stage()`` handles Ctrl-C, the module's imports (MLflow, pandas) take a second
    or two: a Ctrl-C there ends the process by SIGINT with one line, not a traceback."""
    import signal

    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")  # each import, as it ends, on stderr
    process = subprocess.Popen([sys.executable, "-m", "pipeline.stages.train", "no-such-run"],
                               stderr=subprocess.PIPE, text=True, env=env, cwd=Path(__file__).resolve().parents[1],
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in process.stderr:  # the hook is set once the package `pipeline` has loaded
        seen.append(line)
        if line.split("|")[-1].strip() == "pipeline":
            break
    process.send_signal(signal.SIGINT)
    err = process.stderr.read()
    assert process.wait(timeout=60) == -signal.SIGINT, "".join(seen[-5:]) + err
    assert "Traceback" not in err and err.splitlines()[-1] == "pipeline.stages.train: interrupted", err[-2000:]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, a device that is always full")
def test_a_full_disk_names_the_file_exits_2_and_leaves_no_temporary_file(tmp_path, capsys):
    """A write that the disk refuses (here the kernel's own ENOSPC, from /dev/full) names the
    output it was for and says what to do; the temporary file is gone."""
    from pipeline.atomic import atomic_path

    out = tmp_path / "results" / "metrics.json"
    with pytest.raises(SystemExit) as info:
        with stage("train@x"), atomic_path(out), open("/dev/full", "w") as full:
            full.write("{}")
            full.flush()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"train@x: could not write {out}: No space left on device. Nothing half-written" in err, err
    assert "Make room, then run it again" in err and "Traceback" not in err
    assert list(out.parent.iterdir()) == []


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
            at_start = gc.get_freeze_count()  # what existed before: frozen as the stage starts
            made_inside = [["still here"] for _ in range(1000)]  # lists: tracked by the collector
        assert at_start >= len(kept)
        # and what the work made, at its end (a few of the start's temporaries are gone by then)
        assert gc.get_freeze_count() >= at_start + len(made_inside) // 2
        assert made_inside[0] == ["still here"] and len(kept) == 1000
    finally:
        gc.unfreeze()  # give the test session's objects back to the collector


def _stage(module: str, *args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"pipeline.stages.{module}", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_an_unknown_run_or_set_is_named_with_those_there_and_exits_2():
    root = Path(__file__).resolve().parents[1]
    done = _stage("train", "ch9-nothing", cwd=root)
    assert done.returncode == 2, done.stderr
    assert "no run 'ch9-nothing' in params.yaml's book (have: ch1-30," in done.stderr
    assert "Traceback" not in done.stderr
    done = _stage("expand", "sheared", cwd=root)
    assert done.returncode == 2 and "no set 'sheared' in params.yaml's expand (have: " in done.stderr


def test_a_foreach_stage_called_without_its_name_prints_its_usage_and_exits_2(tmp_path):
    done = _stage("train", cwd=tmp_path)
    assert done.returncode == 2 and "usage: python -m pipeline.stages.train [-h] book_id" in done.stderr
    assert "the following arguments are required: book_id" in done.stderr


STAGE_MODULES = ["download", "prepare", "expand", "baselines", "train", "ensemble", "report"]


@pytest.mark.parametrize("module", STAGE_MODULES)
def test_a_stages_help_says_what_it_does_and_runs_nothing(module, tmp_path, monkeypatch, capsys):
    """``--help`` once ran the stage itself and rewrote its outputs."""
    import importlib
    import runpy

    monkeypatch.chdir(tmp_path)  # no params.yaml here: a stage that ran would fail, exit 2
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    # run as `python -m` runs it: not already imported (runpy warns of a module it would re-run)
    monkeypatch.delitem(sys.modules, f"pipeline.stages.{module}", raising=False)
    with pytest.raises(SystemExit) as stopped:
        runpy.run_module(f"pipeline.stages.{module}", run_name="__main__", alter_sys=False)
    assert stopped.value.code == 0
    printed = " ".join(capsys.readouterr().out.split())
    first_paragraph = importlib.import_module(f"pipeline.stages.{module}").__doc__.split("\n\n")[0]
    assert printed.startswith(f"usage: python -m pipeline.stages.{module} [-h]")
    assert " ".join(first_paragraph.split()) in printed
    assert list(tmp_path.iterdir()) == []


def test_a_stage_without_a_name_refuses_one(tmp_path):
    done = _stage("report", "ch1-30", cwd=tmp_path)  # refused before it looks for params.yaml
    assert done.returncode == 2 and "unrecognized arguments: ch1-30" in done.stderr


def test_a_stage_run_outside_the_repository_says_where_to_run_it_and_exits_2(tmp_path):
    done = _stage("prepare", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "params.yaml not found: run stages from the repository root" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [["pipeline.config"], ["pipeline.train", "profile=smoke"]])
def test_a_command_run_below_the_repository_root_names_the_root_and_exits_2(command):
    """From docs/, data/prepared/ and conf/ are not where the commands look: said at once,
    not as a missing file whose suggested `dvc repro` cannot run there either."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", *command], cwd=root / "docs", capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"takes its paths from the repository root: run it in {root} (not in {root / 'docs'})" in done.stderr
    assert not (root / "docs" / "outputs").exists()


def test_the_repository_root_is_the_nearest_folder_holding_dvc_yaml_and_conf_config_yaml(tmp_path):
    from pipeline.params import repo_root

    (tmp_path / "conf").mkdir()
    (tmp_path / "docs" / "figures").mkdir(parents=True)
    assert repo_root(tmp_path) is None
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    assert repo_root(tmp_path) is None  # dvc.yaml alone: another DVC project
    (tmp_path / "conf" / "config.yaml").write_text("defaults: []\n")
    assert repo_root(tmp_path) == repo_root(tmp_path / "docs" / "figures") == tmp_path.resolve()
    (tmp_path / "dvc.yaml").unlink()
    assert repo_root(tmp_path) is None  # conf/config.yaml alone: a Hydra app


def test_a_download_no_source_can_serve_names_the_sources_and_exits_2(tmp_path):
    """No mirror, no npm: only a local folder holding a damaged copy of the first file, so
    every source fails and the stage says what it tried, as a user's mistake (status 2), not as
    a crash, and leaves the damaged bytes nowhere in the data folder."""
    import yaml

    from pipeline.data.fetch import MNIST_FILES
    from pipeline.params import load_params

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / MNIST_FILES[0].name).write_bytes(b"\0" * 1000)
    params["download"].update(sources=["local"], local_dir=str(tmp_path / "damaged"))
    params["data"]["raw_dir"] = "raw"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = _stage("download", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "download: " in done.stderr and "damaged" in done.stderr and "Traceback" not in done.stderr
    assert not [p.name for p in (tmp_path / "raw").iterdir()], "nothing half-fetched is left behind"


@pytest.mark.parametrize("module, name, section", [
    ("prepare", None, "data"), ("expand", "shifted", "expand"), ("baselines", None, "profile"),
    ("train", "ch1-30", "data"), ("ensemble", None, "book"), ("report", None, "baselines"),
])
def test_a_params_file_without_a_section_the_stage_reads_is_named_before_anything_runs(
        capsys, tmp_path, monkeypatch, module, name, section):
    """A hand-edited params.yaml that lost a section: the stage names it and how to write
    the file again (status 2), not a KeyError's traceback from wherever it was first read."""
    import importlib

    import yaml

    from pipeline.params import load_params

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    del params[section]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    main = importlib.import_module(f"pipeline.stages.{module}").main
    with pytest.raises(SystemExit) as info:
        main(*([name] if name else []))
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert f"{section}: missing: compose params.yaml with `python -m pipeline.config`" in err
    assert "Traceback" not in err and not [p.name for p in tmp_path.iterdir() if p.name != "params.yaml"]


def test_the_first_line_names_the_profile(capsys, tmp_path, monkeypatch):
    """A stage of the quick profile started by mistake shows in its first line."""
    monkeypatch.chdir(tmp_path)
    with stage("report"):
        pass
    assert capsys.readouterr().err.startswith("== stage report ==\n")  # no params.yaml: no profile
    (tmp_path / "params.yaml").write_text("profile: {name: smoke}\n")
    with stage("report"):
        pass
    assert capsys.readouterr().err.startswith("== stage report (profile smoke) ==\n")


def test_the_train_stage_hands_the_run_and_the_compute_settings_to_training(tmp_path, monkeypatch):
    """``compute`` (seed workers, BLAS threads, device) reaches the run from params.yaml."""
    import yaml

    from pipeline.params import load_params
    from pipeline.stages import train

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    params["compute"] = {"device": "cpu", "seed_workers": 3, "blas_threads": 2}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    seen = {}
    monkeypatch.setattr(train, "train_entry", lambda *args, **kwargs: seen.update(args=args, kwargs=kwargs))
    train.main("ch1-30")
    assert seen["args"] == ("ch1-30", params["book"]["ch1-30"], params["data"], params["profile"])
    assert seen["kwargs"]["compute"] == params["compute"]
    assert (seen["kwargs"]["model_dir"], seen["kwargs"]["results_dir"]) == (Path("models/ch1-30"),
                                                                            Path("results/ch1-30"))
