"""A Lightning training step reads no tensor value to the host (on CUDA: no device sync), and the labels' range is
still checked: once per data set when it is loaded, and in the loss on the device (torch._assert_async).

On the CPU, every Tensor method that turns values into Python values (item, tolist, bool(), int(), float(), ...) and
every torch function whose output size depends on the values (unique, nonzero, ...) is made to raise from the start
of a training batch to its end: the training_step, backward, optimizer step and every callback's on_train_batch_end
(the CLI's: progress bar, checkpoint, cross-check, recorder, logger). On CUDA the same steps run under
torch.cuda.set_sync_debug_mode("error"). Watched: the ordinary steps. Not watched: the steps where the gradient
cross-check is due (every_n_steps; it reads its comparison by design) and Lightning's logging steps
(log_every_n_steps; the logger writes numbers), neither of which occurs in the steps watched here.
"""

import lightning as L
import numpy as np
import pytest
import torch
from conftest import fake_images, write_cifar
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from lightning_ref import GradientCrossCheck, RunRecorder
from lightning_ref.data import ImageDataModule
from lightning_ref.module import TwoLayerClassifier

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
HOST_READS = ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__", "__array__")
# Functions whose output size depends on the values: on CUDA they read a size back to the host (a sync).
VALUE_SIZED = ("unique", "nonzero", "masked_select", "bincount", "argwhere")
ORIGINAL = {name: torch.Tensor.__dict__.get(name) for name in HOST_READS}
STEPS = 8  # one epoch of 8 batches; the cross-check is due at step 0 (every 100) and logging at step 49 (every 50)


def datamodule() -> ImageDataModule:
    return ImageDataModule("synthetic", batch_size=16, val_size=32, synthetic_train=STEPS * 16 + 32, synthetic_test=32)


class Watched(TwoLayerClassifier):
    """The classifier, with `watch` entered at each training batch start and left at its end, on the steps that are
    neither cross-check steps nor logging steps. Module hooks run after the callbacks': the window holds
    training_step, backward, optimizer step and every callback's on_train_batch_end."""

    def __init__(self, *args, watch, first_watched: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.watch, self.first_watched, self.watched, self._window = watch, first_watched, [], None

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self.trainer.global_step >= self.first_watched:
            self._window = self.watch()
            self._window.__enter__()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self._window is not None:
            self._window.__exit__(None, None, None)
            self._window = None
            self.watched.append(batch_idx)


class HostReadsRaise:
    """While entered, the Tensor methods that read values to the host raise, and so do the torch functions whose
    output size depends on the values (on CUDA they read that size back)."""

    def __enter__(self) -> None:
        self.patch = pytest.MonkeyPatch()
        for name in HOST_READS:

            def refuse(*args, _name=name, **kwargs):
                raise AssertionError(f"Tensor.{_name} called in a training step (a host read; a sync on CUDA)")

            self.patch.setattr(torch.Tensor, name, refuse)
        for name in VALUE_SIZED:

            def refuse_sized(*args, _name=name, **kwargs):
                raise AssertionError(f"torch.{_name} called in a training step (its size is read back; a sync on CUDA)")

            self.patch.setattr(torch, name, refuse_sized)

    def __exit__(self, *exc) -> None:
        self.patch.undo()


class SyncsRaise:
    """While entered, a CUDA operation that synchronises with the host raises (torch.cuda.set_sync_debug_mode)."""

    def __enter__(self) -> None:
        self.mode = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("error")

    def __exit__(self, *exc) -> None:
        torch.cuda.set_sync_debug_mode(self.mode)


def fit_watched(tmp_path, accelerator: str, watch, **model_kw) -> Watched:
    """One epoch with what the CLI adds (CSV logger, checkpoint on val_acc, cross-check, recorder, progress bar)."""
    dm = datamodule()
    model = Watched((3, 32, 32), 10, hidden=16, watch=watch, **model_kw)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        max_epochs=1,
        logger=CSVLogger(tmp_path, name="sync"),
        callbacks=[ModelCheckpoint(monitor="val_acc", mode="max", save_last=True), GradientCrossCheck(), RunRecorder()],
        enable_model_summary=False,
    )
    try:
        trainer.fit(model, datamodule=dm)
    finally:
        if model._window is not None:  # a step that failed inside the window: restore before anything else runs
            model._window.__exit__(None, None, None)
    return model


def test_lightning_training_steps_read_no_tensor_values_to_the_host_on_cpu(tmp_path):
    model = fit_watched(tmp_path, "cpu", HostReadsRaise)
    assert model.watched == list(range(1, STEPS))  # every step but the cross-checked step 0 ran in the window
    assert {name: torch.Tensor.__dict__.get(name) for name in HOST_READS} == ORIGINAL  # restored


def test_the_host_read_watch_catches_a_host_read_in_the_step(tmp_path):
    # The watch itself: a module that reads its loss in the step is caught.
    class ReadsLoss(Watched):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            print(f"loss {loss.item():.3f}")
            return loss

    dm = datamodule()
    model = ReadsLoss((3, 32, 32), 10, hidden=16, watch=HostReadsRaise)
    trainer = L.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False)
    try:
        with pytest.raises(AssertionError, match=r"Tensor.item called in a training step"):
            trainer.fit(model, datamodule=dm)
    finally:
        if model._window is not None:
            model._window.__exit__(None, None, None)
    assert {name: torch.Tensor.__dict__.get(name) for name in HOST_READS} == ORIGINAL


@CUDA
@pytest.mark.parametrize("compile", [False, True])
def test_cuda_lightning_training_steps_do_not_sync(tmp_path, compile):
    # Compiled: the first 4 steps compile, recompile the optimizer step once its state exists, warm up and record the
    # CUDA graphs (all of which may sync); then replays only.
    first = 4 if compile else 1
    model = fit_watched(tmp_path, "cuda", SyncsRaise, first_watched=first, compile=compile)
    assert model.watched == list(range(first, STEPS))
    assert torch.cuda.get_sync_debug_mode() == 0


# ---- the labels' range, once per data set --------------------------------------------------------------------------


def test_a_data_set_with_a_label_out_of_range_is_refused_when_it_is_loaded(tmp_path, cifar_checksums_off):
    x, y = fake_images(300, (3, 32, 32), 10, seed=3)
    y = y.copy()
    y[7] = 10  # CIFAR-10 has classes 0..9
    root = write_cifar(tmp_path / "data", x[:200], y[:200], x[200:], np.asarray(y[200:]))
    dm = ImageDataModule("cifar10", root=str(root), download=False, val_size=50)
    # Refused where the files are decoded (lightning_ref.sources), naming the file and the label range.
    with pytest.raises(ValueError, match=r"^root: .*data_batch_1 is not a CIFAR batch: expected 40 `labels` in 0\.\.9"):
        dm.setup("fit")
