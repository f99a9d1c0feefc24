"""Run folders: a new folder for every run whatever the loggers, checked writable before any work, holding the run's
config.yaml; a folder that a failed start left empty is removed again."""

import os
from pathlib import Path

from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from lightning_ref.defaults import RUN_NAME
from lightning_ref.errors import UsageError

FIT_ONLY = ("test", "test_ckpt")  # the options only fit has (ManualNetCLI.add_subcommand_arguments)


class RunConfig(SaveConfigCallback):
    """Saves the run's resolved config as config.yaml in its run folder (`run_dir`, set by the CLI), whatever the
    loggers (Lightning's own SaveConfigCallback writes into trainer.log_dir, default_root_dir itself with no logger),
    in a form every subcommand accepts with --config."""

    run_dir: Path | None = None

    def save_config(self, trainer, pl_module, stage: str) -> None:
        # Without fit's own --test and --test_ckpt (metrics.json says what was tested), so that any subcommand takes
        # the file: `manualnet-train test --config <run>/config.yaml --ckpt_path ...`.
        config = self.config.clone()
        for key in FIT_ONLY:
            if key in config:
                del config[key]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.parser.save(config, self.run_dir / "config.yaml", skip_none=False, multifile=self.multifile)


def run_folder(trainer) -> Path:
    """The run's folder: the first logger's version folder when it is a CSV or TensorBoard logger (save_dir/name/
    version_k), else (no logger, or one without such a folder, e.g. W&B or MLflow) the next free
    default_root_dir/manualnet/version_k."""
    if trainer.loggers and isinstance(trainer.loggers[0], (CSVLogger, TensorBoardLogger)):
        return Path(trainer.loggers[0].log_dir)
    base = Path(trainer.default_root_dir, RUN_NAME)
    taken = [int(d.name[8:]) for d in base.glob("version_*") if d.name[8:].isdigit()] if base.is_dir() else []
    return base / f"version_{max(taken, default=-1) + 1}"


def check_writable(option: str, folder: Path) -> None:
    """UsageError unless `folder` is, or can be created in, a writable folder (its nearest existing ancestor)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option}: cannot write {folder}: {existing} is not a writable folder")


def discard_unused_run_dir(run_dir: Path) -> None:
    """Remove the run folder a failed setup created, when it holds nothing but the run's config and empty log files
    (so a failed start leaves no stray version_k behind); anything else in it stays."""
    for name in ("config.yaml", "hparams.yaml", "metrics.csv"):
        f = run_dir / name
        if f.is_file() and (name != "metrics.csv" or f.stat().st_size == 0):
            f.unlink()
    for d in (run_dir / "checkpoints", run_dir):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
