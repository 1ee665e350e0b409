"""Read ``params.yaml``, the composed configuration that DVC tracks."""

from __future__ import annotations

import io
from pathlib import Path

import yaml

from pipeline.errors import InputError

PARAMS_FILE = "params.yaml"
# libyaml's safe loader when PyYAML was built with it (its wheels are): every stage reads the
# whole params.yaml, 0.11 s in pure Python against 0.02 s
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(SAFE_LOADER):
    """The safe loader, refusing a mapping that gives a key twice: YAML keeps the last one
    silently, where DVC refuses the file ("duplicate key")."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                twice = key in seen
            except TypeError:  # unhashable: the safe loader's own error says so
                continue
            if twice:
                raise yaml.constructor.ConstructorError(None, None, f"found the key {key!r} twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


CONF = Path(__file__).resolve().parents[1] / "conf"
# A run's folders, relative to the repository root; dvc.yaml's train outs spell the same
MODELS, RESULTS = "models", "results"


def repo_root(start: Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (the current one) that holds ``dvc.yaml`` and
    ``conf/config.yaml``: this repository's root, or a clone's, or a DVC temp workspace's."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file() and (folder / "conf" / "config.yaml").is_file():
            return folder
    return None


def below_the_root(command: str, cwd: Path | None = None) -> str | None:
    """Why ``command`` cannot run here: the folder is inside a checkout but not its root, and
    the command's paths (data/, models/, conf/, outputs/) are the root's. None at the root,
    and outside any checkout (the command's own messages then name what is missing)."""
    cwd = (cwd or Path.cwd()).resolve()
    root = repo_root(cwd)
    if root is None or root == cwd:
        return None
    return f"{command} takes its paths from the repository root: run it in {root} (not in {cwd})"


def run_folders(book_id: str, root: Path = Path(".")) -> tuple[Path, Path]:
    """``<root>/models/<id>`` and ``<root>/results/<id>``: where run ``book_id`` keeps its
    weights (one ``seed<k>/`` each) and its ``metrics.json`` and ``history.csv``."""
    return root / MODELS / book_id, root / RESULTS / book_id


def seed_folder(model_dir: str | Path, seed: int) -> Path:
    """Where a run's net of ``seed`` is saved in its model folder: ``models/<id>/seed<k>/``."""
    return Path(model_dir) / f"seed{seed}"


def book_run(params: dict, book_id: str) -> dict:
    """Run ``book_id``'s config from the composed ``params`` (params.yaml's ``book``)."""
    book = params.get("book") or {}
    if book_id not in book:
        have = f"have: {', '.join(book)}" if book else "it has none: run python -m pipeline.config"
        raise InputError(f"no run {book_id!r} in params.yaml's book ({have})")
    return book[book_id]


def conf_book_run(book_id: str) -> dict:
    """``conf/book/<id>.yaml``'s run as plain data, without Hydra (for the benchmark and the
    GPU script): its ``training.epochs``, an interpolation (``${..book.epochs}``) that plain
    YAML leaves unresolved, set to the book's epochs; ``seeds`` and ``data`` paths stay as
    written (they point into the composed config)."""
    run = yaml.safe_load((CONF / "book" / f"{book_id}.yaml").read_text(encoding="utf-8"))[book_id]
    return dict(run, training=dict(run["training"], epochs=run["book"]["epochs"]))


def conf_data() -> dict:
    """``conf/data/mnist.yaml``: where the data live and the book's split (``n_train``)."""
    return yaml.safe_load((CONF / "data" / "mnist.yaml").read_text(encoding="utf-8"))


def profile_name(path: str | Path = PARAMS_FILE) -> str | None:
    """The profile ``params.yaml`` was composed with, for a stage's first line (None when the
    file cannot say: the stage itself then names the problem)."""
    try:
        name = (load_params(path).get("profile") or {}).get("name")
    except (OSError, InputError, AttributeError):
        return None
    return name if isinstance(name, str) else None


class _NamedText(io.StringIO):
    """Text that YAML's errors name by its file, as they name an open file."""

    def __init__(self, text: str, path: Path):
        super().__init__(text)
        self.name = str(path)


def load_params(path: str | Path = PARAMS_FILE) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: run stages from the repository root, "
            "or write it with `python -m pipeline.config`.")
    remake = "write it again with `python -m pipeline.config` (add profile=<name> for another profile)"
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:  # saved in another encoding by an editor
        line = data.count(b"\n", 0, error.start) + 1
        raise InputError(f"{path}: not UTF-8 text (byte {data[error.start]:#04x} on line {line}): "
                         f"save it as UTF-8, or {remake}") from error
    try:
        params = yaml.load(_NamedText(text, path), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as error:
        problem = " ".join(line.strip() for line in str(error).splitlines()[:3] if line.strip())
        raise InputError(f"{path}: not valid YAML ({problem}): {remake}") from error
    if not isinstance(params, dict):
        raise InputError(f"{path}: expected a mapping of settings, got {type(params).__name__}: {remake}")
    return params
