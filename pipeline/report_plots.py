"""The report's plots: each result of the book drawn beside ours (matplotlib, Agg backend).

``figures`` gives every plot the report configures, by file name under ``plots/``; the stage
saves them. The numbers come from the report's rows and the runs' histories
(:mod:`pipeline.report`); nothing here reads a file.
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from pipeline.report import book_speeds, fixed, hidden_norm_keys
from pipeline.results import METRIC_SETS

CURVE_CHAPTERS = (1, 3, 5, 6)  # one learning-curves plot each


def plot_names(cfg: dict) -> list[str]:
    """The files :func:`figures` draws under ``plots/`` for the report config ``cfg``; the
    report stage's plots in dvc.yaml are the same (tests/test_dvc_yaml.py)."""
    return ["progression.png", *(f"learning_curves_ch{c}.png" for c in CURVE_CHAPTERS), "more_data.png",
            "learning_speed.png", *(f"overfitting_{run_id}.png" for run_id in cfg["figures"]["overfitting"])]


def figures(params: dict, rows: list[dict], histories: dict[str, list[dict]],
            baselines: dict, svm_sweep: dict) -> dict[str, Any]:
    """Every plot of the report, by file name under ``plots/``."""
    cfg, book = params["report"], params["book"]
    more_data, depth_prefix = cfg["figures"]["more_data"], cfg["figures"]["depth"]
    by_id = {r["id"]: r for r in rows}
    plots = {"progression.png": progression_plot(rows, cfg["progression"])}
    speeds = book_speeds(book)
    # runs drawn in plots of their own, over hundreds of epochs, would squeeze the others' 30
    own_plot = set(speeds) | set(cfg["figures"]["overfitting"])
    for chapter in CURVE_CHAPTERS:
        ids = [r["id"] for r in rows if r["chapter"] == chapter and histories.get(r["id"])
               and not r["id"].startswith(more_data) and r["id"] not in own_plot]
        plots[f"learning_curves_ch{chapter}.png"] = chapter_curves(
            chapter, {i: histories[i] for i in ids}, epoch_sizes={i: by_id[i].get("train_examples") for i in ids},
            every_seed=cfg["figures"]["every_seed"])
    svm = [(p["n"], p["validation_accuracy"]) for p in svm_sweep["points"]]
    svm.append((baselines["svm"]["train_size"], baselines["svm"]["validation_accuracy"]))
    # at the size each run trained on (a profile's limits may cut the configured train_limit)
    points = sorted((by_id[i]["train_examples"] or book[i]["data"]["train_limit"] or params["data"]["n_train"],
                     by_id[i]["ours"], by_id[i]["book"]["value"])
                    for i in book if i.startswith(more_data))
    nets = sorted({f"{architecture(book[i]['model'])} network" for i in book if i.startswith(more_data)})
    plots["more_data.png"] = more_data_plot(points, sorted(svm), " or ".join(nets) or "network")
    plots["learning_speed.png"] = learning_speed_plot(
        {i: histories[i] for i in speeds}, {i: histories[i] for i in book if i.startswith(depth_prefix)},
        speeds)
    for run_id in cfg["figures"]["overfitting"]:
        plots[f"overfitting_{run_id}.png"] = overfitting_plot(
            run_id, histories.get(run_id, []), by_id.get(run_id, {}).get("replay_seed"), book.get(run_id))
    return plots


