"""A strict stand-in for CuPy that runs on the CPU, so that tests without a GPU catch the
engine mixing host (numpy) and device (CuPy) arrays on its ``device: gpu`` path.

``install(monkeypatch)`` puts it in ``sys.modules`` as ``cupy`` (with ``cupyx.scipy.special``)
and returns it. Its arrays, :class:`ndarray`, wrap a numpy array (no copy; views stay views)
and treat numpy as CuPy's arrays do:

- implicit conversion to numpy raises TypeError (``numpy.asarray(a)``, ``numpy.array``,
  anything that calls ``__array__``), as CuPy's ``__array__`` does; ``a.get()`` and
  ``cupy.asnumpy(a)`` copy to the host;
- a numpy ndarray (any shape, 0-d too) given to an operation on device arrays raises TypeError
  (CuPy's kernels accept Python and numpy *scalars* only: "Unsupported type"), whichever side
  it is on (``dev * host`` and ``host * dev``); setting or ``copyto`` a non-scalar numpy array
  into a device array raises ValueError (CuPy's fill and copyto);
- numpy functions and ufuncs called on device arrays run the stand-in's function of that name
  (CuPy's ``__array_function__``/``__array_ufunc__``), and fail (TypeError) where it has none:
  ``numpy.add.at`` and other ufunc methods, ``numpy`` functions CuPy lacks;
- reductions and integer indexing return 0-d device arrays, not numbers (CuPy's do too): code
  that uses them as numbers makes a host sync;
- every copy between host and device is logged in ``STATE.transfers`` with the engine line that
  made it: ``get``, ``item``, ``tolist``, ``float``/``int``/``bool``, ``repr``, ``asnumpy``
  (device to host, a sync) and ``asarray`` of host data or numpy indices (host to device).
  The tests assert that the mini-batch loop makes none;
- an operation that promotes float32 device data to float64 (a numpy float64 scalar or array
  meeting it, by numpy 2's rules, NEP 50) raises TypeError;
- the module has only the functions listed in it (each one CuPy has under that name): an
  ``xp.<name>`` the engine starts to use fails here with AttributeError until it is added,
  after checking CuPy's API;
- CUDA graphs: between ``Stream.begin_capture`` and ``end_capture`` every kernel (a ufunc with
  ``out=``, in-place operators, setitem, fill, copyto, ElementwiseKernels, cuBLAS GEMMs) is
  recorded, not run, and ``Graph.launch`` replays the list on the same buffers with the same
  scalars; the Python code of the step is not run again, as on CUDA. While recording, an
  allocation goes to ``cuda.using_allocator``'s allocator (the engine's refuses), and a host
  sync, a copy from the host, or a GEMM through CuPy (``matmul``/``dot``: CuPy refuses cuBLAS
  calls while a stream captures) raises. Reductions count as allocating (CuPy's CUB reductions
  take scratch memory);
- cuBLAS: :class:`FakeCublas` stands in for the library ``pipeline.nn.gpu._cublas`` loads: its
  ``cublas{S,D}gemm_v2`` read and write raw pointers (``a.data.ptr`` is the host address) in
  cuBLAS's column-major convention, with the ops and leading dimensions given, and refuse to
  touch memory outside the arrays, so the operand swap of ``pipeline.nn.gpu.gemm`` is checked;
- ElementwiseKernels: the CUDA source is not compiled; each kernel of ``pipeline.nn.gpu`` has a
  numpy transliteration here (by kernel name: ``KERNELS``), with the source's index arithmetic,
  and its arguments are checked (count, dtypes of ``T``, no numpy arrays, equal shapes).

What it cannot catch: a CuPy function that exists but lacks a keyword or behaves differently
from numpy's (only names are checked), dtype promotion where CuPy's rules (which changed
between versions) differ from numpy 2's, errors in the CUDA source of the kernels (their twins
are checked, not the C++), the real cuBLAS's ctypes signatures and how ``pipeline.nn.gpu``
finds the library, CUDA's other rules for stream capture (capture modes, other threads),
numerical differences of GPU arithmetic (FMA contraction, summation order, cuRAND's streams:
dropout masks here come from numpy's PCG64), anything about speed, CuPy-internal temporaries
other than reductions', implicit syncs inside CuPy functions (boolean-mask indexing,
``nonzero``), and asynchrony: everything here runs at once, in order, on one "stream". It is
stricter than CuPy in one place: an ElementwiseKernel's raw output must be C-contiguous.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
import traceback
import types

import numpy
import scipy.special

IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a "
            "NumPy array explicitly.")  # CuPy's own message
CAPTURE_REFUSED = "operation not permitted when stream is capturing (cudaErrorStreamCaptureUnsupported)"


class _State:
    def __init__(self):
        self.reset()

    def reset(self):
        self.transfers: list[str] = []  # "d2h get at pipeline/nn/network.py:216 in state_dict", ...
        self.capture: list | None = None  # the kernels recorded while a stream captures
        self.allocator = None  # cuda.using_allocator's
        self.buffers: dict[int, numpy.ndarray] = {}  # id -> root buffer whose pointer was taken


STATE = _State()


def _where() -> str:
    """The innermost frame outside this module (the engine's line that asked)."""
    for frame in reversed(traceback.extract_stack()[:-1]):
        if frame.filename != __file__:
            path = frame.filename.replace("\\", "/")
            short = path[path.rfind("/pipeline/") + 1:] if "/pipeline/" in path else path.rsplit("/", 1)[-1]
            return f"{short}:{frame.lineno} in {frame.name}"
    return "?"


def _transfer(kind: str, what: str) -> None:
    if STATE.capture is not None:
        raise RuntimeError(f"{what} ({kind}) while a stream records a CUDA graph: {CAPTURE_REFUSED}")
    STATE.transfers.append(f"{kind} {what} at {_where()}")


def _refuse_host_array(x, what: str):
    raise TypeError(f"Unsupported type {type(x)}: a numpy array (shape {x.shape}) given to {what} with "
                    f"device arrays; CuPy refuses it: move it with cupy.asarray, or the result with .get()")


def _operand(x, what: str):
    """A kernel argument: a device array's buffer, or a Python/numpy scalar (never a numpy array)."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, numpy.ndarray):
        _refuse_host_array(x, what)
    if isinstance(x, (bool, int, float, complex, numpy.generic)):
        return x
    raise TypeError(f"Unsupported type {type(x)} given to {what}")


def _allocated(nbytes: int, what: str) -> None:
    if STATE.allocator is not None:
        STATE.allocator(nbytes)  # the engine's, while recording, raises
    if STATE.capture is not None:
        raise RuntimeError(f"stand-in: {what} allocated {nbytes} bytes while a stream records, and no "
                           f"allocator refused it: it cannot be recorded here")


def _result(r, sources, what: str):
    """Wrap what numpy returned: a view of ``sources`` stays a view, anything else is a new device
    array (an allocation), and a numpy scalar becomes a 0-d device array, as in CuPy."""
    if isinstance(r, tuple):
        return tuple(_result(x, sources, what) for x in r)
    if isinstance(r, numpy.generic):
        r = numpy.asarray(r)
    if not isinstance(r, numpy.ndarray):
        return r
    if not any(numpy.may_share_memory(r, s) for s in sources):
        _allocated(r.nbytes, what)
    return ndarray(r)


def _kernel(run, out, what: str):
    """Run a kernel that writes into existing device memory, or record it while a stream captures."""
    if STATE.capture is not None:
        STATE.capture.append(run)
    else:
        run()
    return out


def _out(kwargs, what):
    out = kwargs.get("out")
    if isinstance(out, tuple):
        out = out[0] if len(out) == 1 else out
    if out is None:
        kwargs.pop("out", None)
        return None
    if not isinstance(out, ndarray):
        if isinstance(out, numpy.ndarray):
            _refuse_host_array(out, f"{what}(out=)")
        raise TypeError(f"{what}: out must be a device array, got {type(out)}")
    kwargs["out"] = out._a
    return out


def _check_no_upcast(args, dtype, what: str) -> None:
    """Refuse an operation that promotes a float32 device array to float64: a numpy float64
    scalar (or array) meeting float32 data (numpy 2's and CuPy's NEP 50 rules keep Python floats
    weak, but not numpy's scalars) silently doubles the work and breaks the float32 GEMMs."""
    arrays = [a for a in args if isinstance(a, numpy.ndarray)]
    if not any(a.dtype == numpy.float32 for a in arrays):
        return
    result = numpy.dtype(dtype) if dtype is not None else numpy.result_type(*args)
    if result == numpy.float64:
        kinds = ", ".join(f"{type(a).__name__} {getattr(a, 'dtype', '')}" for a in args)
        raise TypeError(f"{what} promotes float32 device data to float64 ({kinds}): use the array's dtype")


def _ufunc(uf, inputs, kwargs, what=None):
    what = what or uf.__name__
    if what in ("matmul", "dot") and STATE.capture is not None:
        raise RuntimeError("calling cuBLAS API during stream capture is currently unsupported (CuPy's matmul "
                           "and dot call cuBLAS): use pipeline.nn.gpu.gemm")
    args = [_operand(x, what) for x in inputs]
    _check_no_upcast(args, kwargs.get("dtype"), what)
    kwargs = dict(kwargs)
    if "where" in kwargs and kwargs["where"] is not True:
        kwargs["where"] = _operand(kwargs["where"], what)
    out = _out(kwargs, what)
    if out is not None:
        return _kernel(lambda: uf(*args, **kwargs), out, what)
    return _result(uf(*args, **kwargs), [], what)


def _reduce(name, a, axis=None, out=None, keepdims=False, **kwargs):
    if not isinstance(a, ndarray):
        raise TypeError(f"{name}: expected a device array, got {type(a)}")
    _allocated(0, f"{name} (a reduction: CUB takes scratch memory)")
    kw = dict(kwargs, axis=axis, keepdims=keepdims)
    if out is not None:
        kw["out"] = out
        out = _out(kw, name)
        return _kernel(lambda: getattr(numpy, name)(a._a, **kw), out, name)
    return _result(getattr(numpy, name)(a._a, **kw), [], name)


def _index(key):
    """An index for a device array: device arrays by their buffers; numpy arrays and lists are
    accepted and copied to the device, as CuPy does (a host-to-device transfer)."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, ndarray):
        return key._a
    if isinstance(key, (numpy.ndarray, list)):
        _transfer("h2d", "numpy index")
        return numpy.asarray(key)
    return key


def _view(r: numpy.ndarray, src: numpy.ndarray, what: str):
    return _result(r, [src], what)


class ndarray:
    """A device array of the stand-in: a numpy buffer that refuses to meet numpy arrays."""

    __array_priority__ = 1000
    __hash__ = None

    def __init__(self, host):
        if not isinstance(host, numpy.ndarray):
            raise TypeError("stand-in ndarray wraps a numpy array; make arrays with cupy.asarray/empty/...")
        self._a = host

    # -- metadata (no transfer) ------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    flags = property(lambda self: self._a.flags)

    @property
    def data(self):
        """The buffer's address (the fake cuBLAS reads it); the array's memory is remembered so
        that a GEMM reaching outside it is refused."""
        root = self._a
        while getattr(root, "base", None) is not None:  # through as_strided's holder too
            root = root.base
        if not isinstance(root, numpy.ndarray):
            root = self._a
        STATE.buffers[id(root)] = root
        return types.SimpleNamespace(ptr=self._a.ctypes.data)

    @property
    def T(self):
        return _view(self._a.T, self._a, "T")

    def __len__(self):
        return len(self._a)

    # -- to the host: explicit only ----------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError(IMPLICIT)

    def get(self, stream=None, order="C", out=None):
        _transfer("d2h", "get()")
        return self._a.copy()

    def item(self):
        _transfer("d2h", "item()")
        return self._a.item()

    def tolist(self):
        _transfer("d2h", "tolist()")
        return self._a.tolist()

    def __float__(self):
        _transfer("d2h", "float()")
        return float(self._a)

    def __int__(self):
        _transfer("d2h", "int()")
        return int(self._a)

    def __bool__(self):
        _transfer("d2h", "bool()")
        return bool(self._a)

    def __complex__(self):
        _transfer("d2h", "complex()")
        return complex(self._a)

    def __repr__(self):
        _transfer("d2h", "repr()")
        return f"standin.{self._a!r}"

    def __format__(self, spec):
        _transfer("d2h", "format()")
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    def __iter__(self):
        for i in range(len(self._a)):
            yield self[i]

    # -- numpy's protocols: numpy functions on device arrays run the stand-in's ------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or ufunc.__name__ not in _UFUNCS:
            return NotImplemented  # numpy then raises TypeError, as with CuPy
        return _ufunc(ufunc, inputs, kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        impl = _FUNCTIONS.get(func.__name__)
        if impl is None:
            return NotImplemented
        return impl(*args, **kwargs)

    # -- views and copies ---------------------------------------------------------------------
    def __getitem__(self, key):
        return _result(self._a[_index(key)], [self._a], "getitem")

    def __setitem__(self, key, value):
        key = _index(key)
        if isinstance(value, ndarray):
            value = value._a
        elif isinstance(value, numpy.ndarray):
            if value.ndim:
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill (CuPy's setitem with a "
                                 "numpy array): move it with cupy.asarray first")
            _transfer("h2d", "setitem of a numpy 0-d array")
            value = value.item()
        elif not isinstance(value, (bool, int, float, complex, numpy.generic)):
            raise TypeError(f"Unsupported type {type(value)} for setitem")
        a = self._a
        _kernel(lambda: a.__setitem__(key, value), None, "setitem")

    def fill(self, value):
        if isinstance(value, numpy.ndarray):
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        a = self._a
        _kernel(lambda: a.fill(value), None, "fill")

    def reshape(self, *shape, order="C"):
        return _view(self._a.reshape(*shape, order=order), self._a, "reshape")

    def ravel(self, order="C"):
        return _view(self._a.ravel(order), self._a, "ravel")

    def transpose(self, *axes):
        return _view(self._a.transpose(*axes), self._a, "transpose")

    def squeeze(self, axis=None):
        return _view(self._a.squeeze(axis), self._a, "squeeze")

    def copy(self, order="C"):
        return _result(self._a.copy(order), [], "copy")

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        if not copy and numpy.dtype(dtype) == self.dtype:
            return self
        return _result(self._a.astype(dtype, order=order), [], "astype")

    def take(self, indices, axis=None, out=None, mode="raise"):
        return take(self, indices, axis, out)

    def sum(self, axis=None, dtype=None, out=None, keepdims=False):
        return _reduce("sum", self, axis, out, keepdims, dtype=dtype)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False):
        return _reduce("mean", self, axis, out, keepdims, dtype=dtype)

    def max(self, axis=None, out=None, keepdims=False):
        return _reduce("max", self, axis, out, keepdims)

    def min(self, axis=None, out=None, keepdims=False):
        return _reduce("min", self, axis, out, keepdims)

    def argmax(self, axis=None, out=None, keepdims=False):
        return _reduce("argmax", self, axis, out, keepdims)

    def argmin(self, axis=None, out=None, keepdims=False):
        return _reduce("argmin", self, axis, out, keepdims)

    def all(self, axis=None, out=None, keepdims=False):
        return _reduce("all", self, axis, out, keepdims)

    def any(self, axis=None, out=None, keepdims=False):
        return _reduce("any", self, axis, out, keepdims)

    def dot(self, b, out=None):
        return dot(self, b, out)


ndarray.__module__ = "cupy"  # what pipeline.nn.backend.to_numpy recognises a CuPy array by


def _binary(uf, reflected=False, inplace=False):
    if inplace:
        def method(self, other):
            return _ufunc(uf, (self, other), {"out": self})
    elif reflected:
        def method(self, other):
            return _ufunc(uf, (other, self), {})
    else:
        def method(self, other):
            return _ufunc(uf, (self, other), {})
    return method


for _name, _uf in {"add": numpy.add, "sub": numpy.subtract, "mul": numpy.multiply, "truediv": numpy.true_divide,
                   "floordiv": numpy.floor_divide, "pow": numpy.power, "matmul": numpy.matmul,
                   "and": numpy.logical_and, "or": numpy.logical_or}.items():
    setattr(ndarray, f"__{_name}__", _binary(_uf))
    setattr(ndarray, f"__r{_name}__", _binary(_uf, reflected=True))
    setattr(ndarray, f"__i{_name}__", _binary(_uf, inplace=True))
for _name, _uf in {"eq": numpy.equal, "ne": numpy.not_equal, "lt": numpy.less, "le": numpy.less_equal,
                   "gt": numpy.greater, "ge": numpy.greater_equal}.items():
    setattr(ndarray, f"__{_name}__", _binary(_uf))
ndarray.__neg__ = lambda self: _ufunc(numpy.negative, (self,), {})
ndarray.__pos__ = lambda self: self
ndarray.__abs__ = lambda self: _ufunc(numpy.absolute, (self,), {})
ndarray.__invert__ = lambda self: _ufunc(numpy.invert, (self,), {})


# -- the module's functions ---------------------------------------------------------------------
def _from_host(a, dtype, what, order="K"):
    if isinstance(a, ndarray):
        if dtype is None or numpy.dtype(dtype) == a.dtype:
            return a
        return a.astype(dtype)
    _transfer("h2d", what)
    return _result(numpy.array(a, dtype=dtype, order=order, copy=True), [], what)


def asarray(a, dtype=None, order=None):
    return _from_host(a, dtype, "asarray", order or "K")


def array(a, dtype=None, copy=True, order="K"):
    if isinstance(a, ndarray):
        return a.astype(dtype or a.dtype, copy=copy)
    return _from_host(a, dtype, "array", order)


def ascontiguousarray(a, dtype=None):
    a = _from_host(a, dtype, "ascontiguousarray", "C")
    return a if a.flags.c_contiguous else a.copy()


def asnumpy(a, stream=None, order="C"):
    if isinstance(a, ndarray):
        return a.get()
    return numpy.asarray(a)


def _creator(fn):
    def create(*args, **kwargs):
        return _result(fn(*args, **kwargs), [], fn.__name__)
    create.__name__ = fn.__name__
    return create


empty, zeros, ones, full, arange = (_creator(f) for f in (numpy.empty, numpy.zeros, numpy.ones, numpy.full,
                                                          numpy.arange))


def _like(fn):
    def create(a, dtype=None, order="K", subok=None, shape=None):
        base = a._a if isinstance(a, ndarray) else numpy.asarray(a)  # shape and dtype only
        return _result(fn(base, dtype=dtype, order=order, shape=shape), [], fn.__name__)
    create.__name__ = fn.__name__
    return create


empty_like, zeros_like, ones_like = (_like(f) for f in (numpy.empty_like, numpy.zeros_like, numpy.ones_like))


def copyto(dst, src, casting="same_kind", where=None):
    if not isinstance(dst, ndarray):
        raise TypeError(f"copyto: dst must be a device array, got {type(dst)}")
    if isinstance(src, ndarray):
        src = src._a
    elif isinstance(src, numpy.ndarray):
        if src.size != 1:
            raise ValueError("non-scalar numpy.ndarray cannot be used for copyto")
        _transfer("h2d", "copyto from a numpy scalar array")
        src = src.item()
    kw = {"casting": casting}
    if where is not None:
        kw["where"] = _operand(where, "copyto")
    d = dst._a
    _kernel(lambda: numpy.copyto(d, src, **kw), None, "copyto")


def take(a, indices, axis=None, out=None):
    if not isinstance(a, ndarray):
        raise TypeError(f"take: expected a device array, got {type(a)}")
    idx = indices._a if isinstance(indices, ndarray) else _index(indices)
    if out is not None:
        kw = {"out": out}
        out = _out(kw, "take")
        return _kernel(lambda: numpy.take(a._a, idx, axis=axis, out=kw["out"]), out, "take")
    return _result(numpy.take(a._a, idx, axis=axis), [], "take")


def matmul(a, b, out=None):
    return _ufunc(numpy.matmul, (a, b), {"out": out})


def dot(a, b, out=None):
    return _ufunc(numpy.dot, (a, b), {"out": out}, what="dot")


_UFUNC_NAMES = ("add", "subtract", "multiply", "divide", "true_divide", "power", "maximum", "minimum", "equal",
                "not_equal", "greater", "greater_equal", "less", "less_equal", "negative", "absolute", "exp",
                "log", "sqrt", "square", "tanh", "cosh", "sinh", "reciprocal", "sign", "isfinite", "isnan",
                "logaddexp", "logical_and", "logical_or", "logical_not", "invert", "floor_divide", "matmul")
_UFUNCS = {}
for _name in _UFUNC_NAMES:
    _uf = getattr(numpy, _name)
    _UFUNCS[_uf.__name__] = _uf

    def _call(*inputs, _uf=_uf, **kwargs):
        return _ufunc(_uf, inputs, kwargs)
    _call.__name__ = _name
    globals()[_name] = _call


def _reduction(name):
    def reduce(a, axis=None, out=None, keepdims=False, **kwargs):
        return _reduce(name, a, axis, out, keepdims, **kwargs)
    reduce.__name__ = name
    return reduce


# not module globals: they would hide Python's builtins of those names in this file
_REDUCTIONS = {name: _reduction(name) for name in ("sum", "max", "min", "mean", "argmax", "argmin", "all", "any")}
_REDUCTIONS.update(amax=_REDUCTIONS["max"], amin=_REDUCTIONS["min"])


def _norm(x, ord=None, axis=None, keepdims=False):
    if not isinstance(x, ndarray):
        raise TypeError(f"linalg.norm: expected a device array, got {type(x)}")
    _allocated(0, "linalg.norm (a reduction)")
    return _result(numpy.linalg.norm(x._a, ord=ord, axis=axis, keepdims=keepdims), [], "linalg.norm")


def _as_strided(x, shape=None, strides=None):
    if not isinstance(x, ndarray):
        raise TypeError(f"as_strided: expected a device array, got {type(x)}")
    return _view(numpy.lib.stride_tricks.as_strided(x._a, shape=shape, strides=strides), x._a, "as_strided")


class Generator:
    """``cupy.random.Generator``: device arrays from numpy's PCG64 (CuPy's XORWOW draws other
    numbers: no test may expect the CPU's masks)."""

    def __init__(self, seed):
        self._rng = numpy.random.default_rng(seed)

    def random(self, size=None, dtype=numpy.float64, out=None):
        if out is not None:
            raise NotImplementedError("stand-in: Generator.random(out=)")
        return _result(self._rng.random(size, dtype=dtype), [], "random")

    def standard_normal(self, size=None, dtype=numpy.float64, out=None):
        if out is not None:
            raise NotImplementedError("stand-in: Generator.standard_normal(out=)")
        return _result(self._rng.standard_normal(size, dtype=dtype), [], "standard_normal")


def _default_rng(seed=None):
    return Generator(seed)


# -- ElementwiseKernels of pipeline.nn.gpu, transliterated --------------------------------------
def _sgd_update(g, s, e, p):
    p[...] = s * p - e * g  # "p = s * p - e * g"


def _col2im(blocks, H, W, C, Hc, Wc, k, dx):
    # the CUDA source's arithmetic, one "thread" i per element of dx, vectorised over i
    i = numpy.arange(dx.size, dtype=numpy.int64)
    c = i % C
    t = i // C
    xx = t % W
    t //= W
    yy = t % H
    n = t // H
    s = numpy.zeros(dx.size, dx.dtype)
    flat = blocks.reshape(-1)
    for di in range(k):
        u = yy - di
        for dj in range(k):
            v = xx - dj
            inside = (u >= 0) & (u < Hc) & (v >= 0) & (v < Wc)
            at = (((n * Hc + u) * Wc + v) * k * k + di * k + dj) * C + c
            s[inside] += flat[at[inside]]
    dx[...] = s.reshape(dx.shape)


def _softmax_rows(z, n, a, total):
    if not a.flags.c_contiguous:
        raise ValueError("stand-in limitation: softmax_rows's raw output must be C-contiguous here")
    rows = total.size
    zf = z.reshape(-1)[: rows * n].reshape(rows, n)
    af = a.reshape(-1)[: rows * n].reshape(rows, n)
    top = zf[:, 0].copy()
    for j in range(1, n):
        top = numpy.maximum(top, zf[:, j])
    s = numpy.zeros(rows, z.dtype)
    for j in range(n):  # the source's order of summation
        af[:, j] = numpy.exp(zf[:, j] - top)
        s += af[:, j]
    af /= s[:, None]
    total[...] = s


KERNELS = {"nielsen_sgd_update": _sgd_update, "nielsen_col2im": _col2im, "nielsen_softmax_rows": _softmax_rows}


class ElementwiseKernel:
    """A kernel of ``pipeline.nn.gpu`` by its name, run by its numpy twin in ``KERNELS``."""

    def __init__(self, in_params, out_params, operation, name="kernel", **kwargs):
        if name not in KERNELS:
            raise NotImplementedError(f"stand-in: no numpy twin of ElementwiseKernel {name!r}: add one to KERNELS")
        self.name, self.twin = name, KERNELS[name]
        self.params = [p.split() for p in (in_params + "," + out_params).split(",") if p.strip()]

    def __call__(self, *args):
        if len(args) != len(self.params):
            raise TypeError(f"{self.name}: {len(self.params)} arguments expected, {len(args)} given")
        t_dtype, shape, host = None, None, []
        for words, arg in zip(self.params, args):
            raw, typ, pname = "raw" in words, words[-2], words[-1]
            if isinstance(arg, numpy.ndarray):
                _refuse_host_array(arg, f"ElementwiseKernel {self.name} ({pname})")
            if isinstance(arg, ndarray):
                if typ == "T":
                    if t_dtype is not None and arg.dtype != t_dtype:
                        raise TypeError(f"{self.name}: {pname} is {arg.dtype}, other T arguments {t_dtype}")
                    t_dtype = arg.dtype
                if not raw:
                    if shape is not None and arg.shape != shape:
                        raise ValueError(f"{self.name}: {pname} has shape {arg.shape}, another {shape}")
                    shape = arg.shape
                host.append(arg._a)
            elif typ == "int32":
                if not isinstance(arg, (int, numpy.integer)) or not -2**31 <= int(arg) < 2**31:
                    raise TypeError(f"{self.name}: {pname} must be an int32 scalar, got {arg!r}")
                host.append(int(arg))
            elif isinstance(arg, numpy.generic) or isinstance(arg, (int, float)):
                host.append(arg)
            else:
                raise TypeError(f"{self.name}: unsupported argument {pname}={type(arg)}")
        for words, arg in zip(self.params, host):  # T scalars must be of T's dtype
            if words[-2] == "T" and isinstance(arg, numpy.generic) and arg.dtype != t_dtype:
                raise TypeError(f"{self.name}: {words[-1]} is a {arg.dtype} scalar, T is {t_dtype}")
        twin = self.twin
        _kernel(lambda: twin(*host), None, self.name)


# -- cuBLAS, on raw pointers -------------------------------------------------------------------
class FakeCublas:
    """The four cuBLAS entry points ``pipeline.nn.gpu`` calls through ctypes, on host memory."""

    def __init__(self):
        self.pointer_mode = None
        self.calls = 0

    def cublasSetStream_v2(self, handle, stream):
        return 0

    def cublasSetPointerMode_v2(self, handle, mode):
        self.pointer_mode = mode
        return 0

    def cublasSetWorkspace_v2(self, handle, ptr, nbytes):
        return 0

    def cublasSgemm_v2(self, *args):
        return self._gemm(numpy.float32, ctypes.c_float, *args)

    def cublasDgemm_v2(self, *args):
        return self._gemm(numpy.float64, ctypes.c_double, *args)

    @staticmethod
    def _matrix(ptr, rows, cols, ld, dtype, ctype):
        """The column-major rows x cols matrix at ``ptr`` with leading dimension ``ld``, refused
        unless it lies inside an array whose pointer the engine took."""
        if ld < max(1, rows):
            raise ValueError(f"cuBLAS: leading dimension {ld} < rows {rows} (CUBLAS_STATUS_INVALID_VALUE)")
        item = numpy.dtype(dtype).itemsize
        span = ((cols - 1) * ld + rows) * item
        for root in STATE.buffers.values():
            lo = root.ctypes.data
            if lo <= ptr and ptr + span <= lo + root.nbytes:
                break
        else:
            raise ValueError(f"cuBLAS would read or write {span} bytes at {ptr:#x}, outside every device array")
        buf = numpy.ctypeslib.as_array((ctype * (span // item)).from_address(ptr))
        return numpy.lib.stride_tricks.as_strided(buf, (rows, cols), (item, ld * item))

    def _gemm(self, dtype, ctype, handle, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
        if self.pointer_mode != 0:
            raise RuntimeError("stand-in cuBLAS: pointer mode is not host; alpha and beta are host pointers")
        al, be = ctype.from_address(alpha).value, ctype.from_address(beta).value
        op_a = self._matrix(A, m, k, lda, dtype, ctype) if transa == 0 else self._matrix(A, k, m, lda, dtype, ctype).T
        op_b = self._matrix(B, k, n, ldb, dtype, ctype) if transb == 0 else self._matrix(B, n, k, ldb, dtype, ctype).T
        c = self._matrix(C, m, n, ldc, dtype, ctype)
        self.calls += 1

        def run():
            r = dtype(al) * (op_a @ op_b)
            c[...] = r if be == 0 else r + dtype(be) * c

        _kernel(run, None, "cublas gemm")
        return 0


# -- cupy.cuda -------------------------------------------------------------------------------
class Graph:
    def __init__(self, kernels):
        self.kernels = kernels

    def launch(self, stream=None):
        for kernel in self.kernels:
            kernel()


class Stream:
    def __init__(self, null=False, non_blocking=False, ptds=False):
        self.ptr = 0 if null else id(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def begin_capture(self, mode=None):
        if STATE.capture is not None:
            raise RuntimeError("a stream is capturing already")
        STATE.capture = []

    def end_capture(self):
        kernels, STATE.capture = STATE.capture, None
        return Graph(kernels)

    def synchronize(self):
        pass


class _Device:
    def __init__(self, device=0):
        self.id = device

    def synchronize(self):
        pass


@contextlib.contextmanager
def _using_allocator(allocator=None):
    saved, STATE.allocator = STATE.allocator, allocator
    try:
        yield
    finally:
        STATE.allocator = saved


def _modules() -> dict[str, types.ModuleType]:
    me = sys.modules[__name__]
    cupy = types.ModuleType("cupy", "The CPU stand-in for CuPy of tests/nn/cupy_standin.py")
    names = ["ndarray", "asarray", "array", "ascontiguousarray", "asnumpy", "empty", "zeros", "ones", "full",
             "arange", "empty_like", "zeros_like", "ones_like", "copyto", "take", "matmul", "dot",
             "ElementwiseKernel", *_UFUNC_NAMES]
    for name in names:
        setattr(cupy, name, getattr(me, name))
    for name, reduce in _REDUCTIONS.items():
        setattr(cupy, name, reduce)
    cupy.abs = cupy.absolute
    for name in ("float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool_", "dtype"):
        setattr(cupy, name, getattr(numpy, name))
    cupy.__version__ = "0.0-standin"
    cupy.linalg = types.SimpleNamespace(norm=_norm)
    cupy.lib = types.SimpleNamespace(stride_tricks=types.SimpleNamespace(as_strided=_as_strided))
    cupy.random = types.SimpleNamespace(default_rng=_default_rng, Generator=Generator)
    cuda = types.ModuleType("cupy.cuda")
    device = types.ModuleType("cupy.cuda.device")
    device.get_cublas_handle = lambda: 1
    cuda.device = device
    cuda.Device = _Device
    cuda.Stream = Stream
    cuda.get_current_stream = lambda: Stream(null=True)
    cuda.using_allocator = _using_allocator
    cuda.runtime = types.SimpleNamespace(getDeviceCount=lambda: 1)
    cupy.cuda = cuda
    cupyx = types.ModuleType("cupyx")
    scipy_ = types.ModuleType("cupyx.scipy")
    special = types.ModuleType("cupyx.scipy.special")

    def expit(z, out=None):
        return _ufunc(scipy.special.expit, (z,), {"out": out}, "expit")

    special.expit = expit
    scipy_.special = special
    cupyx.scipy = scipy_
    return {"cupy": cupy, "cupy.cuda": cuda, "cupy.cuda.device": device, "cupyx": cupyx, "cupyx.scipy": scipy_,
            "cupyx.scipy.special": special}


_FUNCTIONS = {}  # numpy function name -> the stand-in's, for __array_function__
MODULES = _modules()
cupy = MODULES["cupy"]
for _name in dir(cupy):
    if callable(getattr(cupy, _name)) and not _name.startswith("_") and not isinstance(getattr(cupy, _name), type):
        _FUNCTIONS[_name] = getattr(cupy, _name)


def install(monkeypatch):
    """Make ``import cupy`` (and ``cupyx.scipy.special``) give the stand-in for this test, with a
    fresh transfer log; returns the ``cupy`` module."""
    STATE.reset()
    for name, module in MODULES.items():
        monkeypatch.setitem(sys.modules, name, module)
    return cupy
