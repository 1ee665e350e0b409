"""Convolution + max-pooling layer (network3.py's ``ConvPoolLayer``), written for speed.

What the layer computes
-----------------------
For an input image x with C channels, F filters w of size k x k, pool size p:

    c[n, i, j, f] = sum_{di, dj, ch} x[n, i + di, j + dj, ch] * w[di, dj, ch, f]   ("valid", stride 1)
    P[n, u, v, f] = max_{0 <= pi, pj < p} c[n, p*u + pi, p*v + pj, f]              (non-overlapping)
    z = P + b[f],   a = sigma(z)

so bias and activation come AFTER pooling, as in network3.py (equal to pool(sigma(c + b)) for a
monotonic sigma, on 1/p^2 as many elements). The sum above is a *cross-correlation*: the kernel
is not flipped. Theano's ``conv2d`` (used by network3.py) flips the kernel, i.e. computes a true
convolution; the two differ only by a 180-degree rotation of every learned filter, so for
learning (random symmetric init) they are the same model. Convolution outputs that fall outside
the last complete pooling window (when H - k + 1 is not a multiple of p) are dropped, like
Theano's ``pool_2d(ignore_border=True)``; they are never computed.

Layout
------
- Weights ``params["w"]`` have shape (k, k, C, F) ("HWIO"), so ``w.reshape(k*k*C, F)`` is the
  GEMM matrix W with no copy. (Theano's is (F, C, k, k): ``w.transpose(3, 2, 0, 1)``, up to the
  flip above.) Biases ``params["b"]`` have shape (F,).
- Activations are channels-last: ``out_shape = (Hp, Wp, F)``; ``forward`` returns (m, Hp, Wp, F).
  A following fully connected layer flattens that in (u, v, f) order; a following ConvPool layer
  takes it as is. ``in_shape`` is (C, H, W) as the spec writes it; ``forward`` accepts
  (m, C*H*W) (flattened channels-last, which for C = 1 is just the image), (m, H, W, C)
  (channels-last, what a previous ConvPool returns), (m, C, H, W) (channels-first, transposed on
  the way in; only recognised when it cannot be read as channels-last) and, for C = 1, (m, H, W).
  The input gradient returned by ``backward`` has the shape of the input that came in.

Backpropagation (the same four equations as for a fully connected layer)
-----------------------------------------------------------------------
Given delta = dC/dz (m, Hp, Wp, F):

- BP3: dC/db[f] = sum_{n,u,v} delta[n, u, v, f].
- Pooling backward: dC/dc[n, p*u + pi, p*v + pj, f] = delta[n, u, v, f] if c there equals the
  window's maximum, else 0 ("upsample delta to the max positions"). With ``ties="all"`` (the
  default, Theano's ``pool_2d`` gradient) EVERY position that attains the maximum gets the full
  delta; with ``ties="one"`` only the first one in row-major window order does (PyTorch).
  On MNIST about 43% of first-layer windows are tied (zero background), so this matters.
- BP4: dC/dw[di, dj, ch, f] = sum_{n,i,j} x[n, i + di, j + dj, ch] * dC/dc[n, i, j, f], the
  correlation of the input with the upsampled error = ``cols^T @ dC/dc`` with im2col ``cols``.
- BP2 (input part): dC/dx = the *full* cross-correlation of dC/dc with the 180-degree-rotated
  kernel (the forward sum being a cross-correlation; equivalently, the full true convolution of
  dC/dc with the kernel as it is, the "full convolution with the rotated kernel" of texts that
  call the forward sum a convolution),
  dC/dx[n, y, x, ch] = sum_{di,dj,f} dC/dc[n, y - di, x - dj, f] * w[di, dj, ch, f]. It is
  computed as col2im(dC/dc @ W^T): for every kernel offset (di, dj) a GEMM gives
  blocks[di, dj][n, i, j, ch] = sum_f dC/dc[n, i, j, f] * w[di, dj, ch, f] (the columns of
  dC/dc @ W^T that belong to that offset), and col2im adds that block to dx shifted by (di, dj):
  dx[n, i + di, j + dj, ch] += blocks[di, dj][n, i, j, ch]. Substituting y = i + di, x = j + dj
  gives the sum above term by term, with half the multiplications of a
  zero-padded full convolution. ``need_input_grad=False`` (first layer) skips it: it is the
  single most expensive step.

How it is made fast (measured on 2 shared cores, float32, 1 BLAS thread)
-------------------------------------------------------------------------
- One GEMM per pass over the whole mini-batch (im2col); all work buffers are preallocated per
  mini-batch size and reused.
- "Pool-major" row order: the im2col rows (and so the conv output c) are ordered
  (pi, pj, n, u, v) instead of (n, i, j). Then the p*p candidates of every pooling window are
  p*p contiguous blocks: pooling is p*p - 1 ``maximum`` calls on long contiguous arrays and the
  upsampling is one ``equal`` + one ``multiply``, 3-4x faster than strided window views.
- im2col is one strided copy into a preallocated buffer (views made once per buffer; numpy's
  ``as_strided`` costs microseconds per call): for C > 1 (rows = positions, columns =
  (di, dj, ch)) every kernel row is a contiguous run of k*C numbers of the channels-last
  input. For C = 1 the matrix is stored transposed (one row per kernel offset, used as
  ``cols.T`` in the GEMM) and built in two copies through the (k+p-1)^2 "phase planes"
  x[:, s::p, t::p], so that every copied run is long and contiguous (2-3x faster than a
  per-offset loop or a sliding-window copy).
- col2im: the k*k blocks come from one batched matmul (numpy loops over BLAS) into a
  preallocated (k*k, rows, C) buffer, so every one of the k*k adds has a contiguous source.
  (Tried and slower: adding per kernel row with residue classes of windows, two-stage
  accumulation, per-row GEMMs, transposed weight views in the batched matmul.)
- BP3 is a GEMV with a ones vector (faster than ``sum(axis=0)`` on a (rows, F) array).
- Large mini-batches are processed in chunks of at most ``chunk`` images (default 25, the
  fastest of 10/20/25/50/100 at mini-batch 100). Chunks share one set of scratch buffers (patch
  matrix, dC/dc, col2im blocks) that stays in cache; each chunk keeps only its input copy, conv
  output and pooled maxima, and backward rebuilds its patch matrix (a cheap copy) instead of
  keeping m/chunk large ones. Evaluation always runs in chunks, so a 10,000-image forward pass
  never materialises a 1 GB patch matrix. Gradients are sums, so chunking only changes the
  order of summation.
- ``threads`` > 1 (and BLAS on one thread): chunk i runs on lane i % threads, each lane a thread
  with its own scratch buffers and its own dC/dw sum; numpy releases the GIL in its copies,
  ufuncs and BLAS calls, so the lanes run on separate cores. The lanes' sums are added at the
  end. The weight gradient uses ``dot``, not ``matmul``: matmul keeps the GIL for small outputs
  (the first layer's 25 x 20), which serialised the lanes. At mini-batch 100 on 2 cores: 1.5x
  over one lane, against 1.3x from a two-thread BLAS (which leaves the element-wise work on one
  core).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy

from pipeline.nn.activations import get_activation
from pipeline.nn.blas import blas_single_threaded
from pipeline.nn.layers import (
    INIT_SCHEMES,
    check_dropout,
    draw_params,
    dropped_input,
    matmul_into,
)

TIES = ("all", "one")


def _as_strided(xp, a, shape, strides):
    return xp.lib.stride_tricks.as_strided(a, shape=shape, strides=strides)


_POOLS: dict[int, tuple[int, ThreadPoolExecutor]] = {}


def _thread_pool(threads: int) -> ThreadPoolExecutor:
    """A pool of ``threads`` worker threads, made once per process (a forked child, which
    inherits the dict but not the threads, makes its own)."""
    pid, pool = _POOLS.get(threads, (None, None))
    if pid != os.getpid():
        pool = ThreadPoolExecutor(threads, thread_name_prefix="conv-lane")
        _POOLS[threads] = (os.getpid(), pool)
    return pool


def _run_lanes(fn, n: int, lanes: int) -> None:
    """fn(i) for i in range(n); lane t runs i = t, t + lanes, ... (lane 0 in this thread)."""
    if lanes == 1:
        for i in range(n):
            fn(i)
        return

    # numpy's error state (``numpy.errstate``: a diverging step's overflows silenced) is the
    # calling thread's own; each lane takes the caller's
    errors = numpy.geterr()

    def lane(t):
        with numpy.errstate(**errors):
            for i in range(t, n, lanes):
                fn(i)

    pool = _thread_pool(lanes - 1)
    futures = [pool.submit(lane, t) for t in range(1, lanes)]
    try:
        lane(0)
    finally:
        for f in futures:
            f.result()


class _Work:
    """Scratch arrays for chunks of ``m`` images, shared by every chunk of that size on one lane."""

    def __init__(self, layer: "ConvPool", m: int, train: bool):
        xp, dt = layer.xp, layer.dtype
        k, C, F, p = layer.kernel, layer.channels, layer.filters, layer.pool
        H, W = layer.height, layer.width
        Hp, Wp = layer.out_shape[0], layer.out_shape[1]
        self.m = m
        self.owner = None  # the chunk whose patch matrix is in ``cols`` now
        n_rows = p * p * m * Hp * Wp
        K = k * k * C
        if layer.transposed_cols:
            L = k + p - 1
            self.planes = xp.empty((L, L, C, m, Hp, Wp), dt)
            self.cols = xp.empty((k, k, C, p, p, m, Hp, Wp), dt)  # (K, n_rows)
            self.A = self.cols.reshape(K, n_rows).T  # (n_rows, K) view
        else:
            self.cols = xp.empty((p, p, m, Hp, Wp, k, k * C), dt)
            self.A = self.cols.reshape(n_rows, K)
        if not train:
            return
        self.dc = xp.empty((p * p, m * Hp * Wp, F), dt)
        self.gw = xp.empty((K, F), dt)
        if layer.ties == "one":
            self.taken = xp.empty((m * Hp * Wp, F), dt)
        Hc, Wc = Hp * p, Wp * p
        self.dc_std = xp.empty((m, Hp, p, Wp, p, F), dt)  # dC/dc in (n, i, j) order
        self.dx = xp.empty((m, H, W, C), dt)
        if xp is not numpy:
            # on a GPU: one GEMM gives every block, blocks[n, i, j, di, dj, ch], and one
            # gather kernel sums them into dx (pipeline.nn.gpu.col2im_gather)
            self.blocks = xp.empty((m * Hc * Wc, k * k * C), dt)
            return
        # col2im: blocks[di, dj] = dC/dc @ w[di, dj]^T, the contribution of every output
        # position (n, i, j) to input position (n, i + di, j + dj); each block is added to a
        # shifted window of dx (k*k adds with contiguous sources).
        self.blocks = xp.empty((k * k, m * Hc * Wc, C), dt)
        self.wt = xp.empty((k * k, F, C), dt)
        b6 = self.blocks.reshape(k, k, m, Hc, Wc, C)
        self.col2im_pairs = [
            (self.dx[:, di : di + Hc, dj : dj + Wc, :], b6[di, dj]) for di in range(k) for dj in range(k)
        ]


class _Buffers:
    """What one chunk of ``m`` images keeps from forward to backward (input copy, conv output,
    pooled maxima; z and a are its rows of the layer's), plus the scratch ``work`` it shares
    with chunks of its size on its lane."""

    def __init__(self, layer: "ConvPool", m: int, work: _Work, z=None, a=None):
        xp, dt = layer.xp, layer.dtype
        C, F, p = layer.channels, layer.filters, layer.pool
        H, W = layer.height, layer.width
        Hp, Wp = layer.out_shape[0], layer.out_shape[1]
        self.m = m
        self.work = work
        self.A = work.A
        self.x = xp.empty((m, H, W, C), dt)  # channels-last copy of the input (im2col source)
        self.c = xp.empty((p * p, m * Hp * Wp, F), dt)  # conv output, pool-major
        self.P = xp.empty((m, Hp, Wp, F), dt)  # pooled (pre-bias)
        self.z, self.a = z, a
        # im2col sources: strided views of self.x (and of the phase planes), made once
        sN, sH, sW, sC = self.x.strides
        if layer.transposed_cols:
            planes = work.planes
            # planes[s, t, ch, n, u, v] = x[n, p*u + s, p*v + t, ch]
            self.copies = [(planes, _as_strided(xp, self.x, planes.shape, (sH, sW, sC, sN, p * sH, p * sW)))]
            # cols[di, dj, ch, pi, pj, n, u, v] = planes[di + pi, dj + pj, ch, n, u, v]
            a, b, c = planes.strides[:3]
            self.copies.append(
                (work.cols, _as_strided(xp, planes, work.cols.shape, (a, b, c, a, b) + planes.strides[3:]))
            )
        else:
            # cols[pi, pj, n, u, v, di, (dj, ch)] = x[n, p*u + pi + di, p*v + pj + dj, ch]
            self.copies = [(work.cols, _as_strided(xp, self.x, work.cols.shape, (sH, sW, sN, p * sH, p * sW, sH, sC)))]


class ConvPool:
    """A convolutional layer of ``filters`` k x k filters followed by p x p max-pooling.

    See the module docstring for the equations, the (k, k, C, F) weight layout and the
    channels-last activation layout. ``ties`` chooses the pooling gradient at tied maxima:
    "all" (Theano/network3.py, default) or "one" (PyTorch). ``chunk`` bounds the number of
    images processed per GEMM.
    """

    kind = "conv"
    decayed = ("w",)

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        filters: int,
        kernel: int = 5,
        pool: int = 2,
        activation: str = "sigmoid",  # network3.py's ConvPoolLayer default, as the spec's
        dropout: float = 0.0,
        dropout_mode: str = "classic",
        xp=numpy,
        dtype=numpy.float32,
        ties: str = "all",
        chunk: int = 25,
        threads: int = 1,
    ):
        C, H, W = (int(s) for s in in_shape)
        if min(C, H, W, filters, kernel, pool) < 1:
            raise ValueError(f"conv layer needs positive sizes, got {in_shape}, {filters}, {kernel}, {pool}")
        if kernel > H or kernel > W:
            raise ValueError(f"kernel {kernel} larger than the input {H}x{W}")
        Hp, Wp = (H - kernel + 1) // pool, (W - kernel + 1) // pool
        if Hp < 1 or Wp < 1:
            raise ValueError(f"pool {pool} larger than the convolution output {H - kernel + 1}x{W - kernel + 1}")
        if ties not in TIES:
            raise ValueError(f"ties: unknown {ties!r}; allowed: {', '.join(TIES)}")
        check_dropout(dropout, dropout_mode)
        self.channels, self.height, self.width = C, H, W
        self.filters, self.kernel, self.pool = int(filters), int(kernel), int(pool)
        self.in_shape = (C, H, W)
        self.out_shape = (Hp, Wp, self.filters)
        self.out_chw = (self.filters, Hp, Wp)  # the same output in the spec's (C, H, W) words
        self.activation_name = activation
        self.dropout, self.dropout_mode = float(dropout), dropout_mode
        self.ties = ties
        self.chunk = max(1, int(chunk))
        self.threads = max(1, int(threads))
        self.transposed_cols = C == 1
        self.xp, self.dtype = xp, numpy.dtype(dtype)
        self._bind_activation()
        self.params: dict = {}
        self.grads: dict = {}
        self.rng = None  # dropout-mask generator, set by the network (only used if dropout > 0)
        self.z = None
        self._train_bufs: list[_Buffers] = []
        self._train_key = None
        self._eval_bufs: dict[tuple[int, int], _Buffers] = {}

    def _bind_activation(self) -> None:
        self.activation = get_activation(self.activation_name, self.xp)

    # -- parameters -------------------------------------------------------------------------
    def init_stds(self, scheme: str) -> tuple[float, float]:
        """Standard deviations (weights, biases) of zero-mean Gaussians under ``scheme``: "large"
        1 and 1; "default" 1/sqrt(n_in) with n_in = C k^2, and 1; "network3" sqrt(1/n_out) with
        network3.py's n_out = F k^2 / p^2, and 1."""
        k, C, F, p = self.kernel, self.channels, self.filters, self.pool
        if scheme == "large":
            return 1.0, 1.0
        if scheme == "default":
            return 1.0 / math.sqrt(C * k * k), 1.0
        if scheme == "network3":  # n_out = F * k * k / p^2, network3.py's fan-out
            return math.sqrt(1.0 / (F * k * k / (p * p))), 1.0
        raise ValueError(f"init: unknown {scheme!r}; allowed: {', '.join(INIT_SCHEMES)}")

    def init_params(self, scheme: str, rng, xp=None, dtype=None) -> None:
        """Draw w (k, k, C, F), then b (F,), N(0, std^2) in float64 from ``rng``, then cast."""
        k, C, F = self.kernel, self.channels, self.filters
        draw_params(self, (k, k, C, F), scheme, rng, xp, dtype)
        self._train_bufs, self._train_key, self._eval_bufs = [], None, {}

    # -- input handling ---------------------------------------------------------------------
    def _to_channels_last(self, x):
        """View (or, for channels-first input, transpose) x as (m, H, W, C)."""
        C, H, W = self.in_shape
        m = x.shape[0]
        shp = tuple(x.shape[1:])
        if shp == (H, W, C) or (x.ndim == 2 and shp == (C * H * W,)) or (C == 1 and shp == (H, W)):
            return x.reshape(m, H, W, C)
        if shp == (C, H, W):
            return x.transpose(0, 2, 3, 1)
        raise ValueError(f"conv layer with in_shape {self.in_shape} got input of shape {x.shape}")

    def _grad_to_input_layout(self, dx, shape):
        C, H, W = self.in_shape
        shp = tuple(shape[1:])
        if shp == (C, H, W) and shp != (H, W, C):
            return dx.transpose(0, 3, 1, 2)
        return dx.reshape(shape)

    # -- the pieces -------------------------------------------------------------------------
    def _im2col(self, buf: _Buffers, x=None):
        """Fill the patch matrix buf.A (rows, k*k*C) from x (m, H, W, C), or from buf.x again."""
        xp = self.xp
        if x is not None:
            xp.copyto(buf.x, x)  # a contiguous channels-last copy with known strides (casts too)
        for dst, src in buf.copies:
            xp.copyto(dst, src)
        buf.work.owner = buf

    def _lanes(self, chunks: int) -> int:
        """How many threads share ``chunks`` chunks: up to ``threads`` on the CPU when BLAS runs
        one thread (two BLAS threads under two of ours would oversubscribe the cores), else 1.
        Never more than one chunk each: smaller chunks for more lanes cost more than they give."""
        if self.threads == 1 or chunks == 1 or self.xp is not numpy or not blas_single_threaded():
            return 1
        return min(self.threads, chunks)

    def _conv_pool(self, buf: _Buffers, x):
        """im2col, one GEMM, max-pool: fills buf.c (pool-major conv output) and buf.P."""
        xp = self.xp
        self._im2col(buf, x)
        F = self.filters
        w = self.params["w"].reshape(-1, F)
        c2 = buf.c.reshape(-1, F)
        matmul_into(xp, buf.A, w, c2)
        c, P = buf.c, buf.P.reshape(-1, F)
        if c.shape[0] == 1:
            P[...] = c[0]
        else:
            xp.maximum(c[0], c[1], out=P)
            for q in range(2, c.shape[0]):
                xp.maximum(P, c[q], out=P)

    # -- forward ----------------------------------------------------------------------------
    def forward(self, x, train: bool = False):
        """a = sigma(maxpool(conv(x, w)) + b), shape (m, Hp, Wp, F)."""
        xp = self.xp
        self._in_batch_shape = x.shape
        x = self._to_channels_last(x)
        x = dropped_input(self, x, train)
        m = x.shape[0]
        b = self.params["b"]
        starts = range(0, m, self.chunk)
        sizes = [min(self.chunk, m - s) for s in starts]
        lanes = self._lanes(len(sizes))
        if not train:
            out = xp.empty((m,) + self.out_shape, self.dtype)
            bufs = [self._eval_buffers(n, i % lanes) for i, n in enumerate(sizes)]

            def evaluate(i):
                s, buf = starts[i], bufs[i]
                self._conv_pool(buf, x[s : s + buf.m])
                xp.add(buf.P, b, out=out[s : s + buf.m])

            _run_lanes(evaluate, len(bufs), lanes)
            return self.activation.fn(out, out)
        if self._train_key != (sizes, lanes):
            # chunk i runs on lane i % lanes; chunks of one size on one lane share scratch
            works: dict[tuple[int, int], _Work] = {}
            for i, n in enumerate(sizes):
                if (n, i % lanes) not in works:
                    works[n, i % lanes] = _Work(self, n, train=True)
            shape, dt = (m,) + self.out_shape, self.dtype
            self.z, self._a, self._prime = xp.empty(shape, dt), xp.empty(shape, dt), xp.empty(shape, dt)
            self._ones = xp.ones((1, m * shape[1] * shape[2]), dt)  # bias gradient as a GEMV
            self._train_bufs = [
                _Buffers(self, n, works[n, i % lanes], self.z[s : s + n], self._a[s : s + n])
                for i, (s, n) in enumerate(zip(starts, sizes))
            ]
            self._train_key = (sizes, lanes)
            self._gw_lanes = [xp.empty_like(self.grads["w"]).reshape(-1, self.filters) for _ in range(lanes - 1)]
            # dC/dx of the whole mini-batch when it comes in several chunks
            self._dx_all = xp.empty((m, self.height, self.width, self.channels), dt) if len(sizes) > 1 else None
            self._m, self._starts, self._lanes_now = m, starts, lanes
        bufs = self._train_bufs

        def train_forward(i):
            s, buf = starts[i], bufs[i]
            self._conv_pool(buf, x[s : s + buf.m])
            xp.add(buf.P, b, out=buf.z)
            self.activation.fn(buf.z, buf.a)

        _run_lanes(train_forward, len(bufs), lanes)
        return self._a

    def _eval_buffers(self, m: int, lane: int) -> _Buffers:
        buf = self._eval_bufs.get((m, lane))
        if buf is None:
            buf = self._eval_bufs[m, lane] = _Buffers(self, m, _Work(self, m, train=False))
        return buf

    # -- backward ---------------------------------------------------------------------------
    def _upsample(self, buf: _Buffers, delta):
        """dC/dc: delta at the max positions of every pooling window (all ties, or the first)."""
        xp = self.xp
        F = self.filters
        d = delta.reshape(-1, F)
        P = buf.P.reshape(-1, F)
        dc = buf.work.dc
        if self.ties == "all":
            xp.equal(buf.c, P, out=dc)
            xp.multiply(dc, d, out=dc)
        else:
            taken = buf.work.taken
            taken.fill(0)
            for q in range(dc.shape[0]):
                xp.equal(buf.c[q], P, out=dc[q])
                xp.multiply(dc[q], 1 - taken, out=dc[q])  # only if no earlier position won
                xp.add(taken, dc[q], out=taken)
                xp.multiply(dc[q], d, out=dc[q])
        return dc

    def _col2im(self, work: _Work, dc):
        """dC/dx = col2im(dC/dc @ W^T): the full cross-correlation with the 180-degree-rotated kernel."""
        xp = self.xp
        p, C, F = self.pool, self.channels, self.filters
        Hp, Wp = self.out_shape[0], self.out_shape[1]
        m = work.m
        Hc, Wc = Hp * p, Wp * p
        # pool-major (pi, pj, n, u, v) -> natural (n, i = p*u + pi, j = p*v + pj)
        xp.copyto(work.dc_std, dc.reshape(p, p, m, Hp, Wp, F).transpose(2, 3, 0, 4, 1, 5))
        k2 = self.kernel * self.kernel
        if xp is not numpy:
            from pipeline.nn.gpu import col2im_gather  # imported here: GPU only

            # blocks[(n, i, j), (di, dj, ch)] = sum_f dC/dc[n, i, j, f] * w[di, dj, ch, f]
            matmul_into(xp, work.dc_std.reshape(m * Hc * Wc, F), self.params["w"].reshape(k2 * C, F).T, work.blocks)
            col2im_gather(work.blocks.reshape(m, Hc, Wc, self.kernel, self.kernel, C), work.dx, self.kernel)
            return work.dx
        # blocks[di, dj][(n, i, j), ch] = sum_f dC/dc[n, i, j, f] * w[di, dj, ch, f]
        # (k*k, F, C) contiguous copy: BLAS is 30% slower on the transposed view
        xp.copyto(work.wt, self.params["w"].reshape(k2, C, F).transpose(0, 2, 1))
        xp.matmul(work.dc_std.reshape(m * Hc * Wc, F), work.wt, out=work.blocks)
        # dx[n, i + di, j + dj, ch] += blocks[di, dj][n, i, j, ch]
        dx = work.dx
        dx.fill(0)
        add = xp.add
        for dst, src in work.col2im_pairs:
            add(dst, src, out=dst)
        return dx

    def backward(self, delta, need_input_grad: bool = True):
        """BP3 (dC/db_f = delta summed over the pooled positions and the mini-batch: the bias is
        added after pooling) and BP4 (dC/dw = patches^T times the upsampled error: the
        correlation of the input with it) into ``grads``; return dC/dx, the convolution's half
        of BP2 (the full cross-correlation of the error with the 180-degree-rotated kernel,
        done as col2im), in the input's shape, or None when not needed."""
        xp = self.xp
        F = self.filters
        m = self._m
        delta = delta.reshape(m, -1)
        gw = self.grads["w"].reshape(-1, F)
        # BP3 as a GEMV with a ones vector (faster than sum)
        matmul_into(xp, self._ones, delta.reshape(-1, F), self.grads["b"].reshape(1, F))
        bufs, starts, lanes = self._train_bufs, self._starts, self._lanes_now
        several = len(bufs) > 1
        dx = None
        if several and need_input_grad:
            dx = self._dx_all
        # lane t sums its chunks' dC/dw into sums[t]; the lanes' sums are added at the end
        sums = [gw] + self._gw_lanes
        dot = xp.dot if xp is numpy else lambda a, b, out: matmul_into(xp, a, b, out)

        def chunk_backward(i):
            nonlocal dx
            s, buf = starts[i], bufs[i]
            if buf.work.owner is not buf:  # the shared patch matrix holds another chunk's
                self._im2col(buf)
            dc = self._upsample(buf, delta[s : s + buf.m])
            dc2 = dc.reshape(-1, F)
            total = sums[i % lanes]
            if i < lanes:  # the lane's first chunk
                dot(buf.A.T, dc2, out=total)
            else:
                dot(buf.A.T, dc2, out=buf.work.gw)
                total += buf.work.gw
            if need_input_grad:
                d = self._col2im(buf.work, dc)
                if several:
                    dx[s : s + buf.m] = d
                else:
                    dx = d

        _run_lanes(chunk_backward, len(bufs), lanes)
        for extra in sums[1:]:
            gw += extra
        if not need_input_grad:
            return None
        if self.dropout:
            dx = dx * self._mask
        return self._grad_to_input_layout(dx, self._in_batch_shape)

    def activation_prime(self):
        """sigma'(z) of the last training forward pass, (m, Hp, Wp, F)."""
        return self.activation.prime(self.z, self._a, self._prime)

    def __repr__(self) -> str:
        C, H, W = self.in_shape
        drop = f", dropout={self.dropout} ({self.dropout_mode})" if self.dropout else ""
        return (
            f"ConvPool({C}x{H}x{W} -> {self.filters} filters {self.kernel}x{self.kernel}, "
            f"pool {self.pool} -> {self.out_shape[0]}x{self.out_shape[1]}x{self.filters}, "
            f"{self.activation_name}, ties={self.ties}{drop})"
        )
