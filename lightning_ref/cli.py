"""manualnet-train: the LightningCLI that trains TwoLayerClassifier on ImageDataModule (fit, validate, test, predict).

    manualnet-train fit                                          # CIFAR-10 by its recipe, then test the best checkpoint
    manualnet-train fit --data.dataset fashion-mnist --data.root /usr/share/datasets/fashion-mnist
    manualnet-train fit --ckpt_path runs/manualnet/version_0/checkpoints/last.ckpt   # resume, history and best kept
    manualnet-train fit --test false --trainer.logger false       # no test after the fit, no logger
    manualnet-train predict --ckpt_path C                         # predictions.csv of the test split
    manualnet-train fit --data.dataset mnist --print_config       # every option, as the mnist recipe sets it

Without --config, a subcommand runs the packaged recipe of its data set (lightning_ref/recipes/<dataset>.yaml) and
says so on stderr; options given on the command line override it, and --config FILE replaces it.

Every run writes into a new folder under trainer.default_root_dir (runs/): the first logger's version folder when it
is a CSV or TensorBoard logger (runs/manualnet/version_k with the default CSVLogger, whose save_dir follows
default_root_dir), else default_root_dir/manualnet/version_k. It holds config.yaml, checkpoints/{best-*.ckpt,last.ckpt},
the loggers' files, and after fit: metrics.json, curves.png, w1.png (from the run's own epoch history, whatever the
loggers); after predict: predictions.csv. A resumed run (--ckpt_path) gets a new folder too, so nothing saved before
is ever overwritten; it continues the checkpoint's history and best checkpoint. A usage error (a bad option, missing
or bad data, an unusable checkpoint) stops the run before any work with one line on stderr and exit code 2; any
other exception keeps its traceback.
"""

import importlib
import inspect
import json
import math
import os
import sys
from pathlib import Path

import torch
import yaml
from jsonargparse import ArgumentError, Namespace
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import _load as pl_load
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from lightning_ref.cache import DataMissingError
from lightning_ref.callbacks import GradientCrossCheck, ModelCheckpoint, RunRecorder
from lightning_ref.data import ImageDataModule
from lightning_ref.module import TwoLayerClassifier
from lightning_ref.plots import plot_curves, plot_w1
from lightning_ref.sources import DataFileError
from manualnet.validate import UsageError

RECIPES = Path(__file__).with_name("recipes")
RUN_NAME = "manualnet"  # runs/<RUN_NAME>/version_k
# The default logger's save_dir: replaced by trainer.default_root_dir when the run starts (a logger's save_dir follows
# default_root_dir unless it is set).
ROOT_DIR = "<trainer.default_root_dir>"  # one <dataset>.yaml per data set, shipped as package data
SUBCOMMANDS = ("fit", "validate", "test", "predict")

# The keys every Lightning checkpoint of this model holds; a file without them is not one of ours.
CKPT_KEYS = ("state_dict", "hyper_parameters", "epoch", "global_step", "pytorch-lightning_version")


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


class PreloadedCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint reader, always with torch.load(weights_only=True) whatever the caller or the environment
    asks, and giving back the checkpoint the CLI has read already (and checked) instead of reading it again."""

    def __init__(self, preloaded: dict[str, dict]) -> None:
        super().__init__()
        self.preloaded = {os.path.realpath(k): v for k, v in preloaded.items()}

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage, weights_only=None) -> dict:
        ckpt = self.preloaded.get(os.path.realpath(path))
        return ckpt if ckpt is not None else pl_load(path, map_location=map_location, weights_only=True)


class RunConfig(SaveConfigCallback):
    """Saves the run's resolved config as config.yaml in its run folder (`run_dir`, set by the CLI), whatever the
    loggers (Lightning's own SaveConfigCallback writes into trainer.log_dir, default_root_dir itself with no logger),
    in a form every subcommand accepts with --config."""

    run_dir: Path | None = None

    def save_config(self, trainer, pl_module, stage: str) -> None:
        # Without fit's own --test (metrics.json says whether the test ran), so that any subcommand takes the file:
        # `manualnet-train test --config <run>/config.yaml --ckpt_path ...`.
        config = self.config.clone()
        if "test" in config:
            del config["test"]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.parser.save(config, self.run_dir / "config.yaml", skip_none=False, multifile=self.multifile)


class ManualNetCLI(LightningCLI):
    """LightningCLI with the data module's input shape and class count linked into the model, a best/last
    ModelCheckpoint and the GradientCrossCheck as configurable groups, a run folder per run whatever the loggers,
    checks of everything that needs no data before any work, a resume that keeps the run whole, fit's test of the
    best checkpoint (fit --test false skips it), the end-of-fit report, and predict writing predictions.csv."""

    def __init__(self, *args, recorder: RunRecorder, recipe: str | None = None, **kwargs) -> None:
        self.recorder = recorder  # set before LightningCLI runs the subcommand inside its __init__
        self.recipe = recipe  # the recipe main() chose (not one the user gave)
        super().__init__(*args, **kwargs)

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "fit":
            parser.add_argument(
                "--test", type=bool, default=True, help="after the fit, test the best checkpoint (false: fit only)"
            )
        return parser

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
        sub = self.config.get("subcommand")
        path = self.config[sub].get("ckpt_path") if sub else None
        if sub == "predict" and not path:
            raise UsageError("ckpt_path: predict needs a checkpoint (--ckpt_path FILE), got none")
        # Read once, here (before LightningCLI takes the checkpoint's hyperparameters into the config).
        self._ckpt = check_checkpoint(path) if path else None
        self._given_model = given_model_options(sys.argv[1:] if args is None else list(args), self.recipe)

    def _parse_ckpt_path(self) -> None:
        """The checkpoint's hyperparameters into the config, as LightningCLI does (from the checkpoint read once), after
        refusing a model option the user gave that contradicts them (LightningCLI would silently replace it)."""
        if self._ckpt is None:
            return
        sub = self.config.subcommand
        hp = {k: v for k, v in self._ckpt["hyper_parameters"].items() if k != "_instantiator"}
        for key in self._given_model:
            given, saved = self.config[sub].model.get(key), hp.get(key)
            if key in hp and _plain(given) != _plain(saved):
                raise UsageError(
                    f"model.{key}: the checkpoint {self.config[sub].ckpt_path} has {saved!r}, got {given!r} "
                    f"(a checkpoint's model is used as it was saved: drop --model.{key} or give {saved!r})"
                )
        self.config = self.parser.parse_object({sub: {"model": hp}}, self.config)

    def before_instantiate_classes(self) -> None:
        """Loggers left at their default save_dir follow trainer.default_root_dir; a logger that cannot be built is a
        one-line error now, before any work (not a traceback from inside the Trainer)."""
        trainer = self.config[self.subcommand].trainer
        specs = trainer.logger if isinstance(trainer.logger, list) else [trainer.logger]
        for spec in specs:
            if not isinstance(spec, Namespace):
                continue
            args = spec.get("init_args") or Namespace()
            if args.get("save_dir") == ROOT_DIR:
                args.save_dir = trainer.default_root_dir
            try:
                module, _, name = spec.class_path.rpartition(".")
                getattr(importlib.import_module(module), name)(**vars(args))
            except Exception as e:
                why = f"{type(e).__name__}: {' '.join(str(e).split())}"
                raise UsageError(f"trainer.logger: {spec.class_path} cannot be built ({why})") from None

    def after_instantiate_classes(self) -> None:
        if self.subcommand is None:
            return
        trainer, rec = self.trainer, self.recorder
        trainer.callbacks.append(rec)
        if trainer.loggers:  # LearningRateMonitor needs a logger; the run's history records the rate anyway
            trainer.callbacks.append(LearningRateMonitor(logging_interval="step"))
        run_dir = run_folder(trainer)
        if trainer.is_global_zero:
            if run_dir.exists() and any(run_dir.iterdir()):
                raise UsageError(f"trainer.logger: the run folder {run_dir} exists already; pick another version/name")
            check_writable("trainer.default_root_dir", Path(trainer.default_root_dir))
            check_writable("trainer.logger", run_dir)
        rec.run_dir = run_dir  # new: a failed setup may discard it
        config_cb = next((c for c in trainer.callbacks if isinstance(c, RunConfig)), None)
        if config_cb is not None:
            config_cb.run_dir = run_dir
        ckpt_cb = trainer.checkpoint_callback
        if ckpt_cb is not None and ckpt_cb.dirpath is None:  # the checkpoints go into the run folder
            ckpt_cb.dirpath = os.path.realpath(run_dir / "checkpoints")
        if self._ckpt is not None:
            path = self.config[self.subcommand].ckpt_path
            check_matches(self._ckpt, path, self.model, resume=self.subcommand == "fit")
            if self.subcommand == "fit" and ckpt_cb is not None:
                carry_best(self._ckpt, path, ckpt_cb, rec)
            trainer.strategy.checkpoint_io = PreloadedCheckpointIO({path: self._ckpt})
        else:
            trainer.strategy.checkpoint_io = PreloadedCheckpointIO({})

    def after_fit(self) -> None:
        """Test the best checkpoint (unless --test false), then write metrics.json and the two pictures from the
        run's own history and print where they are."""
        trainer, ckpt_cb, rec = self.trainer, self.trainer.checkpoint_callback, self.recorder
        best = ckpt_cb.best_model_path if ckpt_cb is not None else ""
        tested = None
        if self.config.fit.test:
            tested = trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None, verbose=False)
        if not trainer.is_global_zero:
            return
        hp, run_dir = self.model.hparams, rec.run_dir
        cross = next((c for c in trainer.callbacks if isinstance(c, GradientCrossCheck)), None)
        last = rec.history[-1] if rec.history else {}
        metrics = {
            "impl": hp.impl,
            "dataset": self.datamodule.dataset,
            "epochs": trainer.current_epoch,  # epochs completed, counting those before a resume
            "hidden": hp.hidden,
            "test_acc": _number(tested[0].get("test_acc")) if tested else None,
            "tested_ckpt": (best or "the final weights") if tested else None,
            # the best checkpoint's score: its val_acc when (as by default) val_acc is the monitored metric
            "monitor": ckpt_cb.monitor if ckpt_cb is not None else None,
            "best_score": _number(ckpt_cb.best_model_score) if ckpt_cb is not None else None,
            "val_acc": _number(ckpt_cb.best_model_score)
            if ckpt_cb is not None and ckpt_cb.monitor == "val_acc"
            else None,
            "train_loss": last.get("train_loss"),
            "wall_s": round(rec.wall_s, 3),
            "samples_per_s": round(rec.samples / rec.wall_s, 1) if rec.wall_s > 0 else None,
            "train_samples": rec.samples,
            "world_size": trainer.world_size,
            "best_ckpt": best or None,
            "last_ckpt": str(Path(ckpt_cb.dirpath, "last.ckpt")) if ckpt_cb is not None and ckpt_cb.save_last else None,
            "crosscheck_steps": cross.checks if cross is not None else 0,
            "crosscheck_worst_rel": cross.worst_rel if cross is not None and cross.checks else None,
            "resumed_from": self.config.fit.ckpt_path,
            "history": rec.history,
        }
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / "metrics.json"
        path.write_text(json.dumps(metrics, indent=2) + "\n")
        plot_curves(rec.history, run_dir / "curves.png", test_acc=metrics["test_acc"])
        w1 = self.model.net.w1 if hp.impl == "manual" else self.model.net[1].weight.T
        plot_w1(w1, self.model.input_shape, run_dir / "w1.png", std=self.datamodule.std)
        sys.stdout.flush()
        print(f"metrics: {path}", flush=True)

    def predict(self, **kwargs) -> None:
        """Predict the data module's predict_split with the checkpoint; write predictions.csv into the run folder (one
        row per image in the split's order: index, label, predicted class, then p_0..p_{C-1}) and print its path."""
        batches = self.trainer.predict(**kwargs)
        if not self.trainer.is_global_zero:
            return
        p = torch.cat([b[0] for b in batches]).float().cpu()
        y = torch.cat([b[1] for b in batches]).cpu()
        path = self.recorder.run_dir / "predictions.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            f.write(",".join(["index", "label", "predicted", *(f"p_{c}" for c in range(p.shape[1]))]) + "\n")
            rows = zip(y.tolist(), p.argmax(1).tolist(), p.tolist(), strict=True)  # argmax: the first of ties
            for i, (label, predicted, row) in enumerate(rows):
                f.write(f"{i},{label},{predicted}," + ",".join(f"{v:.8g}" for v in row) + "\n")
        sys.stdout.flush()
        print(f"predictions: {path}", flush=True)


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


