"""Model files: a directory with ``weights.npz`` and ``model.json``.

``weights.npz`` holds one float array per parameter (``layers.<i>.<key>``); it is always read
with ``allow_pickle=False``, so a file carrying a pickled object array is refused rather than
executed. ``model.json`` holds the format name and version, the validated spec (enough to
rebuild the network), every parameter's shape and dtype (checked against the arrays), the
name (always ``weights.npz``) and SHA-256 of the weights file, and free-form metadata (metrics,
data digest, ...). Both files are written atomically (temporary file in the same directory,
then ``os.replace``), weights first, so a reader never sees a half-written file and a crash
between the two shows up as a digest mismatch.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy

from pipeline.atomic import atomic_path
from pipeline.errors import InputError
from pipeline.hashing import sha256_file
from pipeline.nn.build import build_network
from pipeline.nn.network import Network
from pipeline.nn.spec import SpecError, parameter_count, validate_spec

FORMAT = "nielsen-mnist-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.npz"
META_FILE = "model.json"
# the fix for a missing or damaged model file: its stage again, or the run-cache of a DVC remote
# (`dvc pull` alone fetches no model: main's dvc.lock records none)
REDO = "train it again (`dvc repro`) or fetch it from a DVC remote (`dvc repro --pull`)"


class ModelFileError(InputError):
    """A model directory that is missing, malformed, or does not match its own description."""


class LoadedModel(NamedTuple):
    network: Network
    spec: dict
    metadata: dict
    info: dict  # the whole parsed model.json


def _json_default(value: Any):
    if isinstance(value, numpy.generic):
        return value.item()
    if isinstance(value, numpy.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _atomic_write(path: Path, write) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write(fh)


FINAL_EPOCH_WEIGHTS = "final epoch"  # metadata["weights"] of a model whose run trained to the end


def save_model(directory, net: Network, spec, metadata: dict | None = None) -> Path:
    """Write ``net``'s weights and description into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spec = validate_spec(spec)
    state = net.state_dict()
    shapes = net.param_shapes()
    built = build_network(spec, seed=0, xp=numpy, dtype=net.dtype).param_shapes()
    if built != shapes:
        raise ValueError(f"the spec describes parameters {built}, but the network has {shapes}")
    weights_path = directory / WEIGHTS_FILE
    _atomic_write(weights_path, lambda fh: numpy.savez(fh, **state))
    info = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": spec,
        "dtype": str(net.dtype),
        "params": {name: {"shape": list(shape), "dtype": str(state[name].dtype)} for name, shape in shapes.items()},
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": sha256_file(weights_path),
        "metadata": metadata or {},
    }
    text = json.dumps(info, indent=2, sort_keys=False, default=_json_default, allow_nan=True) + "\n"
    _atomic_write(directory / META_FILE, lambda fh: fh.write(text.encode()))
    return directory


def _seed_number(name: str) -> int | None:
    """k of a folder named seed<k>, else None."""
    return int(name[4:]) if name.startswith("seed") and name[4:].isdigit() else None


def _missing_model_hint(directory: Path) -> str:
    """What to do about a model directory without a model: pick one of the models inside it,
    or make it. models/<id>/seed<k> is made by train@<id> (a bare `dvc repro` would train the
    whole profile); a seed above every one that run trained may not be among its seeds at all.
    Another folder's run is not known here."""
    inside = sorted(p.name for p in directory.glob("*") if (p / META_FILE).is_file()) if directory.is_dir() else []
    if inside:
        return f"; {directory} holds the model directories {', '.join(inside)}: give one of them"
    seed = _seed_number(directory.name)
    if seed is None or directory.parent.parent.name != "models":
        return ("; train it (`dvc repro train@<id>`) or fetch it from a DVC remote "
                "(`dvc repro --pull train@<id>`) first")
    run = directory.parent.name
    trained = sorted(k for p in directory.parent.glob("seed*")
                     if (k := _seed_number(p.name)) is not None and (p / META_FILE).is_file())
    make = (f"train it (`dvc repro train@{run}`) or fetch it from a DVC remote "
            f"(`dvc repro --pull train@{run}`)")
    if not trained or seed < trained[-1]:
        return f"; {make} first"
    return (f"; {directory.parent} holds only {', '.join(f'seed{k}' for k in trained)}: if `book.{run}.seeds` "
            f"in params.yaml lists seed {seed}, {make}; if not, it is another profile's seed "
            f"(`python -m pipeline.config profile=<name>` first)")


