"""What only the GPU path needs: fused kernels, cuBLAS GEMMs a CUDA graph can record, and the
CUDA-graph replay of the SGD step.

Imported lazily, only when a network lives on a GPU (``device: gpu``); nothing here runs on
the CPU.

Why graphs. At the book's mini-batch of 10 a GPU step is a hundred or so tiny kernels, and the
time goes into Python and launch overhead, not arithmetic: without graphs the chapter 6 ReLU
net took 6.5-9.3 s an epoch on an H200 (medians of two benchmark runs), no faster than one CPU
core; with them, 1.1 s. A CUDA graph records one whole step (forward, backward, update) once
and replays it with a single launch. A replay uses the very buffers and scalars (eta, the L2
shrink, 1/m) of the recorded step, so :func:`run_epoch_graphed` copies each mini-batch into a
fixed input buffer first, records a new graph every epoch (eta may change between epochs) and
runs the plain step for a last, smaller mini-batch.

What a recorded step may not do:

- Allocate. A temporary taken from CuPy's pool while recording would be baked into the graph
  and could later be handed to another array. So the GPU step is written without temporaries
  (the update and the softmax are one kernel each, col2im one GEMM and one gather kernel, bias
  gradients GEMVs), and recording runs under an allocator that refuses every request: a step
  that still allocates (L1, momentum with L2, a ``ConvPool`` built with ``ties="one"``, which
  only the tests build) is not recorded, and the run goes on with plain steps, with one line
  saying why.
- Call cuBLAS through CuPy, which refuses while a stream records ("calling cuBLAS API during
  stream capture is currently unsupported"), although cuBLAS itself records fine (PyTorch's
  CUDA graphs rely on it). So every GEMM of a GPU training step goes through :func:`gemm`,
  which calls the cuBLAS library CuPy has loaded through ctypes, on CuPy's own handle, in
  recorded and plain steps alike, so that both compute bit for bit the same.
- Draw dropout masks: a replay would repeat the recorded step's masks, so networks with
  dropout are never recorded.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache

import cupy
import numpy

__all__ = ["col2im_gather", "gemm", "run_epoch_graphed", "scaled_axpy", "softmax_rows"]

_OP_N, _OP_T = 0, 1  # cublasOperation_t
_WORKSPACE_BYTES = 32 * 2**20  # cuBLAS's own default on Hopper
_state = {"recording": False, "workspace": None}


@lru_cache(maxsize=None)
def _cublas():
    """The cuBLAS library CuPy loaded (found in /proc/self/maps), or None."""
    from cupy.cuda import device

    device.get_cublas_handle()  # makes CuPy load cuBLAS
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/libcublas.so" in line}
    except OSError:
        return None
    if len(paths) != 1:
        return None
    lib = ctypes.CDLL(paths.pop())
    ptr, i = ctypes.c_void_p, ctypes.c_int
    for name in ("cublasSgemm_v2", "cublasDgemm_v2"):
        getattr(lib, name).argtypes = [ptr, i, i, i, i, i, ptr, ptr, i, ptr, i, ptr, ptr, i]
    lib.cublasSetStream_v2.argtypes = [ptr, ptr]
    lib.cublasSetPointerMode_v2.argtypes = [ptr, i]
    if hasattr(lib, "cublasSetWorkspace_v2"):  # cuBLAS 11.4 and later
        lib.cublasSetWorkspace_v2.argtypes = [ptr, ptr, ctypes.c_size_t]
    return lib


@lru_cache(maxsize=None)
def _scalars(dtype):
    return numpy.ones(1, dtype), numpy.zeros(1, dtype)  # alpha = 1, beta = 0, read from the host


def _operand(x):
    """(pointer, op, leading dimension) that make cuBLAS's column-major view of ``x`` be x^T."""
    if x.flags.c_contiguous:
        return x.data.ptr, _OP_N, max(1, x.shape[1])
    if x.flags.f_contiguous:
        return x.data.ptr, _OP_T, max(1, x.shape[0])
    return None


