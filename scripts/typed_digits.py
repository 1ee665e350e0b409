"""Pictures of the digits 0-9 typed in matplotlib's own fonts, black on white: digits that are
not MNIST's, to try ``python -m pipeline.predict`` on.

    python scripts/typed_digits.py typed/          # typed/<font>-<digit>.png, 200 x 200
    python -m pipeline.predict models/ch6-relu/seed1 --image typed/*.png --show seen.png

Typed digits are not handwriting (a serif 1 or a monospace 0 with a dot look like no MNIST
digit), so expect a trained net to miss some.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from pipeline.atomic import atomic_path, check_writable
from pipeline.console import run_command

FONTS = {"sans": "DejaVu Sans", "serif": "DejaVu Serif", "mono": "DejaVu Sans Mono"}  # shipped with matplotlib


def write_digits(out: Path, size: int = 200) -> list[Path]:
    """One PNG per font and digit, ``size`` x ``size`` pixels, the digit in the middle; each
    written whole or not at all (a Ctrl-C or a full disk leaves no half-written picture)."""
    check_writable(out)
    paths = []
    for short, family in FONTS.items():
        for digit in range(10):
            fig = plt.figure(figsize=(1, 1), dpi=size)
            fig.text(0.5, 0.5, str(digit), family=family, fontsize=48, ha="center", va="center")
            path = out / f"{short}-{digit}.png"
            try:
                with atomic_path(path, suffix=".png") as tmp:
                    fig.savefig(tmp, format="png", dpi=size, facecolor="white")
            finally:
                plt.close(fig)
            paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the pictures into")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"{args.out} is a file; give a folder to write the pictures into")
    paths = write_digits(args.out)
    print(f"wrote {len(paths)} pictures to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("typed_digits", main))
