"""ConvPool against a direct nested-loop implementation of the equations, gradient checks,
max-pooling tie behaviour and initialisation statistics. Fast, no network."""

from __future__ import annotations

import numpy as np
import pytest
from nnhelpers import central_difference, max_relative_error

from pipeline.nn.conv import ConvPool

ACTS = {
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(z.dtype)),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda z: np.exp(-z) / (1 + np.exp(-z)) ** 2),
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "linear": (lambda z: z, np.ones_like),
}


def reference_forward(x, w, b, pool, act):
    """Loops, straight from the definitions. x (m, C, H, W); w (k, k, C, F). Returns z, a
    as (m, Hp, Wp, F) and the conv output c (m, Ho, Wo, F)."""
    m, C, H, W = x.shape
    k, F = w.shape[0], w.shape[3]
    Ho, Wo = H - k + 1, W - k + 1
    c = np.zeros((m, Ho, Wo, F))
    for n in range(m):
        for i in range(Ho):
            for j in range(Wo):
                for f in range(F):
                    s = 0.0
                    for di in range(k):
                        for dj in range(k):
                            for ch in range(C):
                                s += x[n, ch, i + di, j + dj] * w[di, dj, ch, f]
                    c[n, i, j, f] = s
    Hp, Wp = Ho // pool, Wo // pool
    P = np.zeros((m, Hp, Wp, F))
    for n in range(m):
        for u in range(Hp):
            for v in range(Wp):
                for f in range(F):
                    P[n, u, v, f] = max(
                        c[n, pool * u + pi, pool * v + pj, f] for pi in range(pool) for pj in range(pool)
                    )
    z = P + b
    return z, ACTS[act][0](z), c


def make_layer(C, H, W, F, k, pool, act="relu", dtype=np.float64, seed=0, **kw):
    layer = ConvPool((C, H, W), F, kernel=k, pool=pool, activation=act, dtype=dtype, **kw)
    layer.init_params("default", np.random.default_rng(seed), np, dtype)
    return layer


SHAPES = [  # C, H, W, F, k, pool, m
    (1, 8, 8, 3, 3, 2, 2),
    (1, 9, 7, 2, 5, 1, 3),  # odd sizes, no pooling
    (2, 10, 9, 4, 3, 2, 2),  # Ho=8, Wo=7: last column cropped by pooling
    (3, 12, 12, 5, 5, 2, 2),
    (1, 13, 13, 2, 5, 3, 2),  # Ho = 9, pool 3
    (4, 7, 8, 3, 3, 2, 1),  # Ho=5 (cropped row), Wo=6
]


@pytest.mark.parametrize("C,H,W,F,k,pool,m", SHAPES)
@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh", "linear"])
def test_forward_matches_loops(C, H, W, F, k, pool, m, act):
    rng = np.random.default_rng(1)
    layer = make_layer(C, H, W, F, k, pool, act)
    x = rng.standard_normal((m, C, H, W))
    z_ref, a_ref, _ = reference_forward(x, layer.params["w"], layer.params["b"], pool, act)
    x_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    for train in (True, False):
        for inp in (x, x_last, x_last.reshape(m, -1)):  # channels-first, channels-last, flat
            a = layer.forward(inp, train=train)
            assert a.shape == (m,) + layer.out_shape
            np.testing.assert_allclose(a, a_ref, rtol=1e-10, atol=1e-12)
            if train:
                np.testing.assert_allclose(layer.z, z_ref, rtol=1e-10, atol=1e-12)
                np.testing.assert_allclose(layer.activation_prime(), ACTS[act][1](z_ref), rtol=1e-9, atol=1e-12)


def test_float32_forward_and_chunking():
    rng = np.random.default_rng(2)
    x = rng.random((7, 1, 28, 28))
    ref = make_layer(1, 28, 28, 6, 5, 2, dtype=np.float64)
    z_ref, a_ref, _ = reference_forward(x, ref.params["w"], ref.params["b"], 2, "relu")
    for chunk in (50, 3):
        layer = make_layer(1, 28, 28, 6, 5, 2, dtype=np.float32, chunk=chunk)
        for train in (True, False):
            a = layer.forward(x.astype(np.float32).reshape(7, 784), train=train)
            assert a.dtype == np.float32
            np.testing.assert_allclose(a, a_ref, rtol=1e-4, atol=1e-4)


def numeric_grad(f, arr):
    """df/darr, entry by entry, by the fourth-order central differences of the network checks."""
    g = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        g[idx] = central_difference(f, arr, idx)
    return g


