"""Speed benchmark of the numpy engine: ``python -m pipeline.bench``.

Times the *training loop only* (mini-batch SGD over one 50,000-image epoch, no evaluation) of

1. ``ch1``: 784-30-10, sigmoid, quadratic cost (chapter 1): ours vs a per-example
   implementation of the chapter 1 algorithm (column vectors, float64, one example at a time;
   written here from the equations as the reference). Target: ours >= 10x faster.
2. ``fc30`` / ``fc100``: 784-30-10 and 784-100-10 (same net): ours vs PyTorch CPU.
   Targets: ours <= 0.2x and <= 0.35x of torch's time.
3. ``conv``: the chapter 6 ReLU net, conv20(5x5, pool 2) -> conv40(5x5, pool 2) -> fc100 relu ->
   softmax10, log-likelihood, L2 (lambda 0.1): ours vs torch (default NCHW layout) and torch
   channels_last. Targets: <= 1.0x the faster torch at mini-batch 10 (goal 0.8x), <= 1.5x at
   mini-batch 100.
4. ``conv2fc1000`` (only when asked for with ``--cases``): chapter 6's heaviest net, the same
   convolutional layers -> fc1000 relu -> fc1000 relu -> softmax10 (``ch6-2fc1000``, the
   ``ch6-dropout`` nets without dropout), at mini-batch 10 as the book trains it: ours vs the
   faster torch layout. No target; it shows where the pipeline's longest stages stand.

"Ours" is the engine's public API (``build_network`` + ``SGD`` + ``run_epoch``). Every case runs
its implementations interleaved (A B C A B C ...) ``--repeats`` times in one process and reports
medians, separately for every thread count t in ``--threads`` (threadpoolctl for numpy's BLAS,
``torch.set_num_threads`` for torch). For the conv net at t > 1, "ours" shares the conv layers'
chunks of a mini-batch over t threads, each calling a one-thread BLAS (``training.threads``), and
"ours_blas" is one thread of ours calling a t-thread BLAS. Timings on a shared machine are noisy:
the JSON keeps every individual time and the load average. ``--epoch-fraction f`` times
f * 50,000 images and scales up. Data are synthetic (uniform [0, 1) float32 images, random
labels) unless ``--data`` names an ``.npz`` with ``x`` (n, 784) and ``y`` (n,) arrays or the
prepare stage's uint8 ``images`` and ``labels`` (``data/prepared/train.npz``); speed does not
depend on the values except through max-pooling ties, which real MNIST has many of (zero
background).

``--device gpu`` times the same cases on an NVIDIA GPU: ours through CuPy (``training.device:
gpu``) with each step replayed as a CUDA graph ("ours", the default) and without
("ours_nograph"), against PyTorch on CUDA (fp32 throughout: cuDNN's TF32 convolutions are switched off,
as our GEMMs are plain fp32; cuDNN picks its fastest algorithms). Each timed epoch ends with a
device synchronisation. The CPU targets do not apply; the ratio to torch is still reported.
The per-example chapter 1 loop is CPU-only and is left out there.

torch is an optional, benchmark-only extra (``pip install -e '.[bench]'``); without it the torch
columns are skipped with a message.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import zipfile
from pathlib import Path

import numpy

from pipeline.atomic import check_writable, disk_error_message, write_text
from pipeline.data.mnist import scale_pixels
from pipeline.machine import kernel_pin_note
from pipeline.machine import machine_info as base_machine_info
from pipeline.params import conf_book_run, conf_data

EPOCH = conf_data()["n_train"]  # the book's training set: 50,000 images
CASES = ("ch1", "fc30", "fc100", "conv", "conv2fc1000")
DEFAULT_CASES = ("ch1", "fc30", "fc100", "conv")  # the targets; conv2fc1000 on request
# The book run (conf/book/<id>.yaml) whose network and hyperparameters each case times
BOOK_RUNS = {"ch1": "ch1-30", "fc30": "ch1-30", "fc100": "ch1-100", "conv": "ch6-relu", "conv2fc1000": "ch6-2fc1000"}
CONV_CASES = ("conv", "conv2fc1000")
TARGETS = {  # (case, batch size or None for any) -> (compared against, max ratio ours/ref)
    ("ch1", None): ("loop", 0.1),
    ("fc30", None): ("torch", 0.2),
    ("fc100", None): ("torch", 0.35),
    ("conv", 10): ("torch_best", 1.0),
    ("conv", 100): ("torch_best", 1.5),
    ("conv2fc1000", None): ("torch_best", None),  # a reading, no target
}


def default_batch_sizes(case: str) -> list[int]:
    """The mini-batch size of the case's book run, and any other that a target names (the
    conv net's 100)."""
    book = conf_book_run(BOOK_RUNS[case])["training"]["batch_size"]
    return sorted({book} | {m for (c, m) in TARGETS if c == case and m is not None})


