"""Cross-check against PyTorch: does our engine learn what a standard framework learns?

``python -m pipeline.crosscheck ch6-relu --epochs 3 --seeds 1 2``

For each seed, builds the run's network with our initialisation, copies those starting weights
into the same network written in PyTorch (torch's autograd does the backward pass), and trains
both on the same mini-batches in the same order (the run's own reshuffles, drawn twice from
the same seed, or its fixed order) with the run's eta, lambda and mini-batch size. After every
epoch it prints both engines' validation and test accuracy, and at the end each engine's peak
test accuracy and its test accuracy at its best-validation epoch. Two engines that start from
the same weights and see the same data differ only by floating-point rounding and by which
tied pooling maximum receives the error (PyTorch: one; ours, like Theano: all); their curves
should agree to within seed-to-seed noise, so a gap between a run and the book that both
engines show is not our engine's doing.

Covers the runs without dropout of chapters 1, 3, 5 and 6: fully connected, conv + max-pool
and softmax layers; the quadratic, cross-entropy and log-likelihood costs; L2 in either
scaling, or none; plain constant-eta SGD without early stopping; the twin is evaluated on the
epochs ``fit`` evaluates (``eval_every``). torch is the benchmark-only extra
(``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import time

import numpy

from pipeline.errors import InputError
from pipeline.experiment import load_run_data, run_spec
from pipeline.nn.build import build_network
from pipeline.nn.regularization import Regularization
from pipeline.nn.spec import validate_spec
from pipeline.nn.train import History, epoch_orders, fit, track_best
from pipeline.params import book_run, load_params

# What the twin implements: a cost or activation added to the engine must be added to the twin
# too (TorchTwin.mean_cost, TorchTwin._activation) before it can be cross-checked
TWIN_COSTS = ("quadratic", "cross_entropy", "log_likelihood")
TWIN_ACTIVATIONS = ("sigmoid", "tanh", "relu", "linear")


def _check_supported(spec: dict, book_id: str) -> None:
    model, training = spec["model"], spec["training"]
    problems = []  # the spec already pairs each cost with its output layer (pipeline.nn.spec)
    if model["cost"] not in TWIN_COSTS:
        problems.append(f"cost {model['cost']} (the PyTorch twin has {', '.join(TWIN_COSTS)})")
    if odd := sorted({layer["activation"] for layer in model["layers"] if "activation" in layer}
                     - set(TWIN_ACTIVATIONS)):
        problems.append(f"activation {', '.join(odd)} (the PyTorch twin has {', '.join(TWIN_ACTIVATIONS)})")
    if any(layer["dropout"] for layer in model["layers"]):
        problems.append("dropout (the masks would differ between the engines)")
    if training["regularization"]["kind"] not in ("none", "l2"):
        problems.append(f"regularization {training['regularization']['kind']} (only none or l2)")
    if training["momentum"] or training["eta_schedule"]["kind"] != "constant":
        problems.append("momentum or an eta schedule (plain constant-eta SGD only)")
    if training["early_stopping"]["patience"]:
        problems.append("early stopping")
    if problems:
        raise SystemExit(f"crosscheck: {book_id} is not supported: " + "; ".join(problems))


class TorchTwin:
    """The spec's network in PyTorch, holding a copy of our network's parameters."""

    def __init__(self, spec: dict, state: dict, torch):
        self.torch = torch
        self.layers = spec["model"]["layers"]
        self.cost = spec["model"]["cost"]
        self.input_shape = spec["model"]["input_shape"]
        self.params = []
        self.weights = []  # what L2 decays: every layer's w, never b
        self.tensors = []
        for i in range(len(self.layers)):
            w = torch.tensor(state[f"layers.{i}.w"], requires_grad=True)
            b = torch.tensor(state[f"layers.{i}.b"], requires_grad=True)
            self.tensors.append((w, b))
            self.params += [w, b]
            self.weights.append(w)
        self.dtype = self.tensors[0][0].dtype
        # torch's twin of each of TWIN_ACTIVATIONS
        self.activations = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.nn.functional.relu,
                            "linear": lambda v: v}

    def _activation(self, name, z):
        return self.activations[name](z)

    def output_z(self, x):
        """Forward pass to the output layer's z (a softmax layer's: the logits).

        Conv weights are ours (k, k, C, F), used as torch's (F, C, k, k)."""
        F = self.torch.nn.functional
        a = x.reshape(len(x), *self.input_shape)  # (m, C, H, W) or (m, n_in)
        last = len(self.layers) - 1
        for i, (layer, (w, b)) in enumerate(zip(self.layers, self.tensors)):
            if layer["type"] == "conv":
                c = F.conv2d(a, w.permute(3, 2, 0, 1))
                z = F.max_pool2d(c, layer["pool"]) + b[None, :, None, None]
                a = self._activation(layer["activation"], z)
                continue
            if a.dim() == 4:  # our fully connected layers read conv maps in (u, v, f) order
                a = a.permute(0, 2, 3, 1).reshape(len(a), -1)
            z = a @ w + b
            if i == last:
                return z
            a = self._activation(layer["activation"], z)
        raise ValueError("the network has no layers")

    def output(self, x):
        """The network's output activations (a softmax layer's: its logits, same argmax)."""
        z = self.output_z(x)
        layer = self.layers[-1]
        return z if layer["type"] == "softmax" else self._activation(layer["activation"], z)

    def mean_cost(self, x, labels):
        """C_0 averaged over the mini-batch: the cost whose gradient our step follows."""
        torch, F = self.torch, self.torch.nn.functional
        if self.cost == "log_likelihood":
            return F.cross_entropy(self.output_z(x), labels)
        y = F.one_hot(labels, self.layers[-1]["units"]).to(self.dtype)
        if self.cost == "cross_entropy":  # -sum y ln a + (1-y) ln(1-a), from z for stability
            return F.binary_cross_entropy_with_logits(self.output_z(x), y, reduction="sum") / len(x)
        if self.cost == "quadratic":
            return 0.5 * torch.sum((self.output(x) - y) ** 2) / len(x)
        raise ValueError(f"the PyTorch twin has no cost {self.cost!r}")  # _check_supported refuses it

    def sgd_step(self, x, labels, eta: float, l2: float) -> None:
        """One step on C = mean C_0 + l2/2 * sum w^2 (both L2 scalings, l2 their coefficient)."""
        torch = self.torch
        cost = self.mean_cost(x, labels)
        if l2:
            cost = cost + 0.5 * l2 * sum((w * w).sum() for w in self.weights)
        for p in self.params:
            p.grad = None
        cost.backward()
        with torch.no_grad():
            for p in self.params:
                p -= eta * p.grad

    def state_dict(self) -> dict[str, numpy.ndarray]:
        """A numpy copy of the parameters, named as ``Network.state_dict`` names them."""
        state = {}
        for i, (w, b) in enumerate(self.tensors):
            state[f"layers.{i}.w"] = w.detach().numpy().copy()
            state[f"layers.{i}.b"] = b.detach().numpy().copy()
        return state

    def accuracy(self, x, labels, chunk: int = 1000) -> float:
        with self.torch.no_grad():
            right = sum(int((self.output(x[i:i + chunk]).argmax(1) == labels[i:i + chunk]).sum())
                        for i in range(0, len(x), chunk))
        return right / len(x)