def _read_info(directory: Path) -> dict:
    path = directory / META_FILE
    if not path.is_file():
        where = "" if directory.is_dir() else f": {directory} does not exist (is the path spelt right?)"
        raise ModelFileError(f"{path}: not found{where}; a model directory holds {META_FILE} and "
                             f"{WEIGHTS_FILE}{_missing_model_hint(directory)}")
    try:
        info = json.loads(path.read_text())
    # ValueError: also an integer of more digits than Python converts; RecursionError: nesting
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{path}: not valid JSON ({exc}): the file is damaged; {REDO}") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        found = info.get("format") if isinstance(info, dict) else None
        raise ModelFileError(f"{path}: not a {FORMAT} file (format={found!r}): give the directory that "
                             f"`dvc repro` wrote, models/<id>/seed<N>, or {REDO}")
    version = info.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:  # not `True`, which equals 1
        raise ModelFileError(f"{path}: format_version {info.get('format_version')!r} is not supported "
                             f"(expected {FORMAT_VERSION})")
    for key in ("spec", "params", "dtype", "weights_sha256"):
        if key not in info:
            raise ModelFileError(f"{path}: missing key {key!r}: the file is damaged; {REDO}")
    metadata = info.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ModelFileError(f"{path}: 'metadata' must be a mapping, got {type(metadata).__name__}")
    if not isinstance((metadata or {}).get("metrics", {}), dict):
        raise ModelFileError(f"{path}: 'metadata.metrics' must be a mapping")
    if info["dtype"] not in ("float32", "float64"):
        raise ModelFileError(f"{path}: 'dtype' {info['dtype']!r} is not float32 or float64")
    if info.get("weights_file", WEIGHTS_FILE) != WEIGHTS_FILE:  # written for readers; we read WEIGHTS_FILE only
        raise ModelFileError(f"{path}: 'weights_file' is {info['weights_file']!r}, but a model directory's "
                             f"weights are always {WEIGHTS_FILE!r}; name the file {WEIGHTS_FILE}")
    return info


def _read_entry(npz, name: str, path: Path) -> numpy.ndarray:
    """The array ``name`` of the open ``npz``, refused unless it is a plain .npy array."""
    try:
        array = npz[name]
    except ValueError as exc:
        # numpy says "allow_pickle" only when it refuses an object array; anything else is damage
        if "allow_pickle" in str(exc):
            raise ModelFileError(
                f"{path}: array {name!r} is a pickled object array; refused (allow_pickle=False): {exc}"
            ) from None
        raise ModelFileError(f"{path}: array {name!r} is unreadable ({exc}); {REDO}") from None
    if not isinstance(array, numpy.ndarray):  # an entry without a .npy header comes back as bytes
        raise ModelFileError(f"{path}: entry {name!r} is not a .npy array ({type(array).__name__}); {REDO}")
    return array


def _check_entries(npz, path: Path, expected: dict[str, tuple[int, ...]]) -> None:
    """Refuse, before a byte of them is read, entries that would take more memory than the
    file's own size: an entry that unpacks to more bytes than the whole (compressed) file
    (numpy reads such an entry whole, or allocates what its header declares), and a .npy header
    whose shape or dtype is not the expected one (numpy allocates its shape before reading)."""
    size = path.stat().st_size
    for member in npz.zip.infolist():
        if member.file_size > size:
            raise ModelFileError(f"{path}: entry {member.filename!r} unpacks to {member.file_size:,} bytes, more "
                                 f"than the whole file ({size:,}); {WEIGHTS_FILE} is written uncompressed: "
                                 f"refused unread; {REDO}")
    members = set(npz.zip.namelist())
    for name, shape in expected.items():
        if f"{name}.npy" not in members:  # an entry without .npy: numpy gives its bytes, refused later
            continue
        with npz.zip.open(f"{name}.npy") as fh:
            try:
                version = numpy.lib.format.read_magic(fh)
                read_header = (numpy.lib.format.read_array_header_1_0 if version == (1, 0)
                               else numpy.lib.format.read_array_header_2_0)
                found, _, dtype = read_header(fh)
            except ValueError:  # a damaged header: numpy says what, in _read_entry
                continue
        if dtype.hasobject:  # numpy refuses it (allow_pickle=False) before allocating anything
            continue
        if dtype not in (numpy.float32, numpy.float64):
            raise ModelFileError(f"{path}: array {name!r} has dtype {dtype}, expected float32 or float64; {REDO}")
        if tuple(found) != tuple(shape):
            raise ModelFileError(f"{path}: array {name!r} has shape {tuple(found)}, expected {tuple(shape)}; {REDO}")