# -- machine ---------------------------------------------------------------------------------
def machine_info() -> dict:
    """:func:`pipeline.machine.machine_info` plus the torch version (None without torch)."""
    info = base_machine_info()
    torch = _torch()
    info["torch"] = torch.__version__ if torch is not None else None
    return info


def gpu_info() -> dict:
    """The GPU CuPy sees (name, memory, CUDA runtime and driver versions)."""
    from pipeline.nn import get_xp

    cupy = get_xp("gpu")
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"]
    return {
        "gpu": name.decode() if isinstance(name, bytes) else str(name),
        "gpu_memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
        "cupy": cupy.__version__,
        "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
        "cuda_driver": cupy.cuda.runtime.driverGetVersion(),
    }


def _loadavg():
    try:
        return list(os.getloadavg())
    except OSError:  # pragma: no cover
        return None


def _loads(loads: list[float] | None) -> str:
    """The load averages as ``uptime`` prints them, e.g. ``1.93 1.12 0.61``."""
    return "unknown" if loads is None else " ".join(f"{load:.2f}" for load in loads)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


# -- data ------------------------------------------------------------------------------------
def load_data(path: str | None, n: int, seed: int = 0):
    """(x float32 (n, 784), labels int64 (n,)): synthetic, or the first n rows of an .npz.

    The .npz holds either ``x`` (float, used as is) and ``y``, or the prepare stage's uint8
    ``images`` and ``labels`` (pixels scaled raw/256, the book's convention). Fewer than n rows
    are repeated.
    """
    if path:
        with numpy.load(path, allow_pickle=False) as f:
            if "images" in f.files:
                x, y = scale_pixels(f["images"]), f["labels"]
            else:
                x, y = f["x"], f["y"]
        x = numpy.ascontiguousarray(x.reshape(x.shape[0], -1)[:n], dtype=numpy.float32)
        y = numpy.asarray(y[:n], dtype=numpy.int64)
        if x.shape[0] < n:
            reps = -(-n // x.shape[0])
            x, y = numpy.tile(x, (reps, 1))[:n], numpy.tile(y, reps)[:n]
        return x, y
    rng = numpy.random.default_rng(seed)
    return rng.random((n, 784), dtype=numpy.float32), rng.integers(0, 10, n)


# -- the chapter 1 reference: one example at a time -------------------------------------------
class PerExampleNetwork:
    """Chapter 1's algorithm written directly from the equations, for one example at a time.

    Column vectors, float64, sigmoid everywhere, quadratic cost, weights and biases N(0, 1).
    For each mini-batch: feedforward a^l = sigma(w^l a^{l-1} + b^l); BP1 delta^L =
    (a^L - y) * sigma'(z^L); BP2 delta^l = (w^{l+1 T} delta^{l+1}) * sigma'(z^l); BP3/BP4
    dC/db = delta, dC/dw = delta a^{l-1 T}; sum over the mini-batch; w -= (eta/m) sum.
    """

    def __init__(self, sizes, seed=0):
        rng = numpy.random.default_rng(seed)
        self.biases = [rng.standard_normal((n, 1)) for n in sizes[1:]]
        self.weights = [rng.standard_normal((n, k)) for k, n in zip(sizes[:-1], sizes[1:])]

    @staticmethod
    def _sigmoid(z):
        return 1.0 / (1.0 + numpy.exp(-z))

    def backprop(self, x, y):
        sig = self._sigmoid
        a, activations, zs = x, [x], []
        for w, b in zip(self.weights, self.biases):
            z = w @ a + b
            zs.append(z)
            a = sig(z)
            activations.append(a)
        s = sig(zs[-1])
        delta = (activations[-1] - y) * s * (1 - s)
        nb = [None] * len(self.biases)
        nw = [None] * len(self.weights)
        nb[-1], nw[-1] = delta, delta @ activations[-2].T
        for l in range(2, len(self.weights) + 1):  # noqa: E741 - the book's layer index
            s = sig(zs[-l])
            delta = (self.weights[-l + 1].T @ delta) * s * (1 - s)
            nb[-l], nw[-l] = delta, delta @ activations[-l - 1].T
        return nb, nw

    def update_mini_batch(self, batch, eta):
        nb = [numpy.zeros_like(b) for b in self.biases]
        nw = [numpy.zeros_like(w) for w in self.weights]
        for x, y in batch:
            dnb, dnw = self.backprop(x, y)
            nb = [a + d for a, d in zip(nb, dnb)]
            nw = [a + d for a, d in zip(nw, dnw)]
        k = eta / len(batch)
        self.weights = [w - k * g for w, g in zip(self.weights, nw)]
        self.biases = [b - k * g for b, g in zip(self.biases, nb)]


def _loop_epoch_fn(x, labels, m):
    """The per-example reference: data as lists of (784, 1) / (10, 1) float64 columns."""
    xs = [numpy.asarray(r, dtype=numpy.float64).reshape(784, 1) for r in x]
    eye = numpy.eye(10)
    ys = [eye[int(c)].reshape(10, 1) for c in labels]
    data = list(zip(xs, ys))
    spec = _spec("ch1", m)
    net = PerExampleNetwork([784, *(layer["units"] for layer in spec["model"]["layers"])])
    eta = spec["training"]["eta"]

    def run(n):
        for lo in range(0, n, m):
            net.update_mini_batch(data[lo : lo + m], eta)

    return run


# -- ours ------------------------------------------------------------------------------------
def _spec(case: str, m: int) -> dict:
    """The case's book run (network, cost, η, λ from ``conf/book/<id>.yaml``), timed as one
    epoch at mini-batch ``m`` in float32 on the CPU, in a fixed order, validated."""
    from pipeline.nn import validate_spec

    run = conf_book_run(BOOK_RUNS[case])
    training = dict(run["training"], epochs=1, batch_size=m, shuffle=False, dtype="float32", device="cpu", seed=1)
    spec = validate_spec({"model": run["model"], "training": training})
    _check_references_follow(case, spec)
    return spec


def _check_references_follow(case: str, spec: dict) -> None:
    """The references implement only what the book's runs use: a conv case's PyTorch twin the
    log-likelihood cost with network3's L2 (or none); the fully connected cases' twin and the
    per-example loop the quadratic cost, sigmoid units, no regularisation; none of them dropout
    or momentum. A ``conf/book`` run changed beyond that would time ours against something else."""
    model, training = spec["model"], spec["training"]
    reg = training["regularization"]
    if case in CONV_CASES:
        wanted = {"cost": "log_likelihood", "regularization": ("l2/network3", "none")}
        got_reg = "none" if reg["kind"] == "none" else f"{reg['kind']}/{reg['scaling']}"
    else:
        wanted = {"cost": "quadratic", "regularization": ("none",)}
        got_reg = reg["kind"]
    problems = []
    if model["cost"] != wanted["cost"]:
        problems.append(f"cost {model['cost']!r} (the reference has {wanted['cost']!r})")
    if got_reg not in wanted["regularization"]:
        problems.append(f"regularization {got_reg!r} (the reference has {' or '.join(wanted['regularization'])})")
    if any(layer["dropout"] for layer in model["layers"]) or training["momentum"]:
        problems.append("dropout or momentum (the references have neither)")
    if case not in CONV_CASES and any(layer["activation"] != "sigmoid" for layer in model["layers"]):
        problems.append("a unit other than sigmoid (the per-example loop has sigmoid units)")
    if problems:
        raise ValueError(f"benchmark case {case!r}: conf/book/{BOOK_RUNS[case]}.yaml now has "
                         f"{'; '.join(problems)}; update the references in pipeline/bench.py with it")


def _ours_epoch_fn(case, x, labels, m, threads=1, device="cpu", graphs=True):
    """One epoch of ours; ``threads`` > 1 shares the conv layers' chunks over that many threads
    with BLAS pinned to one (``training.threads``). On ``device="gpu"`` the data live on the
    GPU and every run ends with a synchronisation."""
    from threadpoolctl import threadpool_limits

    from pipeline.nn import SGD, Regularization, build_network, one_hot
    from pipeline.nn.backend import synchronize
    from pipeline.nn.train import run_epoch

    spec = _spec(case, m)
    spec["training"]["threads"] = threads
    spec["training"]["device"] = device
    net = build_network(spec)
    xp = net.xp
    t = spec["training"]
    reg = Regularization(**t.get("regularization", {}))
    opt = SGD(net, 0.0, reg, reg.coefficient(EPOCH, m) if reg.active else 0.0)
    xd = xp.ascontiguousarray(xp.asarray(x, dtype=numpy.float32))
    y = one_hot(labels, 10, xp, numpy.float32)
    eta = t["eta"]

    def run(n):
        with threadpool_limits(limits=1, user_api="blas") if threads > 1 else contextlib.nullcontext():
            run_epoch(net, opt, xd[:n], y[:n], m, eta, graphs=graphs, log=print)
        synchronize(xp)

    return run


# -- torch -----------------------------------------------------------------------------------
def _torch_epoch_fn(case, x, labels, m, channels_last=False, device="cpu"):
    torch = _torch()
    torch.manual_seed(0)
    target = "cuda" if device == "gpu" else "cpu"
    if target == "cuda":
        torch.backends.cudnn.allow_tf32 = False  # fp32 convolutions, like ours
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    nn = torch.nn
    spec = _spec(case, m)
    net = _torch_net(nn, spec["model"])
    eta, reg = spec["training"]["eta"], spec["training"]["regularization"]
    if case in CONV_CASES:
        X = torch.from_numpy(numpy.ascontiguousarray(x, dtype=numpy.float32)).reshape(-1, 1, 28, 28)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
            X = X.contiguous(memory_format=torch.channels_last)
        Y = torch.from_numpy(numpy.asarray(labels, dtype=numpy.int64))
        loss_fn = nn.CrossEntropyLoss()  # mean log-likelihood of the softmax
        # L2 as network3.py: per step w -= eta * lmbda * m / N * w (weights only; torch's
        # weight_decay also decays biases, a negligible difference in cost)
        opt = torch.optim.SGD(net.parameters(), lr=eta, weight_decay=reg["lmbda"] * m / EPOCH)
    else:
        X = torch.from_numpy(numpy.ascontiguousarray(x, dtype=numpy.float32))
        Y = torch.nn.functional.one_hot(torch.from_numpy(numpy.asarray(labels, dtype=numpy.int64)), 10).float()

        def loss_fn(a, y):  # mean over the mini-batch of 0.5 ||a - y||^2
            return 0.5 * ((a - y) ** 2).sum() / a.shape[0]

        opt = torch.optim.SGD(net.parameters(), lr=eta)
    if target == "cuda":
        net, X, Y = net.to(target), X.to(target), Y.to(target)
        if channels_last:
            net, X = net.to(memory_format=torch.channels_last), X.contiguous(memory_format=torch.channels_last)

    def run(n):
        for lo in range(0, n, m):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(X[lo : lo + m]), Y[lo : lo + m])
            loss.backward()
            opt.step()
        if target == "cuda":
            torch.cuda.synchronize()

    return run