@pytest.mark.parametrize(
    "C,H,W,F,k,pool,m,act,chunk",
    [
        (1, 8, 8, 3, 3, 2, 2, "sigmoid", 50),
        (2, 10, 9, 3, 3, 2, 3, "tanh", 50),
        (3, 9, 9, 2, 5, 2, 2, "linear", 50),
        (2, 8, 8, 2, 3, 2, 3, "tanh", 2),  # two chunks: grads summed over chunks
        (2, 9, 8, 3, 3, 2, 2, "relu", 50),
    ],
)
def test_gradients_finite_differences(C, H, W, F, k, pool, m, act, chunk):
    """C = sum(t * a) for a fixed random t, so dC/da = t and delta = t * sigma'(z).
    Continuous random inputs have no tied maxima, so max-pooling is differentiable there."""
    rng = np.random.default_rng(3)
    layer = make_layer(C, H, W, F, k, pool, act, chunk=chunk)
    x = rng.standard_normal((m, H, W, C))
    t = rng.standard_normal((m,) + layer.out_shape)

    def cost():
        return float(np.sum(t * layer.forward(x, train=False)))

    layer.forward(x, train=True)
    delta = t * layer.activation_prime()
    dx = layer.backward(delta, need_input_grad=True)
    for name in ("w", "b"):
        num = numeric_grad(cost, layer.params[name])
        assert max_relative_error([(layer.grads[name], num)]) < 1e-6, name
    num_x = numeric_grad(cost, x)
    assert dx.shape == x.shape
    assert max_relative_error([(dx, num_x)]) < 1e-6


def reference_backward(x, w, c, delta, pool, ties="all"):
    """Loops, straight from the equations of ``pipeline.nn.conv``'s docstring, for delta = dC/dz
    (m, Hp, Wp, F) and the forward pass's x (m, C, H, W) and conv output c: returns dC/db,
    dC/dw and dC/dx (channels-first)."""
    m, C, H, W = x.shape
    k, F = w.shape[0], w.shape[3]
    Hp, Wp = delta.shape[1], delta.shape[2]
    # BP3: dC/db[f] = sum over n, u, v of delta[n, u, v, f]
    db = np.zeros(F)
    for n in range(m):
        for u in range(Hp):
            for v in range(Wp):
                for f in range(F):
                    db[f] += delta[n, u, v, f]
    # pooling backward: the error goes to the window's maximum ("all": every position equal to it)
    dc = np.zeros(c.shape)
    for n in range(m):
        for u in range(Hp):
            for v in range(Wp):
                for f in range(F):
                    window = [(pool * u + pi, pool * v + pj) for pi in range(pool) for pj in range(pool)]
                    top = max(c[n, i, j, f] for i, j in window)
                    for i, j in [ij for ij in window if c[n, ij[0], ij[1], f] == top][: None if ties == "all" else 1]:
                        dc[n, i, j, f] = delta[n, u, v, f]
    # BP4: dC/dw[di, dj, ch, f] = sum over n, i, j of x[n, ch, i + di, j + dj] * dC/dc[n, i, j, f]
    dw = np.zeros(w.shape)
    for di in range(k):
        for dj in range(k):
            for ch in range(C):
                for f in range(F):
                    dw[di, dj, ch, f] = sum(x[n, ch, i + di, j + dj] * dc[n, i, j, f]
                                            for n in range(m) for i in range(c.shape[1]) for j in range(c.shape[2]))
    # BP2: dC/dx is the full cross-correlation of dC/dc with the 180-degree-rotated kernel:
    # dC/dx[n, ch, y, x] = sum over di, dj, f of dC/dc[n, y - di, x - dj, f] * w[di, dj, ch, f]
    dx = np.zeros(x.shape)
    for n in range(m):
        for ch in range(C):
            for yy in range(H):
                for xx in range(W):
                    dx[n, ch, yy, xx] = sum(dc[n, yy - di, xx - dj, f] * w[di, dj, ch, f]
                                            for di in range(k) for dj in range(k) for f in range(F)
                                            if 0 <= yy - di < c.shape[1] and 0 <= xx - dj < c.shape[2])
    return db, dw, dx


@pytest.mark.parametrize("ties", ["all", "one"])
@pytest.mark.parametrize("C,H,W,F,k,pool,m",
                         [(1, 12, 12, 3, 3, 2, 2), (2, 11, 10, 2, 3, 2, 2), (3, 16, 16, 2, 4, 3, 1)])