def train_torch(spec: dict, state: dict, train, validation, test, torch, log=print) -> History:
    """Train the twin like ``fit``: the run's order of mini-batches, its L2, the same best-epoch rule."""
    training = spec["training"]
    m, eta = training["batch_size"], training["eta"]
    n = len(train.y)
    l2 = Regularization(**training["regularization"]).coefficient(n, m)
    twin = TorchTwin(spec, state, torch)
    dtype = state["layers.0.w"].dtype

    def tensors(data):
        return torch.from_numpy(numpy.asarray(data.x, dtype=dtype)), torch.from_numpy(data.y)

    (x, y), (xv, yv), (xt, yt) = tensors(train), tensors(validation), tensors(test)
    # fit's own source of orders, made afresh from the same seed: the same shuffles
    next_order = epoch_orders(training, n)
    # network3's accounting trains whole mini-batches only; network2's a smaller last one too
    used = n - n % m if training["regularization"]["scaling"] == "network3" else n
    history = History(final_eta=eta)
    epochs, eval_every = training["epochs"], training["eval_every"]
    for epoch in range(epochs):
        start = time.perf_counter()
        order = torch.from_numpy(next_order()) if next_order is not None else torch.arange(n)
        for s in range(0, used, m):
            idx = order[s:min(s + m, used)]
            twin.sgd_step(x[idx], y[idx], eta, l2)
        if (epoch + 1) % eval_every and epoch != epochs - 1:
            continue  # evaluated on the epochs fit evaluates, so the best epochs compare
        record = {"epoch": epoch, "validation_accuracy": twin.accuracy(xv, yv),
                  "test_accuracy": twin.accuracy(xt, yt),
                  "seconds": time.perf_counter() - start}
        log(f"  torch epoch {epoch}: val {record['validation_accuracy']:.2%}  "
            f"test {record['test_accuracy']:.2%}  ({record['seconds']:.0f} s)")
        history.records.append(record)
        track_best(history, record, twin)
    return history


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.crosscheck", description=__doc__.split("\n")[0])
    parser.add_argument("book_id", help="a run in params.yaml trained by plain constant-eta SGD: no dropout, "
                                        "momentum, eta schedule, early stopping or L1 (e.g. ch6-relu, ch1-100)")
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs to train (at most the run's own; default 3)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], help="the run's seeds to train (default: 1)")
    args = parser.parse_args(argv)
    if args.epochs < 1:  # the run's own epochs are capped at --epochs, and a cap of 0 is no cap
        parser.error(f"--epochs: expected a count >= 1, got {args.epochs}")
    try:
        import torch
    except ImportError:
        raise SystemExit("crosscheck needs torch: pip install -e '.[bench]'") from None
    torch.set_num_threads(1)
    from threadpoolctl import threadpool_limits

    try:
        params = load_params()
        run_cfg = book_run(params, args.book_id)
        train, validation, test, _ = load_run_data(run_cfg, params["data"], {})
    except (InputError, FileNotFoundError) as error:  # a misspelt id; no params.yaml or data yet
        raise SystemExit(f"crosscheck: {error}") from None
    results = []
    for seed in args.seeds:
        spec = validate_spec(run_spec(run_cfg, seed, {"epochs": args.epochs}))
        _check_supported(spec, args.book_id)
        net = build_network(spec, device="cpu")
        start_state = net.state_dict()
        epochs = f"{spec['training']['epochs']} epoch{'s' if spec['training']['epochs'] != 1 else ''}"
        print(f"{args.book_id} seed {seed}: {epochs}, both engines from the same start")
        with threadpool_limits(1):
            ours = fit(net, spec["training"], (train.x, train.y), (validation.x, validation.y),
                       (test.x, test.y), log=lambda s: print("  ours " + s.strip()), progress=False)
        if ours.interrupted:  # fit keeps Ctrl-C's history; here a part-trained seed compares nothing
            raise SystemExit(f"crosscheck: stopped during {args.book_id} seed {seed}; nothing compared")
        theirs = train_torch(spec, start_state, train, validation, test, torch)
        results.append((seed, ours, theirs))
    print(f"\n{args.book_id}, {epochs}: peak test accuracy; test accuracy at the best validation epoch"
          + (f" (evaluated every {spec['training']['eval_every']} epochs and the last)"
             if spec["training"]["eval_every"] > 1 else ""))
    for seed, ours, theirs in results:
        print(f"  seed {seed}: ours {ours.peak_test_accuracy:.2%}; {ours.test_at_best_validation:.2%}   "
              f"torch {theirs.peak_test_accuracy:.2%}; {theirs.test_at_best_validation:.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