def _torch_net(nn, model: dict):
    """The spec's network in torch's own modules, for torch's fastest layouts: a conv layer is
    Conv2d, MaxPool2d, then the activation (ours applies it after pooling too); a softmax layer
    is a Linear whose log-softmax the loss applies."""
    activations = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "linear": nn.Identity}
    modules, shape = [], list(model["input_shape"])
    for layer in model["layers"]:
        if layer["type"] == "conv":
            side = (shape[1] - layer["kernel"] + 1) // layer["pool"]
            modules += [nn.Conv2d(shape[0], layer["filters"], layer["kernel"]), nn.MaxPool2d(layer["pool"]),
                        activations[layer["activation"]]()]
            shape = [layer["filters"], side, side]
            continue
        if len(shape) > 1:
            modules.append(nn.Flatten())
            shape = [int(numpy.prod(shape))]
        modules.append(nn.Linear(shape[0], layer["units"]))
        if layer["type"] == "fc":
            modules.append(activations[layer["activation"]]())
        shape = [layer["units"]]
    return nn.Sequential(*modules)


# -- driver ----------------------------------------------------------------------------------
def implementations(case, x, labels, m, threads, log, device="cpu"):
    if device == "gpu":
        impls = {"ours": lambda: _ours_epoch_fn(case, x, labels, m, device="gpu"),
                 "ours_nograph": lambda: _ours_epoch_fn(case, x, labels, m, device="gpu", graphs=False)}
        torch = _torch()
        if torch is None or not torch.cuda.is_available():
            log(f"  [{case}] torch with CUDA is not importable: torch columns skipped")
            return impls
        impls["torch"] = lambda: _torch_epoch_fn(case, x, labels, m, device="gpu")
        if case in CONV_CASES:
            impls["torch_cl"] = lambda: _torch_epoch_fn(case, x, labels, m, channels_last=True, device="gpu")
        return impls
    impls = {"ours": lambda: _ours_epoch_fn(case, x, labels, m)}
    if case in CONV_CASES and threads > 1:
        # ours: the conv layers share the chunks over ``threads`` threads of one-thread BLAS;
        # ours_blas: one thread of ours calling a ``threads``-thread BLAS
        impls = {"ours": lambda: _ours_epoch_fn(case, x, labels, m, threads),
                 "ours_blas": impls["ours"]}  # fmt: skip
    if case == "ch1":
        impls["loop"] = lambda: _loop_epoch_fn(x, labels, m)
        return impls
    if _torch() is None:
        log(f"  [{case}] torch is not importable: torch columns skipped (pip install -e '.[bench]')")
        return impls
    impls["torch"] = lambda: _torch_epoch_fn(case, x, labels, m)
    if case in CONV_CASES:
        impls["torch_cl"] = lambda: _torch_epoch_fn(case, x, labels, m, channels_last=True)
    return impls


