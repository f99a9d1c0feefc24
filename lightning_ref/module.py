"""TwoLayerClassifier: the LightningModule that trains the two-layer net, with the hand-written or autograd backward.

impl="manual" trains manualnet.TwoLayerNet: scores s2 and the loss go through the hand-derived Functions
(two_layer_net, softmax_cross_entropy), so loss.backward() runs our backward. impl="autograd" trains the
nn.Sequential(Flatten, Linear, ReLU, Linear) reference with F.cross_entropy. Both start from TwoLayerNet's seeded
weights, so two runs with the same seed and data differ only in the backward pass.

The learning rate follows a schedule stepped after every optimizer step (not every epoch), over
trainer.estimated_stepping_batches steps: "onecycle" (cosine warm-up from lr/25 to lr over the first 15% of the steps,
then cosine down to lr/2.5e5) or "cosine" (cosine from lr down to 0). A resumed fit continues the checkpoint's schedule.

compile=True runs each training step (forward, the hand-written backward and the optimizer step) as one
torch.compile'd function, with CUDA graphs on a GPU (mode="reduce-overhead"); the optimizer and schedule are the same,
stepped by the module itself (Lightning's manual optimization: its optimizer wrapper runs a closure, which compile
can't trace). The training step reads no tensor value to the host (no device sync): the labels' range is asserted on
the device, and the step's loss and accuracy are accumulated in metrics that are read at the epoch end.

Regularisers (off by default): label_smoothing trains on the smoothed target (F.cross_entropy's label_smoothing, by
hand in the manual impl); dropout multiplies the hidden layer by an inverted-dropout mask drawn for each training step
from a generator seeded by (seed, rank, step, batch), the same mask for both impls, none at evaluation; ema_decay > 0
adds Lightning's EMAWeightAveraging callback (lightning_ref.averaging), whose averaged weights are the ones
validated, tested and checkpointed. Validation and test losses are the plain cross-entropy, with neither regulariser.
"""

import math
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from lightning_ref.averaging import EMAWeights
from lightning_ref.errors import UsageError
from lightning_ref.gradient_check import GradientCrossCheck
from lightning_ref.seeds import DROPOUT_STREAM, mixed_seed
from manualnet import TwoLayerNet, dropout_mask, softmax_cross_entropy
from manualnet.reference import reference_from, reference_scores
from manualnet.validate import check_int


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")