def test_backward_matches_loops_with_tied_maxima(C, H, W, F, k, pool, m, ties):
    """The fast backward pass against the equations written out as loops, on inputs that are
    mostly exactly zero, as MNIST's background is, so that many pooling windows tie (a tie has
    no derivative, so finite differences cannot check this)."""
    rng = np.random.default_rng(5)
    layer = make_layer(C, H, W, F, k, pool, "relu", ties=ties)
    x = np.zeros((m, C, H, W))  # a 3x3 "stroke" on a zero background
    x[:, :, H // 2 - 1 : H // 2 + 2, W // 2 - 1 : W // 2 + 2] = rng.standard_normal((m, C, 3, 3))
    _, _, c = reference_forward(x, layer.params["w"], layer.params["b"], pool, "relu")
    layer.forward(x, train=True)
    delta = rng.standard_normal((m,) + layer.out_shape)
    dx = layer.backward(delta, need_input_grad=True)
    db, dw, dx_ref = reference_backward(x, layer.params["w"], c, delta, pool, ties)
    Hp, Wp = layer.out_shape[:2]
    windows = c[:, : pool * Hp, : pool * Wp].reshape(m, Hp, pool, Wp, pool, F)
    tied = (windows == windows.max(axis=(2, 4), keepdims=True)).sum(axis=(2, 4)) > 1
    assert tied.mean() > 0.25, "the check needs tied windows"
    np.testing.assert_allclose(layer.grads["b"], db, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads["w"], dw, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-12)


def test_input_gradient_layouts():
    """The input gradient comes back in the layout the input came in."""
    rng = np.random.default_rng(4)
    layer = make_layer(3, 8, 8, 2, 3, 2, "linear")
    x_first = rng.standard_normal((2, 3, 8, 8))
    x_last = np.ascontiguousarray(x_first.transpose(0, 2, 3, 1))
    delta = rng.standard_normal((2,) + layer.out_shape)
    grads = []
    for inp in (x_first, x_last, x_last.reshape(2, -1)):
        layer.forward(inp, train=True)
        grads.append(layer.backward(delta).copy())
        assert grads[-1].shape == inp.shape
    np.testing.assert_allclose(grads[0].transpose(0, 2, 3, 1), grads[1])
    np.testing.assert_allclose(grads[2].reshape(grads[1].shape), grads[1])


def tie_layer(ties):
    """1 channel, 1 filter, a 1x1 kernel of weight 1, bias 0: conv output = input."""
    layer = ConvPool((1, 4, 4), 1, kernel=1, pool=2, activation="linear", dtype=np.float64, ties=ties)
    layer.init_params("default", np.random.default_rng(0), np, np.float64)
    layer.params["w"][...] = 1.0
    layer.params["b"][...] = 0.0
    return layer


X_TIES = np.array(
    [
        [0.0, 0.0, 1.0, 3.0],  # window (0,0): all four tied at 0; window (0,1): unique max 3
        [0.0, 0.0, 2.0, 0.5],
        [5.0, 1.0, 7.0, 2.0],  # window (1,0): 5 and 5 tied; window (1,1): 7, 7, 7 tied
        [0.0, 5.0, 7.0, 7.0],
    ]
)


def test_pool_ties_all_positions_get_the_error():
    layer = tie_layer("all")
    layer.forward(X_TIES.reshape(1, 16), train=True)
    delta = np.array([[10.0, 20.0], [30.0, 40.0]]).reshape(1, 2, 2, 1)
    dx = layer.backward(delta).reshape(4, 4)
    expected = np.array(
        [
            [10.0, 10.0, 0.0, 20.0],
            [10.0, 10.0, 0.0, 0.0],
            [30.0, 0.0, 40.0, 0.0],
            [0.0, 30.0, 40.0, 40.0],
        ]
    )
    np.testing.assert_array_equal(dx, expected)
    # weight gradient of the 1x1 kernel = sum x * dC/dc: every tied maximum counts
    assert layer.grads["w"].item() == pytest.approx(0 * 40 + 3 * 20 + 5 * 30 * 2 + 7 * 40 * 3)


def test_pool_ties_one_position_gets_the_error():
    layer = tie_layer("one")
    layer.forward(X_TIES.reshape(1, 16), train=True)
    delta = np.array([[10.0, 20.0], [30.0, 40.0]]).reshape(1, 2, 2, 1)
    dx = layer.backward(delta).reshape(4, 4)
    expected = np.array(  # the first maximum in row-major window order
        [
            [10.0, 0.0, 0.0, 20.0],
            [0.0, 0.0, 0.0, 0.0],
            [30.0, 0.0, 40.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
        ]
    )
    np.testing.assert_array_equal(dx, expected)
    for win, d in zip([(0, 0), (0, 2), (2, 0), (2, 2)], [10.0, 20.0, 30.0, 40.0]):
        assert dx[win[0] : win[0] + 2, win[1] : win[1] + 2].sum() == d  # exactly one receiver


def test_ties_modes_agree_without_ties():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 2, 9, 9))
    delta = rng.standard_normal((3, 3, 3, 4))
    out = []
    for ties in ("all", "one"):
        layer = make_layer(2, 9, 9, 4, 3, 2, "relu", ties=ties)
        layer.forward(x, train=True)
        out.append((layer.backward(delta), layer.grads["w"].copy(), layer.grads["b"].copy()))
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunk", [50, 4])
def test_no_input_grad_returns_none_same_grads(dtype, chunk):
    rng = np.random.default_rng(6)
    layer = make_layer(1, 28, 28, 4, 5, 2, "relu", dtype=dtype, chunk=chunk)
    x = rng.random((10, 784)).astype(dtype)
    x[:, :100] = 0.0  # tied zero windows, as on MNIST
    layer.forward(x, train=True)
    delta = rng.standard_normal((10,) + layer.out_shape).astype(dtype) * layer.activation_prime()
    assert layer.backward(delta, need_input_grad=False) is None
    g_no = {k: v.copy() for k, v in layer.grads.items()}
    dx = layer.backward(delta, need_input_grad=True)
    assert dx is not None and dx.shape == x.shape
    for k in g_no:
        np.testing.assert_array_equal(g_no[k], layer.grads[k])


