"""manualnet-train: the LightningCLI that trains TwoLayerClassifier on ImageDataModule (fit, validate, test, predict).

    manualnet-train fit                                          # CIFAR-10 by its recipe, then test the last checkpoint
    manualnet-train fit --data.dataset fashion-mnist --data.root /usr/share/datasets/fashion-mnist
    manualnet-train fit --ckpt_path runs/manualnet/version_0/checkpoints/last.ckpt   # resume, history and best kept
    manualnet-train fit --test false --trainer.logger false       # no test after the fit, no logger
    manualnet-train predict --ckpt_path C                         # predictions.csv of the test split
    manualnet-train fit --data.dataset mnist --print_config       # every option, as the mnist recipe sets it
    manualnet-train fit --seed_everything 3                       # another seed: init, validation split, batch order

One number seeds a run: seed_everything (default 0) sets model.seed (the init) and data.seed (the validation split,
the batch order and augmentation; the generated data set too) unless they are given on their own; with --ckpt_path
they follow the checkpoint instead.

With --ckpt_path, the model and the data module are rebuilt from what the checkpoint saved (its hyperparameters and
the data module's arguments), so `manualnet-train test --ckpt_path C` needs no other option; an option given that
contradicts the checkpoint is refused naming both values, but for where and how this machine reads the data
(data.root, download, cache_dir, eval_batch_size, predict_split).

Without --config, a subcommand runs the packaged recipe of its data set (lightning_ref/recipes/<dataset>.yaml) and
says so on stderr: its values replace the code's defaults, options given on the command line override them, and
--config FILE replaces the recipe. --help shows the code's defaults; --print_config shows the values a run gets.

Every run writes into a new folder under trainer.default_root_dir (runs/): the first logger's version folder when it
is a CSV or TensorBoard logger (runs/manualnet/version_k with the default CSVLogger, whose save_dir follows
default_root_dir), else default_root_dir/manualnet/version_k. It holds config.yaml, checkpoints/{best-*.ckpt,last.ckpt},
the loggers' files, and after fit: metrics.json, curves.png, w1.png (from the run's own epoch history, whatever the
loggers); after predict: predictions.csv. fit ends by printing the test's accuracy and loss with the checkpoint
tested, then the run folder, then `metrics: <path>`. A resumed run (--ckpt_path) gets a new folder too, so nothing
saved before is ever overwritten; it continues the checkpoint's history and best checkpoint. A usage error (a bad
option, missing or bad data, an unusable checkpoint) stops the run before any work with one line on stderr and exit
code 2; any other exception keeps its traceback.
"""

import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Literal

import lightning as L
from jsonargparse import ArgumentError, Namespace
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser

from lightning_ref.cache import DataMissingError
from lightning_ref.checkpoint import ModelCheckpoint
from lightning_ref.data import ImageDataModule
from lightning_ref.defaults import CHECKPOINT_DEFAULTS, ROOT_DIR, SEED, TRAINER_DEFAULTS, run_callbacks
from lightning_ref.errors import UsageError, as_usage_error
from lightning_ref.gradient_check import GradientCrossCheck
from lightning_ref.lightning_private import SubcommandHooks
from lightning_ref.module import TwoLayerClassifier
from lightning_ref.outputs import PredictionsCSV, fit_metrics, write_fit_outputs
from lightning_ref.quiet import silence_unactionable
from lightning_ref.recipe import RecipeParser, recipe_keys
from lightning_ref.recorder import RunRecorder
from lightning_ref.resume import PreloadedCheckpointIO, check_checkpoint, check_matches, checkpoint_options, holds
from lightning_ref.run_folder import RunConfig, check_writable, discard_unused_run_dir, run_folder
from lightning_ref.sources import DataFileError

# The config's groups and their classes; the model's options that the data module sets (linked).
GROUPS = {
    "trainer": L.Trainer,
    "model": TwoLayerClassifier,
    "data": ImageDataModule,
    "checkpoint": LightningModelCheckpoint,
    "crosscheck": GradientCrossCheck,
}
LINKED = {("model", "input_shape"), ("model", "num_classes")}
# The model's and the data module's options a user gives: with --ckpt_path, what the checkpoint saved fills those not
# given, and refuses those that differ, except DATA_LOCAL: where this machine has the data and how it reads it, which
# may differ from the machine that saved the checkpoint (the same images from another folder).
MODEL_OPTIONS = [f"model.{k}" for k in inspect.signature(TwoLayerClassifier).parameters if ("model", k) not in LINKED]
DATA_OPTIONS = [f"data.{k}" for k in inspect.signature(ImageDataModule).parameters]
DATA_LOCAL = {"root", "download", "cache_dir", "eval_batch_size", "predict_split"}
SEEDS = ("model.seed", "data.seed")  # None until _fill_seeds: seed_everything's value, or the checkpoint's seed


