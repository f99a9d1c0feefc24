"""Callbacks: the live gradient cross-check against autograd, and the run's own record (epoch history, time)."""

import shutil
import time
from pathlib import Path
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from lightning_ref.reference import copy_to_reference, reference_from, reference_grads
from manualnet import TwoLayerNet
from manualnet.crosscheck import GradDiff, compare_all, format_table
from manualnet.validate import UsageError, check_int


class GradientMismatchError(RuntimeError):
    """The hand-written gradients differ from autograd's past the tolerance."""


class GradientMismatchWarning(UserWarning):
    """The hand-written gradients differ from autograd's past the tolerance (on_mismatch="warn")."""


class GradientCrossCheck(L.Callback):
    """Every `every_n_steps` optimizer steps, check the manual gradients of the batch against autograd's.

    After backward and before the optimizer step, the autograd reference (nn.Linear/ReLU copies of the current
    w1, b1, w2, b2) runs forward and backward on the same batch with F.cross_entropy; under DDP its gradients are
    averaged over the ranks, as DDP averaged the manual ones. Per parameter it logs the max abs error and the max
    rel error (max |g - g_ref| / max |g_ref|) as crosscheck/<name>_max_abs and crosscheck/<name>_max_rel, and a
    parameter fails when max |g - g_ref| > atol + rtol * max |g_ref|: then it warns or raises (on_mismatch).

    every_n_steps=0 turns the check off. It checks only models whose `net` is a manualnet.TwoLayerNet (impl="manual").
    Cost: one extra forward and backward of the reference every `every_n_steps` steps.
    """

    def __init__(
        self,
        every_n_steps: int = 100,
        rtol: float = 1e-4,
        atol: float = 1e-8,
        on_mismatch: Literal["warn", "raise"] = "warn",
    ) -> None:
        check_int("every_n_steps", every_n_steps, 0)  # 0 = off
        for name, tol in (("rtol", rtol), ("atol", atol)):
            if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
                raise UsageError(f"{name}: expected a number >= 0, got {tol!r}")
        if on_mismatch not in ("warn", "raise"):
            raise UsageError(f"on_mismatch: expected 'warn' or 'raise', got {on_mismatch!r}")
        self.every_n_steps, self.rtol, self.atol, self.on_mismatch = every_n_steps, rtol, atol, on_mismatch
        self.worst_rel = 0.0  # the largest max_rel seen over the run, for metrics.json
        self.checks = 0  # how many steps were checked
        self._batch: tuple[Tensor, Tensor] | None = None
        self._ref: torch.nn.Sequential | None = None

    def _active(self, pl_module: L.LightningModule) -> bool:
        return self.every_n_steps > 0 and isinstance(getattr(pl_module, "net", None), TwoLayerNet)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self.every_n_steps == 0:
            return
        if not self._active(pl_module):
            rank_zero_info("GradientCrossCheck: the model is not the manual impl; nothing to cross-check.")
            return
        if trainer.accumulate_grad_batches != 1:
            raise UsageError(
                f"GradientCrossCheck: needs trainer.accumulate_grad_batches 1, got {trainer.accumulate_grad_batches}"
                " (turn the check off with crosscheck.every_n_steps 0)"
            )

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        due = self._active(pl_module) and trainer.global_step % self.every_n_steps == 0
        self._batch = batch if due else None

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if self._batch is None:
            return
        (x, y), self._batch = self._batch, None
        net: TwoLayerNet = pl_module.net
        manual = {name: p.grad for name, p in net.named_parameters()}
        if self._ref is None:
            self._ref = reference_from(net)
        copy_to_reference(net, self._ref)
        self._ref.zero_grad(set_to_none=True)
        with torch.enable_grad(), trainer.precision_plugin.forward_context():
            loss = F.cross_entropy(self._ref(x), y)
        loss.backward()
        # DDP averaged the manual gradients over the ranks; average the reference's the same way.
        ref = {name: trainer.strategy.reduce(g, reduce_op="mean") for name, g in reference_grads(self._ref).items()}
        diffs = compare_all(manual, ref)
        self._record(trainer, diffs)
        bad = [d for d in diffs if d.max_abs > self.atol + self.rtol * ref[d.name].abs().max().item()]
        if bad:
            names = ", ".join(f"{d.name} (max rel {d.max_rel:.2e})" for d in bad)
            msg = (
                f"GradientCrossCheck: at step {trainer.global_step} the manual gradients of {names} differ from"
                f" autograd's past rtol={self.rtol}, atol={self.atol}\n{format_table(diffs)}"
            )
            if self.on_mismatch == "raise":
                raise GradientMismatchError(msg)
            rank_zero_warn(msg, category=GradientMismatchWarning)

    def _record(self, trainer: L.Trainer, diffs: list[GradDiff]) -> None:
        self.checks += 1
        self.worst_rel = max([self.worst_rel] + [d.max_rel for d in diffs])
        metrics = {}
        for d in diffs:
            metrics[f"crosscheck/{d.name}_max_abs"] = d.max_abs
            metrics[f"crosscheck/{d.name}_max_rel"] = d.max_rel
        for logger in trainer.loggers:  # straight to the loggers: this step may not be one of Lightning's log steps
            logger.log_metrics(metrics, step=trainer.global_step)


class RunRecorder(L.Callback):
    """The run's own record: one row per epoch, the fit's wall time and training samples, whether work has begun.

    `history` holds a row per training epoch: epoch, train_loss (the epoch mean), train_acc, val_loss, val_acc and lr
    (the learning rate of the epoch's last step), each read from what the run logged (trainer.callback_metrics), so
    it exists whatever the loggers. A row is written when its checkpoint is saved (Lightning saves after the epoch's
    validation and training metrics are logged) and again when the next epoch starts and the fit ends. The history
    is saved in every checkpoint and restored from it, so a resumed fit's history covers the epochs before the stop.

    `started` turns true when the first training epoch, validation (not the sanity check) or test begins, so the CLI
    can tell a bad setup (one-line error) from a failure during the run (full traceback). `run_dir` is the new run
    folder the CLI checked for this run (None until then), which a failed setup may discard. `carry` (source,
    destination): a file copied when training starts (a resumed run's best checkpoint from before the stop).
    """

    KEYS = {"train_loss": "train_loss_epoch", "train_acc": "train_acc", "val_loss": "val_loss", "val_acc": "val_acc"}

    def __init__(self) -> None:
        self.started = False
        self.run_dir: Path | None = None
        self.carry: tuple[Path, Path] | None = None
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

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.carry is not None and trainer.is_global_zero:
            src, dst = self.carry
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)

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


class ModelCheckpoint(L.pytorch.callbacks.ModelCheckpoint):
    """Lightning's ModelCheckpoint, with last.ckpt written at the end of every epoch.

    Lightning 2.6 writes last.ckpt only in the epochs that also saved a top-k checkpoint, so with save_top_k=1 it
    is the last *improving* epoch, not the last epoch: a stopped run resumed from it would redo epochs. Here it is
    the end of the newest epoch, as its name and the README promise.
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)  # top-k, and last.ckpt only when a top-k was saved
        if self._should_save_on_train_epoch_end(trainer):  # validation (if any) ran in this epoch already
            self._save_last(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):  # validation at other points than the epoch end
            self._save_last(trainer)

    def _save_last(self, trainer: L.Trainer) -> None:
        """last.ckpt, unless this step's checkpoint was saved already (with a top-k one, or during sanity checks)."""
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