def test_init_network3_statistics():
    layer = ConvPool((20, 12, 12), 40, kernel=5, pool=2)
    layer.init_params("network3", np.random.default_rng(7), np, np.float32)
    w, b = layer.params["w"], layer.params["b"]
    assert w.shape == (5, 5, 20, 40) and b.shape == (40,)
    assert w.dtype == np.float32 and b.dtype == np.float32
    std = np.sqrt(1.0 / (40 * 25 / 4))  # n_out = filters * k * k / pool^2 = 250
    assert abs(w.mean()) < 4 * std / np.sqrt(w.size)
    assert w.std() == pytest.approx(std, rel=0.02)  # 20,000 samples: ~0.5% standard error
    big = ConvPool((1, 28, 28), 2000, kernel=5, pool=2)
    big.init_params("network3", np.random.default_rng(8), np, np.float64)
    assert big.params["b"].std() == pytest.approx(1.0, rel=0.06)
    assert abs(big.params["b"].mean()) < 0.1
    assert big.params["w"].std() == pytest.approx(np.sqrt(1.0 / (2000 * 25 / 4)), rel=0.02)
    assert layer.decayed == ("w",)
    assert set(layer.grads) == {"w", "b"}


def test_init_other_schemes_and_errors():
    layer = ConvPool((3, 10, 10), 30, kernel=3, pool=2)
    layer.init_params("default", np.random.default_rng(9), np, np.float64)
    assert layer.params["w"].std() == pytest.approx(1 / np.sqrt(27), rel=0.05)
    layer.init_params("large", np.random.default_rng(9), np, np.float64)
    assert layer.params["w"].std() == pytest.approx(1.0, rel=0.05)
    with pytest.raises(ValueError, match="init: unknown 'nope'"):
        layer.init_params("nope", np.random.default_rng(9), np, np.float64)
    with pytest.raises(ValueError, match="ties: unknown 'some'"):
        ConvPool((1, 28, 28), 4, ties="some")
    # too few values, and the right number of values in the wrong shape (a reshape would take them)
    for shape in [(2, 5), (2, 10, 30), (2, 3, 100), (2, 10, 3, 10)]:
        with pytest.raises(ValueError, match=r"conv layer with in_shape \(3, 10, 10\) got input of shape"):
            layer.forward(np.zeros(shape), train=False)


def test_chapter6_shapes():
    c1 = ConvPool((1, 28, 28), 20, kernel=5, pool=2)
    c2 = ConvPool((20, 12, 12), 40, kernel=5, pool=2)
    for c in (c1, c2):
        c.init_params("network3", np.random.default_rng(0), np, np.float32)
    assert c1.out_shape == (12, 12, 20) and c1.out_chw == (20, 12, 12)
    assert c2.out_shape == (4, 4, 40)
    x = np.random.default_rng(1).random((10, 784), dtype=np.float32)
    a2 = c2.forward(c1.forward(x, train=True), train=True)
    assert a2.shape == (10, 4, 4, 40)
    d1 = c2.backward(np.ones_like(a2) * c2.activation_prime())
    assert d1.shape == (10, 12, 12, 20)
    assert c1.backward(d1 * c1.activation_prime(), need_input_grad=False) is None