def progression_plot(rows: list[dict], order: list[str]):
    """Each successive improvement of the book, its figure beside ours."""
    by_id = {r["id"]: r for r in rows}
    shown = [by_id[i] for i in order if i in by_id]
    fig, ax = plt.subplots(figsize=(10, 4.8))
    xs = range(len(shown))
    book = [100 * r["book"]["value"] if r["book"].get("value") is not None else None for r in shown]
    ours = [100 * r["ours"] if r["ours"] is not None else None for r in shown]
    bottom = max(90.0, min([v for v in book + ours if v is not None] or [90.0]) - 0.5)
    shown_values = lambda values: [v if v is not None and v >= bottom else float("nan")  # noqa: E731
                                   for v in values]
    ax.plot(xs, shown_values(book), "o--", color="black", label="book")
    ax.plot(xs, shown_values(ours), "s-", color="tab:blue", label="ours (the book's metric)")
    # a value below the axis (the darkness baseline; ch1-100 by our first three seeds) is not
    # left out silently: a marker on the bottom edge with its value
    for values, colour, rise in ((book, "black", 4), (ours, "tab:blue", 14)):
        for x, v in zip(xs, values):
            if v is not None and v < bottom:
                ax.plot(x, bottom, "v", color=colour, clip_on=False)
                ax.annotate(fixed(v), (x, bottom), xytext=(0, rise), textcoords="offset points",
                            ha="center", fontsize=7, color=colour)
    # the book's own metric, as the table: test accuracy but where the book read validation
    on_validation = lambda r: r["book"].get("metric") == "validation" or METRIC_SETS.get(  # noqa: E731
        r["book"].get("metric")) == "validation"
    ax.set_xticks(list(xs), [r["id"] + (" (validation)" if on_validation(r) else "") for r in shown],
                  rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%), on the test data but where marked")
    ax.set_ylim(bottom, 100.0)
    ax.set_title(f"MNIST accuracy, chapter by chapter (below {bottom:g}%: ▼ on the bottom edge, with its value)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


LINE_STYLES = ("-", "--", ":", "-.")


def line_style(n: int, colours: int = 10) -> str:
    """The n-th line's style: it changes with every line, so that neighbours differ in greyscale
    and to a colour-blind reader too; with the ``colours`` colours, 40 lines before a pair of
    colour and style comes back."""
    return LINE_STYLES[(n + n // colours) % len(LINE_STYLES)]


def zoom_to_the_ends(ax, values: list[list[float]], margin: float = 1.0) -> float | None:
    """Start an accuracy axis just below where the lines end (their second halves) rather than
    at their first epochs, many points lower, which would flatten the differences that matter;
    the lower bound set, or None where no point is left out."""
    tails = [v[len(v) // 2:] for v in values if v]
    if not tails:
        return None
    bottom = max(0.0, float(int(min(min(t) for t in tails) - margin)))
    if bottom <= min(min(v) for v in values if v):
        return None
    top = max(max(v) for v in values if v)
    ax.set_ylim(bottom, min(100.0, top + 0.05 * (top - bottom)))  # the autoscaled top allowed for the low points
    return bottom


def chapter_curves(chapter: int, histories: dict[str, list[dict]], key: str = "validation_accuracy",
                   epoch_sizes: dict[str, int | None] | None = None, every_seed: list[str] = ()):
    """Validation accuracy per epoch of the runs of one chapter that have no plot of their
    own: each run's smallest seed, or every seed of a run in ``every_seed`` (``ch1-100``, where
    seeds part ways). Where their epochs differ in size (chapter 6's expanded data: 250,000
    images an epoch against 50,000), each label says its run's."""
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = []
    sizes = {run_id: n for run_id, n in (epoch_sizes or {}).items() if run_id in histories and n}
    mixed = len(set(sizes.values())) > 1
    lines = [(run_id, seed, rows) for run_id, rows in histories.items()
             for seed in sorted({r.get("seed", 1) for r in rows})[:None if run_id in every_seed else 1]]
    for n, (run_id, seed, rows) in enumerate(lines):
        pts = [(r["epoch"], 100 * r[key]) for r in rows if r.get("seed", 1) == seed and key in r]
        if pts:
            size = f", {sizes[run_id]:,} images an epoch" if mixed and run_id in sizes else ""
            ax.plot(*zip(*pts), label=f"{run_id} (seed {int(seed)}{size})", linewidth=1,
                    color=colours[n % len(colours)], linestyle=line_style(n, len(colours)))
            drawn.append([v for _, v in pts])
    bottom = zoom_to_the_ends(ax, drawn)
    ax.set_xlabel("epoch (each run's own: its training set, once)")
    ax.set_ylabel(f"{key.replace('_', ' ')} (%)" + (f"; earlier points below {bottom:g}% are off the axis"
                                                     if bottom is not None else ""))
    every = [i for i in histories if i in every_seed]
    ax.set_title(f"chapter {chapter}: {key.replace('_', ' ')} per epoch, each run's smallest seed"
                 + (f" ({', '.join(every)}: every seed)" if every else ""))
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def architecture(model: dict) -> str:
    """A fully connected net's layer sizes as the book writes them (``784-30-10``); for any
    other kind, its layer types."""
    layers = model["layers"]
    if all("units" in layer for layer in layers):
        return "-".join(str(n) for n in [math.prod(model["input_shape"])] + [layer["units"] for layer in layers])
    return "-".join(layer["type"] for layer in layers)


def more_data_plot(points: list[tuple[int, float | None, float | None]], svm: list[tuple[int, float]],
                   network: str = "network"):
    """Chapter 3: final validation accuracy against training-set size, network and SVM."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ns = [p[0] for p in points]
    if any(p[1] is not None for p in points):
        ax.plot(ns, [100 * p[1] if p[1] is not None else float("nan") for p in points], "o-",
                label=f"ours: {network}")
    ax.plot(ns, [100 * p[2] if p[2] is not None else float("nan") for p in points], "k^--",
            label="book: network")
    if svm:
        ax.plot([n for n, _ in svm], [100 * a for _, a in svm], "s-", color="tab:red",
                label="ours: SVM")
    ax.set_xscale("log")
    ax.set_xlabel("training set size")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("chapter 3: more training data")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig


def learning_speed_plot(figure: dict[str, list[dict]], depth: dict[str, list[dict]],
                        book: dict[str, list[float]] | None = None):
    """Chapter 5: ||dC/db^l|| of each hidden layer per epoch (smallest seed), log scale.

    Top: the book's figure, ``figure`` (1,000 images, one mini-batch, 500 epochs), with the
    book's starting values (``book``) as black marks at epoch 0. Bottom: the same measure
    during the accuracy runs of ``depth`` (50,000 images, mini-batches of 10).
    """
    groups = [group for group in (figure, depth) if group]
    cols = max([1] + [len(group) for group in groups])
    nrows = max(1, len(groups))
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3.6 * nrows), squeeze=False)
    for r, group in enumerate(groups):
        for col, (run_id, rows) in enumerate(group.items()):
            _speed_panel(axes[r, col], run_id, rows, (book or {}).get(run_id))
        for col in range(len(group), cols):
            axes[r, col].axis("off")
    for r in range(nrows):
        axes[r, 0].set_ylabel("speed of learning ||dC/db||")
    title = "chapter 5: speed of learning of each hidden layer (the book: the first learns slowest)"
    if figure and depth:
        title += "\ntop: the book's figure, 1,000 images in one batch; bottom: the accuracy runs"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _speed_panel(ax, run_id: str, rows: list[dict], book: list[float] | None) -> None:
    first_seed = min((x.get("seed", 1) for x in rows), default=1)
    for n, key in enumerate(hidden_norm_keys(rows)):
        pts = [(x["epoch"], x[key]) for x in rows if key in x and x.get("seed", 1) == first_seed]
        if pts:
            ax.semilogy(*zip(*pts), linewidth=1.2, linestyle=line_style(n),
                        label=key.replace("grad_norm_layer", "hidden layer "))
    if book:
        ax.semilogy([0] * len(book), book, "k_", markersize=12, label="book, at the start")
    ax.set_title(f"{run_id} (seed {int(first_seed)})", fontsize=9)
    ax.set_xlabel("epoch (norms at its start)")
    ax.grid(alpha=0.3, which="both")
    if ax.has_data():
        ax.legend(fontsize=7)


def overfitting_plot(run_id: str, rows: list[dict], replay_seed: int | None = None, run: dict | None = None):
    """Chapter 3's four overfitting panels: training cost, test accuracy, test cost (the book's:
    validation cost for a run that did not monitor the test cost), training accuracy; one line
    per seed (``replay_seed``'s is the book's run, replayed, dashed). ``run``: the row's
    config, which names the cost and any regularisation in the titles."""
    training = (run or {}).get("training", {})
    reg = training.get("regularization") or {}
    penalised = reg.get("kind") not in (None, "none") and reg.get("lmbda")
    named = (run or {}).get("model", {}).get("cost")
    cost = f"{named.replace('_', '-')} cost" if named else "cost"
    cost += f" + the {reg['kind'].upper()} term" if penalised else ""
    held_out_cost = (("test_cost", f"{cost} on the test data") if any("test_cost" in r for r in rows)
                     else ("validation_cost", f"{cost} on the validation data"))
    panels = [("training_cost", f"{cost} on the training data"),
              ("test_accuracy", "accuracy on the test data (%)"),
              held_out_cost,
              ("training_accuracy", "accuracy on the training data (%)")]
    seeds = sorted({int(r.get("seed", 1)) for r in rows})
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (key, label) in zip(axes.ravel(), panels):
        drawn = []
        for seed in seeds:
            pts = [(r["epoch"], r[key] * (100 if key.endswith("accuracy") else 1))
                   for r in rows if key in r and int(r.get("seed", 1)) == seed]
            if pts:
                name = "the book's run, replayed" if seed == replay_seed else f"seed {seed}"
                ax.plot(*zip(*pts), linewidth=1, label=name, linestyle="--" if seed == replay_seed else "-")
                drawn.append([v for _, v in pts])
        if key == "test_accuracy" and (bottom := zoom_to_the_ends(ax, drawn)) is not None:
            label += f"; the first epochs, below {bottom:g}%, off the axis"
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.has_data() and len(seeds) > 1:
            ax.legend(fontsize=7)
    what = f"{reg['kind'].upper()} regularisation (λ = {reg['lmbda']:g})" if penalised else "overfitting"
    fig.suptitle(f"chapter 3: {what} ({run_id})")
    fig.tight_layout()
    return fig