def carry_best(ckpt: dict, path: str, ckpt_cb: ModelCheckpoint, rec: RunRecorder) -> None:
    """Point the checkpoint's ModelCheckpoint state at this run's checkpoint folder, so that Lightning restores the
    best score and path (it drops them when the folder changed): the best checkpoint from before the stop is copied
    there when training starts. It is looked for where the checkpoint recorded it, then beside `path` (a checkpoints
    folder moved as a whole). When it is in neither place the best is tracked again from the resumed epochs on, and
    a line on stderr says so."""
    state = ckpt.get("callbacks", {}).get(ckpt_cb.state_key)
    if state is None:
        return
    old, score = state.get("best_model_path") or "", state.get("best_model_score")
    found = next((f for f in (Path(old), Path(path).parent / Path(old).name) if old and f.is_file()), None)
    state["dirpath"] = ckpt_cb.dirpath
    state["last_model_path"] = ""
    if found is not None:
        new = str(Path(ckpt_cb.dirpath, found.name))
        state.update(best_model_path=new, best_k_models={new: score}, kth_best_model_path=new, kth_value=score)
        rec.carry = (found, Path(new))
        return
    if old:
        print(
            f"manualnet-train: note: the best checkpoint before the stop ({old}, {ckpt_cb.monitor} {_number(score)}) is"
            f" neither there nor beside {path}: the best is tracked again from the resumed epochs",
            file=sys.stderr,
        )
    for key in ("best_k_models", "kth_best_model_path", "kth_value"):
        state.pop(key, None)
    state.update(best_model_path="", best_model_score=None)


