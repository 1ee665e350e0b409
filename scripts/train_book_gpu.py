"""Train one run of the book (made for chapter 6's) at its full epochs on a GPU, with the
engine alone.

For a GPU machine that has CuPy but not the rest of the stack (no DVC, Hydra or MLflow): the
model and training come from ``conf/book/<id>.yaml`` as they stand, the data are the book's
50,000/10,000/10,000 split of the four raw MNIST files (``--raw``, plain or ``.gz``, checked
by SHA-256). Only runs that train on the whole plain training set (not an expanded one, no
``train_limit``). Prints one line per epoch and writes the records and the test accuracy at
the best validation epoch (chapter 6's rule of the book) to ``--out`` as JSON; a run whose
weights go NaN stops with one line and writes the epochs before it, with the reason
(``diverged``). The pipeline's own way is ``python -m pipeline.train book=<id>
compute.device=gpu``.

    python scripts/train_book_gpu.py ch6-relu --seed 1 --raw /path/to/mnist --out relu-1.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from pipeline.atomic import check_writable, write_json
from pipeline.console import run_command
from pipeline.data.fetch import MNIST_FILES, FetchError, LocalDirSource, fetch_mnist
from pipeline.data.mnist import read_raw, scale_pixels, split_book
from pipeline.errors import InputError
from pipeline.nn import build_network, fit
from pipeline.nn.train import TrainingDiverged
from pipeline.params import CONF, conf_book_run, conf_data


def book_training(cfg: dict, seed: int, device: str, epochs: int | None = None) -> dict:
    """The run's training settings (``conf_book_run``: at the book's epochs, or ``epochs``),
    with this seed and device."""
    return dict(cfg["training"], seed=seed, device=device,
                epochs=cfg["training"]["epochs"] if epochs is None else epochs)


def at_least_one(text: str) -> int:
    """argparse type: a whole number of 1 or more (0 epochs would train nothing)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return int(text)


def read_book_split(raw: str) -> dict:
    """The book's training, validation and test sets from the four raw files in ``raw``."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            fetch_mnist(MNIST_FILES, [LocalDirSource(raw)], tmp, log=lambda _: None)
        except FetchError:  # its advice is the pipeline's (dvc exp run), not this script's
            names = ", ".join(file.name for file in MNIST_FILES)
            raise InputError(f"--raw {raw}: it must hold the four MNIST files ({names}), plain or .gz, "
                             "with their original bytes") from None
        sets = split_book(read_raw(tmp), conf_data()["n_train"])
    return {name: (scale_pixels(images), labels.astype("int64")) for name, (images, labels) in sets.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("book_id")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--raw", required=True, help="folder with the four MNIST files (plain or .gz)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="gpu", choices=("cpu", "gpu"))
    ap.add_argument("--epochs", type=at_least_one, default=None, help="fewer epochs than the book's, for a trial")
    args = ap.parse_args(argv)

    if not (CONF / "book" / f"{args.book_id}.yaml").is_file():
        ids = sorted(path.stem for path in (CONF / "book").glob("*.yaml"))
        ap.error(f"no run {args.book_id!r} in conf/book/; the runs: {', '.join(ids)}")
    if Path(args.out).is_dir():
        ap.error(f"--out {args.out} is a folder; give the JSON file's name")
    check_writable(Path(args.out).parent)  # before the training, not after it
    cfg = conf_book_run(args.book_id)
    if cfg["data"]["train"] != "train" or cfg["data"].get("train_limit"):
        limit = cfg["data"].get("train_limit")
        ap.error(f"{args.book_id} trains on {cfg['data']['train']!r}{f' limited to {limit} images' if limit else ''}; "
                 "this script trains on the whole plain training set only")
    spec = {"model": cfg["model"], "training": book_training(cfg, args.seed, args.device, args.epochs)}
    net = build_network(spec)  # first: a GPU asked for but absent is named before the data are read
    data = read_book_split(args.raw)
    head = {"book_id": args.book_id, "seed": args.seed, "device": args.device, "book": cfg["book"]}
    records: list[dict] = []
    t0 = time.perf_counter()
    try:
        history = fit(net, spec, data["train"], data["validation"], data["test"], log=print,
                      on_epoch=records.append)
    except TrainingDiverged as diverged:  # the epochs before it show how it went: kept
        write_json(args.out, {**head, "wall_s": time.perf_counter() - t0, "diverged": str(diverged),
                              "records": records})
        raise InputError(f"{diverged}; the {len(records)} epoch(s) recorded before it are in {args.out}") from None
    wall = time.perf_counter() - t0
    write_json(args.out, {**head, "wall_s": wall, **history.summary(), "records": history.records})
    if history.interrupted:  # Ctrl-C: fit kept the epochs done, and the file says "interrupted"
        print(f"{args.book_id} seed {args.seed}: interrupted after {history.epochs_completed} epoch(s); "
              f"those are in {args.out}")
        return 130
    print(f"{args.book_id} seed {args.seed}: test at best validation {history.test_at_best_validation:.4f} "
          f"(epoch {history.best_epoch}), book {cfg['book']['value']}, {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("train_book_gpu", main))
