"""Compose ``conf/`` into ``params.yaml``, exactly as DVC does for ``dvc exp run``.

DVC (with ``hydra.enabled``) composes the Hydra tree with ``dvc.utils.hydra.compose_and_dump``
before an experiment runs; this calls the same function, so the committed ``params.yaml`` is
byte-for-byte what DVC would write.

    python -m pipeline.config                 # rewrite params.yaml from conf/
    python -m pipeline.config --check         # exit 1 if params.yaml is out of date
    python -m pipeline.config profile=book    # any Hydra overrides

What it writes is checked first: every ``book.<id>`` run, ``profile.limits``, ``compute`` and
the data stages' settings (``pipeline.settings``), the checks the stages make, so a mistake is
named now, not an hour into ``dvc repro``. ``compute.device=gpu`` on a machine that cannot train
on a GPU is a note, not a mistake: the file may be meant for another machine.
``--check`` composes with the profile ``params.yaml`` names, so a switched profile is not
mistaken for a stale file.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
import tempfile
from collections.abc import Hashable
from pathlib import Path

import yaml

from pipeline.atomic import disk_error_message, write_text
from pipeline.errors import SettingError
from pipeline.params import below_the_root

CONFIG_DIR = "conf"
CONFIG_NAME = "config"
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # a run's id: conf/book/<id>.yaml, train@<id>


def compose(root: str | Path = ".", overrides: list[str] | None = None) -> str:
    """The YAML text DVC would write for ``conf/`` under ``root`` with ``overrides``."""
    from dvc.utils.hydra import compose_and_dump

    config_dir = (Path(root) / CONFIG_DIR).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "params.yaml"
        compose_and_dump(out, str(config_dir), None, CONFIG_NAME, str(Path(root).resolve()),
                         overrides or [])
        return out.read_text(encoding="utf-8")


def check(params: dict, root: str | Path = ".") -> None:
    """Raise an ``InputError`` naming the key of the first mistake in composed params, or in how
    ``conf/book/`` and ``dvc.yaml`` under ``root`` hold the runs."""
    from pipeline.experiment import check_book_figure, check_fits_data, validate_run  # loads MLflow
    from pipeline.report import validate as validate_report
    from pipeline.settings import check_compute, check_limits, check_sections, check_settings

    check_book_files(root)
    check_sections(params)
    check_settings(params)
    check_limits((params.get("profile") or {}).get("limits") or {})
    check_compute(params.get("compute") or {})
    for book_id, run_cfg in (params.get("book") or {}).items():
        validate_run(book_id, run_cfg)
        check_book_figure(book_id, run_cfg)
        check_fits_data(book_id, run_cfg)
    validate_report(params["report"], list(params["book"]), params["ensemble"]["id"])
    check_dvc_yaml(root, list(params["book"]))


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping as Hydra's does (PyYAML
    keeps the last one)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # a list or mapping as a key: the base class says so
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error in one line: what, and at which line and column."""
    mark = getattr(error, "problem_mark", None)
    problem = ": ".join(filter(None, (getattr(error, "context", None), getattr(error, "problem", None))))
    if mark is None or not problem:
        return " ".join(str(error).split())
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"


def check_book_files(root: str | Path = ".", only: set[str] | None = None) -> None:
    """Each ``conf/book/<id>.yaml`` (``only`` those of these ids, where given) holds one run,
    under the top key ``<id>``, in YAML Hydra can read.

    Hydra merges every file into ``book:``, so a copied file whose top key was not renamed
    would silently replace the run it was copied from."""
    from pipeline.errors import InputError

    for path in sorted((Path(root) / CONFIG_DIR / "book").glob("*.yaml")):
        if only is not None and path.stem not in only:
            continue
        where = f"{CONFIG_DIR}/book/{path.name}"
        if not RUN_ID.fullmatch(path.stem):  # dvc.yaml's train@<id> and the key paths book.<id>.… read it
            raise InputError(f"{where}: a run's id (its file's name) is letters, digits, - and _, "
                             f"starting with a letter or digit: rename it")
        try:
            loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
        except yaml.YAMLError as error:  # what and where, under the file's name
            raise InputError(f"{where}: not valid YAML: {_yaml_problem(error)}") from None
        keys = list(loaded) if isinstance(loaded, dict) else [] if loaded is None else None
        if keys is None:
            raise InputError(f"{where}: expected a mapping `{path.stem}: {{...}}`, got {type(loaded).__name__}")
        if keys != [path.stem]:
            holds = ("no run" if not keys else f"its run under the top key `{keys[0]}:`" if len(keys) == 1
                     else f"runs under the top keys {', '.join(f'`{k}:`' for k in keys)}")
            raise InputError(f"{where} holds {holds}: a file holds one run, under its "
                             f"file's name `{path.stem}:`"
                             + (f" (as it is, it would replace the run {keys[0]})" if len(keys) == 1 else ""))


