"""Compose ``conf/`` into ``params.yaml``, exactly as DVC does for ``dvc exp run``.

DVC (with ``hydra.enabled``) composes the Hydra tree with ``dvc.utils.hydra.compose_and_dump``
before an experiment runs; this calls the same function, so the committed ``params.yaml`` is
byte-for-byte what DVC would write.

    python -m pipeline.config                 # rewrite params.yaml from conf/
    python -m pipeline.config --check         # exit 1 if params.yaml is out of date
    python -m pipeline.config profile=book    # any Hydra overrides
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from pipeline.atomic import write_text

CONFIG_DIR = "conf"
CONFIG_NAME = "config"


def compose(root: str | Path = ".", overrides: list[str] | None = None) -> str:
    """The YAML text DVC would write for ``conf/`` under ``root`` with ``overrides``."""
    from dvc.utils.hydra import compose_and_dump

    config_dir = (Path(root) / CONFIG_DIR).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "params.yaml"
        compose_and_dump(out, str(config_dir), None, CONFIG_NAME, str(Path(root).resolve()),
                         overrides or [])
        return out.read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. profile=book")
    parser.add_argument("--check", action="store_true", help="only check params.yaml is in sync")
    parser.add_argument("--out", default="params.yaml")
    args = parser.parse_args(argv)
    text = compose(".", args.overrides)
    out = Path(args.out)
    if args.check:
        if not out.is_file() or out.read_text(encoding="utf-8") != text:
            print(f"{out} is out of sync with conf/: run `python -m pipeline.config`.",
                  file=sys.stderr)
            return 1
        print(f"{out} is in sync with conf/.")
        return 0
    write_text(out, text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
