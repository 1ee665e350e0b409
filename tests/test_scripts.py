"""The GPU helper script, run on the CPU: it must keep working where CI cannot reach a GPU."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_book_gpu.py"


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
