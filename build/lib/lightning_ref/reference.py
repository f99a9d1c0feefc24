"""The autograd reference: the same function as manualnet.TwoLayerNet, built from nn.Linear and nn.ReLU."""

import torch
from torch import nn

from manualnet import TwoLayerNet


def reference_from(model: TwoLayerNet) -> nn.Sequential:
    """nn.Sequential(Flatten, Linear(D,H), ReLU, Linear(H,C)) holding copies of model's weights.

    nn.Linear stores weight as (out, in), so its weights are w1^T (H,D) and w2^T (C,H).
    """
    # skip_init: the weights are copied in below, so nn.Linear's own init (which would draw from the global RNG and
    # change what the training run draws next) is skipped.
    kw = {"device": model.w1.device, "dtype": model.w1.dtype}
    ref = nn.Sequential(
        nn.Flatten(),
        nn.utils.skip_init(nn.Linear, model.in_features, model.hidden, **kw),
        nn.ReLU(),
        nn.utils.skip_init(nn.Linear, model.hidden, model.num_classes, **kw),
    )
    copy_to_reference(model, ref)
    return ref


@torch.no_grad()
def copy_to_reference(model: TwoLayerNet, ref: nn.Sequential) -> None:
    """Write model's w1, b1, w2, b2 into ref's Linear layers (transposing the weights)."""
    ref[1].weight.copy_(model.w1.T)
    ref[1].bias.copy_(model.b1)
    ref[3].weight.copy_(model.w2.T)
    ref[3].bias.copy_(model.b2)


@torch.no_grad()
def copy_from_reference(ref: nn.Sequential, model: TwoLayerNet) -> None:
    """Write ref's Linear weights back into model's w1, b1, w2, b2 (transposing the weights)."""
    for name, value in reference_weights(ref).items():
        getattr(model, name).copy_(value)


def reference_weights(ref: nn.Sequential) -> dict[str, torch.Tensor]:
    """ref's parameters in TwoLayerNet's layout and names: w1 (D,H), b1 (H,), w2 (H,C), b2 (C,) (views, no copy)."""
    return {"w1": ref[1].weight.T, "b1": ref[1].bias, "w2": ref[3].weight.T, "b2": ref[3].bias}


def reference_grads(ref: nn.Sequential) -> dict[str, torch.Tensor]:
    """ref's parameter gradients in TwoLayerNet's layout and names: w1 (D,H), b1 (H,), w2 (H,C), b2 (C,)."""
    return {
        "w1": ref[1].weight.grad.T,
        "b1": ref[1].bias.grad,
        "w2": ref[3].weight.grad.T,
        "b2": ref[3].bias.grad,
    }
