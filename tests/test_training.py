"""TwoLayerClassifier and GradientCrossCheck under a real Trainer, on the small fake CIFAR-10 from conftest.

What they prove: both impls learn; they start from the same weights and give the same first loss and gradients;
the optimiser and schedule options all train and step the schedule once per optimizer step; the live cross-check
finds a deliberately wrong backward (raising or warning) and stays quiet on the right one; bad hyperparameters are
refused before any work, naming the option.
"""

import math
import warnings

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from lightning_ref import GradientCrossCheck, GradientMismatchError, GradientMismatchWarning
from lightning_ref.data import ImageDataModule
from lightning_ref.module import TwoLayerClassifier
from manualnet.crosscheck import compare_all
from manualnet.reference import reference_grads


def datamodule(root) -> ImageDataModule:
    """The fake CIFAR-10 (600 train, 200 test): 500 to train in 10 batches of 50, 100 to validate."""
    return ImageDataModule("cifar10", root=str(root), download=False, batch_size=50, val_size=100, eval_batch_size=100)


def classifier(dm: ImageDataModule, **kw) -> TwoLayerClassifier:
    kw = {"hidden": 16, "lr": 0.05, **kw}
    return TwoLayerClassifier(dm.input_shape, dm.num_classes, **kw)


def trainer(callbacks=(), logger=False, **kw) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
        **{"max_epochs": 1, "enable_checkpointing": False, **kw},
    )


@torch.no_grad()
def mean_val_loss(model: TwoLayerClassifier, dm: ImageDataModule) -> float:
    losses = [model.loss_and_scores(x, y)[0].item() for x, y in dm.val_dataloader()]
    return sum(losses) / len(losses)


@pytest.mark.parametrize("impl", ["manual", "autograd"])
def test_a_short_fit_of_each_impl_lowers_the_loss(fake_cifar10, impl):
    dm = datamodule(fake_cifar10)
    dm.setup("fit")
    model = classifier(dm, impl=impl)
    before = mean_val_loss(model, dm)
    trainer(max_epochs=3).fit(model, datamodule=dm)
    after = mean_val_loss(model, dm)
    assert after < 0.5 * before, (before, after)


def test_both_impls_start_from_the_same_weights_and_give_the_same_first_loss_and_gradients(fake_cifar10):
    dm = datamodule(fake_cifar10)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    manual, auto = classifier(dm, impl="manual", seed=3), classifier(dm, impl="autograd", seed=3)
    assert torch.equal(manual.net.w1, auto.net[1].weight.T) and torch.equal(manual.net.w2, auto.net[3].weight.T)
    assert_same_loss_and_gradients(manual, auto, x, y)


def assert_same_loss_and_gradients(manual: TwoLayerClassifier, auto: TwoLayerClassifier, x, y, *regularisers) -> float:
    """The two impls' loss_and_scores(x, y, *regularisers) agree to float32 rounding, and so do their gradients;
    returns the manual loss."""
    loss_m, _ = manual.loss_and_scores(x, y, *regularisers)
    loss_a, _ = auto.loss_and_scores(x, y, *regularisers)
    loss_m.backward()
    loss_a.backward()
    assert math.isclose(loss_m.item(), loss_a.item(), rel_tol=1e-6)
    manual_grads = {name: p.grad for name, p in manual.net.named_parameters()}
    for d in compare_all(manual_grads, reference_grads(auto.net)):
        assert d.max_rel < 1e-5, d
    return loss_m.item()


def test_the_same_seed_gives_the_same_weights_and_another_seed_different_ones(fake_cifar10):
    dm = datamodule(fake_cifar10)
    a, b, c = classifier(dm, seed=1), classifier(dm, seed=1), classifier(dm, seed=2)
    assert torch.equal(a.net.w1, b.net.w1) and not torch.equal(a.net.w1, c.net.w1)


@pytest.mark.parametrize(
    "optimizer, schedule", [("sgd", "onecycle"), ("sgd", "cosine"), ("adamw", "onecycle"), ("adamw", "cosine")]
)
def test_every_optimizer_and_schedule_trains_and_steps_the_schedule_once_per_step(fake_cifar10, optimizer, schedule):
    dm = datamodule(fake_cifar10)
    lr = 0.05 if optimizer == "sgd" else 0.003
    model = classifier(dm, optimizer=optimizer, schedule=schedule, lr=lr)
    t = trainer(max_epochs=2)
    t.fit(model, datamodule=dm)
    sched = model.lr_schedulers()
    assert t.global_step == 20 and sched.last_epoch == 20  # stepped after every optimizer step, not every epoch
    final_lr = model.optimizers().param_groups[0]["lr"]
    assert final_lr < lr / 100  # annealed to (near) zero by the end
    assert math.isfinite(t.callback_metrics["train_loss_epoch"].item())