def check_dvc_yaml(root: str | Path, run_ids: list[str]) -> None:
    """``dvc.yaml`` (where there is one) makes the report wait for every run and plots each:
    a run left out of the report's deps could be read before it is trained, or not at all."""
    from pipeline.errors import InputError

    path = Path(root) / "dvc.yaml"
    if not path.is_file():
        return
    dvc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    deps = set(((dvc.get("stages") or {}).get("report") or {}).get("deps") or [])
    plotted = {y.split("/")[1] for plot in dvc.get("plots") or [] for props in plot.values()
               for y in (props or {}).get("y") or {} if y.startswith("results/")}
    for run_id in run_ids:
        missing = [f"results/{run_id}/{name}" for name in ("metrics.json", "history.csv")
                   if f"results/{run_id}/{name}" not in deps]
        if missing:
            raise InputError(f"dvc.yaml: the report stage does not wait for train@{run_id}: add "
                             f"{' and '.join(missing)} to its deps (README: An experiment of your own)")
        if run_id not in plotted:
            raise InputError(f"dvc.yaml: train@{run_id} is in no plot: add `results/{run_id}/history.csv: "
                             f"validation_accuracy` to one group under `plots` (README: An experiment of your own)")


def device_note(params: dict) -> str | None:
    """A note when ``compute.device`` asks for a GPU this machine cannot train on (None: it can).

    Not an error: params.yaml may be written here to be run on a GPU machine after a git pull."""
    if (params.get("compute") or {}).get("device") != "gpu":
        return None
    from pipeline.nn.backend import BackendError, get_xp

    try:
        get_xp("gpu")
    except BackendError as error:
        return (f"note: {error}\n`dvc repro` on this machine will stop at the first training stage; "
                f"on a machine with a GPU it trains there.")
    return None


def replay_notes(params: dict) -> list[str]:
    """A note for each row whose replay of the book's run will not train under these params
    (a changed row, or the profile's limits): composed with overrides, that is worth a word
    before the run, not only in its stage's log."""
    from pipeline.experiment import replay_problem

    if not (params.get("profile") or {}).get("replay"):
        return []
    limits = params["profile"].get("limits") or {}
    return [f"note: the book's own run of {book_id} will not be replayed: {problem['why']}"
            for book_id, run_cfg in (params.get("book") or {}).items() if run_cfg.get("replay")
            and (problem := replay_problem(book_id, run_cfg, params["data"]["n_train"], limits))]