def _check_real(name: str, value: object, low: float, high: float, *, low_open: bool = False) -> None:
    """`value` must be a real number in [low, high) (or (low, high) when low_open)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or value >= high or (low_open and value == low):
        interval = f"{'(' if low_open else '['}{low}, {high})"
        raise UsageError(f"{name}: expected a number in {interval}, got {value!r}")


class TwoLayerClassifier(L.LightningModule):
    """x -> affine(w1, b1) -> ReLU -> affine(w2, b2) -> scores, trained on softmax cross-entropy.

    input_shape (C,H,W) and num_classes come from the data module: the CLI links them, and when they are left out
    (None) the module takes them from the trainer's data module (its `input_shape` and `num_classes`) when the fit,
    test or predict starts (configure_model). Every other argument is a hyperparameter. All are saved in checkpoints
    (save_hyperparameters), so load_from_checkpoint rebuilds the model.
    momentum and nesterov are SGD's (AdamW keeps its default betas); weight_decay applies to w1 and w2 only.

    Args:
        input_shape: the images' (channels, height, width); the CLI sets it from the data module.
        num_classes: the number of classes C; the CLI sets it from the data module.
        impl: manual (the hand-written backward, manualnet.TwoLayerNet) or autograd (nn.Linear/ReLU, for comparison).
        hidden: the hidden layer's width H.
        seed: the weights' init (w1 ~ N(0, 2/D), w2 ~ N(0, 1/H), biases 0); the CLI sets it from seed_everything.
        optimizer: sgd (with momentum and nesterov) or adamw.
        lr: the peak learning rate of the schedule.
        momentum: SGD's momentum (ignored by adamw).
        nesterov: SGD with Nesterov momentum (needs momentum > 0; ignored by adamw).
        weight_decay: decoupled (adamw) or L2 (sgd) weight decay on w1 and w2, not on the biases.
        schedule: the learning rate per optimizer step: onecycle (warm-up to lr, then down) or cosine (lr down to 0).
        compile: run each training step as one torch.compile'd function (CUDA graphs on a GPU; one device only).
        label_smoothing: train on the target (1 - eps) Y + eps / C, eps in [0, 1); 0: the one-hot labels.
        dropout: the probability p in [0, 1) that a hidden unit is dropped in a training step (inverted dropout:
            the kept ones scaled by 1/(1-p)); 0: no dropout.
        ema_decay: in [0, 1); > 0 validates, tests and checkpoints an exponential moving average of the weights,
            updated after every optimizer step with this decay (Lightning's EMAWeightAveraging); 0: no averaging.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int] | None = None,
        num_classes: int | None = None,
        impl: Literal["manual", "autograd"] = "manual",
        hidden: int = 2048,
        seed: int = 0,
        optimizer: Literal["sgd", "adamw"] = "sgd",
        lr: float = 0.05,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 5e-4,
        schedule: Literal["onecycle", "cosine"] = "onecycle",
        compile: bool = False,
        label_smoothing: float = 0.0,
        dropout: float = 0.0,
        ema_decay: float = 0.0,
    ) -> None:
        super().__init__()
        _check_choice("impl", impl, ("manual", "autograd"))
        check_int("hidden", hidden, 1)
        check_int("seed", seed, 0)
        _check_choice("optimizer", optimizer, ("sgd", "adamw"))
        _check_real("lr", lr, 0.0, math.inf, low_open=True)
        _check_real("momentum", momentum, 0.0, 1.0)
        _check_real("weight_decay", weight_decay, 0.0, math.inf)
        _check_choice("schedule", schedule, ("onecycle", "cosine"))
        _check_real("label_smoothing", label_smoothing, 0.0, 1.0)
        _check_real("dropout", dropout, 0.0, 1.0)
        _check_real("ema_decay", ema_decay, 0.0, 1.0)
        if not isinstance(compile, bool):
            raise UsageError(f"compile: expected a bool, got {compile!r}")
        if optimizer == "sgd" and nesterov and momentum == 0:
            raise UsageError(
                f"nesterov: expected momentum > 0 for Nesterov SGD, got nesterov=True with momentum={momentum}"
            )
        self.save_hyperparameters()
        self.impl = impl
        self.automatic_optimization = not compile  # compiled: the module steps its optimizer in the compiled step
        self._compiled_step = None  # torch.compile(self._train_step), made on the first step
        self._checkpoint_schedule: int | None = None  # the schedule length of the checkpoint a fit resumes from
        self._dropout_generator: torch.Generator | None = None  # on the net's device, re-seeded every step
        self.step_mask: Tensor | None = None  # this training step's dropout mask (GradientCrossCheck reuses it)
        self.net: torch.nn.Module | None = None
        if input_shape is not None or num_classes is not None:
            self._build(input_shape, num_classes)

    def _build(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        """The net and the per-split metrics for images of input_shape (C,H,W) in num_classes classes."""
        if not (isinstance(input_shape, (tuple, list)) and len(input_shape) == 3):
            raise UsageError(f"input_shape: expected (channels, height, width), got {input_shape!r}")
        for i, size in enumerate(input_shape):
            check_int(f"input_shape[{i}]", size, 1)
        check_int("num_classes", num_classes, 2)
        self.input_shape = tuple(input_shape)
        # The same seeded weights for both impls: w1 ~ N(0, 2/D), w2 ~ N(0, 1/H), biases 0 (TwoLayerNet's init).
        net = TwoLayerNet(math.prod(input_shape), self.hparams.hidden, num_classes, seed=self.hparams.seed)
        self.net = net if self.impl == "manual" else reference_from(net)

        # The epoch's mean training loss, over all ranks. nan_strategy="disable": the NaN check reads the loss to the
        # host (a device sync every step); a NaN loss shows in the epoch mean instead.
        self.train_loss = MeanMetric(nan_strategy="disable")
        # One accuracy per split (torchmetrics keeps each split's running counts apart and syncs them under DDP).
        # Training: validate_args=False, as torchmetrics' input checks count unique values for some inputs
        # (torch.unique: a sync on CUDA); the labels are checked once when the data is loaded and, on the device, by
        # the loss.
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def configure_model(self) -> None:
        """Without input_shape and num_classes, take them from the trainer's data module (before any weights are
        restored from a checkpoint); they are then saved with the other hyperparameters."""
        if self.net is not None:
            return
        dm = self.trainer.datamodule
        if dm is None or getattr(dm, "input_shape", None) is None or getattr(dm, "num_classes", None) is None:
            raise UsageError(
                "input_shape: expected TwoLayerClassifier(input_shape, num_classes) or a data module with input_shape "
                f"and num_classes (trainer.fit(model, datamodule=dm)), got neither (data module: {dm!r})"
            )
        self.hparams.input_shape, self.hparams.num_classes = tuple(dm.input_shape), dm.num_classes
        self._build(tuple(dm.input_shape), dm.num_classes)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.compile and self.trainer.world_size > 1:
            raise UsageError(
                f"compile: the compiled step runs on one device, got {self.trainer.world_size} processes "
                "(run without --model.compile, or on one device)"
            )

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        schedules = checkpoint.get("lr_schedulers") or [{}]
        self._checkpoint_schedule = schedules[0].get("total_steps", schedules[0].get("T_max"))

    def on_fit_start(self) -> None:
        """A resumed fit continues the checkpoint's learning-rate schedule: refuse it (before any step or sanity
        check) unless its length is this run's number of optimizer steps."""
        planned = self._checkpoint_schedule
        if not self.trainer.ckpt_path or planned is None:
            return
        steps = int(self.trainer.estimated_stepping_batches)
        if planned != steps:
            raise UsageError(
                f"trainer.max_epochs: the checkpoint's learning-rate schedule spans {planned} steps but this run has "
                f"{steps}; resume with the original max_epochs, batch_size and data (a resumed run continues it)"
            )

    def configure_callbacks(self) -> list[L.Callback]:
        """A fit with ema_decay > 0: Lightning's EMAWeightAveraging (lightning_ref.averaging), averaging after every
        optimizer step. Other stages read a checkpoint's weights, which are the averaged ones: no callback."""
        fitting = self.trainer.state.fn == "fit"
        return [EMAWeights(decay=self.hparams.ema_decay)] if fitting and self.hparams.ema_decay > 0 else []

    def on_train_start(self) -> None:
        if self.hparams.compile and any(
            isinstance(cb, GradientCrossCheck) and cb.every_n_steps > 0 for cb in self.trainer.callbacks
        ):
            rank_zero_warn(
                "compile: GradientCrossCheck checks eager steps only (its hook runs in Lightning's optimizer step,"
                " which the compiled step replaces); tests/test_compiled_step.py checks the compiled gradients"
            )

    def forward(self, x: Tensor) -> Tensor:
        """Class scores s2 (N,C) for images x (N,C,H,W)."""
        return self.net(x)

    def loss_and_scores(
        self, x: Tensor, y: Tensor, m: Tensor | None = None, label_smoothing: float = 0.0
    ) -> tuple[Tensor, Tensor]:
        """L = mean_i -sum_j Yeps_ij ln softmax(s2)_ij and the scores s2, through the impl's net (with the hidden
        layer's dropout mask m, if any) and loss (Yeps = (1 - eps) Y + eps / C, eps = label_smoothing)."""
        if self.impl == "manual":
            s2 = self.net(x, m)
            return softmax_cross_entropy(s2, y, label_smoothing), s2
        s2 = reference_scores(self.net, x, m)
        return F.cross_entropy(s2, y, label_smoothing=label_smoothing), s2

    def dropout_mask(self, n: int, batch_idx: int) -> Tensor | None:
        """The training step's mask (n,H) (None without dropout), drawn on the net's device from a generator seeded by
        (seed, rank, global step, batch index): the same masks for both impls and after a resume."""
        hp = self.hparams
        if hp.dropout == 0:
            return None
        w = next(self.net.parameters())
        if self._dropout_generator is None or self._dropout_generator.device != w.device:
            self._dropout_generator = torch.Generator(device=w.device)
        words = (hp.seed, DROPOUT_STREAM, self.global_rank, self.trainer.global_step, batch_idx)
        self._dropout_generator.manual_seed(mixed_seed(*words))
        return dropout_mask((n, hp.hidden), hp.dropout, self._dropout_generator, device=w.device, dtype=w.dtype)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        self.step_mask = m = self.dropout_mask(x.shape[0], batch_idx)
        eps = self.hparams.label_smoothing
        loss, s2 = self.compiled_step(x, y, m) if self.hparams.compile else self.loss_and_scores(x, y, m, eps)
        # update() only: the epoch values are logged once, at the epoch end (self.log has a Python cost every call)
        self.train_loss.update(loss.detach())
        self.train_acc.update(s2.detach(), y)
        # This rank's batch loss, to the logger: Lightning reads it to the host only at its logging steps
        # (log_every_n_steps). Not on the progress bar, which would read it every step (a device sync).
        self.log("train_loss_step", loss)
        return loss

    def compiled_step(self, x: Tensor, y: Tensor, m: Tensor | None) -> tuple[Tensor, Tensor]:
        """One optimizer step under torch.compile: the loss and scores (copies), the schedule stepped after it."""
        lightning_opt = self.optimizers()
        opt = lightning_opt.optimizer  # the torch optimizer itself, not Lightning's closure-running wrapper
        opt.zero_grad(set_to_none=True)
        if self._compiled_step is None:
            mode = "reduce-overhead" if x.device.type == "cuda" else None  # CUDA graphs on a GPU
            self._compiled_step = torch.compile(self._train_step, mode=mode)
        torch.compiler.cudagraph_mark_step_begin()  # a new step: the last one's graph outputs may be overwritten
        # Counted as LightningOptimizer.step counts a step in manual optimization (trainer.global_step, which
        # max_steps, logging and checkpointing go by).
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        progress.increment_ready()
        loss, s2 = self._compiled_step(x, y, m, opt)
        progress.increment_completed()
        self.lr_schedulers().step()
        # CUDA graph outputs are overwritten by the graph's next replay: keep copies (a scalar and (N,C) values).
        return loss.clone(), s2.clone()

    def _train_step(self, x: Tensor, y: Tensor, m: Tensor | None, opt: torch.optim.Optimizer) -> tuple[Tensor, Tensor]:
        """Forward, backward (the hand-written one, traced by compile into the backward graph), optimizer step. The
        dropout mask m is drawn outside (compile does not trace a generator argument) and comes in as an input."""
        loss, s2 = self.loss_and_scores(x, y, m, self.hparams.label_smoothing)
        loss.backward()
        opt.step()
        return loss.detach(), s2.detach()

    def on_train_epoch_start(self) -> None:
        # Metric objects, logged once per epoch (training_step updates them): Lightning computes them at the epoch end
        # (synced over the ranks under DDP), when the progress bar shows the epoch's mean loss (the bar reads it then,
        # not every step), and resets them for the next epoch.
        self.log("train_loss_epoch", self.train_loss, prog_bar=True)
        self.log("train_acc", self.train_acc)

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> tuple[Tensor, Tensor]:
        """Class probabilities p = softmax(s2) (N,C) of the batch's images, and their labels y (N,)."""
        x, y = batch
        return torch.softmax(self.net(x), dim=1), y

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
        return self.optimizer_and_schedule(int(self.trainer.estimated_stepping_batches))

    def optimizer_and_schedule(self, steps: int) -> dict:
        """configure_optimizers' answer for a fit of `steps` optimizer steps: the optimizer, and the schedule stepped
        after every optimizer step."""
        hp = self.hparams
        # Weight decay on the weight matrices w1, w2 only; not on the biases b1, b2.
        params = list(self.net.parameters())
        groups = [
            {"params": [p for p in params if p.dim() > 1], "weight_decay": hp.weight_decay},
            {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0},
        ]
        # fused: one pass over each parameter, no temporaries (the unfused CPU step allocates a new (D,H) tensor for
        # the weight decay and another for the Nesterov term every step).
        # Compiled: not fused (compile can't trace the fused kernel, it would run eagerly; inductor fuses the plain
        # step itself), and lr a tensor on the parameters' device, which the schedule fills in place: a Python float
        # would be a constant of the compiled graph, recompiled at every new value.
        # AdamW compiled on a GPU: capturable, its step count on the device (CUDA graphs can't read a host counter).
        fused = not hp.compile
        lr = hp.lr if fused else torch.tensor(hp.lr, device=self.device)
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=lr, momentum=hp.momentum, nesterov=hp.nesterov, fused=fused)
        else:
            capturable = hp.compile and self.device.type == "cuda"
            opt = torch.optim.AdamW(groups, lr=lr, fused=fused, capturable=capturable)
        if hp.schedule == "onecycle":
            # lr/25 -> lr over 15% of the steps, then -> lr/25/1e4; momentum stays as configured.
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=hp.lr, total_steps=steps, pct_start=0.15, cycle_momentum=False
            )
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