def test_weight_decay_applies_to_the_weight_matrices_and_not_to_the_biases(fake_cifar10):
    model = classifier(datamodule(fake_cifar10), weight_decay=1e-3)
    t = trainer(max_epochs=1)
    t.fit(model, datamodule=datamodule(fake_cifar10))
    decay = {id(p): g["weight_decay"] for g in model.optimizers().param_groups for p in g["params"]}
    assert decay[id(model.net.w1)] == decay[id(model.net.w2)] == 1e-3
    assert decay[id(model.net.b1)] == decay[id(model.net.b2)] == 0.0


# ---- the live gradient cross-check ----------------------------------------------------------------------------


def test_crosscheck_raises_on_a_wrong_backward_naming_the_parameter(fake_cifar10, wrong_dw1):
    dm = datamodule(fake_cifar10)
    check = GradientCrossCheck(every_n_steps=1, on_mismatch="raise")
    with pytest.raises(GradientMismatchError, match=r"step 0 .*of w1 \(max rel") as err:
        trainer(callbacks=[check]).fit(classifier(dm), datamodule=dm)
    assert "b1" not in str(err.value).split("\n")[0]  # only the wrong gradient is named


def test_crosscheck_warns_on_a_wrong_backward_and_training_goes_on(fake_cifar10, wrong_dw1):
    dm = datamodule(fake_cifar10)
    check = GradientCrossCheck(every_n_steps=5, on_mismatch="warn")
    t = trainer(callbacks=[check])
    with pytest.warns(GradientMismatchWarning, match="w1"):
        t.fit(classifier(dm), datamodule=dm)
    assert t.global_step == 10 and check.checks == 2  # steps 0 and 5
    assert 0.0005 < check.worst_rel < 0.002  # the 0.1% error of the wrong_dw1 fixture, measured


def test_crosscheck_is_quiet_on_the_right_backward_and_logs_every_parameter(fake_cifar10, tmp_path):
    dm = datamodule(fake_cifar10)
    check = GradientCrossCheck(every_n_steps=3, on_mismatch="raise")
    t = trainer(callbacks=[check], logger=CSVLogger(tmp_path, name="run"), max_epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientMismatchWarning)
        t.fit(classifier(dm), datamodule=dm)
    assert check.checks == 7  # steps 0, 3, ..., 18
    assert check.worst_rel < 1e-5
    header = (tmp_path / "run" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in ("w1", "b1", "w2", "b2"):
        assert f"crosscheck/{name}_max_abs" in header and f"crosscheck/{name}_max_rel" in header


def test_crosscheck_leaves_the_autograd_impl_alone(fake_cifar10, wrong_dw1):
    dm = datamodule(fake_cifar10)
    check = GradientCrossCheck(every_n_steps=1, on_mismatch="raise")
    trainer(callbacks=[check]).fit(classifier(dm, impl="autograd"), datamodule=dm)
    assert check.checks == 0


def test_crosscheck_every_n_steps_0_turns_it_off(fake_cifar10, wrong_dw1):
    dm = datamodule(fake_cifar10)
    check = GradientCrossCheck(every_n_steps=0, on_mismatch="raise")
    trainer(callbacks=[check]).fit(classifier(dm), datamodule=dm)
    assert check.checks == 0


def test_crosscheck_does_not_change_the_training(fake_cifar10):
    """Same weights after a fit with the check at every step as without it: it only reads the gradients."""
    weights = []
    for every in (0, 1):
        dm = datamodule(fake_cifar10)
        model = classifier(dm)
        trainer(callbacks=[GradientCrossCheck(every_n_steps=every)]).fit(model, datamodule=dm)
        weights.append(model.net.w1.detach().clone())
    assert torch.equal(weights[0], weights[1])


# ---- bad hyperparameters ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, option",
    [
        ({"hidden": 0}, "hidden"),
        ({"hidden": 2.5}, "hidden"),
        ({"lr": 0.0}, "lr"),
        ({"lr": -0.1}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"momentum": 1.0}, "momentum"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"impl": "numpy"}, "impl"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"schedule": "step"}, "schedule"),
        ({"seed": -1}, "seed"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"label_smoothing": -0.1}, "label_smoothing"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.2}, "dropout"),
        ({"dropout": True}, "dropout"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"ema_decay": float("nan")}, "ema_decay"),
        ({"momentum": 0.0, "nesterov": True}, "nesterov"),
        ({"num_classes": 1}, "num_classes"),
        ({"input_shape": (3, 32)}, "input_shape"),
        ({"input_shape": (3, 0, 32)}, r"input_shape\[1\]"),
    ],
)
def test_bad_hyperparameters_raise_valueerror_naming_the_option_and_value(kw, option):
    args = {"input_shape": (3, 32, 32), "num_classes": 10, **kw}
    with pytest.raises(ValueError, match=rf"^{option}: expected .*got"):
        TwoLayerClassifier(**args)


@pytest.mark.parametrize(
    "kw, option",
    [({"every_n_steps": -1}, "every_n_steps"), ({"rtol": -1.0}, "rtol"), ({"on_mismatch": "ignore"}, "on_mismatch")],
)
def test_bad_crosscheck_options_raise_valueerror_naming_the_option(kw, option):
    with pytest.raises(ValueError, match=rf"^{option}: expected"):
        GradientCrossCheck(**kw)
