"""End to end: a fresh copy of the repo, real git, real DVC, the pipeline on a small config."""

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def run(cmd, cwd, env):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def test_dvc_repro_data_stages_and_baselines(repo_copy, stage_env, mnist_raw_dir):
    overrides = ["download.sources=[mirrors,local]", f"download.local_dir={mnist_raw_dir}",
                 "download.timeout_s=5", "baselines.svm.train_limit=1000",
                 "expand.rotated.angles=[-10,10]"]
    run([sys.executable, "-m", "pipeline.config", *overrides], repo_copy, stage_env)
    out = run(["dvc", "repro", "baselines", "expand"], repo_copy, stage_env)
    assert "stage download" in out and "<- local" in out

    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert (repo_copy / "data/raw" / name).is_file()
    metrics = json.loads((repo_copy / "results/baselines/metrics.json").read_text())
    assert metrics["darkness"]["test_correct"] == 2225
    assert metrics["svm"]["train_size"] == 1000 and metrics["svm"]["test_accuracy"] > 0.8
    from pipeline.data.mnist import load_images

    shifted, _ = load_images(repo_copy / "data/expanded/shifted.npz")
    rotated, _ = load_images(repo_copy / "data/expanded/rotated.npz")
    assert len(shifted) == 250_000 and len(rotated) == 150_000
    assert (repo_copy / "results/expand/rotated_preview.png").stat().st_size > 1000

    status = run(["dvc", "status"], repo_copy, stage_env)
    assert "up to date" in status
    again = run(["dvc", "repro", "baselines", "expand"], repo_copy, stage_env)
    assert "Running stage" not in again
