"""TwoLayerClassifier: the LightningModule that trains the two-layer net, with the hand-written or autograd backward.

impl="manual" trains manualnet.TwoLayerNet: scores s2 and the loss go through the hand-derived Functions
(two_layer_net, softmax_cross_entropy), so loss.backward() runs our backward. impl="autograd" trains the
nn.Sequential(Flatten, Linear, ReLU, Linear) reference with F.cross_entropy. Both start from TwoLayerNet's seeded
weights, so two runs with the same seed and data differ only in the backward pass.

The learning rate follows a schedule stepped after every optimizer step (not every epoch), over
trainer.estimated_stepping_batches steps: "onecycle" (cosine warm-up from lr/25 to lr over the first 15% of the steps,
then cosine down to lr/2.5e5) or "cosine" (cosine from lr down to 0). A resumed fit continues the checkpoint's schedule.
"""

import math
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from lightning_ref.reference import reference_from
from manualnet import TwoLayerNet, softmax_cross_entropy
from manualnet.checks import check_int


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")


def _check_real(name: str, value: object, low: float, high: float, *, low_open: bool = False) -> None:
    """`value` must be a real number in [low, high) (or (low, high) when low_open)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or value >= high or (low_open and value == low):
        interval = f"{'(' if low_open else '['}{low}, {high})"
        raise ValueError(f"{name}: expected a number in {interval}, got {value!r}")


class TwoLayerClassifier(L.LightningModule):
    """x -> affine(w1, b1) -> ReLU -> affine(w2, b2) -> scores, trained on softmax cross-entropy.

    input_shape (C,H,W) and num_classes come from the data module (the CLI links them); every other argument is a
    hyperparameter. All are saved in checkpoints (save_hyperparameters), so load_from_checkpoint rebuilds the model.
    momentum and nesterov are SGD's (AdamW keeps its default betas); weight_decay applies to w1 and w2 only.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        impl: Literal["manual", "autograd"] = "manual",
        hidden: int = 2048,
        seed: int = 0,
        optimizer: Literal["sgd", "adamw"] = "sgd",
        lr: float = 0.05,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 5e-4,
        schedule: Literal["onecycle", "cosine"] = "onecycle",
    ) -> None:
        super().__init__()
        if not (isinstance(input_shape, (tuple, list)) and len(input_shape) == 3):
            raise ValueError(f"input_shape: expected (channels, height, width), got {input_shape!r}")
        for i, size in enumerate(input_shape):
            check_int(f"input_shape[{i}]", size, 1)
        check_int("num_classes", num_classes, 2)
        _check_choice("impl", impl, ("manual", "autograd"))
        check_int("hidden", hidden, 1)
        check_int("seed", seed, 0)
        _check_choice("optimizer", optimizer, ("sgd", "adamw"))
        _check_real("lr", lr, 0.0, math.inf, low_open=True)
        _check_real("momentum", momentum, 0.0, 1.0)
        _check_real("weight_decay", weight_decay, 0.0, math.inf)
        _check_choice("schedule", schedule, ("onecycle", "cosine"))
        if optimizer == "sgd" and nesterov and momentum == 0:
            raise ValueError(
                f"nesterov: expected momentum > 0 for Nesterov SGD, got nesterov=True with momentum={momentum}"
            )
        self.save_hyperparameters()
        self.input_shape = tuple(input_shape)
        self.impl = impl

        # The same seeded weights for both impls: w1 ~ N(0, 2/D), w2 ~ N(0, 1/H), biases 0 (TwoLayerNet's init).
        net = TwoLayerNet(math.prod(input_shape), hidden, num_classes, seed=seed)
        self.net = net if impl == "manual" else reference_from(net)

        self.train_loss = MeanMetric()  # the epoch's mean training loss, over all ranks
        # One accuracy per split (torchmetrics keeps each split's running counts apart and syncs them under DDP).
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def on_train_start(self) -> None:
        # A resumed fit continues the checkpoint's schedule: its length must be this run's number of steps.
        sched = self.lr_schedulers()
        planned = sched.total_steps if self.hparams.schedule == "onecycle" else sched.T_max
        steps = int(self.trainer.estimated_stepping_batches)
        if planned != steps:
            raise ValueError(
                f"trainer.max_epochs: the checkpoint's learning-rate schedule spans {planned} steps but this run has "
                f"{steps}; resume with the original max_epochs, batch_size and data (a resumed run continues it)"
            )

    def forward(self, x: Tensor) -> Tensor:
        """Class scores s2 (N,C) for images x (N,C,H,W)."""
        return self.net(x)

    def loss_and_scores(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """L = mean_i -ln softmax(s2)[i, y_i] and the scores s2, through the impl's loss."""
        s2 = self.net(x)
        loss = softmax_cross_entropy(s2, y) if self.impl == "manual" else F.cross_entropy(s2, y)
        return loss, s2

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss, s2 = self.loss_and_scores(x, y)
        # update() only: the epoch values are logged once, at the epoch end (self.log has a Python cost every call)
        self.train_loss.update(loss.detach())
        self.train_acc.update(s2.detach(), y)
        self.log("train_loss_step", loss, prog_bar=True)  # this rank's batch: no sync in the step
        return loss

    def on_train_epoch_end(self) -> None:
        # Metric objects: Lightning computes them (synced over the ranks under DDP) and resets them for the next epoch
        self.log("train_loss_epoch", self.train_loss)
        self.log("train_acc", self.train_acc)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        loss, s2 = self.loss_and_scores(x, y)
        self.val_acc(s2, y)
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("val_acc", self.val_acc, on_epoch=True, prog_bar=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        loss, s2 = self.loss_and_scores(x, y)
        self.test_acc(s2, y)
        self.log("test_loss", loss, on_epoch=True, sync_dist=True)
        self.log("test_acc", self.test_acc, on_epoch=True)

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        # Weight decay on the weight matrices w1, w2 only; not on the biases b1, b2.
        params = list(self.net.parameters())
        groups = [
            {"params": [p for p in params if p.dim() > 1], "weight_decay": hp.weight_decay},
            {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0},
        ]
        # fused: one pass over each parameter, no temporaries. The unfused CPU step allocates a new (D,H) tensor for
        # the weight decay and another for the Nesterov term every step, which took ~18 ms of a ~60 ms step at H=2048.
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov, fused=True)
        else:
            opt = torch.optim.AdamW(groups, lr=hp.lr, fused=True)
        steps = int(self.trainer.estimated_stepping_batches)
        if hp.schedule == "onecycle":
            # lr/25 -> lr over 15% of the steps, then -> lr/25/1e4; momentum stays as configured.
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=hp.lr, total_steps=steps, pct_start=0.15, cycle_momentum=False
            )
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