def time_case(case, m, threads, repeats, fraction, x, labels, log, device="cpu"):
    """Interleaved timings of every implementation of ``case``: {name: [seconds per epoch]}."""
    from threadpoolctl import threadpool_limits

    torch = _torch()
    n = max(m, int(round(EPOCH * fraction / m)) * m)
    scale = EPOCH / n
    times: dict[str, list[float]] = {}
    with threadpool_limits(limits=threads):
        if torch is not None:
            torch.set_num_threads(threads)
        impls = implementations(case, x[:n], labels[:n], m, threads, log, device)
        runs = {name: make() for name, make in impls.items()}
        warm = min(n, max(m, 20 * m))
        for run in runs.values():  # warm-up: allocations, first-call costs
            run(warm)
        for _ in range(repeats):
            for name, run in runs.items():
                t0 = time.perf_counter()
                run(n)
                times.setdefault(name, []).append((time.perf_counter() - t0) * scale)
    return times


def summarize(case, m, threads, times, device="cpu"):
    med = {k: statistics.median(v) for k, v in times.items()}
    row = {"case": case, "batch_size": m, "threads": threads, "device": device, "median_s": med, "times_s": times}
    ref_name, limit = TARGETS.get((case, m), TARGETS.get((case, None), (None, None)))
    if device == "gpu":  # the targets are the CPU's; on a GPU the ratio to torch is a reading
        ref_name, limit = ("torch_best" if case in CONV_CASES else "torch"), None
    if ref_name == "torch_best":
        cands = {k: med[k] for k in ("torch", "torch_cl") if k in med}
        if cands:
            best = min(cands, key=cands.get)
            row.update(reference=best, ratio=med["ours"] / cands[best])
    elif ref_name in med:
        row.update(reference=ref_name, ratio=med["ours"] / med[ref_name])
    if "ratio" in row and limit is not None:
        row.update(target_ratio=limit, meets_target=row["ratio"] <= limit)
    return row