def _read_weights(path: Path, expected: dict[str, tuple[int, ...]]) -> dict[str, numpy.ndarray]:
    if not path.is_file():
        raise ModelFileError(f"{path}: not found; {REDO}")
    if not zipfile.is_zipfile(path):  # numpy.load would try to read anything else as a pickle
        raise ModelFileError(f"{path}: not a readable .npz file (not a zip archive); {REDO}")
    state = {}
    try:
        with numpy.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            missing, unexpected = sorted(set(expected) - names), sorted(names - set(expected))
            if missing:
                raise ModelFileError(f"{path}: missing array(s) {missing}; {REDO}")
            if unexpected:
                raise ModelFileError(f"{path}: unexpected array(s) {unexpected}; {REDO}")
            _check_entries(npz, path, expected)
            for name in expected:
                state[name] = _read_entry(npz, name, path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelFileError(f"{path}: not a readable .npz file ({exc}); {REDO}") from None
    for name, shape in expected.items():
        a = state[name]
        if a.dtype not in (numpy.float32, numpy.float64):
            raise ModelFileError(f"{path}: array {name!r} has dtype {a.dtype}, expected float32 or float64; {REDO}")
        if tuple(a.shape) != tuple(shape):
            raise ModelFileError(f"{path}: array {name!r} has shape {tuple(a.shape)}, expected {tuple(shape)}; {REDO}")
        if not numpy.isfinite(a).all():
            raise ModelFileError(f"{path}: array {name!r} contains NaN or infinite values; {REDO}")
    return state


def _check_dtypes(info: dict, declared: dict[str, str], state: dict[str, numpy.ndarray], meta_path: Path) -> None:
    """Every array has the dtype model.json declares for it, and that is the model's ``dtype``:
    otherwise loading would silently cast the weights to a precision they were not saved in."""
    for name, array in state.items():
        if str(array.dtype) != declared[name]:
            raise ModelFileError(f"{meta_path}: 'params.{name}.dtype' is {declared[name]!r}, but {WEIGHTS_FILE} "
                                 f"holds {array.dtype}; the two files do not belong together: {REDO}")
        if declared[name] != info["dtype"]:
            raise ModelFileError(f"{meta_path}: 'dtype' is {info['dtype']!r}, but 'params.{name}.dtype' is "
                                 f"{declared[name]!r}; {REDO}")


def load_model(directory, *, xp=None, device: str | None = None, dtype=None) -> LoadedModel:
    """Rebuild the network described in ``directory`` and load its weights, checking everything.

    Raises :class:`ModelFileError` for a missing, malformed or mismatched file: unknown format,
    invalid spec, parameter names or shapes that differ between spec, ``model.json`` and
    ``weights.npz``, non-float, pickled or unreadable arrays, dtypes that differ from the declared
    ones, or a weights digest that does not match.
    """
    directory = Path(directory)
    info = _read_info(directory)
    meta_path = directory / META_FILE
    try:
        spec = validate_spec(info["spec"], training_rules=False)
    except SpecError as exc:
        raise ModelFileError(f"{meta_path}: invalid spec: {exc}") from None
    declared = info["params"]
    try:
        declared_shapes = {k: tuple(int(n) for n in v["shape"]) for k, v in declared.items()}
        declared_dtypes = {k: v["dtype"] for k, v in declared.items()}
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError):  # Overflow: a shape of Infinity
        raise ModelFileError(f"{meta_path}: 'params' is malformed: {declared!r}; {REDO}") from None
    # counted before the network is built: a spec edited to millions of units would otherwise
    # end in a MemoryError rather than in this message
    declared_count = sum(math.prod(shape) for shape in declared_shapes.values())
    spec_count = parameter_count(spec["model"])
    if declared_count != spec_count:
        raise ModelFileError(f"{meta_path}: 'params' ({declared_count} numbers) do not match the spec's network "
                             f"({spec_count} numbers); {REDO}")
    # the weights file must be large enough to hold them (it is written uncompressed): a
    # model.json that declares a net of billions of numbers beside a small weights.npz is
    # refused before they are allocated, so memory stays within the size of the files given
    weights_path = directory / WEIGHTS_FILE
    need = declared_count * numpy.dtype(info["dtype"]).itemsize
    if zipfile.is_zipfile(weights_path) and need > (size := weights_path.stat().st_size):  # else: named below
        raise ModelFileError(f"{weights_path}: {size:,} bytes cannot hold the {declared_count:,} {info['dtype']} "
                             f"numbers {META_FILE} declares ({need:,} bytes); refused before allocating them; {REDO}")
    if xp is None:
        device = device or "cpu"
    net = build_network(spec, seed=0, xp=xp, device=device, dtype=dtype or info["dtype"])
    expected = net.param_shapes()
    if declared_shapes != expected:
        raise ModelFileError(f"{meta_path}: 'params' {declared_shapes} do not match the spec's network "
                             f"{expected}; {REDO}")
    state = _read_weights(weights_path, expected)
    _check_dtypes(info, declared_dtypes, state, meta_path)
    digest = sha256_file(weights_path)
    if digest != info["weights_sha256"]:
        raise ModelFileError(f"{weights_path}: SHA-256 {digest} does not match model.json "
                             f"({info['weights_sha256']}): the weights were changed or damaged; {REDO}")
    net.load_state_dict(state)
    return LoadedModel(net, spec, info.get("metadata") or {}, info)