def gemm(a, b, out):
    """out <- a @ b for 2-d float arrays (out C-contiguous, a and b C- or F-contiguous, e.g.
    a transposed view), by cuBLAS on the current stream; ``cupy.matmul`` for anything else.

    Row-major out (M x N) is column-major out^T, and out^T = b^T a^T: one GEMM with the
    operands swapped.
    """
    lib = _cublas()
    dt = out.dtype
    ops = (_operand(a), _operand(b)) if a.ndim == b.ndim == 2 else (None, None)
    if (lib is None or None in ops or not out.flags.c_contiguous or dt not in (numpy.float32, numpy.float64)
            or a.dtype != dt or b.dtype != dt):
        return cupy.matmul(a, b, out=out)
    (pa, opa, lda), (pb, opb, ldb) = ops
    M, K = a.shape
    N = b.shape[1]
    if M == 0 or N == 0:
        return out
    handle = cupy.cuda.device.get_cublas_handle()
    if not _state["recording"]:  # while recording, the stream was set before
        _check(lib.cublasSetStream_v2(handle, cupy.cuda.get_current_stream().ptr), "cublasSetStream")
    _check(lib.cublasSetPointerMode_v2(handle, 0), "cublasSetPointerMode")  # host scalars
    one, zero = _scalars(dt)
    fn = lib.cublasSgemm_v2 if dt == numpy.float32 else lib.cublasDgemm_v2
    _check(fn(handle, opb, opa, N, M, K, one.ctypes.data, pb, ldb, pa, lda, zero.ctypes.data,
              out.data.ptr, N), "cublas gemm")
    return out


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"{what} failed with cuBLAS status {status}")


def _prepare_recording(stream) -> None:
    """Point CuPy's cuBLAS handle at ``stream`` and give it a fixed workspace, so that nothing
    in a recorded GEMM sets a stream or allocates."""
    lib = _cublas()
    if lib is None:
        return
    handle = cupy.cuda.device.get_cublas_handle()
    if _state["workspace"] is None and hasattr(lib, "cublasSetWorkspace_v2"):
        # kept for the life of the process: the handle keeps using it
        _state["workspace"] = cupy.empty(_WORKSPACE_BYTES, numpy.uint8)
        ws = _state["workspace"]
        _check(lib.cublasSetWorkspace_v2(handle, ws.data.ptr, ws.nbytes), "cublasSetWorkspace")
    _check(lib.cublasSetStream_v2(handle, stream.ptr), "cublasSetStream")


@lru_cache(maxsize=None)
def _axpy_kernel():
    return cupy.ElementwiseKernel("T g, T s, T e", "T p", "p = s * p - e * g", "nielsen_sgd_update")


def scaled_axpy(p, g, shrink: float, eta: float) -> None:
    """p <- shrink * p - eta * g in one kernel (the SGD step, with the L2 shrink when != 1)."""
    _axpy_kernel()(g, p.dtype.type(shrink), p.dtype.type(eta), p)


@lru_cache(maxsize=None)
def _col2im_kernel():
    # dx[n, y, x, c] = sum_{di, dj} blocks[n, y - di, x - dj, di, dj, c] over the offsets that
    # land inside the Hc x Wc convolution output; summed in (di, dj) order, as the CPU's
    # k*k shifted adds do.
    return cupy.ElementwiseKernel(
        "raw T blocks, int32 H, int32 W, int32 C, int32 Hc, int32 Wc, int32 k",
        "T dx",
        """
        int c = i % C;
        long long t = i / C;
        int xx = t % W; t /= W;
        int yy = t % H;
        long long n = t / H;
        T s = 0;
        for (int di = 0; di < k; ++di) {
            int u = yy - di;
            if (u < 0 || u >= Hc) continue;
            for (int dj = 0; dj < k; ++dj) {
                int v = xx - dj;
                if (v < 0 || v >= Wc) continue;
                s += blocks[(((n * Hc + u) * Wc + v) * k * k + di * k + dj) * C + c];
            }
        }
        dx = s;
        """,
        "nielsen_col2im",
    )


def col2im_gather(blocks, dx, k: int) -> None:
    """dx (m, H, W, C) <- the full-convolution sum of ``blocks`` (m, Hc, Wc, k, k, C), where
    blocks[n, i, j, di, dj, c] is output position (i, j)'s contribution to input (i+di, j+dj)."""
    m, H, W, C = dx.shape
    Hc, Wc = blocks.shape[1], blocks.shape[2]
    _col2im_kernel()(blocks, H, W, C, Hc, Wc, k, dx)


@lru_cache(maxsize=None)
def _softmax_kernel():
    # one thread per row: a = exp(z - max z) / sum exp(z - max z)
    return cupy.ElementwiseKernel(
        "raw T z, int32 n",
        "raw T a, T total",
        """
        long long row = (long long) i * n;
        T top = z[row];
        for (int j = 1; j < n; ++j) top = max(top, z[row + j]);
        T s = 0;
        for (int j = 0; j < n; ++j) { T e = exp(z[row + j] - top); a[row + j] = e; s += e; }
        for (int j = 0; j < n; ++j) a[row + j] /= s;
        total = s;
        """,
        "nielsen_softmax_rows",
    )