def format_row(row) -> str:
    med = row["median_s"]
    parts = "  ".join(f"{k} {v:7.2f}s" for k, v in med.items())
    ratio = ""
    if "ratio" in row and "target_ratio" not in row:
        ratio = f"  ours/{row['reference']} = {row['ratio']:.2f}"
    elif "ratio" in row:
        ok = "ok" if row["meets_target"] else "MISSES"
        ratio = f"  ours/{row['reference']} = {row['ratio']:.2f} (target <= {row['target_ratio']}: {ok})"
        if row["case"] == "ch1":
            ratio += f"  [{1 / row['ratio']:.1f}x faster]"
    where = "gpu  " if row.get("device") == "gpu" else f"thr={row['threads']}"
    return f"{row['case']:>6} m={row['batch_size']:<4} {where}  {parts}{ratio}"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m pipeline.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(DEFAULT_CASES),
                    help=f"default: {' '.join(DEFAULT_CASES)}")
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="gpu: ours through CuPy, torch on CUDA")
    ap.add_argument("--threads", nargs="+", type=int, default=None, help="CPU thread counts (default: 1 2; gpu: 1)")
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs per case, interleaved (default: 3)")
    ap.add_argument("--epoch-fraction", type=float, default=1.0,
                    help=f"time this fraction of the {EPOCH:,} images and scale")
    ap.add_argument("--batch-size", nargs="+", type=int, default=None,
                    help="mini-batch sizes (default: 10; conv: 10 100)")
    ap.add_argument("--data", default=None,
                    help=".npz with x (n, 784) and y (n,), or uint8 images/labels "
                         "(e.g. data/prepared/train.npz); default synthetic")
    ap.add_argument("--out", default="results/bench.json",
                    help="the JSON file the timings are written to (default: results/bench.json)")
    return ap


