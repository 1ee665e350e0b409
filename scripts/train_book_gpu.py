"""Train one run of the book (made for chapter 6's) at its full epochs on a GPU, with the
engine alone.

For a GPU machine that has CuPy but not the rest of the stack (no DVC, Hydra or MLflow): the
model and training come from ``conf/book/<id>.yaml`` as they stand, the data are the book's
50,000/10,000/10,000 split of the four raw MNIST files (``--raw``, plain or ``.gz``, checked
by SHA-256). Only runs that train on the whole plain training set (not an expanded one, no
``train_limit``). Prints one line per epoch and writes the records and the test accuracy at
the best validation epoch (chapter 6's rule of the book) to ``--out`` as JSON. The pipeline's
own way is ``python -m pipeline.train book=<id> compute.device=gpu``.

    python scripts/train_book_gpu.py ch6-relu --seed 1 --raw /path/to/mnist --out relu-1.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from pipeline.atomic import write_text
from pipeline.data.fetch import MNIST_FILES, LocalDirSource, fetch_mnist
from pipeline.data.mnist import read_raw, scale_pixels, split_book
from pipeline.nn import build_network, fit
from pipeline.params import conf_book_run, conf_data


def book_training(cfg: dict, seed: int, device: str, epochs: int | None = None) -> dict:
    """The run's training settings (``conf_book_run``: at the book's epochs, or ``epochs``),
    with this seed and device."""
    return dict(cfg["training"], seed=seed, device=device, epochs=epochs or cfg["training"]["epochs"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("book_id")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--raw", required=True, help="folder with the four MNIST files (plain or .gz)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="gpu", choices=("cpu", "gpu"))
    ap.add_argument("--epochs", type=int, default=None, help="fewer epochs than the book's, for a trial")
    args = ap.parse_args(argv)

    cfg = conf_book_run(args.book_id)
    if cfg["data"]["train"] != "train" or cfg["data"].get("train_limit"):
        limit = cfg["data"].get("train_limit")
        ap.error(f"{args.book_id} trains on {cfg['data']['train']!r}{f' limited to {limit} images' if limit else ''}; "
                 "this script trains on the whole plain training set only")
    with tempfile.TemporaryDirectory() as tmp:
        fetch_mnist(MNIST_FILES, [LocalDirSource(args.raw)], tmp, log=lambda _: None)
        sets = split_book(read_raw(tmp), conf_data()["n_train"])
    data = {name: (scale_pixels(images), labels.astype("int64")) for name, (images, labels) in sets.items()}
    spec = {"model": cfg["model"], "training": book_training(cfg, args.seed, args.device, args.epochs)}
    net = build_network(spec)
    t0 = time.perf_counter()
    history = fit(net, spec, data["train"], data["validation"], data["test"], log=print)
    wall = time.perf_counter() - t0
    result = {"book_id": args.book_id, "seed": args.seed, "device": args.device, "wall_s": wall,
              "book": cfg["book"], **history.summary(), "records": history.records}
    write_text(args.out, json.dumps(result, indent=1) + "\n")
    if history.interrupted:  # Ctrl-C: fit kept the epochs done, and the file says "interrupted"
        print(f"{args.book_id} seed {args.seed}: interrupted after {history.epochs_completed} epoch(s); "
              f"those are in {args.out}")
        return 130
    print(f"{args.book_id} seed {args.seed}: test at best validation {history.test_at_best_validation:.4f} "
          f"(epoch {history.best_epoch}), book {cfg['book']['value']}, {wall:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
