"""Read ``params.yaml``, the composed configuration that DVC tracks."""

from __future__ import annotations

from pathlib import Path

import yaml

PARAMS_FILE = "params.yaml"
# libyaml's safe loader when PyYAML was built with it (its wheels are): every stage reads the
# whole params.yaml, 0.11 s in pure Python against 0.02 s
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_params(path: str | Path = PARAMS_FILE) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: run stages from the repository root, "
            "or write it with `python -m pipeline.config`.")
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=SAFE_LOADER)