class ManualNetCLI(SubcommandHooks):
    """LightningCLI with the data module's input shape and class count linked into the model, ModelCheckpoint and
    GradientCrossCheck as configurable groups, the data set's recipe for options not given, a run folder per run,
    checks before any work, and fit's test and outputs (recipe, run_folder, resume and outputs do the work)."""

    def __init__(self, *args, recorder: RunRecorder, **kwargs) -> None:
        self.recorder = recorder  # set before LightningCLI runs the subcommand inside its __init__
        self._parsers: dict[str, RecipeParser] = {}  # per subcommand: its parser, which resolves what it left unset
        super().__init__(*args, parser_class=RecipeParser, **kwargs)

    def add_subcommand_arguments(self, parser: RecipeParser, subcommand: str) -> None:
        if subcommand == "fit":
            parser.add_argument(
                "--test", type=bool, default=True, help="after the fit, test a checkpoint (false: fit only)"
            )
            parser.add_argument(
                "--test_ckpt",
                type=Literal["last", "best"],
                default="last",
                help="the checkpoint fit tests: last (the final weights, last.ckpt) or best (the best-validation "
                "checkpoint, whose val_acc is biased up by that choice; docs/results.md)",
            )
        # Unset until resolve_config: what the user gave is then told from what the recipe, checkpoint or code sets.
        parser.leave_unset(sorted((set(MODEL_OPTIONS) | set(DATA_OPTIONS) | recipe_keys()) - set(SEEDS)))
        self._parsers[subcommand] = parser
        parser.description = (
            f"{parser.description} Without --config, its data set's recipe (lightning_ref/recipes/<dataset>.yaml) "
            "sets some options: --help shows the code's defaults, --print_config shows the values a run gets. With "
            "--ckpt_path, the checkpoint's model and data options are used; one given that differs is refused, but "
            f"for data.{{{','.join(sorted(DATA_LOCAL))}}} (where this machine has the data, how it reads it)."
        )
        parser.set_defaults(dict.fromkeys(SEEDS))

    def add_default_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """LightningCLI's --seed_everything, with help saying which seeds it sets."""
        parser.add_argument(
            "--seed_everything",
            type=bool | int,
            default=self.seed_everything_default,
            help="One number repeats a run: seeds torch, and sets model.seed (the init) and data.seed (the validation "
            "split, the batch order and augmentation) unless they are given on their own; with --ckpt_path they "
            "follow the checkpoint's model seed. true: a random one (config.yaml saves it); false: torch "
            "unseeded, the two seeds 0.",
        )

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """LightningCLI's core groups and ours, the project's first: model, data, crosscheck, checkpoint, then
        Lightning's trainer (--help lists them in this order)."""
        parser.add_lightning_class_args(self._model_class, "model")
        parser.add_lightning_class_args(self._datamodule_class, "data")
        parser.add_lightning_class_args(GradientCrossCheck, "crosscheck")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({f"checkpoint.{k}": v for k, v in CHECKPOINT_DEFAULTS.items()})
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({f"trainer.{k}": v for k, v in self.trainer_defaults.items() if k != "callbacks"})

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.input_shape", "model.input_shape", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as e:
            raise UsageError(with_valid_keys(str(e))) from None
        sub = self.config.get("subcommand")
        path = self.config[sub].get("ckpt_path") if sub else None
        if sub == "predict" and not path:
            raise UsageError("ckpt_path: predict needs a checkpoint (--ckpt_path FILE), got none")
        # Read once, here (resolve_config then takes its hyperparameters into the config).
        self._ckpt = check_checkpoint(path) if path else None

    def resolve_config(self) -> None:
        """After the parse: a model or data option the user gave (on the command line or in a config file) that
        contradicts the checkpoint is refused (but for DATA_LOCAL), and what the checkpoint saved fills the others;
        then each option left unset takes its data set's recipe value when no --config is given (said on stderr),
        else the code's default."""
        sub = self.config.get("subcommand")
        if sub is None:
            return
        if self._ckpt is not None:
            cfg, ckpt = self.config[sub], self._ckpt
            model = saved_args(ckpt["hyper_parameters"], TwoLayerClassifier)
            data = saved_args(ckpt.get("datamodule_hyper_parameters") or {}, ImageDataModule)  # {}: saved before
            filled = {
                group: checkpoint_options(saved, cfg.ckpt_path, group, self._given(group, options), free)
                for group, saved, options, free in (
                    ("model", model, MODEL_OPTIONS, set()),
                    ("data", data, DATA_OPTIONS, DATA_LOCAL),
                )
            }
            self.config = self.parser.parse_object({sub: filled}, self.config)
        cfg = self.config[sub]
        use_recipe = not (self.config.get("config") or cfg.get("config"))
        self._parsers[sub].resolve(cfg, use_recipe)

    def _given(self, group: str, options: list[str]) -> dict[str, object]:
        """The options of `group` the user gave (set by the parse: the others are still None)."""
        cfg = self.config[self.config.subcommand]
        return {k.removeprefix(f"{group}."): cfg[k] for k in options if cfg.get(k) is not None}

    def before_instantiate_classes(self) -> None:
        """The seeds not given on their own follow seed_everything; loggers left at their default save_dir follow
        trainer.default_root_dir; a logger that cannot be built is a one-line error now, before any work (not a
        traceback from inside the Trainer)."""
        self._fill_seeds()
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

    def instantiate_classes(self) -> None:
        """LightningCLI's, with a ValueError or TypeError of an argument check (manualnet's, the classes') turned into
        a UsageError: a one-line error."""
        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as e:
            usage = as_usage_error(e)
            if usage is e:
                raise
            raise usage from e

    def _fill_seeds(self) -> None:
        """model.seed (the init) and data.seed (the validation split, the batch order and augmentation) when not given:
        seed_everything's value (0 when it is false); with --ckpt_path, the checkpoint's model seed instead, so that a
        resumed or evaluated run keeps the split and order it was trained with (resolve_config has set both already
        when the checkpoint saved the data module's arguments)."""
        cfg = self.config[self.subcommand]
        seed = cfg.seed_everything if cfg.seed_everything is not False else 0  # an int once LightningCLI has seeded
        if self._ckpt is not None:
            seed = self._ckpt["hyper_parameters"].get("seed", seed)
        if cfg.model.seed is None:
            cfg.model.seed = seed
        if cfg.data.seed is None:
            cfg.data.seed = seed

    def after_instantiate_classes(self) -> None:
        if self.subcommand is None:
            return
        trainer = self.trainer
        trainer.callbacks.extend(run_callbacks(self.recorder, with_logger=bool(trainer.loggers)))
        run_dir = self._new_run_folder()
        ckpt_cb = trainer.checkpoint_callback
        if ckpt_cb is not None and ckpt_cb.dirpath is None:  # the checkpoints go into the run folder
            ckpt_cb.dirpath = str((run_dir / "checkpoints").resolve())
        preloaded = {}
        if self._ckpt is not None:
            path = self.config[self.subcommand].ckpt_path
            check_matches(self._ckpt, path, self.model, resume=self.subcommand == "fit")
            preloaded[path] = self._ckpt
        trainer.strategy.checkpoint_io = PreloadedCheckpointIO(preloaded)

    def _new_run_folder(self):
        """The run's new folder, checked (unused, writable), given to the recorder and the config callback."""
        trainer = self.trainer
        run_dir = run_folder(trainer)
        if trainer.is_global_zero:
            if run_dir.exists() and any(run_dir.iterdir()):
                raise UsageError(f"trainer.logger: the run folder {run_dir} exists already; pick another version/name")
            check_writable("trainer.default_root_dir", Path(trainer.default_root_dir))
            check_writable("trainer.logger", run_dir)
        self.recorder.run_dir = run_dir  # new: a failed setup may discard it
        for cb in trainer.callbacks:
            if isinstance(cb, RunConfig):
                cb.run_dir = run_dir
        return run_dir

    def after_fit(self) -> None:
        """Test the checkpoint --test_ckpt names (unless --test false), then write metrics.json and the two pictures
        from the run's own history, and print what the test measured on which checkpoint, and where the run is."""
        trainer, ckpt_cb = self.trainer, self.trainer.checkpoint_callback
        tested, tested_ckpt = None, None
        if self.config.fit.test:
            # last: the weights in memory, which last.ckpt holds; best: ModelCheckpoint's best, if it kept one
            best = ckpt_cb.best_model_path if ckpt_cb is not None and self.config.fit.test_ckpt == "best" else ""
            tested = trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None, verbose=False)
            last = ckpt_cb.last_model_path if ckpt_cb is not None else ""
            tested_ckpt = best or last or "the final weights"
        if not trainer.is_global_zero:
            return
        ckpt_path = self.config.fit.ckpt_path
        metrics = fit_metrics(trainer, self.model, self.datamodule, self.recorder, tested, tested_ckpt, ckpt_path)
        path = write_fit_outputs(self.recorder.run_dir, metrics, self.model, self.datamodule)
        sys.stdout.flush()
        print(fit_summary(metrics, self.recorder.run_dir, len(self.datamodule.y_test) if tested else 0), flush=True)
        print(f"metrics: {path}", flush=True)

    def fit(self, **kwargs) -> None:
        self._run(self.trainer.fit, **kwargs)

    def validate(self, **kwargs) -> None:
        self._run(self.trainer.validate, **kwargs)

    def test(self, **kwargs) -> None:
        self._run(self.trainer.test, **kwargs)

    def _run(self, method, **kwargs) -> None:
        """The trainer's `method`; with --ckpt_path, a data set missing or bad here says what the checkpoint holds."""
        try:
            method(**kwargs)
        except (DataMissingError, DataFileError) as e:
            if self._ckpt is None or self.recorder.started:
                raise
            path = self.config[self.subcommand].ckpt_path
            why = " ".join(str(e).split())
            raise UsageError(f"ckpt_path: {path} holds {holds(self._ckpt)}, but here: {why}") from e

    def predict(self, **kwargs) -> None:
        """Predict the data module's predict_split with the checkpoint; write predictions.csv into the run folder and
        print its path."""
        path = self.recorder.run_dir / "predictions.csv"
        self.trainer.callbacks.append(PredictionsCSV(path))
        self._run(self.trainer.predict, **kwargs)
        if not self.trainer.is_global_zero:
            return
        sys.stdout.flush()
        print(f"predictions: {path}", flush=True)


