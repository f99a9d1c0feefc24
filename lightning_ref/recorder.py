"""RunRecorder: the run's own record (one row per epoch, the fit's time and samples), kept in its checkpoints."""

import time
from pathlib import Path

import lightning as L


class RunRecorder(L.Callback):
    """The run's own record: one row per epoch, the fit's wall time and training samples, whether work has begun.

    `history` holds a row per training epoch: epoch, train_loss (the epoch mean), train_acc, val_loss, val_acc and lr
    (the learning rate of the epoch's last step), each read from what the run logged (trainer.callback_metrics), so
    it exists whatever the loggers. A row is written when its checkpoint is saved (Lightning saves after the epoch's
    validation and training metrics are logged) and again when the next epoch starts and the fit ends. The history
    is saved in every checkpoint and restored from it, so a resumed fit's history covers the epochs before the stop.

    `started` turns true when the first training epoch, validation (not the sanity check) or test begins, so the CLI
    can tell a bad setup (one-line error) from a failure during the run (full traceback). `run_dir` is the new run
    folder the CLI checked for this run (None until then), which a failed setup may discard.
    """

    KEYS = {"train_loss": "train_loss_epoch", "train_acc": "train_acc", "val_loss": "val_loss", "val_acc": "val_acc"}

    def __init__(self) -> None:
        self.started = False
        self.run_dir: Path | None = None
        self.history: list[dict[str, float | int]] = []
        self.samples = 0
        self.wall_s = 0.0
        self._t0 = 0.0
        # The last epoch this process trained (a resumed fit's earlier rows come from its checkpoint).
        self._trained: int | None = None

    def record(self, trainer: L.Trainer, epoch: int) -> None:
        """Write (or update) the row of `epoch` from the metrics the run has logged."""
        metrics = trainer.callback_metrics
        row: dict[str, float | int] = {"epoch": epoch}
        for name, key in self.KEYS.items():
            if key in metrics:
                row[name] = float(metrics[key])
        if trainer.optimizers:
            row["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        if self.history and self.history[-1]["epoch"] == epoch:
            self.history[-1].update(row)
        elif not self.history or self.history[-1]["epoch"] < epoch:
            self.history.append(row)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn == "fit":
            self.record(trainer, trainer.current_epoch)
        checkpoint["run_history"] = [dict(r) for r in self.history]

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn == "fit":
            self.history = [dict(r) for r in checkpoint.get("run_history", [])]

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.wall_s = time.perf_counter() - self._t0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = True
        if self._trained is not None and self._trained == trainer.current_epoch - 1:  # complete now
            self.record(trainer, self._trained)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._trained = trainer.current_epoch

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._trained is not None and self._trained == trainer.current_epoch - 1:
            self.record(trainer, self._trained)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = self.started or not trainer.sanity_checking

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = True

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        self.samples += len(batch[1]) * trainer.world_size
