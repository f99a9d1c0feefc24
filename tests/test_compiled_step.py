"""TwoLayerClassifier(compile=True): the training step (forward, the hand-written backward, the optimizer step) under
torch.compile gives eager's weights, and it is the hand-written backward that runs in it. One small fit each way
(torch.compile takes ~10 s here, once per process and module)."""

import lightning as L
import pytest
import torch

from lightning_ref.data import ImageDataModule
from lightning_ref.module import TwoLayerClassifier
from manualnet.functional import TwoLayerNetFn

STEPS = 3
# float32: the compiled step adds and multiplies the same numbers as eager, in another order and with fused kernels
# (a few roundings of 6e-8 per operation); after 3 SGD steps the weights agree to 1e-5 of their largest magnitude.
RTOL = 1e-5


def datamodule() -> ImageDataModule:
    dm = ImageDataModule("synthetic", batch_size=16, val_size=0, synthetic_train=STEPS * 16, synthetic_test=16)
    dm.setup("fit")
    return dm


def weights_after_fit(compile: bool, accelerator: str = "cpu", **model_kw) -> dict[str, torch.Tensor]:
    """w1, b1, w2, b2 after STEPS steps of SGD (Nesterov, weight decay, one-cycle schedule) from the seeded init."""
    dm = datamodule()
    model = TwoLayerClassifier(dm.input_shape, dm.num_classes, hidden=8, lr=0.5, compile=compile, **model_kw)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        max_steps=STEPS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == STEPS
    return {name: p.detach().cpu().clone() for name, p in model.net.named_parameters()}


def assert_rel_close(got: dict, want: dict) -> None:
    for name, w in want.items():
        err = (got[name] - w).abs().max().item()
        assert err <= RTOL * w.abs().max().item(), f"{name}: max abs difference {err:.3e}"


@pytest.fixture
def doubled_dw1(monkeypatch):
    """The hand-written backward with dW1 doubled: a step that runs it moves w1 by twice the true gradient."""
    right = TwoLayerNetFn.backward

    def doubled(ctx, ds2, dx2_out):
        dx, dw1, db1, dw2, db2, dm = right(ctx, ds2, dx2_out)
        return dx, None if dw1 is None else 2 * dw1, db1, dw2, db2, dm

    monkeypatch.setattr(TwoLayerNetFn, "backward", staticmethod(doubled))


def test_compiled_steps_give_the_eager_steps_weights_and_run_the_hand_written_backward(doubled_dw1, monkeypatch):
    # With dW1 doubled in the hand-written backward, the compiled fit must land on the eager fit's (doubled) weights:
    # had compile differentiated the forward itself, its w1 would be the true-gradient one, which differs.
    compiled = weights_after_fit(compile=True)
    eager = weights_after_fit(compile=False)
    assert_rel_close(compiled, eager)
    monkeypatch.undo()  # the right backward: w1 moves by half as much
    true_w1 = weights_after_fit(compile=False)["w1"]
    assert (compiled["w1"] - true_w1).abs().max() > 100 * RTOL * true_w1.abs().max()


def test_compiled_steps_with_dropout_and_label_smoothing_give_the_eager_steps_weights():
    # The mask is drawn outside the compiled step and passed in: the same masks, so the same weights. Without the
    # regularisers in the compiled step (or with other masks) w1 would land elsewhere.
    regularised = {"dropout": 0.5, "label_smoothing": 0.2}
    compiled = weights_after_fit(compile=True, **regularised)
    eager = weights_after_fit(compile=False, **regularised)
    assert_rel_close(compiled, eager)
    plain = weights_after_fit(compile=False)
    assert (compiled["w1"] - plain["w1"]).abs().max() > 100 * RTOL * plain["w1"].abs().max()


def test_compile_must_be_a_bool():
    with pytest.raises(ValueError, match=r"^compile: expected a bool, got 'yes'"):
        TwoLayerClassifier((3, 4, 4), 10, compile="yes")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_compiled_steps_with_cuda_graphs_give_the_eager_steps_weights():
    matmul = torch.backends.cuda.matmul
    tf32 = matmul.allow_tf32
    matmul.allow_tf32 = False  # the same float32 products on both sides
    try:
        compiled = weights_after_fit(compile=True, accelerator="cuda")
        eager = weights_after_fit(compile=False, accelerator="cuda")
    finally:
        matmul.allow_tf32 = tf32
    assert_rel_close(compiled, eager)
