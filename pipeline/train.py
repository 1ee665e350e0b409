"""Hydra app: train any run of the book outside DVC, with the same code and MLflow logging.

    python -m pipeline.train book=ch6-relu seed=2 eta=0.1
    python -m pipeline.train -m book=ch1-30 seed=1,2,3 hydra/launcher=joblib

Configuration: conf/train.yaml (the run is chosen from conf/book/, any key can be overridden,
e.g. ``book.ch6-relu.training.batch_size=20``). Data must exist (``dvc repro expand`` or
``dvc pull``). Outputs land in Hydra's output folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import shutil
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from pipeline.atomic import disk_error_message
from pipeline.errors import EXIT_STATUS, InputError, SettingError
from pipeline.experiment import train_entry
from pipeline.interrupts import exit_status
from pipeline.machine import kernel_pin_note
from pipeline.params import MODELS, below_the_root, run_folders
from pipeline.settings import SECTIONS, SEED

# what conf/train.yaml composes: params.yaml's sections (a profile may set any) and the shortcuts
APP_KEYS = (*SECTIONS, "seed", "eta", "epochs")


def run_config(cfg: dict, book_id: str) -> tuple[str, dict]:
    """The selected ``book.<id>`` with the ``seed``/``eta``/``epochs`` shortcuts applied.

    (``cfg["book"]`` may hold partial entries of other runs: a profile's per-run cuts.)
    """
    if unknown := [key for key in cfg if key not in APP_KEYS]:
        # `+lr=0.1`, as Hydra's own message for `lr=0.1` suggests, would add a key nothing reads
        raise SettingError(unknown[0], f"unknown key; allowed at the top: {', '.join(APP_KEYS)}. A run's "
                           f"own settings go under book.{book_id}, e.g. book.{book_id}.training.eta=0.1")
    if book_id not in cfg["book"]:
        raise SettingError(f"book.{book_id}", f"conf/book/{book_id}.yaml must hold its run under the top "
                        f"key `{book_id}:` (the file's name); the runs composed are {sorted(cfg['book'])}")
    run_cfg = cfg["book"][book_id]
    if (seed := cfg.get("seed")) is not None:
        if not SEED[0](seed):  # named as typed, not as the run's seeds
            raise SettingError("seed", f"expected an integer >= 0 (seed=2), got {seed!r}")
        run_cfg["seeds"] = [seed]  # its range for the run's random streams is checked with the run
    for key in ("eta", "epochs"):
        if cfg.get(key) is not None:
            run_cfg["training"][key] = cfg[key]
    return book_id, run_cfg


# conf/hydra/launcher/<name>.yaml (ours, or the plugin's own) -> the plugin package it needs
LAUNCHER_PLUGINS = {
    "joblib": "hydra_plugins.hydra_joblib_launcher",
    "slurm": "hydra_plugins.hydra_submitit_launcher",
    "submitit_slurm": "hydra_plugins.hydra_submitit_launcher",
    "submitit_local": "hydra_plugins.hydra_submitit_launcher",
}
SLURM_LAUNCHERS = {"slurm", "submitit_slurm"}


def launcher_problem(args: list[str], which=shutil.which) -> str | None:
    """Why the launcher the command line picks cannot start, or None when it can.

    Hydra's own message for an absent plugin ("Could not load 'hydra/launcher/submitit_slurm'")
    names neither the package nor the extra that brings it, and submitit off a cluster ends in a
    traceback; both are said here in a line, before anything starts."""
    for arg in args:
        key, _, name = arg.partition("=")
        if key.lstrip("+~") != "hydra/launcher" or name not in LAUNCHER_PLUGINS:
            continue
        plugin = LAUNCHER_PLUGINS[name]
        try:
            found = importlib.util.find_spec(plugin) is not None
        except ModuleNotFoundError:  # hydra_plugins itself absent
            found = False
        if not found:
            package = plugin.split(".")[-1].replace("_", "-")
            return (f"hydra/launcher={name} needs the {package} package, which is not installed: "
                    f"pip install -e '.[launchers]'")
        if name in SLURM_LAUNCHERS and which("srun") is None:  # what submitit looks for
            return (f"hydra/launcher={name} submits the runs to SLURM, but this machine has no `srun`: "
                    f"run the command on the cluster, or use hydra/launcher=joblib to run them here")
    return None


def remove_if_nothing_ran(out: Path, named_by_user: bool) -> None:
    """Take away the output folder Hydra made for a run refused before it started (a bad
    setting, data not built): its config copy and empty log would stand among real runs' folders.
    Only a folder Hydra named itself (not one a ``hydra.run.dir=`` gave, which may be the user's
    own), only what Hydra put there, and the folder only if that leaves it empty."""
    log = out / "train.log"
    if named_by_user or out.resolve() == Path.cwd().resolve():
        return
    if any(p.name not in (".hydra", "train.log") for p in out.iterdir()) or (log.exists() and log.stat().st_size):
        return
    with contextlib.suppress(OSError):  # on Windows the open log cannot go: the folder then stays
        shutil.rmtree(out / ".hydra")
        log.unlink(missing_ok=True)
        out.rmdir()


def interrupted_message(models: Path, since: float) -> str:
    """What a stopped run says: where the weights its seeds saved when they stopped are, or
    that it was stopped before any training began (while loading data) and saved none. Only
    weights written ``since`` (this run's start) count: a fixed ``hydra.run.dir`` may hold an
    earlier run's."""
    if models.is_dir() and any(p.stat().st_mtime >= since for p in models.rglob("*.npz")):
        return f"interrupted: the weights so far are in {models}"
    return "interrupted before any weights were saved"


@hydra.main(version_base=None, config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    # Progress through logging, so it also lands in Hydra's <output dir>/train.log, timestamped
    # (on the terminal through Hydra's console handler, on stdout); notes and errors on stderr
    started = time.time()
    log = logging.getLogger("pipeline.train")
    plain = OmegaConf.to_container(cfg, resolve=True)
    out = Path(HydraConfig.get().runtime.output_dir)
    if note := kernel_pin_note("python -m pipeline.train ..."):
        print(note, file=sys.stderr)
    say = log.info
    if HydraConfig.get().mode == RunMode.MULTIRUN:  # a sweep's jobs side by side: whose line is whose
        job = HydraConfig.get().job
        say = lambda line, tag=f"[job {job.num}: {job.override_dirname}] ": log.info(tag + line)  # noqa: E731
    try:
        book_id, run_cfg = run_config(plain, HydraConfig.get().runtime.choices["book"])
        model_dir, results_dir = run_folders(book_id, out)
        train_entry(book_id, run_cfg, plain["data"], plain["profile"], model_dir=model_dir,
                    results_dir=results_dir, log=say, compute=plain.get("compute"))
    except (InputError, FileNotFoundError) as error:  # names the key or file, and the fix
        print(error, file=sys.stderr)
        named = any(o.startswith(("hydra.run.dir=", "hydra.sweep.dir=", "hydra.sweep.subdir="))
                    for o in HydraConfig.get().overrides.hydra)
        remove_if_nothing_ran(out, named_by_user=named)
        sys.exit(EXIT_STATUS)  # as the DVC stages: a mistake the user can fix
    except OSError as error:  # a full or read-only disk: which file, and what to do
        if (disk := disk_error_message(error)) is None:
            raise
        print(disk, file=sys.stderr)
        sys.exit(EXIT_STATUS)
    except KeyboardInterrupt as stopped:  # Ctrl-C or SIGTERM: each seed saved its weights, its run KILLED
        print(interrupted_message(out / MODELS, started), file=sys.stderr)
        sys.exit(exit_status(stopped))


if __name__ == "__main__":
    if (problem := below_the_root("python -m pipeline.train") or launcher_problem(sys.argv[1:])) is not None:
        print(problem, file=sys.stderr)
        sys.exit(EXIT_STATUS)
    main()
