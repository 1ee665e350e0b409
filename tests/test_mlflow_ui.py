"""End to end: runs logged by pipeline.tracking show up in the MLflow UI's runs table, and
their models in the experiment's Models tab.

MLflow 3.x opens an experiment on its GenAI overview; the training-runs table lives at
``#/experiments/<id>/runs``. The page is a React app, so we render it in headless Chromium
and look for the run names in the resulting DOM.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from pipeline import tracking

RUN_NAMES = ("ch1-sigmoid-quadratic-ui", "ch3-crossentropy-l2-ui")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
    "--virtual-time-budget=15000",
]

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow")


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        message = "chromium not on PATH; install it with: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow server exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"mlflow server at {url} not healthy after {timeout}s")


def render_dom(browser: str, url: str) -> str:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        done = subprocess.run(
            [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=180,
        )
    return done.stdout


def test_runs_table_shows_logged_runs_and_the_models_tab_their_models(tmp_path, monkeypatch):
    browser = chromium()
    for name in ("MLFLOW_TRACKING_URI", "DVC_STAGE", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    from pipeline.nn import build_network, save_model, validate_spec

    spec = validate_spec({"model": {"input_shape": [784], "cost": "cross_entropy", "init": "default",
                                    "layers": [{"type": "fc", "units": 10, "activation": "sigmoid"}]},
                          "training": {"epochs": 1, "batch_size": 10, "eta": 0.5}})
    net = build_network(spec, seed=1)
    save_model(tmp_path / "net", net, spec)
    model_ids = []
    for name in RUN_NAMES:
        with tracking.start_run(name, params={"train": {"eta": 0.5}}) as run:
            run.log_epoch({"epoch": 0, "validation_accuracy": 0.9})
            model_ids.append(run.log_model([tmp_path / "net"], net, step=0))
    db = tmp_path / "mlflow.db"
    assert tracking.tracking_uri() == f"sqlite:///{db}"
    from mlflow.tracking import MlflowClient

    experiment_id = MlflowClient(f"sqlite:///{db}").get_experiment_by_name(
        tracking.EXPERIMENT
    ).experiment_id

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    log = (tmp_path / "server.log").open("w")
    # the README's `mlflow ui` from the repo root, with no store flags (a free port, one worker)
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_healthy(url, server)
        page = f"{url}/#/experiments/{experiment_id}/runs"
        dom = render_dom(browser, page)
        if not all(name in dom for name in RUN_NAMES):  # a slow machine: one more try
            dom = render_dom(browser, page)
        missing = [name for name in RUN_NAMES if name not in dom]
        assert not missing, f"runs {missing} not in the rendered runs table ({len(dom)} chars of DOM)"
        page = f"{url}/#/experiments/{experiment_id}/models"
        dom = render_dom(browser, page)
        if not all(model_id in dom for model_id in model_ids):
            dom = render_dom(browser, page)
        missing = [model_id for model_id in model_ids if model_id not in dom]
        assert not missing, f"models {missing} not in the rendered Models tab ({len(dom)} chars of DOM)"
        assert all(name in dom for name in RUN_NAMES)  # each listed with the run that logged it
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn/job workers
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        try:  # a worker that outlived the parent
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
