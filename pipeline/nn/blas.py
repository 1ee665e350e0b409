"""BLAS threads on the CPU, and the in-place GEMM that only one thread makes pay.

A fully connected layer's SGD step can add -eta x^T delta into w with one scipy GEMM
(:meth:`pipeline.nn.layers.FullyConnected.backward_sgd`), and a conv layer shares a
mini-batch over threads of its own: both only while every BLAS in the process runs one
thread (``blas_single_threaded``). Training asks that once per epoch (``blas_threads_settled``)
and may pin one thread for small nets (``one_blas_thread``, :func:`pipeline.nn.train.run_epoch`).
"""

from __future__ import annotations

import contextlib

import numpy

# Loaded at import, not at the first step: scipy ships its own OpenBLAS, and a BLAS loaded
# inside a threadpoolctl limit keeps its default thread count (two processes, two threads
# each, on two cores spin-wait: a 2880x100 layer trained 5x slower).
from scipy.linalg.blas import get_blas_funcs

_GEMM_IN_PLACE: dict = {}
_BLAS_CONTROLLER = None


def _blas_controller():
    """threadpoolctl's view of the BLAS libraries loaded now, made once (a scan takes ms)."""
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER = ThreadpoolController().select(user_api="blas")
    return _BLAS_CONTROLLER


_SETTLED_SINGLE_THREADED: bool | None = None  # the answer fixed by ``blas_threads_settled``


def blas_single_threaded() -> bool:
    """Whether every BLAS in the process runs one thread now (a ctypes call each, ~1 us),
    or, inside ``blas_threads_settled``, the answer it checked on entry.

    The in-place GEMM below is scipy's, and scipy ships an OpenBLAS of its own beside numpy's.
    With two threads each, the two libraries' idle workers spin-wait against each other: on
    two cores the chapter 6 conv net at mini-batch 100 trained at 38 s an epoch with the
    in-place GEMM and 9 s without it. So the step takes it only with one BLAS thread.
    """
    if _SETTLED_SINGLE_THREADED is not None:
        return _SETTLED_SINGLE_THREADED
    return blas_single_threaded_now()


def blas_single_threaded_now() -> bool:
    """Whether every BLAS in the process runs one thread now, asked of each library; not where
    threadpoolctl sees none (Apple's Accelerate, numpy's BLAS on macOS 14+: unknown threads)."""
    libraries = _blas_controller().lib_controllers
    return bool(libraries) and all(lib.get_num_threads() == 1 for lib in libraries)


@contextlib.contextmanager
def blas_threads_settled():
    """Check ``blas_single_threaded`` once, and give that answer inside the block.

    For a training epoch, which changes no thread limit: every fully connected layer asks
    before every step, and the asking (two ctypes calls) was 6% of a 784-30-10 epoch.
    """
    global _SETTLED_SINGLE_THREADED
    saved = _SETTLED_SINGLE_THREADED
    _SETTLED_SINGLE_THREADED = blas_single_threaded_now()
    try:
        yield
    finally:
        _SETTLED_SINGLE_THREADED = saved


def one_blas_thread():
    """A context in which every BLAS library in the process runs one thread."""
    return _blas_controller().limit(limits=1)


def inplace_gemm(w):
    """scipy's BLAS GEMM for ``w``'s dtype if it can update w^T in place now, else None.

    None on the GPU, for a non-contiguous w, with several BLAS threads (see
    ``blas_single_threaded``), or where the GEMM would copy (probed once per dtype).
    """
    if not (isinstance(w, numpy.ndarray) and w.flags.c_contiguous and blas_single_threaded()):
        return None
    key = w.dtype.char
    if key not in _GEMM_IN_PLACE:
        gemm = None
        if w.dtype in (numpy.float32, numpy.float64):
            probe = numpy.ones((3, 2), dtype=w.dtype)
            f = get_blas_funcs("gemm", dtype=w.dtype)
            out = f(1.0, numpy.ones((1, 2), w.dtype).T, numpy.ones((1, 3), w.dtype).T, beta=1.0,
                    c=probe.T, trans_b=1, overwrite_c=1)
            if numpy.shares_memory(out, probe) and numpy.all(probe == 2.0):
                gemm = f
        _GEMM_IN_PLACE[key] = gemm
    return _GEMM_IN_PLACE[key]
