"""What every manualnet-train run is built with, in one place: the CLI sets these as its defaults, and the benchmark
builds its Lightning fit from them (without jsonargparse, so that it also runs where only torch and Lightning are).

The callbacks of a run: ModelCheckpoint (CHECKPOINT_DEFAULTS) and GradientCrossCheck (its own defaults), the CLI's
`checkpoint` and `crosscheck` groups; then run_callbacks(): the run's record and, with a logger, the learning rate.
"""

from lightning.pytorch.callbacks import Callback, LearningRateMonitor

from lightning_ref.recorder import RunRecorder

SEED = 0  # seed_everything before the classes are built, for reproducible runs
RUN_NAME = "manualnet"  # runs/<RUN_NAME>/version_k
# The default logger's save_dir: replaced by trainer.default_root_dir when the run starts (a logger's save_dir follows
# default_root_dir unless it is set).
ROOT_DIR = "<trainer.default_root_dir>"
TRAINER_DEFAULTS = {
    "default_root_dir": "runs",
    "logger": {
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {"save_dir": ROOT_DIR, "name": RUN_NAME},
    },
    "devices": 1,  # not Lightning's "auto" (every GPU): several devices change the global batch (DDP)
}
# ModelCheckpoint: the best epoch by val_acc, and last.ckpt.
CHECKPOINT_DEFAULTS = {
    "monitor": "val_acc",
    "mode": "max",
    "save_last": True,
    "filename": "best-epoch{epoch:03d}-val_acc{val_acc:.4f}",
    "auto_insert_metric_name": False,
}


def run_callbacks(recorder: RunRecorder, with_logger: bool) -> list[Callback]:
    """The callbacks every run gets besides the configurable ones: the recorder, and LearningRateMonitor when the run
    has a logger (it needs one; the run's history records the rate anyway)."""
    return [recorder, LearningRateMonitor(logging_interval="step")] if with_logger else [recorder]
