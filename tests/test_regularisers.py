"""The regularisers under a real Trainer (fake CIFAR-10 from conftest): label smoothing, dropout and weight averaging.

What they prove: with the same mask and smoothing both impls give the same loss and gradients; a step's mask is drawn
from the seed (the same fit twice is bitwise the same, another seed is not) and there is none at evaluation; the live
cross-check passes on the right backward with every option on and still catches a wrong one; the averaged weights,
computed here from the raw weights of every step, are the ones validated, kept after the fit and tested from a
checkpoint; bad options are refused before work.
"""

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from test_training import assert_same_loss_and_gradients, classifier, trainer
from torch import nn

from lightning_ref import GradientCrossCheck, GradientMismatchError
from lightning_ref.data import ImageDataModule
from lightning_ref.module import TwoLayerClassifier
from manualnet import dropout_mask
from manualnet.reference import reference_scores

EVERY_OPTION = {"dropout": 0.3, "label_smoothing": 0.1, "ema_decay": 0.9}


def datamodule(root) -> ImageDataModule:
    """The fake CIFAR-10 (600 train, 200 test): 500 to train in 10 batches of 50, 100 to validate in one batch."""
    dm = ImageDataModule("cifar10", root=str(root), download=False, batch_size=50, val_size=100, eval_batch_size=100)
    dm.setup("fit")
    return dm


def weights(model: TwoLayerClassifier) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.net.named_parameters()}


def test_both_impls_give_the_same_loss_and_gradients_with_the_same_mask_and_smoothing(fake_cifar10):
    dm = datamodule(fake_cifar10)
    x, y = next(iter(dm.train_dataloader()))
    manual, auto = classifier(dm, impl="manual", seed=3), classifier(dm, impl="autograd", seed=3)
    m = dropout_mask((x.shape[0], 16), 0.5, torch.Generator().manual_seed(0))
    loss = assert_same_loss_and_gradients(manual, auto, x, y, m, 0.2)
    # and both differ from the loss without them: the options reached the loss
    assert not math.isclose(loss, manual.loss_and_scores(x, y)[0].item(), rel_tol=1e-3)


class StepMasks(L.Callback):
    """The dropout mask of every training step."""

    def __init__(self) -> None:
        self.masks = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.masks.append(pl_module.step_mask.clone())


def fit_weights(root, seed: int, **kw) -> tuple[dict, StepMasks]:
    dm = datamodule(root)
    model = classifier(dm, seed=seed, **kw)
    masks = StepMasks()
    trainer([masks], max_epochs=2).fit(model, datamodule=dm)
    return weights(model), masks


def test_dropout_masks_come_from_the_seed_so_the_same_fit_twice_is_bitwise_the_same(fake_cifar10):
    (a, masks_a), (b, masks_b) = (fit_weights(fake_cifar10, seed=1, dropout=0.5) for _ in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(masks_a.masks) == 20 and all(
        torch.equal(p, q) for p, q in zip(masks_a.masks, masks_b.masks, strict=True)
    )
    assert not torch.equal(masks_a.masks[0], masks_a.masks[1])  # a new mask every step
    keep = torch.stack(masks_a.masks).ne(0).double().mean().item()
    assert abs(keep - 0.5) < 0.05, keep  # 20 * 50 * 16 draws of keep-probability 0.5
    c, masks_c = fit_weights(fake_cifar10, seed=2, dropout=0.5)
    assert not torch.equal(masks_a.masks[0], masks_c.masks[0])


def test_no_mask_at_evaluation_the_validation_loss_is_the_plain_nets(fake_cifar10):
    dm = datamodule(fake_cifar10)
    model = classifier(dm, dropout=0.5)
    t = trainer()
    t.fit(model, datamodule=dm)
    x, y = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        plain = F.cross_entropy(torch.relu(x.flatten(1) @ model.net.w1 + model.net.b1) @ model.net.w2 + model.net.b2, y)
    assert math.isclose(t.callback_metrics["val_loss"].item(), plain.item(), rel_tol=1e-6)


def test_the_live_crosscheck_passes_with_every_option_on_for_the_right_backward(fake_cifar10):
    # GradientCrossCheck's reference must use the step's mask and smoothing: with any other it would raise here.
    dm = datamodule(fake_cifar10)
    check = GradientCrossCheck(every_n_steps=1, on_mismatch="raise")
    trainer([check], max_epochs=2).fit(classifier(dm, **EVERY_OPTION), datamodule=dm)
    assert check.checks == 20 and check.worst_rel < 1e-5


def test_the_live_crosscheck_catches_a_backward_that_leaves_the_mask_out(fake_cifar10, mask_left_out_of_backward):
    dm = datamodule(fake_cifar10)
    check = GradientCrossCheck(every_n_steps=1, on_mismatch="raise")
    with pytest.raises(GradientMismatchError, match=r"step 0 .*of w1 \(max rel"):
        trainer([check]).fit(classifier(dm, **EVERY_OPTION), datamodule=dm)


class RawWeights(L.Callback):
    """The weights the optimizer left after every step (the raw weights, not the average)."""

    def __init__(self) -> None:
        self.steps = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append(weights(pl_module))


def test_the_averaged_weights_are_validated_kept_and_checkpointed(fake_cifar10, tmp_path):
    dm = datamodule(fake_cifar10)
    model = classifier(dm, ema_decay=0.9)
    raw = RawWeights()
    t = trainer([raw], max_epochs=2, enable_checkpointing=True, default_root_dir=tmp_path)
    t.fit(model, datamodule=dm)
    # EMA by its definition: a_1 = w_1, a_k = 0.9 a_(k-1) + 0.1 w_k, over the 20 steps' raw weights
    want = dict(raw.steps[0])
    for w in raw.steps[1:]:
        want = {k: 0.9 * want[k] + 0.1 * w[k] for k in want}
    got = weights(model)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-7)
    assert not torch.allclose(got["w1"], raw.steps[-1]["w1"])  # the average, not the last step
    # validated: the last epoch's val_loss is the averaged weights' (the raw weights' differs)
    x, y = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        averaged_loss = model.loss_and_scores(x, y)[0].item()
    assert math.isclose(t.callback_metrics["val_loss"].item(), averaged_loss, rel_tol=1e-6)
    # checkpointed (the default ModelCheckpoint keeps the last epoch): its state_dict is the average, and a test of it
    # by the trainer that fitted tests it
    ckpt = torch.load(t.checkpoint_callback.best_model_path, weights_only=True)
    torch.testing.assert_close(ckpt["state_dict"]["net.w1"], want["w1"], rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        model.net.w1.zero_()
    t.test(model, datamodule=dm, ckpt_path=t.checkpoint_callback.best_model_path, verbose=False)
    assert torch.equal(model.net.w1, ckpt["state_dict"]["net.w1"])  # not ckpt["current_model_state"]'s raw w1


@pytest.mark.parametrize("kw", [{"label_smoothing": 1.0}, {"dropout": 1.0}, {"ema_decay": -0.5}])
def test_regulariser_options_out_of_range_are_refused_naming_the_option(kw):
    (option,) = kw
    with pytest.raises(ValueError, match=rf"^{option}: expected a number in \[0.0, 1.0\), got"):
        TwoLayerClassifier((3, 4, 4), 10, **kw)


def test_a_mask_with_a_reference_of_another_form_is_refused_naming_ref():
    ref = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    with pytest.raises(ValueError, match=r"^ref: expected nn.Sequential\(Flatten, Linear, ReLU, Linear\).*Tanh"):
        reference_scores(ref, torch.randn(5, 4), torch.ones(5, 3))
