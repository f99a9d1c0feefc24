"""manualnet-train: the LightningCLI that trains TwoLayerClassifier on ImageDataModule (fit / validate / test).

    manualnet-train fit                                          # CIFAR-10 by its recipe, then test the best checkpoint
    manualnet-train fit --data.dataset fashion-mnist --data.root /usr/share/datasets/fashion-mnist
    manualnet-train fit --ckpt_path runs/manualnet/version_0/checkpoints/last.ckpt
    manualnet-train fit --data.dataset mnist --print_config       # every option, as the mnist recipe sets it

Without --config, a subcommand runs the packaged recipe of its data set (lightning_ref/recipes/<dataset>.yaml) and
says so on stderr; options given on the command line override it, and --config FILE replaces it.

Every run writes into a new folder runs/<name>/version_<k> (CSVLogger): metrics.csv, config.yaml,
checkpoints/{best-*.ckpt,last.ckpt}, and after fit: metrics.json, curves.png, w1.png. A resumed run (--ckpt_path)
gets a new folder too, so nothing saved before is ever overwritten. A bad option, missing data or an unusable
checkpoint stops the run before any work with one line on stderr and exit code 2.
"""

import inspect
import json
import math
import os
import sys
from pathlib import Path

import torch
from jsonargparse import ArgumentError
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger

from lightning_ref.callbacks import GradientCrossCheck, RunRecorder
from lightning_ref.data import DataMissingError, ImageDataModule
from lightning_ref.module import TwoLayerClassifier
from lightning_ref.plots import plot_curves, plot_w1

RECIPES = Path(__file__).with_name("recipes")  # one <dataset>.yaml per data set, shipped as package data
SUBCOMMANDS = ("fit", "validate", "test", "predict")

# The keys every Lightning checkpoint of this model holds; a file without them is not one of ours.
CKPT_KEYS = ("state_dict", "hyper_parameters", "epoch", "global_step", "pytorch-lightning_version")


class UsageError(Exception):
    """A problem with what the user asked for, found before any work: reported as one line, exit code 2."""


