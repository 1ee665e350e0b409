"""The helper scripts: the GPU one run on the CPU (it must keep working where CI cannot reach
a GPU), and the vote of saved nets."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_book_gpu.py"
VOTE = SCRIPT.with_name("vote_saved_nets.py")


@pytest.mark.realdata
def test_train_book_gpu_trains_a_book_run_from_the_raw_files(mnist_raw_dir, tmp_path):
    out = tmp_path / "ch6-fc.json"
    subprocess.run([sys.executable, str(SCRIPT), "ch6-fc", "--seed", "1", "--device", "cpu", "--epochs", "2",
                    "--raw", str(mnist_raw_dir), "--out", str(out)], check=True, capture_output=True)
    result = json.loads(out.read_text())
    assert [r["epoch"] for r in result["records"]] == [0, 1]
    assert result["book"]["value"] == 0.978 and result["test_at_best_validation"] > 0.9


def test_train_book_gpu_refuses_a_run_on_the_expanded_set(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "ch6-expanded", "--raw", str(tmp_path),
                           "--out", str(tmp_path / "x.json")], capture_output=True, text=True)
    assert done.returncode == 2 and "trains on 'shifted'" in done.stderr, done.stderr


def test_vote_saved_nets_matches_a_vote_computed_here(tmp_path):
    import numpy as np

    from pipeline.data.mnist import load_dataset, save_images
    from pipeline.nn import build_network, plurality_vote, save_model

    rng = np.random.default_rng(0)
    for split in ("validation", "test"):
        labels = rng.integers(0, 10, 50).astype(np.uint8)
        save_images(tmp_path / "prepared" / f"{split}.npz",
                    (rng.random((50, 28, 28)) * 255).astype(np.uint8), labels)
    spec = {"model": {"input_shape": [784], "cost": "cross_entropy", "init": "large",
                      "layers": [{"type": "fc", "units": 5}, {"type": "fc", "units": 10}]},
            "training": {"epochs": 1, "batch_size": 10, "eta": 0.1}}
    dirs, nets = [], []
    for seed in (1, 2, 3, 4):
        net = build_network(dict(spec, training=dict(spec["training"], seed=seed)))
        dirs.append(tmp_path / f"seed{seed}")
        save_model(dirs[-1], net, spec)
        nets.append(net)
    out = tmp_path / "vote.json"
    subprocess.run([sys.executable, str(VOTE), *map(str, dirs), "--prepared",
                    str(tmp_path / "prepared"), "--out", str(out)], check=True, capture_output=True)
    result = json.loads(out.read_text())
    test = load_dataset(tmp_path / "prepared" / "test.npz")
    votes = [net.predict(test.x) for net in nets]
    assert result["test_errors"] == int(np.sum(plurality_vote(votes, 10) != test.y))
    assert result["test_errors_by_subset"]["1+3+4"] == int(
        np.sum(plurality_vote([votes[0], votes[2], votes[3]], 10) != test.y))
    assert sorted(result["test_errors_by_subset"]) == ["1+2+3", "1+2+3+4", "1+2+4", "1+3+4", "2+3+4"]