def given_model_options(args: list[str], recipe: str | None) -> set[str]:
    """The model.* keys the user set: --model.KEY on the command line, or `model:` keys in a --config file they
    gave (not the `recipe` main() chose for them)."""
    keys = {a.removeprefix("--model.").split("=")[0] for a in args if a.startswith("--model.")}
    for a, b in zip(args, [*args[1:], None], strict=True):
        if a in ("--config", "-c") and b is not None and b != recipe and os.path.isfile(b):
            with open(b) as f:
                config = yaml.safe_load(f) or {}
            model = config.get("model") if isinstance(config, dict) else None
            keys |= set(model) if isinstance(model, dict) else set()
    return keys


def _plain(v: object) -> object:
    """A value with tuples as lists (a checkpoint and a parsed config may hold either)."""
    return list(v) if isinstance(v, tuple) else v


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
    """Console entry point manualnet-train: fit, validate, test or predict. A usage error (a bad option, missing or
    bad data, an unusable checkpoint) found before any work exits 2 with one line on stderr; any other exception, and
    any raised once work has begun, keeps its traceback."""
    recorder = RunRecorder()
    given = sys.argv[1:] if args is None else list(args)
    chosen = with_recipe(given)
    recipe = chosen[chosen.index("--config") + 1] if chosen != given else None
    if args is None:  # LightningCLI reads sys.argv itself (and warns when given both)
        sys.argv[1:] = chosen
    else:
        args = chosen
    try:
        ManualNetCLI(
            TwoLayerClassifier,
            ImageDataModule,
            seed_everything_default=0,
            trainer_defaults={
                "default_root_dir": "runs",
                "logger": {
                    "class_path": "lightning.pytorch.loggers.CSVLogger",
                    "init_args": {"save_dir": ROOT_DIR, "name": RUN_NAME},
                },
                "devices": 1,  # not Lightning's "auto" (every GPU): several devices change the global batch (DDP)
            },
            auto_configure_optimizers=False,
            save_config_callback=RunConfig,
            save_config_kwargs={"save_to_log_dir": False},
            # parse errors come to us as ArgumentError: one line below
            parser_kwargs={"exit_on_error": False, "description": __doc__.split("\n")[0]},
            args=args,
            recorder=recorder,
            recipe=recipe,
        )
    except (UsageError, DataMissingError, DataFileError, ArgumentError) as e:
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
