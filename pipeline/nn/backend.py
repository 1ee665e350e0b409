"""Array-module switch: numpy on the CPU, CuPy on an NVIDIA GPU.

Every array the engine creates comes from the module returned by :func:`get_xp`, so the same
code runs on both. CuPy is imported only when a GPU is asked for.
"""

from __future__ import annotations

from typing import Any

import numpy

from pipeline.errors import InputError

GPU_HINT = (
    "install the GPU extra with `pip install -e '.[gpu]'` (CuPy for CUDA 12; for CUDA 13 "
    "`pip install cupy-cuda13x`) on a machine with an NVIDIA GPU and driver, or use device: cpu"
)


class BackendError(InputError, RuntimeError):
    """The requested device cannot be used."""


def get_xp(device: str = "cpu"):
    """Return the array module for ``device``: ``"cpu"`` -> numpy, ``"gpu"`` -> cupy."""
    if device == "cpu":
        return numpy
    if device != "gpu":
        raise ValueError(f"device: unknown {device!r}; allowed: cpu, gpu")
    try:
        import cupy  # optional dependency, imported lazily on purpose
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise BackendError(f"device 'gpu' needs CuPy, which is not installed: {GPU_HINT}") from exc
    try:  # pragma: no cover - depends on the machine
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # pragma: no cover - CUDA missing or driver broken
        raise BackendError(f"device 'gpu': CuPy cannot reach a CUDA device ({exc}); {GPU_HINT}") from exc
    if count < 1:  # pragma: no cover
        raise BackendError(f"device 'gpu': no CUDA device found; {GPU_HINT}")
    return cupy  # pragma: no cover


def to_numpy(a: Any) -> numpy.ndarray:
    """Copy a CuPy array to the host; pass numpy arrays (and array-likes) through."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return numpy.asarray(a)


def synchronize(xp) -> None:
    """Wait until the device has done every kernel queued so far; nothing on the CPU. CuPy
    returns once work is queued, so a clock read without this times the queuing, not the work."""
    if xp is not numpy:
        xp.cuda.Device().synchronize()