def main(argv=None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if not 0 < args.epoch_fraction <= 1:
        ap.error("--epoch-fraction must be in (0, 1]")
    for name, values in (("--repeats", [args.repeats]), ("--threads", args.threads or []),
                         ("--batch-size", args.batch_size or [])):
        if any(v < 1 for v in values):
            ap.error(f"{name}: expected counts >= 1, got {' '.join(map(str, values))}")
    if Path(args.out).is_dir():  # found now, not after the whole benchmark has run
        ap.error(f"--out: {args.out} is a folder; give the JSON file to write, e.g. {Path(args.out) / 'bench.json'}")
    try:
        check_writable(Path(args.out).parent)  # likewise
    except OSError as error:
        ap.error(f"--out: {disk_error_message(error) or error}")
    if args.data and not zipfile.is_zipfile(args.data):
        what = "not an .npz file (a zip archive)" if Path(args.data).is_file() else "missing"
        ap.error(f"--data: {args.data} is {what}; e.g. data/prepared/train.npz from `dvc repro prepare`")
    if args.threads is None:
        args.threads = [1] if args.device == "gpu" else [1, 2]
    if args.device == "gpu" and "ch1" in args.cases:
        args.cases = [c for c in args.cases if c != "ch1"] or ["fc30"]  # the loop is CPU-only

    def log(s):
        print(s, flush=True)

    info = machine_info()
    if args.device == "gpu":
        from pipeline.nn import BackendError

        try:
            info.update(gpu_info())
        except BackendError as exc:
            ap.error(str(exc))
    log(f"machine: {info['cpu']}, {info['cores']} cores; numpy {info['numpy']}, torch {info['torch']}"
        + (f"; GPU {info['gpu']}, CuPy {info['cupy']}" if args.device == "gpu" else ""))
    if note := kernel_pin_note("python -m pipeline.bench ..."):
        log(note)
    log(f"training loop only, one {EPOCH}-image epoch (fraction {args.epoch_fraction} timed, scaled), float32 "
        f"(ch1 loop: float64), medians of {args.repeats} interleaved repeats")  # fmt: skip
    x, labels = load_data(args.data, EPOCH)
    load_before = _loadavg()
    rows = []
    t_start = time.time()
    for threads in args.threads:
        for case in args.cases:
            sizes = args.batch_size or default_batch_sizes(case)
            for m in sizes:
                times = time_case(case, m, threads, args.repeats, args.epoch_fraction, x, labels, log, args.device)
                row = summarize(case, m, threads, times, args.device)
                rows.append(row)
                log(format_row(row))
    result = {
        "machine": info,
        "config": {
            "device": args.device,
            "cases": args.cases,
            "threads": args.threads,
            "repeats": args.repeats,
            "epoch_fraction": args.epoch_fraction,
            "batch_sizes": args.batch_size,
            "data": args.data or "synthetic uniform [0,1) float32, random labels",
            "epoch_images": EPOCH,
        },
        "loadavg_before": load_before,
        "loadavg_after": _loadavg(),
        "wall_s": time.time() - t_start,
        "results": rows,
    }
    out = Path(args.out)
    write_text(out, json.dumps(result, indent=2) + "\n")  # atomic: an interrupted run leaves the old file
    log(f"wrote {out} (load average over 1, 5, 15 min: before {_loads(load_before)}, "
        f"after {_loads(result['loadavg_after'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