def fit_summary(metrics: dict, run_dir: Path, test_images: int) -> str:
    """What a fit prints at its end: the test's accuracy and loss and the checkpoint tested, then the run folder."""
    m = {k: "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else v for k, v in metrics.items()}
    test = "test: none (--test false)"
    if metrics["tested_ckpt"] is not None:
        test = f"test: test_acc {m['test_acc']}, test_loss {m['test_loss']} "
        test += f"({test_images} {m['dataset']} test images, {m['tested_ckpt']})"
    return f"{test}\nrun folder: {run_dir} (epochs {m['epochs']}, best val_acc {m['val_acc']})"


def saved_args(hparams: dict, cls: type) -> dict[str, object]:
    """The hyperparameters a checkpoint saved that are arguments of `cls` (not Lightning's own, e.g. _instantiator)."""
    params = inspect.signature(cls).parameters
    return {k: v for k, v in hparams.items() if k in params}


def with_valid_keys(message: str) -> str:
    """A parse error's message, with the keys of the group of the unknown key it names (model.hiden: the model's
    options), or the groups when the group itself is unknown."""
    unknown = re.search(r"(?:option '|arguments: --)([\w.]+)", message)
    if unknown is None:
        return message
    group, _, _ = unknown.group(1).partition(".")
    if group not in GROUPS:
        return f"{message} (expected a key under one of: {', '.join(GROUPS)})"
    keys = [k for k in inspect.signature(GROUPS[group]).parameters if (group, k) not in LINKED]
    return f"{message} (the {group} options: {', '.join(keys)})"


def build_cli(args, recorder: RunRecorder) -> ManualNetCLI:
    """manualnet-train's LightningCLI on `args` (as on the command line; None: sys.argv), run."""
    silence_unactionable()
    return ManualNetCLI(
        TwoLayerClassifier,
        ImageDataModule,
        seed_everything_default=SEED,
        trainer_defaults=TRAINER_DEFAULTS,
        auto_configure_optimizers=False,
        save_config_callback=RunConfig,
        save_config_kwargs={"save_to_log_dir": False},
        # parse errors come to us as ArgumentError: main() prints them as one line
        parser_kwargs={"exit_on_error": False, "description": __doc__.split("\n")[0]},
        args=args,
        recorder=recorder,
    )


def main(args: list[str] | None = None) -> None:
    """Console entry point manualnet-train: fit, validate, test or predict. A usage error (a bad option, missing or
    bad data, an unusable checkpoint) found before any work exits 2 with one line on stderr; any other exception, and
    any raised once work has begun, keeps its traceback."""
    recorder = RunRecorder()
    try:
        build_cli(args, recorder)
    except (UsageError, DataMissingError, DataFileError, ArgumentError) as e:
        if recorder.started:  # past setup: a failure during the run keeps its traceback
            raise
        if recorder.run_dir is not None:
            discard_unused_run_dir(recorder.run_dir)
        print(f"manualnet-train: error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)
