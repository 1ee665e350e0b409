"""End to end: a fresh copy of the repo, real git, real DVC, the pipeline on a small config."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def run(cmd, cwd, env):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def test_dvc_repro_data_stages_and_baselines(repo_copy, stage_env, mnist_raw_dir):
    overrides = ["download.sources=[mirrors,local]", f"download.local_dir={mnist_raw_dir}",
                 "download.timeout_s=5", "baselines.svm.train_limit=1000",
                 "baselines.sweep.sizes=[100,200]", "expand.rotated.angles=[-10,10]"]
    run([sys.executable, "-m", "pipeline.config", *overrides], repo_copy, stage_env)
    out = run(["dvc", "repro", "baselines", "expand"], repo_copy, stage_env)
    assert "stage download" in out and "<- local" in out

    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert (repo_copy / "data/raw" / name).is_file()
    metrics = json.loads((repo_copy / "results/baselines/metrics.json").read_text())
    assert metrics["darkness"]["test_correct"] == 2225
    assert metrics["svm"]["train_size"] == 1000 and metrics["svm"]["test_accuracy"] > 0.8
    assert sorted(metrics["mlflow_run_ids"]) == ["B-darkness", "B-svm", "svm-sweep"]  # pipeline.restore_runs reads them
    # the sweep's SVMs are fitted in the same pool as the main one
    sweep = json.loads((repo_copy / "results/baselines/svm_sweep.json").read_text())
    assert [p["n"] for p in sweep["points"]] == [100, 200]
    assert sweep["points"][1]["validation_accuracy"] > sweep["points"][0]["validation_accuracy"]
    from pipeline.data.mnist import load_images

    shifted, _ = load_images(repo_copy / "data/expanded/shifted.npz")
    rotated, _ = load_images(repo_copy / "data/expanded/rotated.npz")
    assert len(shifted) == 250_000 and len(rotated) == 150_000
    assert (repo_copy / "results/expand/rotated_preview.png").stat().st_size > 1000

    status = run(["dvc", "status", "baselines", "expand", "--with-deps"], repo_copy, stage_env)
    assert "up to date" in status
    again = run(["dvc", "repro", "baselines", "expand"], repo_copy, stage_env)
    assert "Running stage" not in again
    _the_damaged_cache_copy_hint_works(repo_copy, stage_env)


def _the_damaged_cache_copy_hint_works(repo_copy, stage_env):
    """A set whose copy in DVC's cache is damaged, its date kept (a disk's damage): DVC checks
    it out again as it is, unchecked; the loader's message gives the command that finds and
    deletes that copy, and with it gone the stage builds the right file again."""
    import hashlib
    import os
    import re

    from pipeline.data.mnist import load_images
    from pipeline.errors import InputError

    workspace = Path("data/prepared/validation.npz")
    right = hashlib.md5((repo_copy / workspace).read_bytes()).hexdigest()
    cache = Path(run(["dvc", "cache", "dir"], repo_copy, stage_env).strip().splitlines()[-1])
    copy = (repo_copy / cache) / "files" / "md5" / right[:2] / right[2:]
    dates = os.stat(copy)
    copy.chmod(0o644)
    with copy.open("r+b") as f:
        f.write(b"damaged!")
    os.utime(copy, ns=(dates.st_atime_ns, dates.st_mtime_ns))
    copy.chmod(0o444)
    (repo_copy / workspace).unlink()
    run(["dvc", "repro", "prepare"], repo_copy, stage_env)  # as the message's first sentence says
    with pytest.raises(InputError, match="delete it, then build it with `dvc repro prepare`") as info:
        load_images(repo_copy / workspace)
    command = re.search(r"\(`(find .*?)`\)", str(info.value)).group(1)
    found = run(["bash", "-c", command], repo_copy, stage_env)
    assert found.strip() == str(copy), found
    (repo_copy / workspace).unlink()
    run(["dvc", "repro", "prepare"], repo_copy, stage_env)
    assert hashlib.md5((repo_copy / workspace).read_bytes()).hexdigest() == right
    assert hashlib.md5(copy.read_bytes()).hexdigest() == right