def first_difference(a, b, path: str = "") -> str | None:
    """The first key path where two YAML trees differ (None: equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            if key not in a or key not in b:
                return f"{path}{key}"
            found = first_difference(a[key], b[key], f"{path}{key}.")
            if found:
                return found
        return None
    return None if a == b else path.rstrip(".") or "(the whole file)"


def sync_problem(root: str | Path = ".", params_file: str | Path = "params.yaml") -> str | None:
    """Why ``params_file`` is not what ``conf/`` composes to with its own profile (None: it is)."""
    path = Path(root) / params_file
    if not path.is_file():
        return f"{path} is missing: run `python -m pipeline.config`."
    text = path.read_text(encoding="utf-8")
    current = yaml.safe_load(text) or {}
    if not isinstance(current, dict) or not isinstance(current.get("profile", {}), dict):
        return f"{path} is not a mapping of settings with a profile: run `python -m pipeline.config`."
    profile = (current.get("profile") or {}).get("name", "quick")
    composed = compose(root, [f"profile={profile}"])
    if text == composed:
        return None
    where = first_difference(current, yaml.safe_load(composed)) or "its formatting"
    return (f"{path} differs from conf/ composed with profile={profile}, first at {where}. "
            f"`python -m pipeline.config profile={profile}` composes it again: the fix after an edit "
            f"of conf/; if the difference is an override of your own (`dvc exp run -S`, or "
            f"key=value given to pipeline.config), that drops it.")


# Hydra's options that point it at another config folder or file (which may hold other runs)
CONFIG_OPTIONS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")
# Hydra's options whose value is the next word (``--cfg job``, ``-cn train``)
OPTIONS_WITH_A_VALUE = ("--cfg", "-c", "--info", "-i", "--package", "-p", "--experimental-rerun", *CONFIG_OPTIONS)


def bare_choice(args: list[str], conf: str | Path = CONFIG_DIR) -> str | None:
    """A word without ``=`` that names a run or a profile (``ch1-30``, ``smoke``): Hydra reads
    it as a malformed override ("missing EQUAL"); the fix is ``book=ch1-30`` or ``profile=smoke``."""
    conf = Path(conf)
    for before, word in zip(["", *args], args):
        if "=" in word or word.startswith(("-", "+", "~")) or before in OPTIONS_WITH_A_VALUE:
            continue
        for group in ("book", "profile"):
            if (conf / group / f"{word}.yaml").is_file():
                return f"{word}: a setting is key=value: {group}={word}"
    return None


def _first_absent(run: dict, parts: list[str]) -> int | None:
    """The index in ``parts`` (a ``book.<id>.…`` key split at its dots) of the first part that
    a mapping of ``run`` lacks; None where a list index or a value stands in the way first."""
    node: object = run
    for depth in range(2, len(parts)):
        part = parts[depth]
        if isinstance(node, dict):
            if part not in node:
                return depth
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return None


def _with_setting(run: dict, parts: list[str], depth: int, value: str) -> dict:
    """A copy of ``run`` with ``value`` (read as YAML) set at ``parts[2:]``, the mappings from
    ``parts[depth]`` down made for it, as Hydra's ``+key=value`` would."""
    try:
        leaf: object = yaml.safe_load(value) if value else None
    except yaml.YAMLError:  # Hydra's grammar is not YAML's: the text itself will do here
        leaf = value
    for part in reversed(parts[depth + 1:]):
        leaf = {part: leaf}
    changed = copy.deepcopy(run)
    node: object = changed
    for part in parts[2:depth]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[parts[depth]] = leaf
    return changed


def explain_absent(key: str, value: str, params: dict) -> str | None:
    """Why ``key=value`` cannot be set in the composed ``params``, or None where the key is there.

    For most keys, the first absent part with the keys that are (``absent_key``). For a run's
    setting (``book.<id>.…``) the run is checked with the setting added: where the engine
    refuses a key at or below the absent part, its message (which lists every key it takes);
    otherwise the setting is one the run's file leaves at the engine's default
    (``regularization`` of ``ch1-30``), and ``+key=value`` adds it."""
    from pipeline.experiment import validate_run  # loads MLflow: only for a key that is not there
    from pipeline.settings import absent_key

    problem = absent_key(key, params)
    parts = key.split(".")
    runs = params.get("book") or {}
    if problem is None or len(parts) < 3 or parts[0] != "book" or parts[1] not in runs:
        return problem
    depth = _first_absent(runs[parts[1]], parts)
    if depth is None:
        return problem  # a list index past the end, or a value in the way
    absent = ".".join(parts[: depth + 1])
    try:
        validate_run(parts[1], _with_setting(runs[parts[1]], parts, depth, value))
        refused = ""
    except (SettingError, ValueError, TypeError) as error:
        refused = str(error)
    at = re.sub(r"\[(\d+)\]", r".\1", refused).split(":", 1)[0]  # the spec writes layers[0]
    # a key the check refuses by name (unknown, or one a run does not set): its words alone
    by_name = "unknown key" in refused or "not a setting of a run" in refused
    if by_name and (at == absent or at.startswith(absent + ".")):
        return refused if at == key else f"{key}: {refused}"
    what = "" if absent == key else f"{absent} is "
    then = f" (with it, the run's check says: {refused})" if refused else ""
    return (f"{key}: {what}not set in this run's config (it takes the engine's default); "
            f"add it with +{key}={value}{then}")


