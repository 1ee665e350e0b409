"""What machine a result came from: CPU model, cores, numpy and its BLAS.

A seed's float32 run is the same to the last digit on one machine, run after run; another CPU
or BLAS may round differently and part ways. So the report, every MLflow run and the
benchmark record these facts beside their figures.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy


def _cpuinfo(field: str) -> str | None:
    """The first CPU's ``field`` in Linux's /proc/cpuinfo, or None where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what ``platform`` knows, else "unknown"."""
    return _cpuinfo("model name") or platform.processor() or "unknown"


def blas_libraries() -> list[dict]:
    """The BLAS libraries the engine runs on, numpy's and scipy's: API, version, kernel set.

    scipy's is loaded first if it is not yet (the engine loads it at import), so the answer
    does not depend on what the process happened to import before asking.
    """
    import scipy.linalg.blas  # noqa: F401 - loads scipy's OpenBLAS
    from threadpoolctl import threadpool_info  # imported here: a dependency of scikit-learn

    return [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for d in threadpool_info() if d.get("user_api") == "blas"]


def kernel_override() -> str:
    """"OPENBLAS_CORETYPE=Haswell" where the environment, not OpenBLAS, chose the kernel set
    (some shared machines pin one because older OpenBLAS builds misbehave on their CPUs; on
    an AVX-512 CPU, pinning Haswell about halves float32 GEMM's speed), else ""."""
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    return f"OPENBLAS_CORETYPE={coretype}" if coretype else ""


# OPENBLAS_CORETYPE names of OpenBLAS's AVX-512 kernel sets (lower case)
AVX512_KERNELS = ("skylakex", "cooperlake", "sapphirerapids")
# the AVX-512 subsets OpenBLAS's SkylakeX kernels use
AVX512_FLAGS = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux's /proc/cpuinfo), or an empty set where unknown."""
    return set((_cpuinfo("flags") or "").split())


def kernel_pin_note(command: str = "dvc repro") -> str:
    """A warning where the environment pins OpenBLAS below what the CPU runs, else "".

    With ``OPENBLAS_CORETYPE=Haswell`` on a CPU with AVX-512, OpenBLAS takes its AVX2 kernels:
    float32 GEMM at about half speed, and float32 runs that part ways in the last digits from
    those with OpenBLAS's own choice (SkylakeX), which the README's measurements used. The
    project keeps the machine's setting (the pin exists for older OpenBLAS builds); it says so
    and how to lift it for ``command``.
    """
    coretype = os.environ.get("OPENBLAS_CORETYPE", "")
    if not coretype or coretype.lower() in AVX512_KERNELS or not set(AVX512_FLAGS) <= cpu_flags():
        return ""
    return (f"note: OPENBLAS_CORETYPE={coretype} pins OpenBLAS to its {coretype} kernels on a CPU "
            "with AVX-512. On such a machine the pin made training 1.2-2.2x slower than "
            "OpenBLAS's own choice (SkylakeX), and float32 figures part ways in the last digits "
            "from the README's, which were measured with SkylakeX. Unless this machine's "
            f"OpenBLAS needs the pin, run without it: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE {command}")


def machine_info() -> dict:
    """The facts above as a dict (the benchmark's JSON)."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "blas": blas_libraries(),
        "blas_kernels_set_by": kernel_override() or ("OpenBLAS" if "OpenBLAS" in blas_summary() else None),
    }


def blas_summary() -> str:
    """E.g. "OpenBLAS 0.3.31 (SkylakeX)", one entry per distinct library, sorted (load order
    varies), and ", kernels set by OPENBLAS_CORETYPE=Haswell" where the environment chose
    them; "" when none is loaded."""
    seen = []
    for lib in blas_libraries():
        name = {"openblas": "OpenBLAS", "mkl": "MKL"}.get(lib["internal_api"], lib["internal_api"])
        text = f"{name} {lib['version']} ({lib['architecture']})" if lib["architecture"] else f"{name} {lib['version']}"
        if text not in seen:
            seen.append(text)
    summary, override = ", ".join(sorted(seen)), kernel_override()
    return f"{summary}, kernels set by {override}" if summary and override else summary


def describe() -> str:
    """One line: CPU, cores, OS, Python, numpy and BLAS, for a report's header."""
    blas = blas_summary()
    return (f"{cpu_model()}, {os.cpu_count()} cores, {platform.machine()} {platform.system()}, "
            f"Python {platform.python_version()}, numpy {numpy.__version__}" + (f", {blas}" if blas else ""))
