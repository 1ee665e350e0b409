"""The machine facts recorded beside every result (report header, MLflow tags, benchmark)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy

from pipeline import machine


def test_describe_names_cpu_cores_numpy_and_blas():
    line = machine.describe()
    assert line.startswith(machine.cpu_model() + f", {os.cpu_count()} cores, ")
    assert f"Python {platform.python_version()}, numpy {numpy.__version__}" in line
    assert "OpenBLAS" in line  # numpy's wheels bring OpenBLAS
    assert machine.blas_summary() in line


def test_cpu_model_reads_proc_cpuinfo_and_falls_back_without_it(monkeypatch):
    """The model name first: ``platform.processor()`` says "x86_64" on many Linux machines."""
    monkeypatch.setattr(platform, "processor", lambda: "x86_64")
    if Path("/proc/cpuinfo").exists():
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        if names:
            assert machine.cpu_model() == names[0] != "x86_64"

    def unreadable(self, *args, **kwargs):
        raise OSError("no such file")

    monkeypatch.setattr(Path, "read_text", unreadable)
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert machine.cpu_model() == "unknown"
    monkeypatch.setattr(platform, "processor", lambda: "x86_64")
    assert machine.cpu_model() == "x86_64"


def test_machine_info_lists_each_blas_library():
    info = machine.machine_info()
    assert info["cores"] == os.cpu_count() and info["numpy"] == numpy.__version__
    assert info["blas"] and all(lib["internal_api"] and lib["version"] for lib in info["blas"])


def test_blas_summary_names_scipys_library_whatever_was_imported_before():
    code = ("from pipeline.machine import blas_summary; s = blas_summary(); "
            "import pipeline.nn; assert blas_summary() == s, (s, blas_summary()); print(s)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_kernel_set_pinned_by_the_environment_is_recorded(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    assert machine.blas_summary().endswith(", kernels set by OPENBLAS_CORETYPE=Haswell")
    assert machine.machine_info()["blas_kernels_set_by"] == "OPENBLAS_CORETYPE=Haswell"
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    assert "kernels set by" not in machine.blas_summary()
    assert machine.machine_info()["blas_kernels_set_by"] == "OpenBLAS"


def test_a_pin_below_the_cpus_avx512_is_named_with_the_way_to_lift_it(monkeypatch):
    avx512 = {"sse2", "avx2", "fma", *machine.AVX512_FLAGS}
    monkeypatch.setattr(machine, "cpu_flags", lambda: avx512)
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    note = machine.kernel_pin_note("python -m pipeline.bench")
    assert "OPENBLAS_CORETYPE=Haswell pins OpenBLAS to its Haswell kernels" in note
    assert note.endswith("env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pipeline.bench")
    assert machine.kernel_pin_note().endswith(" dvc repro")
    monkeypatch.setenv("OPENBLAS_CORETYPE", "SKYLAKEX")  # already AVX-512 kernels: no note
    assert machine.kernel_pin_note() == ""
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"sse2", "avx2", "fma", "avx512f"})
    assert machine.kernel_pin_note() == ""  # a CPU without the SkylakeX set: Haswell is its best
    monkeypatch.setattr(machine, "cpu_flags", lambda: avx512)
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    assert machine.kernel_pin_note() == ""


def test_cpu_flags_reads_proc_cpuinfo_and_is_empty_without_it(monkeypatch):
    if Path("/proc/cpuinfo").exists() and platform.machine() == "x86_64":
        assert "sse2" in machine.cpu_flags()

    def unreadable(self, *args, **kwargs):
        raise OSError("no such file")

    monkeypatch.setattr(Path, "read_text", unreadable)
    assert machine.cpu_flags() == set()


def test_blas_summary_names_every_library_the_engine_runs_on():
    """numpy's and scipy's OpenBLAS can be different builds: the record names both."""
    summary = machine.blas_summary()
    for lib in machine.blas_libraries():
        assert f" {lib['version']}" in summary, (lib, summary)


def test_only_blas_libraries_are_named_not_the_openmp_runtime_beside_them(monkeypatch):
    """threadpoolctl lists OpenMP runtimes too (scikit-learn's libgomp): they are not a BLAS."""
    import threadpoolctl

    found = [{"user_api": "blas", "internal_api": "openblas", "version": "0.3.27", "architecture": "Haswell",
              "num_threads": 2, "prefix": "libopenblas"},
             {"user_api": "openmp", "internal_api": "openmp", "version": None, "num_threads": 2, "prefix": "libgomp"}]
    monkeypatch.setattr(threadpoolctl, "threadpool_info", lambda: found)
    assert machine.blas_libraries() == [{"internal_api": "openblas", "version": "0.3.27", "architecture": "Haswell",
                                         "num_threads": 2}]


def test_blas_summary_names_each_library_once_in_one_order_whatever_loaded_first(monkeypatch):
    """numpy's and scipy's copies of one build are named once; the order does not follow load
    order; a library without a kernel set (MKL) is named without one, and is not said to be
    OpenBLAS in the benchmark's record."""
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    openblas = {"internal_api": "openblas", "version": "0.3.27", "architecture": "SkylakeX", "num_threads": 2}
    mkl = {"internal_api": "mkl", "version": "2024.0", "architecture": None, "num_threads": 2}
    monkeypatch.setattr(machine, "blas_libraries", lambda: [openblas, mkl, dict(openblas)])
    assert machine.blas_summary() == "MKL 2024.0, OpenBLAS 0.3.27 (SkylakeX)"
    monkeypatch.setattr(machine, "blas_libraries", lambda: [mkl, openblas])
    assert machine.blas_summary() == "MKL 2024.0, OpenBLAS 0.3.27 (SkylakeX)"
    monkeypatch.setattr(machine, "blas_libraries", lambda: [mkl])
    assert machine.machine_info()["blas_kernels_set_by"] is None
    monkeypatch.setattr(machine, "blas_libraries", lambda: [])  # none loaded: nothing to say, pinned or not
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    assert machine.blas_summary() == ""
    assert not machine.describe().endswith(", ")  # nor an empty BLAS at the end of the line
