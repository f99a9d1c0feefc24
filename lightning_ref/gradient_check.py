"""GradientCrossCheck: the callback that checks the manual gradients of a training batch against autograd's."""

from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from lightning_ref.errors import UsageError
from manualnet import TwoLayerNet
from manualnet.crosscheck import GradDiff, compare_all, format_table
from manualnet.reference import copy_to_reference, reference_from, reference_grads, reference_scores
from manualnet.validate import check_int


class GradientMismatchError(RuntimeError):
    """The hand-written gradients differ from autograd's past the tolerance."""


class GradientMismatchWarning(UserWarning):
    """The hand-written gradients differ from autograd's past the tolerance (on_mismatch="warn")."""


class GradientCrossCheck(L.Callback):
    """Every `every_n_steps` optimizer steps, check the manual gradients of the batch against autograd's.

    After backward and before the optimizer step, the autograd reference (nn.Linear/ReLU copies of the current
    w1, b1, w2, b2) runs forward and backward on the same batch with F.cross_entropy, with the step's dropout mask
    (the module's step_mask) and label smoothing (its hparams.label_smoothing) when it has them; under DDP its
    gradients are averaged over the ranks, as DDP averaged the manual ones. Per parameter it logs the max abs error
    and the max rel error (max |g - g_ref| / max |g_ref|) as crosscheck/<name>_max_abs and crosscheck/<name>_max_rel,
    and a parameter fails when max |g - g_ref| > atol + rtol * max |g_ref|: then it warns or raises (on_mismatch).

    every_n_steps=0 turns the check off. It checks only models whose `net` is a manualnet.TwoLayerNet (impl="manual").
    Cost: one extra forward and backward of the reference every `every_n_steps` steps.

    Args:
        every_n_steps: check the gradients every this many optimizer steps (the first step included); 0: never.
        rtol: a parameter's gradient fails when max |g - g_ref| > atol + rtol * max |g_ref|.
        atol: the absolute part of that tolerance.
        on_mismatch: what a failed check does: warn (GradientMismatchWarning) or raise (GradientMismatchError).
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

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After the module's setup (which may build the net from the data module), before any step or sanity check.
        if self.every_n_steps == 0:
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
        m = getattr(pl_module, "step_mask", None)  # the mask the manual step used (None: no dropout)
        eps = getattr(pl_module, "hparams", {}).get("label_smoothing", 0.0)
        with torch.enable_grad(), trainer.precision_plugin.forward_context():
            loss = F.cross_entropy(reference_scores(self._ref, x, m), y, label_smoothing=eps)
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