def check_checkpoint(path: str) -> dict:
    """The checkpoint at `path`, loaded as Lightning will load it (torch.load with weights_only=True), or UsageError
    saying why it can't be used: missing, unreadable (corrupt, not a torch file, or holding objects other than
    tensors and plain containers), or not a Lightning checkpoint of TwoLayerClassifier."""
    if not os.path.isfile(path):
        raise UsageError(f"ckpt_path: no such file: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UsageError(
            f"ckpt_path: {path} is not a readable checkpoint (torch.load with weights_only=True raised "
            f"{type(e).__name__}): it is damaged, not a torch file, or holds more than tensors and plain containers"
        ) from None
    missing = [k for k in CKPT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise UsageError(f"ckpt_path: {path} is not a Lightning checkpoint (missing {', '.join(missing)})")
    hp = ckpt["hyper_parameters"]
    if not isinstance(hp, dict) or "impl" not in hp or "hidden" not in hp:
        raise UsageError(f"ckpt_path: {path} is not a TwoLayerClassifier checkpoint (no impl/hidden hyperparameters)")
    return ckpt


def check_matches(ckpt: dict, path: str, model: TwoLayerClassifier, resume: bool) -> None:
    """UsageError unless the checkpoint's weights fit `model` (names and shapes) and, to resume a fit, it holds the
    optimizer and loop state."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}
    if want != have:
        diff = sorted(set(want.items()) ^ set(have.items()))[:4]
        raise UsageError(f"ckpt_path: {path} does not fit this model (weights differ: {diff})")
    if resume and not all(k in ckpt for k in ("optimizer_states", "lr_schedulers", "loops")):
        raise UsageError(f"ckpt_path: {path} holds weights only; resuming a fit needs a full checkpoint (last.ckpt)")


class ManualNetCLI(LightningCLI):
    """LightningCLI with the data module's input shape and class count linked into the model, a best/last
    ModelCheckpoint and the GradientCrossCheck as configurable groups, up-front checks, and the end-of-fit report."""

    def __init__(self, *args, recorder: RunRecorder, **kwargs) -> None:
        self.recorder = recorder  # set before LightningCLI runs the subcommand inside its __init__
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.input_shape", "model.input_shape", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val_acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-epoch{epoch:03d}-val_acc{val_acc:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(GradientCrossCheck, "crosscheck")

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        super().parse_arguments(parser, args)
        # Checked here, before LightningCLI reads the checkpoint's hyperparameters into the config.
        sub = self.config.get("subcommand")
        path = self.config[sub].get("ckpt_path") if sub else None
        self._ckpt = check_checkpoint(path) if path else None

    def after_instantiate_classes(self) -> None:
        if self.subcommand is None:
            return
        self.trainer.callbacks.append(self.recorder)
        if self._ckpt is not None:
            path = self.config[self.subcommand].ckpt_path
            check_matches(self._ckpt, path, self.model, resume=self.subcommand == "fit")
        if self.subcommand == "fit" and not isinstance(self.trainer.logger, CSVLogger):
            name = type(self.trainer.logger).__name__ if self.trainer.logger else "none"
            raise UsageError(f"trainer.logger: fit needs a CSVLogger (its run folder, metrics.csv, plots), got {name}")
        if self.trainer.is_global_zero and self.trainer.logger is not None:
            run_dir = Path(self.trainer.log_dir)
            if run_dir.exists() and any(run_dir.iterdir()):
                raise UsageError(f"trainer.logger: the run folder {run_dir} exists already; pick another version/name")
            self.recorder.run_dir = run_dir

    def after_fit(self) -> None:
        """Test the best checkpoint, then write metrics.json and the two pictures and print where they are."""
        trainer, ckpt_cb = self.trainer, self.trainer.checkpoint_callback
        best = ckpt_cb.best_model_path if ckpt_cb is not None else ""
        train_loss = _number(trainer.callback_metrics.get("train_loss_epoch"))  # test() replaces callback_metrics
        tested = trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None, verbose=False)
        run_dir = Path(trainer.log_dir)  # on every rank: under DDP, log_dir is a broadcast from rank 0
        if not trainer.is_global_zero:
            return
        hp, rec = self.model.hparams, self.recorder
        cross = next((c for c in trainer.callbacks if isinstance(c, GradientCrossCheck)), None)
        epochs = trainer.current_epoch  # epochs completed by this fit, counting the resumed-from ones
        metrics = {
            "impl": hp.impl,
            "dataset": self.datamodule.dataset,
            "epochs": epochs,
            "hidden": hp.hidden,
            "test_acc": _number(tested[0].get("test_acc")) if tested else None,
            "val_acc": _number(ckpt_cb.best_model_score) if ckpt_cb is not None else None,
            "train_loss": train_loss,
            "wall_s": round(rec.wall_s, 3),
            "samples_per_s": round(rec.samples / rec.wall_s, 1) if rec.wall_s > 0 else None,
            "train_samples": rec.samples,
            "world_size": trainer.world_size,
            "best_ckpt": best or None,
            "last_ckpt": str(Path(ckpt_cb.dirpath, "last.ckpt")) if ckpt_cb is not None and ckpt_cb.save_last else None,
            "crosscheck_steps": cross.checks if cross is not None else 0,
            "crosscheck_worst_rel": cross.worst_rel if cross is not None and cross.checks else None,
            "resumed_from": self.config.fit.ckpt_path,
        }
        path = run_dir / "metrics.json"
        path.write_text(json.dumps(metrics, indent=2) + "\n")
        plot_curves(run_dir / "metrics.csv", run_dir / "curves.png")
        w1 = self.model.net.w1 if hp.impl == "manual" else self.model.net[1].weight.T
        plot_w1(w1, self.model.input_shape, run_dir / "w1.png", std=self.datamodule.std)
        sys.stdout.flush()
        print(f"metrics: {path}", flush=True)


def _number(v: object) -> float | None:
    """A metric as a plain float (None when absent or not finite)."""
    if v is None:
        return None
    v = float(v.item() if isinstance(v, torch.Tensor) else v)
    return v if math.isfinite(v) else None


def with_recipe(args: list[str]) -> list[str]:
    """`args` with the packaged recipe of the data set they name (--data.dataset, else the data module's default)
    as the subcommand's first --config, when they give no --config; says on stderr which recipe that is. Unchanged
    when there is no subcommand or no recipe for the name (the data module then says which data sets exist)."""
    sub = next((i for i, a in enumerate(args) if a in SUBCOMMANDS), None)
    if sub is None or any(a in ("--config", "-c") or a.startswith("--config=") for a in args):
        return args
    dataset = inspect.signature(ImageDataModule).parameters["dataset"].default
    for a, b in zip(args, [*args[1:], None], strict=True):
        if a == "--data.dataset" and b is not None:
            dataset = b
        elif a.startswith("--data.dataset="):
            dataset = a.split("=", 1)[1]
    recipe = RECIPES / f"{dataset}.yaml"
    if not recipe.is_file():
        return args
    print(f"manualnet-train: recipe {recipe} (no --config given; --config FILE runs another)", file=sys.stderr)
    return [*args[: sub + 1], "--config", str(recipe), *args[sub + 1 :]]


def main(args: list[str] | None = None) -> None:
    """Console entry point manualnet-train: fit, validate or test; a bad setup exits 2 with one line on stderr."""
    recorder = RunRecorder()
    if args is None:  # LightningCLI reads sys.argv itself (and warns when given both)
        sys.argv[1:] = with_recipe(sys.argv[1:])
    else:
        args = with_recipe(list(args))
    try:
        ManualNetCLI(
            TwoLayerClassifier,
            ImageDataModule,
            seed_everything_default=0,
            trainer_defaults={
                "logger": {
                    "class_path": "lightning.pytorch.loggers.CSVLogger",
                    "init_args": {"save_dir": "runs", "name": "manualnet"},
                },
                "devices": 1,  # not Lightning's "auto" (every GPU): several devices change the global batch (DDP)
            },
            auto_configure_optimizers=False,
            # parse errors come to us as ArgumentError: one line below
            parser_kwargs={"exit_on_error": False, "description": __doc__.split("\n")[0]},
            args=args,
            recorder=recorder,
        )
    except (UsageError, DataMissingError, ArgumentError, ValueError, TypeError) as e:
        if recorder.started:  # past setup: a failure during the run keeps its traceback
            raise
        if recorder.run_dir is not None:
            discard_unused_run_dir(recorder.run_dir)
        print(f"manualnet-train: error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)


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