@pytest.mark.parametrize("mode", ["classic", "inverted"])
def test_dropout_on_the_input(mode):
    """Dropout (off in the book's conv layers, offered for completeness) masks the input."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((3, 2, 8, 8))
    layer = make_layer(2, 8, 8, 3, 3, 2, "tanh", dropout=0.5, dropout_mode=mode)
    plain = make_layer(2, 8, 8, 3, 3, 2, "tanh")
    layer.rng = np.random.default_rng(11)
    a = layer.forward(x, train=True).copy()
    mask = layer._mask  # channels-last, scaled by 1/keep when inverted
    x_masked = x.transpose(0, 2, 3, 1) * mask
    np.testing.assert_allclose(a, plain.forward(x_masked, train=True))
    delta = rng.standard_normal(a.shape)
    dx = layer.backward(delta)
    dx_plain = plain.backward(delta)
    np.testing.assert_allclose(dx.transpose(0, 2, 3, 1), dx_plain * mask)
    np.testing.assert_allclose(layer.grads["w"], plain.grads["w"])
    scale = 0.5 if mode == "classic" else 1.0
    np.testing.assert_allclose(layer.forward(x, train=False), plain.forward(x * scale, train=False))


def test_the_lanes_follow_the_callers_numpy_error_state():
    """A chunk on another thread obeys the caller's ``numpy.errstate``, as the caller's own
    chunks do: training silences the overflows of a diverging step in every lane (the run
    then stops with one message), and a caller that asks overflows to raise gets the error."""
    import warnings

    from threadpoolctl import threadpool_limits

    x = np.full((4, 12, 12, 1), 1e200)
    layer = make_layer(1, 12, 12, 5, 5, 2, "relu", chunk=1, threads=2)
    layer.params["w"][...] = 1e200
    with threadpool_limits(limits=1, user_api="blas"):
        with warnings.catch_warnings(record=True) as caught, np.errstate(over="ignore", invalid="ignore"):
            warnings.simplefilter("always")
            layer.forward(x, train=True)
        assert layer._lanes_now == 2
        assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []
        # the first chunk (lane 0, the caller's thread) in range, the second (lane 1) not
        one_lane = np.zeros_like(x)
        one_lane[1] = 1e200
        with np.errstate(over="raise"), pytest.raises(FloatingPointError):
            layer.forward(one_lane, train=True)


@pytest.mark.parametrize("C", [1, 3])  # the transposed patch matrix (C = 1) and the other
def test_threads_share_the_chunks_and_give_the_same_results(C):
    """threads > 1 runs the chunks of a mini-batch on that many threads when BLAS runs one
    thread, and falls back to one thread otherwise; outputs and gradients are the serial ones
    up to the order of summation over chunks."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(9)
    x = rng.random((11, 12, 12, C))
    x[:, :3] = 0.0  # tied windows
    t = rng.standard_normal((11, 4, 4, 5))
    results = []
    for threads, blas in ((1, 1), (2, 1), (3, 1), (2, 2)):
        layer = make_layer(C, 12, 12, 5, 5, 2, "relu", chunk=2, threads=threads)
        with threadpool_limits(limits=blas, user_api="blas"):
            a = layer.forward(x, train=True).copy()
            dx = layer.backward(t * layer.activation_prime(), need_input_grad=True)
            evaluated = layer.forward(x, train=False)
        expected_lanes = threads if blas == 1 else 1
        assert layer._lanes_now == expected_lanes, (threads, blas)
        results.append((a, evaluated, dx, layer.grads["w"].copy(), layer.grads["b"].copy()))
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_the_conv_layers_a_spec_builds_send_the_error_to_every_tied_position():
    """What every book run gets (a spec has no ties key): the Theano program's max-pool gradient."""
    from nnhelpers import make_spec

    from pipeline.nn import build_network

    spec = make_spec([{"type": "conv", "filters": 1, "kernel": 1, "pool": 2, "activation": "linear"},
                      {"type": "softmax", "units": 3}], "log_likelihood", input_shape=(1, 4, 4))
    built = build_network(spec).layers[0]
    built.params["w"][...] = 1.0
    built.params["b"][...] = 0.0
    reference = tie_layer("all")
    delta = np.array([[10.0, 20.0], [30.0, 40.0]]).reshape(1, 2, 2, 1)
    for layer in (built, reference):
        layer.forward(X_TIES.reshape(1, 16), train=True)
    np.testing.assert_array_equal(built.backward(delta.copy()), reference.backward(delta.copy()))
    assert np.count_nonzero(built.backward(delta.copy())) == 10  # 4 + 1 + 2 + 3 tied maxima