def explain_override(error: Exception, overrides: list[str], root: str | Path = ".") -> str | None:
    """For Hydra's "Could not override 'key'" (a key that is not in the config), which advises
    ``+key=value``, or its "Error merging override key=value" (a list index past the end):
    which part of the key is not there and what is (``explain_absent``), read from the config
    composed without that override. None where that does not explain the error."""
    text = str(error)
    if text.startswith("Could not override '"):
        key = text.split("'")[1]
    elif text.startswith("Error merging override "):  # e.g. a list index out of range
        key = text.removeprefix("Error merging override ").partition("=")[0].strip().lstrip("+~")
    else:
        return None
    others = [o for o in overrides if o.partition("=")[0].lstrip("+~") != key]
    value = next((o.partition("=")[2] for o in overrides if o.partition("=")[0].lstrip("+~") == key), "")
    try:
        params = yaml.safe_load(compose(root, others))
    except Exception:  # another override fails too: Hydra's message stands
        return None
    return explain_absent(key, value, params or {})


def main(argv: list[str] | None = None) -> int:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from pipeline.errors import EXIT_STATUS, InputError

    parser = argparse.ArgumentParser(prog="python -m pipeline.config", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. profile=book")
    parser.add_argument("--check", action="store_true",
                        help="only check params.yaml is in sync with conf/ (under its own profile)")
    parser.add_argument("--out", default="params.yaml",
                        help="the file to write (default: params.yaml), e.g. /tmp/try.yaml to look without changing it")
    args = parser.parse_args(argv)
    if problem := below_the_root("python -m pipeline.config"):
        print(f"pipeline.config: {problem}", file=sys.stderr)
        return EXIT_STATUS
    out = Path(args.out)
    if out.is_dir():
        print(f"pipeline.config: --out {out} is a folder; give the file to write, e.g. {out / 'params.yaml'}",
              file=sys.stderr)
        return EXIT_STATUS
    if problem := bare_choice(args.overrides):
        print(f"pipeline.config: {problem}\n{out} was not written.", file=sys.stderr)
        return EXIT_STATUS
    try:
        if args.check:
            problem = sync_problem(".", out)
            print(problem or f"{out} is in sync with conf/.", file=sys.stderr if problem else sys.stdout)
            return 1 if problem else 0
        text = compose(".", args.overrides)
        params = yaml.safe_load(text)
        check(params, ".")
    except (HydraException, OmegaConfBaseException, yaml.YAMLError, InputError, ValueError) as error:
        if (said := explain_override(error, args.overrides)) is not None:
            print(f"pipeline.config: {said}\n{out} was not written.", file=sys.stderr)
            return EXIT_STATUS
        # Hydra's own message (a missing config group option, a key it cannot override, a YAML
        # error in conf/, a group set to null) or ours (an InputError names the key), without
        # the traceback around it
        message = str(error).strip() or type(error).__name__
        print(f"pipeline.config: {message}" + ("" if args.check else f"\n{out} was not written."), file=sys.stderr)
        return EXIT_STATUS
    try:
        write_text(out, text)
    except OSError as error:
        if (said := disk_error_message(error)) is None:
            raise
        print(f"pipeline.config: {said}", file=sys.stderr)  # the old file, if any, as it was
        return EXIT_STATUS
    print(f"wrote {out}")
    for note in [device_note(params), *replay_notes(params)]:
        if note:
            print(note, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
