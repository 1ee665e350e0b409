"""Read ``params.yaml``, the composed configuration that DVC tracks."""

from __future__ import annotations

from pathlib import Path

import yaml

PARAMS_FILE = "params.yaml"


def load_params(path: str | Path = PARAMS_FILE) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: run stages from the repository root, "
            "or write it with `python -m pipeline.config`.")
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)