def softmax_rows(z, out, totals) -> None:
    """out <- softmax of every row of the contiguous (m, n) z; ``totals`` (m,) is scratch.
    One kernel and no reduction library (CUB would ask for temporary memory)."""
    _softmax_kernel()(z, z.shape[1], out, totals)


class _AllocationWhileRecording(RuntimeError):
    pass


def _refuse(size):
    raise _AllocationWhileRecording(f"the step allocated {size} bytes")


def device_arrays(obj, found: list | None = None, seen: set | None = None) -> list:
    """Every CuPy array reachable from ``obj`` through the engine's own objects (networks,
    layers, their scratch buffers, the optimiser) and the lists, tuples and dicts they hold:
    what a graph recorded from them may write, kept alive for as long as the graph."""
    found = [] if found is None else found
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return found
    seen.add(id(obj))
    if isinstance(obj, cupy.ndarray):
        found.append(obj)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            device_arrays(item, found, seen)
    elif isinstance(obj, dict):
        for item in obj.values():
            device_arrays(item, found, seen)
    elif type(obj).__module__.startswith("pipeline.") and hasattr(obj, "__dict__"):
        for item in vars(obj).values():
            device_arrays(item, found, seen)
    return found


def record_step(train, xb, yb, stream):
    """A CUDA graph of ``train(xb, yb)`` on ``stream``, or None and the reason it was not
    recorded (the step allocated, or CUDA refused an operation while recording)."""
    why, recorded = None, None
    _prepare_recording(stream)
    with cupy.cuda.using_allocator(_refuse):
        stream.begin_capture()
        _state["recording"] = True
        try:
            train(xb, yb)
        except Exception as exc:  # any failure means: run the plain step
            why = f"{type(exc).__name__}: {exc}"
        finally:
            _state["recording"] = False
            try:
                recorded = stream.end_capture()
            except Exception as exc:
                why = why or f"{type(exc).__name__}: {exc}"
                recorded = None
    return (recorded, None) if why is None else (None, why)


def run_epoch_graphed(train, x, y, m: int, order, tick, keep_alive, log=None, tick_every: int = 1) -> bool:
    """One epoch of ``train`` over (x, y) in mini-batches of ``m``, replaying a CUDA graph for
    every full mini-batch. The first full one runs plainly (it allocates the layers' buffers
    and compiles their kernels); then the step is captured from those buffers, which executes
    nothing, and every full mini-batch after the first, the second included, is a replay.
    ``tick`` hears every ``tick_every`` mini-batches how many were done (the rest at the end).
    Returns whether a graph was used."""
    n = x.shape[0] if order is None else len(order)  # an order may leave examples out
    xb = cupy.empty((m,) + x.shape[1:], x.dtype)
    yb = cupy.empty((m,) + y.shape[1:], y.dtype)
    cupy.cuda.Device().synchronize()  # x, y and the weights were written on the default stream
    stream = cupy.cuda.Stream(non_blocking=True)
    graph, arrays, tried, done = None, [], False, 0
    try:
        with stream:
            for lo in range(0, n, m):
                hi = min(lo + m, n)
                if hi - lo == m:
                    if order is None:
                        cupy.copyto(xb, x[lo:hi])
                        cupy.copyto(yb, y[lo:hi])
                    else:
                        cupy.take(x, order[lo:hi], axis=0, out=xb)
                        cupy.take(y, order[lo:hi], axis=0, out=yb)
                    if graph is not None:
                        graph.launch(stream)
                    else:
                        train(xb, yb)
                        if not tried:
                            tried = True
                            arrays = device_arrays(keep_alive)  # every buffer the graph uses outlives it
                            graph, why = record_step(train, xb, yb, stream)
                            if graph is None and log is not None:
                                log(f"CUDA graph not used ({why}): plain steps from here on")
                elif order is None:
                    train(x[lo:hi], y[lo:hi])
                else:
                    idx = order[lo:hi]
                    train(x.take(idx, axis=0), y.take(idx, axis=0))
                done += 1
                if tick is not None and (done % tick_every == 0 or hi == n):
                    tick(done % tick_every or tick_every)
    finally:  # an interrupt too: nothing may still be writing when the caller reads the weights
        stream.synchronize()
    used = graph is not None
    del graph, arrays  # the graph is done: its buffers may go
    return used
